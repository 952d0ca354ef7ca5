//! The swarmcast chaos harness and demo: real processes of the `swarmcast` binary on 127.0.0.1,
//! faults as real signals, and verification of every byte.
//!
//! * [`harness`]: the one process harness (child processes killed by PID, signals by PID, the
//!   argv of `bootstrap` and `node join`, test timings), shared with the end-to-end tests.
//! * [`fleet`]: waiting for nodes to join and to complete, over their control sockets.
//! * [`procs`]: a local cluster of bootstrap and node processes, killed by PID.
//! * [`tree`]: sample directories and byte-for-byte verification of copies.
//! * [`demo`]: `swarmcast demo`, the built-in default run.
//! * [`netns`]: the network lab: hosts in namespaces on a private bridge, shaped links.
//! * [`bench`](mod@bench), [`pair`], [`files`], [`lab_bench`]: `swarmcast bench local`, `bench pair`
//!   (swarmcast against bare quinn), `bench files` (many small files against one large one) and
//!   `bench swarm` (the netns lab against T*).
//! * [`lab_trace`]: the summary of the nodes' wire traces for `bench swarm --trace`.
//! * [`idle`]: `swarmcast bench idle`, the CPU and packets of a fleet of idle daemons.

/// Narration on stdout (`println!` without its panic): a reader that went away
/// (`swarmcast demo | head`) does not stop a run, which still cleans up and reports its outcome
/// by exit code.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod bench;
pub mod demo;
pub mod files;
pub mod fleet;
pub mod harness;
pub mod idle;
pub mod lab_bench;
pub mod lab_cpu;
pub mod lab_trace;
pub mod netns;
pub mod pair;
pub mod procs;
pub mod registry_bench;
pub mod scenario;
pub mod sends_bench;
pub mod sim_report;
pub mod soak;
pub mod tree;
pub mod versions_bench;
