//! The local state of a broadcast as `node ls` reports it, as a type:
//! [`BroadcastInfo::state`](crate::data::BroadcastInfo::state). It travels on the control socket
//! and shows in JSON as its text (`"receiving"`, `"complete"`, `"seeding"`, `"failed"`).

use serde::{Deserialize, Serialize};

/// Where a broadcast stands at one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BroadcastPhase {
    /// Still fetching chunks.
    Receiving,
    /// Every chunk held and the copy finalized.
    Complete,
    /// This node is the origin and serves the source directory.
    Seeding,
    /// Given up (see `BroadcastInfo::error`).
    Failed,
    /// A newer version of the name came out: no longer received (partial data removed), or at
    /// the origin no longer seeded because its source changed.
    Superseded,
    /// Its origin cancelled it (`node cancel`).
    Cancelled,
}

impl BroadcastPhase {
    /// The text `node ls` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receiving => "receiving",
            Self::Complete => "complete",
            Self::Seeding => "seeding",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
            Self::Cancelled => "cancelled",
        }
    }

    /// The node holds the whole broadcast: complete, or the origin.
    pub fn is_done(self) -> bool {
        matches!(self, Self::Complete | Self::Seeding)
    }
}

impl std::fmt::Display for BroadcastPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that `node ls` can align it (`{:<10}`).
        f.pad(self.as_str())
    }
}

/// A state text that names no [`BroadcastPhase`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown broadcast state {0:?} (receiving, complete, seeding, failed, superseded or cancelled)"
)]
pub struct UnknownPhase(pub String);

impl std::str::FromStr for BroadcastPhase {
    type Err = UnknownPhase;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Receiving,
            Self::Complete,
            Self::Seeding,
            Self::Failed,
            Self::Superseded,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| UnknownPhase(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn phases_read_back_from_their_text() {
        for p in [
            BroadcastPhase::Receiving,
            BroadcastPhase::Complete,
            BroadcastPhase::Seeding,
            BroadcastPhase::Failed,
        ] {
            assert_eq!(p.as_str().parse::<BroadcastPhase>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert_eq!(
            "done".parse::<BroadcastPhase>(),
            Err(UnknownPhase("done".into()))
        );
        assert_eq!(format!("{:<10}|", BroadcastPhase::Seeding), "seeding   |");
        assert!(BroadcastPhase::Seeding.is_done() && BroadcastPhase::Complete.is_done());
        assert!(!BroadcastPhase::Receiving.is_done() && !BroadcastPhase::Failed.is_done());
    }
}
