//! Just enough DER to add the role extension that rcgen cannot encode.
//!
//! rcgen writes OID arcs from `u64`s, and [`ROLE_OID`] has a 128-bit arc. So a leaf is first
//! built and signed by rcgen without the role; [`append_extension`] then appends the role
//! extension to the TBSCertificate's extension list, re-signs it with the CA key, and
//! re-assembles the certificate. Only certificates rcgen has just produced pass through
//! here; certificates from files and peers are parsed with x509-parser.

use rcgen::SigningKey;
use swarmcast_proto::Role;

/// The OID of the role extension, in dotted form: `2.25.<UUID as integer>.1`.
///
/// See the crate documentation for how it was chosen.
pub const ROLE_OID: &str = "2.25.293267237755066452471269431712489020391.1";

/// The contents octets of the DER encoding of [`ROLE_OID`] (without tag and length): 105
/// (= 2 * 40 + 25), the UUID in base 128, then 1.
pub(crate) const ROLE_OID_DER: [u8; 21] = [
    0x69, 0x83, 0xb9, 0xa1, 0x9b, 0xca, 0xcb, 0xaa, 0x92, 0x97, 0xb5, 0xa4, 0xfb, 0x9e, 0x83, 0xc0,
    0xfc, 0xf8, 0xb7, 0x67, 0x01,
];

/// The contents octets of the groups extension's OID, `2.25.<UUID as integer>.2`: the
/// role's arc beside it.
pub(crate) const GROUPS_OID_DER: [u8; 21] = {
    let mut oid = ROLE_OID_DER;
    oid[20] = 0x02;
    oid
};

/// The groups extension's OID, in dotted form.
pub const GROUPS_OID: &str = "2.25.293267237755066452471269431712489020391.2";

const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_SEQUENCE: u8 = 0x30;
/// `[3] EXPLICIT`, the wrapper of `extensions` in a TBSCertificate.
const TAG_EXTENSIONS: u8 = 0xa3;

/// Malformed DER, or DER without the shape rcgen produces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DerError(&'static str);

/// One DER element with a single-byte tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Element<'a> {
    pub(crate) tag: u8,
    pub(crate) contents: &'a [u8],
    /// The whole encoding: tag, length and contents.
    pub(crate) raw: &'a [u8],
}

/// Reads one element from the front of `input`; returns it and the bytes after it.
pub(crate) fn read_element(input: &[u8]) -> Result<(Element<'_>, &[u8]), DerError> {
    let (&tag, rest) = input.split_first().ok_or(DerError("missing tag"))?;
    if tag & 0x1f == 0x1f {
        return Err(DerError("multi-byte tags are not supported"));
    }
    let (&first, rest) = rest.split_first().ok_or(DerError("missing length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(DerError("bad length"));
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return Err(DerError("truncated element"));
    }
    let (contents, after) = rest.split_at(len);
    let header_len = input.len() - rest.len();
    let raw = &input[..header_len + len];
    Ok((Element { tag, contents, raw }, after))
}

/// Reads exactly one element with `tag` spanning all of `input`.
pub(crate) fn read_only(input: &[u8], tag: u8) -> Result<Element<'_>, DerError> {
    let (element, rest) = read_element(input)?;
    if element.tag != tag {
        return Err(DerError("unexpected tag"));
    }
    if !rest.is_empty() {
        return Err(DerError("trailing bytes"));
    }
    Ok(element)
}

/// Appends the DER encoding of `tag`, the length of `contents`, and `contents` to `out`.
pub(crate) fn write_element(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        // Fits: checked just above.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let significant = &bytes[skip..];
        // At most size_of::<usize>() bytes, so well below 0x80.
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(contents);
}

fn element(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    write_element(&mut out, tag, contents);
    out
}

/// The DER `Extension` carrying `role`: non-critical (DEFAULT FALSE, so omitted), with a
/// UTF8String value.
pub(crate) fn role_extension(role: Role) -> Vec<u8> {
    encode_role_extension(role.as_str())
}

/// [`role_extension`] for any string; tests use it to write unknown roles.
pub(crate) fn encode_role_extension(value: &str) -> Vec<u8> {
    let mut body = element(TAG_OID, &ROLE_OID_DER);
    write_element(
        &mut body,
        TAG_OCTET_STRING,
        &element(TAG_UTF8_STRING, value.as_bytes()),
    );
    element(TAG_SEQUENCE, &body)
}

