//! The swarmcast cluster CA, certificate issuance, and ready-made quinn/rustls configurations.
//!
//! Nothing else in swarmcast touches PEM or X.509: other crates get an [`Identity`], turn it
//! into quinn configurations, and learn who is on the other end of a connection with
//! [`peer_info`].
//!
//! # Trust model
//!
//! One self-signed CA per cluster. Every process holds a leaf certificate issued by that CA,
//! and every connection is mutually authenticated with TLS 1.3: the server *requires* a client
//! certificate that chains to the CA, and the client checks the server's chain the same way.
//! Peers are dialled by address, so the client does not require the server's DNS name to match
//! the name it dialled (see [`Identity::client_config`]); it learns the peer's name and role from
//! the verified certificate instead.
//!
//! A process's [`NodeId`] is the SHA-256 of its certificate's DER SubjectPublicKeyInfo, so it is
//! bound to the key: it is always derived from the TLS certificate, never taken from a message.
//!
//! # Files
//!
//! ```text
//! D/ca.pem        the CA certificate (0644)           written by init_ca
//! D/ca.key        the CA private key, PKCS#8 (0600)   written by init_ca
//! D/N/cert.pem    N's leaf certificate (0644)          written by issue
//! D/N/key.pem     N's private key, PKCS#8 (0600)       written by issue
//! D/N/ca.pem      a copy of D/ca.pem                   written by issue
//! ```
//!
//! `D/N` is what `--identity` points at ([`Identity::load`]). Files are created with
//! `O_CREAT|O_EXCL` and their final mode, and nothing is overwritten, except by [`renew`]: it
//! replaces `D/N/cert.pem` atomically with the same key signed again (so the NodeId stays) and,
//! when the signing CA is not yet trusted there, appends it to `D/N/ca.pem`.
//!
//! `ca.pem` may hold several CA certificates, a trust bundle: while the CA is rotated, peers
//! chaining to either CA are trusted. [`LiveIdentity`] re-reads an identity directory so that a
//! running daemon picks up a renewed certificate or a changed bundle without a restart.
//!
//! # Certificates
//!
//! - **CA**: CN "swarmcast cluster CA 1a2b3c4d" (the first 8 hex digits of the SHA-256 of its
//!   SubjectPublicKeyInfo tell clusters apart), basicConstraints CA with path length 0, key usage
//!   keyCertSign and cRLSign, ten years of validity.
//! - **Leaf**: CN and the only DNS subjectAltName are the name (see [`validate_name`]);
//!   basicConstraints CA:FALSE; key usage digitalSignature; extended key usage serverAuth and
//!   clientAuth; one year of validity by default; the role; and, when issued with
//!   `--group`, the groups.
//!
//! All keys are ECDSA P-256.
//!
//! # The role extension
//!
//! The role is a non-critical X.509 extension whose value is a DER UTF8String, `"bootstrap"`
//! or `"node"`. Its OID is [`ROLE_OID`]:
//!
//! ```text
//! 2.25.293267237755066452471269431712489020391.1
//! ```
//!
//! `2.25` is the ITU-T arc for UUIDs (X.667); `293267237755066452471269431712489020391` is the
//! integer form of the random UUID `dca1372a-5aa2-45da-a4f6-781c0f9e1be7`, picked for
//! swarmcast, and `.1` under it is the role. Future swarmcast extensions take `.2`, `.3`, ….
//!
//! rcgen stores OID arcs as `u64` and cannot encode this 128-bit arc, so the extension is
//! appended to the to-be-signed certificate and the certificate is signed again by the CA.
//! See the `der` module.
//!
//! # The groups extension
//!
//! A node's groups (`certs issue --group G`, repeatable) are a non-critical extension beside
//! the role, OID [`GROUPS_OID`] (`….2`, the next arc), whose value is a DER
//! `SEQUENCE OF UTF8String`, sorted and without duplicates, each group a name by the rules of
//! [`validate_group`]. A leaf without groups has no such extension. Groups are written by the
//! CA, so a node never declares its own; [`PeerInfo::groups`] reads them from a peer's
//! certificate, and restricted broadcasts (`node send --to group:G`) are judged by them.
//!
//! # Crypto provider
//!
//! Everything is built from `rustls::crypto::ring::default_provider()` explicitly, so the
//! configurations do not depend on a process-wide default. A binary that also uses rustls
//! elsewhere calls [`install_crypto_provider`] once at start-up.

mod ca;
mod der;
mod error;
mod files;
mod identity;
mod issue;
mod live;
mod peer;
mod pem;
pub mod testing;
mod tls;

pub use ca::{Ca, CaPaths, Validity, init_ca};
pub use der::{GROUPS_OID, ROLE_OID};
pub use error::CertError;
pub use identity::Identity;
pub use issue::{
    IssuedCert, IssuedPaths, MAX_GROUPS, Renewed, issue, issue_groups, issue_with,
    issue_with_groups, renew, renew_with, validate_group, validate_name,
};
pub use live::{EXPIRY_WARNING, LiveIdentity, Reload, expiry_warning};
pub use peer::{PeerInfo, node_id_of, peer_info};
pub use tls::{SERVER_NAME, install_crypto_provider};

pub use swarmcast_proto::{NodeId, Role};
