//! The one error type of this crate.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a certificate operation failed.
///
/// Errors about certificate contents carry an `origin`: a file path, a description such as
/// "certificate PEM", or "peer 192.0.2.1:4433".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// A file or directory could not be created or written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// A file this operation creates already exists; nothing is ever overwritten.
    #[error("{path} already exists; refusing to overwrite it")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// A certificate name is not 1..=63 characters of `[a-z0-9-]` without a leading or
    /// trailing `-`.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A group is not 1..=63 characters of `[a-z0-9-]` without a leading or trailing `-`.
    #[error("invalid group {group:?}: {reason}")]
    InvalidGroup {
        /// The rejected group.
        group: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A certificate's end of validity (`certs issue --not-after`) could not be used.
    #[error("invalid end of validity {value:?}: {reason}")]
    InvalidNotAfter {
        /// The rejected text.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// PEM text could not be decoded, or held the wrong number of items.
    #[error("{origin}: {reason}")]
    BadPem {
        /// Where the text came from.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A certificate or key could not be parsed, or lacks something swarmcast requires.
    #[error("{origin}: bad certificate: {reason}")]
    BadCertificate {
        /// Where the certificate came from.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The certificate carries no swarmcast role extension.
    #[error("{origin}: certificate has no swarmcast role extension")]
    MissingRole {
        /// Where the certificate came from.
        origin: String,
    },

    /// The role extension holds something other than "bootstrap" or "node".
    #[error("{origin}: certificate has unknown role {value:?}")]
    UnknownRole {
        /// Where the certificate came from.
        origin: String,
        /// The role as written in the certificate (lossily decoded).
        value: String,
    },

    /// A private key does not belong to the certificate it came with.
    #[error("{origin}: private key does not match the certificate")]
    KeyMismatch {
        /// Where the key came from.
        origin: String,
    },

    /// A leaf certificate is not signed by the CA it came with.
    #[error("{origin}: certificate is not signed by the cluster CA")]
    NotIssuedByCa {
        /// Where the certificate came from.
        origin: String,
    },

    /// The CA certificate is not a CA (no basicConstraints CA:TRUE).
    #[error("{origin}: not a CA certificate")]
    NotCa {
        /// Where the certificate came from.
        origin: String,
    },

    /// An established connection has no peer certificate (cannot happen with this crate's
    /// configurations, which require one on both sides).
    #[error("peer {addr} presented no certificate")]
    NoPeerCertificate {
        /// The peer's address.
        addr: SocketAddr,
    },

    /// A reload found another identity than the one running.
    #[error(
        "{dir} now holds another identity ({now}, was {was}); keeping the one loaded: a new key \
         is a new NodeId and needs a restart"
    )]
    IdentityChanged {
        /// The identity directory.
        dir: std::path::PathBuf,
        /// Name, role and short id loaded.
        was: String,
        /// Name, role and short id found now.
        now: String,
    },
    /// Key or certificate generation failed.
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),

    /// rustls rejected the configuration (for instance an unusable key).
    #[error("building TLS configuration: {0}")]
    Tls(#[from] rustls::Error),

    /// The client-certificate verifier could not be built.
    #[error("building client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),

    /// The TLS configuration cannot be used for QUIC.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}
