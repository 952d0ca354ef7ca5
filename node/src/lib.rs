//! The swarmcast node daemon: membership, neighbours, broadcasts, control socket.
//!
//! * [`neighbours`]: the pure neighbour-selection and liveness core.
//! * [`manifest`]: what a broadcast contains, its canonical bytes and id, and validation.
//! * [`bitfield`]: held chunks and pieces.
//! * [`store`]: receiver workspaces (durable, resumable) and origin sources.
//! * [`swarm`]: the pure piece-scheduling core of one transfer.
//! * `membership` and `peers`: the tokio shells around registration and neighbours.
//! * [`control`]: the local Unix socket that `node status` talks to.

pub mod bitfield;
pub mod control;
mod daemon;
pub mod data;
pub mod manifest;
mod membership;
pub mod metrics;
pub mod neighbours;
mod peers;
pub mod store;
pub mod swarm;

pub use daemon::{NodeConfig, NodeError, Strategy, run};
pub use membership::JoinError;
