//! A TLS handshake that failed over a certificate, read from the typed QUIC error rather than
//! from its text.
//!
//! QUIC carries a TLS alert as the transport error code `0x100 + alert` (RFC 9001, 4.8). The
//! side that refused a certificate reports it as a local transport error
//! (`ConnectionError::TransportError`); the other side gets it in the peer's CONNECTION_CLOSE
//! (`ConnectionError::ConnectionClosed`). A dialler can meet the second one after its own
//! handshake completed: a client sends its certificate last, so the server's refusal arrives
//! on the first stream.

use quinn::rustls::AlertDescription;

/// Who refused the certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusedBy {
    /// This side did not accept the peer's certificate.
    ThisSide,
    /// The peer did not accept this side's certificate.
    Peer,
}

/// A handshake refused with a certificate alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CertRefusal {
    /// Who refused.
    pub by: RefusedBy,
    /// The TLS alert (RFC 8446 6.2), e.g. 48 `unknown_ca`.
    pub alert: u8,
}

/// TLS alerts about a certificate: bad, unsupported, revoked, expired, unknown, unknown CA,
/// access denied, required.
const CERTIFICATE_ALERTS: [u8; 8] = [42, 43, 44, 45, 46, 48, 49, 116];

/// `bad_certificate`: rustls sends it for certificates it cannot use at all.
const BAD_CERTIFICATE: u8 = 42;
/// `unknown_ca`: rustls sends it when a chain does not lead to a trusted root.
const UNKNOWN_CA: u8 = 48;
/// `certificate_expired`: rustls sends it for a certificate outside its validity (expired, or
/// not valid yet).
const CERTIFICATE_EXPIRED: u8 = 45;

impl CertRefusal {
    /// The certificate refusal in `error`, if it is one.
    pub fn of(error: &quinn::ConnectionError) -> Option<Self> {
        let (by, code) = match error {
            quinn::ConnectionError::TransportError(e) => (RefusedBy::ThisSide, u64::from(e.code)),
            quinn::ConnectionError::ConnectionClosed(c) => {
                (RefusedBy::Peer, u64::from(c.error_code))
            }
            _ => return None,
        };
        let alert = u8::try_from(code.checked_sub(0x100)?).ok()?;
        CERTIFICATE_ALERTS
            .contains(&alert)
            .then_some(Self { by, alert })
    }

    /// Whether the certificate was not issued by a CA the refusing side trusts (`unknown_ca`,
    /// or `bad_certificate`): what two clusters' certificates meeting look like.
    pub fn is_untrusted_issuer(&self) -> bool {
        matches!(self.alert, UNKNOWN_CA | BAD_CERTIFICATE)
    }

    /// Whether the certificate was refused as outside its validity (`certificate_expired`:
    /// expired, or not valid yet).
    pub fn is_expired(&self) -> bool {
        self.alert == CERTIFICATE_EXPIRED
    }

    /// The alert's name as rustls gives it, e.g. `UnknownCA`.
    pub fn alert_name(&self) -> String {
        format!("{:?}", AlertDescription::from(self.alert))
    }
}

impl std::fmt::Display for CertRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = match self.by {
            RefusedBy::ThisSide => "this side refused the peer's certificate",
            RefusedBy::Peer => "the peer refused this side's certificate",
        };
        write!(f, "{who}: TLS alert {}", self.alert_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(code: u64) -> quinn::ConnectionError {
        let code = quinn::TransportErrorCode::crypto(u8::try_from(code - 0x100).unwrap_or(0));
        quinn::ConnectionError::TransportError(quinn_proto::TransportError {
            code,
            frame: None,
            // Deliberately not the verifier's words: the type decides, not the text.
            reason: String::new(),
        })
    }

    #[test]
    fn certificate_alerts_are_read_from_the_code_either_way() {
        let r = CertRefusal::of(&local(0x100 + 48)).expect("unknown_ca");
        assert_eq!(r.by, RefusedBy::ThisSide);
        assert!(r.is_untrusted_issuer());
        assert_eq!(r.alert_name(), "UnknownCA");
        assert_eq!(
            r.to_string(),
            "this side refused the peer's certificate: TLS alert UnknownCA"
        );
        let expired = CertRefusal::of(&local(0x100 + 45)).expect("certificate_expired");
        assert!(!expired.is_untrusted_issuer());
        // A handshake failure that is not about a certificate (handshake_failure, 40).
        assert_eq!(CertRefusal::of(&local(0x100 + 40)), None);
        assert_eq!(CertRefusal::of(&quinn::ConnectionError::TimedOut), None);
        assert_eq!(CertRefusal::of(&quinn::ConnectionError::Reset), None);
    }
}
