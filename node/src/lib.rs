//! The swarmcast node daemon: membership, neighbours, broadcasts, control socket.
//!
//! * [`neighbours`]: the pure neighbour-selection and liveness core.
//! * [`manifest`]: what a broadcast contains, its canonical bytes and id, and validation.
//! * [`bitfield`]: held chunks and pieces.
//! * [`store`]: receiver workspaces (durable, resumable) and origin sources.
//! * [`swarm`]: the pure piece-scheduling core of one transfer.
//! * [`data`]: the broadcast core ([`data::Broadcasts`]) and the data-plane shell around it.
//! * `membership`: the pure membership core (`membership::machine`: seeds, registration,
//!   failover, heartbeat timing, join timeout, backoff) and the tokio shell around it; `peers`:
//!   the shell around the neighbour core; `accept` checks inbound connections and dispatches
//!   them; `handles` are what each task gets.
//! * [`control`]: the local Unix socket that `node status` talks to; [`status`]: what it
//!   answers, and the completion rule ([`status::NodeOutcome`], [`status::FleetOutcome`]).
//!   `inputs`: the messages the tasks send each other.
//! * [`listing`]: the local state of a broadcast (`node ls`) as an enum.

mod abandon;
mod accept;
pub mod bitfield;
pub mod control;
mod daemon;
pub mod data;
mod handles;
mod heartbeat;
mod inputs;
pub mod listing;
pub mod manifest;
mod membership;
pub mod metrics;
pub mod neighbours;
mod outbox;
mod peers;
pub mod ratelimit;
pub mod sim;
pub mod status;
pub mod store;
mod streams;
pub mod swarm;
mod sync;
pub mod wiretrace;
mod work;

pub use daemon::{NodeConfig, NodeError, Strategy, run};
pub use membership::{JoinError, SeedError};
