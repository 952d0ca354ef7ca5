//! The fleet simulator: the node's own broadcast cores wired together on a virtual clock.
//!
//! One origin and its receivers, a file of `pieces` pieces. Every node runs the node's own
//! broadcast core, [`Broadcasts`](crate::data::Broadcasts), with the default
//! [`BroadcastConfig`](crate::data::BroadcastConfig): it floods the announcement, fetches the
//! manifest from a neighbour that announced it, and runs a [`Transfer`](crate::swarm::Transfer)
//! with the [`Net`]'s `SwarmConfig` per receiver, asks for group commits and advertises what
//! they made durable. The simulation carries out the core's actions as the data-plane shell
//! does. It opens no socket and reads no clock: a seed gives one run.
//!
//! # The model
//! * **Graph.** A random graph in which every node has at least [`Net::degree`] neighbours (and
//!   at most [`MAX_DEGREE`], bar a few forced over), as the neighbour core's default target of
//!   8 builds; every link is one connection. The graph is redrawn until it is connected. (Not a
//!   full mesh: receivers see only their neighbours, which is what makes sparing the origin
//!   hard.)
//! * **Capacities** ([`Net::with_uploads`], the default model). The origin uploads at 50 MB/s;
//!   each receiver uploads at a rate drawn uniformly from a range and downloads at twice that.
//! * **Transfers.** A connection serves its requests first come, first served, one piece at a
//!   time. Connections that are sending share the capacities max-min fairly (progressive
//!   filling over every uploader's upload and every downloader's download), as congestion
//!   control between flows roughly does. RTT is 1 ms: every message takes 0.5 ms.
//! * **Manifest.** The registry names the origin from the start (without addresses); a receiver
//!   learns of the broadcast from a neighbour's `Have` and fetches the manifest from it (one
//!   RTT), which the core checks against the id before the workspace is made.
//! * **Durability.** A commit is durable at once: a piece received is held when the core's
//!   commit ends, in the same instant; its holder announces it to every neighbour (0.5 ms
//!   later) and serves it from then on.
//! * **Faults** ([`Fault`]). A *stalled* receiver accepts requests and never answers them (it
//!   downloads and announces normally, the worst case: its pieces look available). A *corrupt*
//!   receiver serves only pieces that fail verification. A `Ban` works as in the node: the
//!   banning node's requests to the banned peer end (their answers never reach its core), it
//!   never asks the peer again, and the connection stays up as a serve-only link, so the banned
//!   peer is still served and its core is told nothing. The faulty receiver is drawn at random
//!   per seed.
//! * **A late joiner** ([`Setup::late`]): the last receiver's connections come up only after
//!   [`LATE_JOIN`], when its neighbours already hold pieces, so its transfer starts from many
//!   full `Have`s at once.
//! * **Super-seeding** ([`Setup::superseed`]): the origin's core admits or declines each
//!   request (`Broadcasts::handle_serve_request`, and `handle_served` at its end, as the node's
//!   serving shell does; one chunk per piece here): it sends each piece once, declines other
//!   requests for it while that copy is on its way and for `RESEND_AFTER` after its last byte
//!   left, and sends it again after that. Without it the origin serves every request.
//!
//! [`Net::lab`] describes a `bench swarm` configuration instead (fixed link rates, the
//! product's 256 KiB pieces, the wire's measured overhead, shaped FIFOs); the `lab_agreement`
//! test of `node/tests/swarm_sim.rs` holds it within 15% of the lab's medians.
//!
//! # Panics
//! A core action the simulation does not model (a manifest fetch from an address, an abort of
//! requests, a second `Finalize`) panics: the model and the cores disagree, which is a bug in
//! one of them, not bad input.

mod engine;
mod faults;
mod links;
mod net;
mod outcome;
mod schedule;

pub use engine::{Fault, HORIZON, LATE_JOIN, Progress, Setup, Sim};
pub use net::{
    DEGREE, FleetConfig, FleetError, HALF_RTT, MAX_DEGREE, MB, MIB, Net, ORIGIN_UP, PIECES,
    RECEIVERS, Rates, Shape, node_id,
};
pub use outcome::Outcome;
pub use schedule::{FaultAction, ScheduleError, ScheduledFault, When};
