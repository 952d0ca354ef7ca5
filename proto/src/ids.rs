//! Identities and small newtypes shared by every crate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Error parsing a hex identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdParseError {
    /// Not 64 hex digits.
    #[error("expected 64 hex digits, got {len} characters")]
    Length {
        /// Characters given.
        len: usize,
    },
    /// A character that is not a hex digit.
    #[error("not a hex digit in identity")]
    Hex,
}

macro_rules! id32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(#[serde(with = "serde_bytes")] pub [u8; 32]);

        impl $name {
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex digits, for logs.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 64 {
                    return Err(IdParseError::Length { len: s.len() });
                }
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|_| IdParseError::Hex)?;
                Ok(Self(out))
            }
        }
    };
}

id32!(
    /// A process's identity: SHA-256 of its certificate's SubjectPublicKeyInfo.
    ///
    /// Always derived from the TLS certificate, never taken from a message.
    NodeId
);

id32!(
    /// A broadcast's identity: BLAKE3 of its canonical manifest bytes.
    BroadcastId
);

/// What a certificate allows its holder to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A registry server; may replicate the registry.
    Bootstrap,
    /// A fleet member; may write only its own registry entry.
    Node,
}

impl Role {
    /// The lower-case name used on the command line and in certificates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bootstrap => "bootstrap",
            Role::Node => "node",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error parsing a [`Role`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown role {0:?} (expected \"bootstrap\" or \"node\")")]
pub struct RoleParseError(pub String);

impl FromStr for Role {
    type Err = RoleParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bootstrap" => Ok(Role::Bootstrap),
            "node" => Ok(Role::Node),
            other => Err(RoleParseError(other.to_owned())),
        }
    }
}

/// The version of a registry entry: higher wins on merge.
///
/// Ordered lexicographically: a new incarnation beats any heartbeat of an older one.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Version {
    /// Rises every time the process starts.
    pub incarnation: u64,
    /// Rises on every heartbeat within one incarnation.
    pub heartbeat: u64,
}

impl Version {
    /// A version from its two parts.
    pub fn new(incarnation: u64, heartbeat: u64) -> Self {
        Self {
            incarnation,
            heartbeat,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.incarnation, self.heartbeat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_hex_round_trip() {
        let id = NodeId([0xab; 32]);
        let s = id.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<NodeId>(), Ok(id));
        assert_eq!(
            "abc".parse::<NodeId>(),
            Err(IdParseError::Length { len: 3 })
        );
        assert_eq!("zz".repeat(32).parse::<NodeId>(), Err(IdParseError::Hex));
    }

    #[test]
    fn version_order_is_lexicographic() {
        assert!(Version::new(2, 0) > Version::new(1, 99));
        assert!(Version::new(1, 2) > Version::new(1, 1));
    }

    #[test]
    fn role_parse() {
        assert_eq!("node".parse::<Role>(), Ok(Role::Node));
        assert!("admin".parse::<Role>().is_err());
    }
}
