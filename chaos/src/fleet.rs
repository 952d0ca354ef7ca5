//! The fleet API over the control sockets of running nodes: wait until nodes joined, read a
//! broadcast's state at a node, wait until nodes completed it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use swarmcast_node::control::{self, NodeStatus};
use swarmcast_node::data::BroadcastInfo;
use swarmcast_node::listing::BroadcastPhase;

/// How often the waits below ask.
pub const POLL: Duration = Duration::from_millis(100);

/// The node at `data_dir` once it is registered with at least `neighbours` neighbours (and at
/// least one); Err at `deadline`.
pub async fn wait_joined(
    data_dir: &Path,
    neighbours: usize,
    deadline: Instant,
) -> Result<NodeStatus> {
    loop {
        if let Ok(s) = control::status(data_dir).await
            && s.registered
            && s.neighbours.len() >= neighbours.max(1)
        {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not join with {} neighbours in time",
                data_dir.display(),
                neighbours.max(1)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Broadcast `id` at the node at `data_dir`, if the node answers and knows it.
pub async fn broadcast(data_dir: &Path, id: &str) -> Option<BroadcastInfo> {
    control::list(data_dir)
        .await
        .ok()?
        .into_iter()
        .find(|b| b.id == id)
}

/// Until every node of `dirs` holds broadcast `id` (complete, or its origin); Err at
/// `deadline`, or at once if one of them reports it failed.
pub async fn wait_complete(
    dirs: &[PathBuf],
    id: &str,
    deadline: Instant,
    poll: Duration,
) -> Result<()> {
    wait_all(dirs, id, deadline, poll, "complete", |b| b.is_done()).await
}

/// Until `received/<name>` points at broadcast `id` at every node of `dirs` (its listing says
/// `current`: the link is on disk, not only decided); Err at `deadline`, or at once if one of
/// them reports it failed.
pub async fn wait_current(
    dirs: &[PathBuf],
    id: &str,
    deadline: Instant,
    poll: Duration,
) -> Result<()> {
    wait_all(
        dirs,
        id,
        deadline,
        poll,
        "showing it under received/",
        |b| b.current,
    )
    .await
}

/// Until `done` holds for broadcast `id` at every node of `dirs` (`what` names it in the
/// error); Err at `deadline`, or at once if one of them reports it failed.
async fn wait_all(
    dirs: &[PathBuf],
    id: &str,
    deadline: Instant,
    poll: Duration,
    what: &str,
    done: impl Fn(&BroadcastInfo) -> bool,
) -> Result<()> {
    loop {
        let mut count = 0;
        for d in dirs {
            match broadcast(d, id).await {
                Some(b) if b.state == BroadcastPhase::Failed => bail!(
                    "{}: broadcast failed: {}",
                    d.display(),
                    b.error.unwrap_or_default()
                ),
                Some(b) if done(&b) => count += 1,
                _ => {}
            }
        }
        if count == dirs.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{count}/{} nodes {what} in time", dirs.len());
        }
        tokio::time::sleep(poll).await;
    }
}
