//! A fault schedule's types: what happens to which receiver, and when ([`super::faults`]
//! carries it out). Apart from the engine so that the engine can hold a schedule without
//! importing what carries it out.

use std::time::Duration;

/// What happens to the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    Kill,
    Restart,
    Pause,
    Resume,
}

/// When a fault happens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum When {
    /// At this virtual time from the start.
    At(Duration),
    /// When the fleet's progress ([`Sim::fleet_progress`](super::Sim::fleet_progress)) reaches this fraction (0 to 1).
    Progress(f64),
}

/// One fault of a run's schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduledFault {
    /// The receiver (1 to the number of receivers).
    pub node: usize,
    pub action: FaultAction,
    pub when: When,
}

/// A schedule the simulation cannot carry out.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum ScheduleError {
    #[error("node {node} does not exist: the nodes are 0 (the origin) to {last}")]
    NoSuchNode { node: usize, last: usize },
    #[error("node 0 is the origin, which the simulator does not fault")]
    Origin,
    #[error("progress fraction {0} is not between 0 and 1")]
    Fraction(f64),
}
