//! The swarmcast bootstrap server: a replicated peer registry.
//!
//! * [`registry`]: the pure, I/O-free core (merge, liveness, anti-entropy digests and deltas).
//! * [`replication`]: the pure retry policy for dialling fellow bootstraps (backoff, forgetting).
//! * [`server`]: the QUIC shell around it, with anti-entropy between fellows and snapshots.
//! * [`client`]: the client side, used by nodes, fellows and the CLI.
//! * [`listing`]: the JSON shape of `registry --json`, written by the CLI and read by harnesses.
//!
//! Framing, dialling, transport settings, close codes and the incarnation counter are in
//! `swarmcast_net`, shared with the node daemon.

pub mod client;
pub mod listing;
pub mod metrics;
pub mod registry;
pub mod replication;
pub mod server;
pub mod snapshot;

pub use client::{BootstrapClient, ClientError};
pub use registry::{Registry, RegistryConfig, RegistryConfigError};
pub use server::{BootstrapConfig, BootstrapError, run};
