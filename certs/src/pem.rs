//! PEM: decoding into DER, with errors that say where the text came from, and encoding
//! certificates.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::CertError;

/// The single certificate in `text`.
pub(crate) fn one_certificate(
    text: &str,
    origin: &str,
) -> Result<CertificateDer<'static>, CertError> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(text.as_bytes()) {
        certs.push(cert.map_err(|e| bad_pem(origin, e.to_string()))?);
    }
    match <[_; 1]>::try_from(certs) {
        Ok([cert]) => Ok(cert),
        Err(certs) => Err(bad_pem(
            origin,
            format!("expected exactly one certificate, found {}", certs.len()),
        )),
    }
}

/// The certificates in `text`: at least one (a trust bundle may hold several CAs).
pub(crate) fn certificates(
    text: &str,
    origin: &str,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(text.as_bytes()) {
        certs.push(cert.map_err(|e| bad_pem(origin, e.to_string()))?);
    }
    if certs.is_empty() {
        return Err(bad_pem(origin, "no certificate found".to_owned()));
    }
    Ok(certs)
}

/// The private key in `text` (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn private_key(text: &str, origin: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| bad_pem(origin, e.to_string()))
}

pub(crate) fn bad_pem(origin: &str, reason: String) -> CertError {
    CertError::BadPem {
        origin: origin.to_owned(),
        reason,
    }
}

/// PEM text for one DER certificate.
pub(crate) fn encode_certificate(der: &[u8]) -> String {
    const LINE: usize = 64;
    let encoded = base64(der);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / LINE + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(LINE) {
        // Base64 output is ASCII, so every chunk is UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = chunk.len() + 1;
        for i in 0..4 {
            if i < symbols {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ca;

    #[test]
    fn base64_matches_known_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn certificate_pem_round_trips() {
        let ca = Ca::generate().expect("ca");
        let pem = encode_certificate(ca.cert_der());
        assert_eq!(pem, ca.cert_pem().replace("\r\n", "\n"));
    }
}
