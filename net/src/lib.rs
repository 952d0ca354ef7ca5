//! QUIC plumbing shared by every swarmcast speaker: nodes, bootstraps, the CLI and the tests.
//!
//! * [`wire`]: framed messages over quinn streams (the async side of `swarmcast_proto`'s framing).
//! * [`connect`]: dial an address and learn the peer's certificate identity.
//! * [`transport_config`]: the QUIC transport settings of every endpoint.
//! * [`CloseCode`]: the application close and stream reset codes.
//! * [`CertRefusal`]: a handshake that failed over a certificate, read from the typed error.
//! * [`incarnation`]: the persisted counter that rises at every start.
//! * [`RefusedHandshakes`]: log a server's refused handshakes, rate-limited by [`RefusedLog`]
//!   (a pure core).
//! * [`watch_identity`]: reload a daemon's certificate while it runs, warn before it expires.
//! * [`private_dir`]: a daemon's data dir, 0700 whatever the umask (nodes and bootstraps).

mod close;
mod dial;
mod identity_watch;
pub mod incarnation;
pub mod private_dir;
mod refusal;
mod refused_handshakes;
mod refused_log;
mod transport;
pub mod wire;

pub use close::CloseCode;
pub use dial::{DialError, connect};
pub use identity_watch::{RELOAD_EVERY, watch_identity};
pub use private_dir::DataDirError;
pub use refusal::{CertRefusal, RefusedBy};
pub use refused_handshakes::RefusedHandshakes;
pub use refused_log::{LogLine, RefusalKey, RefusedLog, RefusedLogConfig};
pub use transport::{
    Congestion, UDP_BUFFER_BYTES, endpoint, transport_config, transport_config_with,
};
pub use wire::WireError;
