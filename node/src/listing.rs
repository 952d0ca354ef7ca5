//! The local state of a broadcast as `node ls` reports it, as a type.
//!
//! [`BroadcastInfo::state`](crate::data::BroadcastInfo) travels (and is printed) as its text;
//! [`BroadcastInfo::phase`](crate::data::BroadcastInfo::phase) reads it back, so that callers
//! match on an enum rather than compare strings.

use serde::{Deserialize, Serialize};

use crate::data::BroadcastInfo;

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
        f.write_str(self.as_str())
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

impl BroadcastInfo {
    /// [`state`](Self::state) as a [`BroadcastPhase`].
    pub fn phase(&self) -> Result<BroadcastPhase, UnknownPhase> {
        self.state.parse()
    }

    /// Whether this node holds the whole broadcast (complete, or the origin).
    pub fn is_done(&self) -> bool {
        self.phase().is_ok_and(BroadcastPhase::is_done)
    }
}

#[cfg(test)]
mod tests {
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
        assert!(BroadcastPhase::Seeding.is_done() && BroadcastPhase::Complete.is_done());
        assert!(!BroadcastPhase::Receiving.is_done() && !BroadcastPhase::Failed.is_done());
    }
}