/// Decodes the value of a role extension (the contents of its extnValue OCTET STRING).
///
/// Returns the UTF8String's text, which the caller maps to a [`Role`].
pub(crate) fn decode_role_value(value: &[u8]) -> Result<&str, DerError> {
    let string = read_only(value, TAG_UTF8_STRING)?;
    std::str::from_utf8(string.contents).map_err(|_| DerError("role is not UTF-8"))
}

/// The DER `Extension` carrying a node's groups: non-critical, its value a
/// `SEQUENCE OF UTF8String`, one per group, in the order given.
pub(crate) fn groups_extension(groups: &[String]) -> Vec<u8> {
    let mut list = Vec::new();
    for g in groups {
        write_element(&mut list, TAG_UTF8_STRING, g.as_bytes());
    }
    let mut body = element(TAG_OID, &GROUPS_OID_DER);
    write_element(&mut body, TAG_OCTET_STRING, &element(TAG_SEQUENCE, &list));
    element(TAG_SEQUENCE, &body)
}

/// Decodes the value of a groups extension (the contents of its extnValue OCTET STRING):
/// the groups' texts, unchecked (the caller validates each).
pub(crate) fn decode_groups_value(value: &[u8]) -> Result<Vec<&str>, DerError> {
    let list = read_only(value, TAG_SEQUENCE)?;
    let mut rest = list.contents;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (g, after) = read_element(rest)?;
        if g.tag != TAG_UTF8_STRING {
            return Err(DerError("a group is not a UTF8String"));
        }
        out.push(std::str::from_utf8(g.contents).map_err(|_| DerError("group is not UTF-8"))?);
        rest = after;
    }
    Ok(out)
}

/// Appends `extension` (a DER `Extension`) to the extensions of `cert`, a certificate rcgen
/// produced, and signs the result with `signer`, which must be the key that signed `cert`.
pub(crate) fn append_extension(
    cert: &[u8],
    extension: &[u8],
    signer: &impl SigningKey,
) -> Result<Vec<u8>, AppendError> {
    let certificate = read_only(cert, TAG_SEQUENCE)?;
    let (tbs, rest) = read_element(certificate.contents)?;
    let (signature_algorithm, rest) = read_element(rest)?;
    let (_signature, rest) = read_element(rest)?;
    if tbs.tag != TAG_SEQUENCE || signature_algorithm.tag != TAG_SEQUENCE || !rest.is_empty() {
        return Err(DerError("not a certificate").into());
    }

    // The TBSCertificate's fields, up to the `[3] extensions` that rcgen always writes last
    // for a certificate with subjectAltNames.
    let mut fields = tbs.contents;
    let mut before_extensions = Vec::new();
    let extensions = loop {
        let (field, rest) = read_element(fields)?;
        fields = rest;
        if field.tag == TAG_EXTENSIONS {
            break field;
        }
        before_extensions.extend_from_slice(field.raw);
    };
    if !fields.is_empty() {
        return Err(DerError("fields after extensions").into());
    }
    let list = read_only(extensions.contents, TAG_SEQUENCE)?;

    let mut new_list = list.contents.to_vec();
    new_list.extend_from_slice(extension);
    let mut new_fields = before_extensions;
    write_element(
        &mut new_fields,
        TAG_EXTENSIONS,
        &element(TAG_SEQUENCE, &new_list),
    );
    let new_tbs = element(TAG_SEQUENCE, &new_fields);

    let signature = signer.sign(&new_tbs)?;
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(&signature);

    let mut body = new_tbs;
    body.extend_from_slice(signature_algorithm.raw);
    write_element(&mut body, TAG_BIT_STRING, &bits);
    Ok(element(TAG_SEQUENCE, &body))
}

