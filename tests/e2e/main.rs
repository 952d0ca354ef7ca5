//! End-to-end tests of the `swarmcast` binary: real processes, real QUIC on 127.0.0.1, real
//! signals. Tests run one at a time (see `support::serial`) so their time bounds hold on a
//! loaded 2-core machine.

#![allow(clippy::unwrap_used)]

mod audience;
mod authz;
mod bad_manifests;
mod bench_args;
mod bench_control;
mod caps;
mod chaos_cli;
mod cli_papercuts;
mod control_plane;
mod data_plane;
mod history;
mod hostile;
mod local_users;
mod metrics;
mod ops;
mod priority;
mod pull;
mod sim_cli;
mod support;
mod versions;
