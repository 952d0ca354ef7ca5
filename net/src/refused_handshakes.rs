//! Refused handshakes at a server (bootstraps, and nodes for their inbound connections): each
//! is logged with the peer's address and the reason, at most one line per peer and reason per
//! 30 s ([`RefusedLog`] decides).
//!
//! A node whose certificate comes from another CA refuses the server's certificate
//! (`unknown_ca`, seen here as the peer's close) and retries for ever; an expired or foreign
//! client certificate is refused by this side. Either way the operator of the server sees who
//! and why, instead of nothing.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::{CertRefusal, RefusedBy, RefusedLog, RefusedLogConfig};
use tracing::{debug, warn};

/// The shell's handle on the rate limiter, shared by an accept loop's tasks.
#[derive(Debug)]
pub struct RefusedHandshakes {
    log: Mutex<RefusedLog>,
}

impl Default for RefusedHandshakes {
    fn default() -> Self {
        Self::new()
    }
}

impl RefusedHandshakes {
    /// One line per peer IP and reason per 30 s ([`RefusedLogConfig::default`]).
    pub fn new() -> Self {
        Self {
            log: Mutex::new(RefusedLog::new(RefusedLogConfig::default())),
        }
    }

    /// The handshake of `remote` failed with `error`: log it if it was a refusal and the rate
    /// limit lets it through; anything else (a peer gone, this side shutting down) at debug.
    pub fn handle(&self, now: Instant, remote: SocketAddr, error: &quinn::ConnectionError) {
        let Some((reason, hint)) = refusal_reason(error) else {
            debug!(%remote, %error, "handshake failed");
            return;
        };
        let line = self
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .handle_refusal(now, (remote.ip(), reason.clone()));
        let Some(line) = line else {
            return;
        };
        let held_back = line.held_back;
        match (hint, line.overflow) {
            (_, true) => warn!(
                %remote,
                %reason,
                held_back,
                "handshake refused (more sources than are tracked: one line per 30 s for all of them)"
            ),
            (Some(hint), false) => warn!(%remote, %reason, hint, held_back, "handshake refused"),
            (None, false) => warn!(%remote, %reason, held_back, "handshake refused"),
        }
    }
}

/// Why a handshake was refused, and what it likely means; `None` for a failure that refuses
/// nothing (the peer timed out or reset, or this side is closing).
fn refusal_reason(error: &quinn::ConnectionError) -> Option<(String, Option<&'static str>)> {
    if let Some(refusal) = CertRefusal::of(error) {
        let hint = match refusal.by {
            _ if refusal.is_untrusted_issuer() => {
                Some("the peer's certificate and this process's come from different CAs")
            }
            RefusedBy::ThisSide if refusal.is_expired() => {
                Some("the peer's certificate has expired (or is not valid yet); renew it")
            }
            RefusedBy::Peer if refusal.is_expired() => {
                Some("this process's certificate has expired in the peer's eyes; renew it")
            }
            _ => None,
        };
        return Some((refusal.to_string(), hint));
    }
    match error {
        // A peer that closed its own connection mid-handshake (a daemon stopping, a client
        // that gave up) refused nothing.
        quinn::ConnectionError::ConnectionClosed(c)
            if c.error_code == quinn::TransportErrorCode::APPLICATION_ERROR =>
        {
            None
        }
        quinn::ConnectionError::TransportError(_) | quinn::ConnectionError::ConnectionClosed(_) => {
            Some((error.to_string(), None))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(alert: u8) -> quinn::ConnectionError {
        quinn::ConnectionError::TransportError(quinn_proto::TransportError {
            code: quinn::TransportErrorCode::crypto(alert),
            frame: None,
            reason: String::new(),
        })
    }

    #[test]
    fn reasons_and_hints() {
        let (reason, hint) = refusal_reason(&local(48)).expect("unknown_ca");
        assert_eq!(
            reason,
            "this side refused the peer's certificate: TLS alert UnknownCA"
        );
        assert!(hint.is_some_and(|h| h.contains("different CAs")));
        let (_, hint) = refusal_reason(&local(45)).expect("expired");
        assert!(hint.is_some_and(|h| h.contains("peer's certificate has expired")));
        // No application protocol (120): a refusal, but not over a certificate.
        let (reason, hint) = refusal_reason(&local(120)).expect("alpn");
        assert!(!reason.is_empty());
        assert_eq!(hint, None);
        assert_eq!(refusal_reason(&quinn::ConnectionError::TimedOut), None);
        // The peer closed during the handshake (a node stopping while it dials): not a
        // refusal; another transport error from the peer is.
        let closed = |code| {
            quinn::ConnectionError::ConnectionClosed(quinn_proto::ConnectionClose {
                error_code: code,
                frame_type: None,
                reason: Default::default(),
            })
        };
        assert_eq!(
            refusal_reason(&closed(quinn::TransportErrorCode::APPLICATION_ERROR)),
            None
        );
        assert!(refusal_reason(&closed(quinn::TransportErrorCode::PROTOCOL_VIOLATION)).is_some());
        assert_eq!(refusal_reason(&quinn::ConnectionError::LocallyClosed), None);
    }
}
