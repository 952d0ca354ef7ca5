//! The swarmcast bootstrap server: a replicated peer registry.
//!
//! [`registry`] is the pure, I/O-free core (merge, liveness, anti-entropy digests and deltas);
//! the server shell around it speaks QUIC.

pub mod registry;
