//! The swarmcast node daemon: membership, neighbours, control socket.

pub mod neighbours;
