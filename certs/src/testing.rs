//! Helpers for other crates' tests: an in-memory cluster CA issuing identities without
//! touching disk.
//!
//! ```
//! use swarmcast_certs::testing::TestCluster;
//! use swarmcast_certs::Role;
//!
//! let cluster = TestCluster::new();
//! let alice = cluster.issue("alice", Role::Node);
//! assert_eq!(alice.name(), "alice");
//! ```

use swarmcast_proto::Role;

use crate::{Ca, Identity, Validity, issue_with};

/// An in-memory cluster CA.
#[derive(Debug)]
pub struct TestCluster {
    ca: Ca,
}

impl TestCluster {
    /// A cluster with a fresh CA.
    ///
    /// # Panics
    ///
    /// If key generation fails (it does not, short of a broken system RNG).
    pub fn new() -> Self {
        Self {
            ca: Ca::generate().expect("generating a test CA"),
        }
    }

    /// The CA, for [`issue_with`] (for instance to make an expired certificate).
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// A fresh identity named `name` with `role`, valid for [`Validity::leaf`].
    ///
    /// # Panics
    ///
    /// If `name` is not valid (see [`crate::validate_name`]).
    pub fn issue(&self, name: &str, role: Role) -> Identity {
        issue_with(&self.ca, name, role, Validity::leaf())
            .and_then(|issued| issued.identity())
            .unwrap_or_else(|e| panic!("issuing a test identity for {name:?}: {e}"))
    }

    /// [`issue`](Self::issue), the certificate naming `groups`.
    pub fn issue_with_groups(&self, name: &str, role: Role, groups: &[String]) -> Identity {
        crate::issue_with_groups(&self.ca, name, role, groups, Validity::leaf())
            .and_then(|issued| issued.identity())
            .unwrap_or_else(|e| panic!("issuing a test identity for {name:?}: {e}"))
    }
}

impl Default for TestCluster {
    fn default() -> Self {
        Self::new()
    }
}