/// Why [`append_extension`] failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppendError {
    #[error("unexpected certificate encoding: {0}")]
    Der(#[from] DerError),
    #[error("signing: {0}")]
    Sign(#[from] rcgen::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes OID contents octets into arcs; the first byte holds two arcs.
    fn decode_oid(bytes: &[u8]) -> Vec<u128> {
        let mut arcs = Vec::new();
        let mut value: u128 = 0;
        for &b in bytes {
            value = (value << 7) | u128::from(b & 0x7f);
            if b & 0x80 == 0 {
                arcs.push(value);
                value = 0;
            }
        }
        let first = arcs.remove(0);
        let (a, b) = if first >= 80 {
            (2, first - 80)
        } else {
            (first / 40, first % 40)
        };
        [a, b].into_iter().chain(arcs).collect()
    }

    #[test]
    fn role_oid_bytes_encode_the_documented_oid() {
        let dotted: Vec<String> = decode_oid(&ROLE_OID_DER)
            .iter()
            .map(u128::to_string)
            .collect();
        assert_eq!(dotted.join("."), ROLE_OID);
        // The arc is the integer form of the UUID named in the crate docs.
        let uuid = u128::from_str_radix("dca1372a5aa245daa4f6781c0f9e1be7", 16).expect("hex");
        assert_eq!(ROLE_OID, format!("2.25.{uuid}.1"));
    }

    #[test]
    fn groups_oid_is_the_role_arc_beside_it_and_groups_round_trip() {
        let dotted: Vec<String> = decode_oid(&GROUPS_OID_DER)
            .iter()
            .map(u128::to_string)
            .collect();
        assert_eq!(dotted.join("."), GROUPS_OID);
        let groups = vec!["gpu".to_owned(), "eu-west".to_owned()];
        let ext = groups_extension(&groups);
        let seq = read_only(&ext, TAG_SEQUENCE).expect("extension");
        let (oid, rest) = read_element(seq.contents).expect("oid");
        assert_eq!(oid.contents, &GROUPS_OID_DER[..]);
        let value = read_only(rest, TAG_OCTET_STRING).expect("value");
        assert_eq!(
            decode_groups_value(value.contents),
            Ok(vec!["gpu", "eu-west"])
        );
        let none = groups_extension(&[]);
        let seq = read_only(&none, TAG_SEQUENCE).expect("extension");
        let (_, rest) = read_element(seq.contents).expect("oid");
        let value = read_only(rest, TAG_OCTET_STRING).expect("value");
        assert_eq!(decode_groups_value(value.contents), Ok(vec![]));
        assert!(decode_groups_value(&element(TAG_SEQUENCE, &element(TAG_OID, b"x"))).is_err());
    }

    #[track_caller]
    fn round_trip(len: usize) {
        let contents = vec![0x5a; len];
        let encoded = element(0x04, &contents);
        let (parsed, rest) = read_element(&encoded).expect("parse");
        assert!(rest.is_empty());
        assert_eq!(parsed.tag, 0x04);
        assert_eq!(parsed.contents, &contents[..]);
        assert_eq!(parsed.raw, &encoded[..]);
    }

    #[test]
    fn lengths_round_trip_in_short_and_long_form() {
        for len in [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000] {
            round_trip(len);
        }
        assert_eq!(element(0x04, &[0; 0x80])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(element(0x04, &[0; 0x100])[..4], [0x04, 0x82, 0x01, 0x00]);
    }

    #[test]
    fn malformed_elements_are_errors() {
        assert!(read_element(&[]).is_err());
        assert!(read_element(&[0x04]).is_err());
        assert!(read_element(&[0x04, 0x02, 0x00]).is_err());
        assert!(read_element(&[0x04, 0x80]).is_err());
        assert!(read_element(&[0x04, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(read_element(&[0x1f, 0x01, 0x00]).is_err());
        assert!(read_only(&[0x04, 0x00, 0x00], 0x04).is_err());
        assert!(read_only(&[0x04, 0x00], 0x05).is_err());
    }

    #[test]
    fn role_value_round_trips() {
        for role in [Role::Bootstrap, Role::Node] {
            let ext = role_extension(role);
            let seq = read_only(&ext, TAG_SEQUENCE).expect("sequence");
            let (oid, rest) = read_element(seq.contents).expect("oid");
            assert_eq!(oid.contents, &ROLE_OID_DER[..]);
            // Non-critical: no BOOLEAN between the OID and the value.
            let value = read_only(rest, TAG_OCTET_STRING).expect("octet string");
            assert_eq!(decode_role_value(value.contents), Ok(role.as_str()));
        }
        assert!(decode_role_value(&[TAG_OCTET_STRING, 1, b'x']).is_err());
        assert!(decode_role_value(&[TAG_UTF8_STRING, 1, 0xff]).is_err());
    }
}
