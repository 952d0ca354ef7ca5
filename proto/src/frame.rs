//! Framing: a big-endian `u32` body length, then the body as named msgpack.
//!
//! [`Message::ChunkData`] and [`Message::ManifestData`] are headers: their raw payload (of the
//! length the header states) follows the frame directly, outside msgpack.
//!
//! Every length is checked against [`Limits`] before anything is allocated, and a body is scanned
//! (iteratively, without allocation) for well-formedness and nesting depth before serde sees it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::message::{ChunkHeader, ManifestHeader, Message};

/// Bytes in the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Bounds a decoder enforces on what a peer may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest msgpack body accepted, in bytes.
    pub max_frame: u32,
    /// Largest chunk payload accepted, in bytes.
    pub max_chunk: u32,
    /// Largest manifest payload accepted, in bytes.
    pub max_manifest: u64,
    /// Deepest msgpack nesting accepted (arrays and maps).
    pub max_depth: usize,
}

impl Default for Limits {
    /// 4 MiB frames, 16 MiB chunks, 256 MiB manifests, nesting depth 16.
    fn default() -> Self {
        Self {
            max_frame: 4 << 20,
            max_chunk: 16 << 20,
            max_manifest: 256 << 20,
            max_depth: 16,
        }
    }
}

/// Why bytes could not be decoded. The connection or stream that sent them should be closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length prefix exceeds [`Limits::max_frame`].
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Declared length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A zero-length body.
    #[error("empty frame")]
    Empty,
    /// A payload header declares more than the limit.
    #[error("{what} payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// "chunk" or "manifest".
        what: &'static str,
        /// Declared length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Nesting deeper than [`Limits::max_depth`].
    #[error("msgpack nesting deeper than {max}")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The body is not exactly one well-formed msgpack value.
    #[error("malformed msgpack: {0}")]
    Malformed(&'static str),
    /// Well-formed msgpack that is not a valid message.
    #[error("invalid message: {0}")]
    Invalid(#[from] rmp_serde::decode::Error),
}

/// Most bytes of a [`DecodeError`]'s text that [`DecodeError::for_log`] keeps.
pub const LOGGED_ERROR_BYTES: usize = 256;

impl DecodeError {
    /// The error's text cut to at most [`LOGGED_ERROR_BYTES`] bytes (at a character boundary,
    /// then `…` and how many bytes were left out), for a log line. serde's messages quote what
    /// the peer sent (an unknown variant or field name can be most of a 4 MiB frame), and a
    /// peer must not be able to write megabytes into our logs. The full text is never built.
    pub fn for_log(&self) -> String {
        use std::fmt::Write as _;
        let mut w = Bounded {
            out: String::new(),
            max: LOGGED_ERROR_BYTES,
            cut: 0,
        };
        // `Bounded` never fails.
        let _ = write!(w, "{self}");
        if w.cut > 0 {
            let _ = write!(w.out, "… ({} more bytes)", w.cut);
        }
        w.out
    }
}

/// A `fmt::Write` that keeps the first `max` bytes and counts the rest.
struct Bounded {
    out: String,
    max: usize,
    cut: usize,
}

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = if self.cut > 0 {
            0
        } else {
            self.max.saturating_sub(self.out.len())
        };
        let mut end = room.min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.out.push_str(&s[..end]);
        self.cut += s.len() - end;
        Ok(())
    }
}

/// Why a value could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded body would exceed the limit a peer enforces.
    #[error("encoded frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// Serialization failed.
    #[error("encoding failed: {0}")]
    Serialize(#[from] rmp_serde::encode::Error),
}

/// One decoded frame, with its payload where the message is a payload header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Any message without a payload.
    Message(Message),
    /// A chunk and its bytes (not yet verified against any hash).
    Chunk {
        /// The header.
        header: ChunkHeader,
        /// Exactly `header.len` bytes.
        data: Vec<u8>,
    },
    /// A manifest and its bytes (not yet checked against the id).
    Manifest {
        /// The header.
        header: ManifestHeader,
        /// Exactly `header.len` bytes.
        data: Vec<u8>,
    },
}

/// Append `value` as one frame (prefix + named msgpack) to `out`.
pub fn encode_value<T: Serialize + ?Sized>(
    value: &T,
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; PREFIX_LEN]);
    let result = rmp_serde::encode::write_named(out, value);
    if let Err(e) = result {
        out.truncate(start);
        return Err(e.into());
    }
    let len = out.len() - start - PREFIX_LEN;
    if len > limits.max_frame as usize {
        out.truncate(start);
        return Err(EncodeError::TooLarge {
            len,
            max: limits.max_frame,
        });
    }
    // Cannot truncate: len <= max_frame, which is a u32.
    let prefix = (len as u32).to_be_bytes();
    out[start..start + PREFIX_LEN].copy_from_slice(&prefix);
    Ok(())
}

/// Append `msg` as one frame to `out`. For payload headers the caller writes the payload next.
pub fn encode(msg: &Message, limits: &Limits, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_value(msg, limits, out)
}

/// Append a chunk frame and its payload to `out`.
pub fn encode_chunk(
    header: ChunkHeader,
    data: &[u8],
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    debug_assert_eq!(header.len as usize, data.len());
    encode(&Message::ChunkData(header), limits, out)?;
    out.extend_from_slice(data);
    Ok(())
}

/// Check a length prefix before allocating its body.
pub fn check_prefix(prefix: [u8; PREFIX_LEN], limits: &Limits) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(prefix);
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    if len > limits.max_frame {
        return Err(DecodeError::FrameTooLarge {
            len,
            max: limits.max_frame,
        });
    }
    Ok(len as usize)
}

/// Decode one complete msgpack body (without prefix) into a value.
pub fn decode_body<T: DeserializeOwned>(body: &[u8], limits: &Limits) -> Result<T, DecodeError> {
    scan_msgpack(body, limits.max_depth)?;
    Ok(rmp_serde::from_slice(body)?)
}

/// The raw payload length that must follow `msg`, checked against the limits.
pub fn payload_len(msg: &Message, limits: &Limits) -> Result<Option<usize>, DecodeError> {
    match msg {
        Message::ChunkData(h) => {
            if h.len > limits.max_chunk {
                return Err(DecodeError::PayloadTooLarge {
                    what: "chunk",
                    len: u64::from(h.len),
                    max: u64::from(limits.max_chunk),
                });
            }
            Ok(Some(h.len as usize))
        }
        Message::ManifestData(h) => {
            if h.len > limits.max_manifest {
                return Err(DecodeError::PayloadTooLarge {
                    what: "manifest",
                    len: h.len,
                    max: limits.max_manifest,
                });
            }
            // The limit is configured far below usize::MAX on every supported target.
            usize::try_from(h.len)
                .map(Some)
                .map_err(|_| DecodeError::PayloadTooLarge {
                    what: "manifest",
                    len: h.len,
                    max: limits.max_manifest,
                })
        }
        _ => Ok(None),
    }
}

/// Decode one value frame from the front of `buf`.
///
/// `Ok(None)`: more bytes are needed. `Ok(Some((value, consumed)))`: a value and how many bytes it
/// took. `Err`: the bytes are invalid and the stream should be closed.
pub fn decode_value<T: DeserializeOwned>(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(T, usize)>, DecodeError> {
    let Some(prefix) = buf.first_chunk::<PREFIX_LEN>() else {
        return Ok(None);
    };
    let len = check_prefix(*prefix, limits)?;
    let Some(body) = buf.get(PREFIX_LEN..).and_then(|rest| rest.get(..len)) else {
        return Ok(None);
    };
    let value = decode_body(body, limits)?;
    Ok(Some((value, PREFIX_LEN + len)))
}

/// Decode one [`Frame`] (message plus any payload) from the front of `buf`.
///
/// Same contract as [`decode_value`].
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, DecodeError> {
    let Some((msg, used)) = decode_value::<Message>(buf, limits)? else {
        return Ok(None);
    };
    let Some(plen) = payload_len(&msg, limits)? else {
        return Ok(Some((Frame::Message(msg), used)));
    };
    // No `used + plen`: with a limit as large as `u64::MAX`, that sum can overflow.
    let Some(data) = buf.get(used..).and_then(|rest| rest.get(..plen)) else {
        return Ok(None);
    };
    let data = data.to_vec();
    let frame = match msg {
        Message::ChunkData(header) => Frame::Chunk { header, data },
        Message::ManifestData(header) => Frame::Manifest { header, data },
        // payload_len returns Some only for the two payload headers above.
        other => Frame::Message(other),
    };
    Ok(Some((frame, used + plen)))
}

/// Check that `body` is exactly one well-formed msgpack value nested at most `max_depth` deep.
///
/// Iterative and allocation-free beyond a stack bounded by `max_depth`. A container that declares
/// more elements than there are bytes left is rejected at once.
pub fn scan_msgpack(body: &[u8], max_depth: usize) -> Result<(), DecodeError> {
    // Each entry: values still to read in an open container.
    let mut stack: Vec<u64> = Vec::new();
    let mut pos = 0usize;
    let mut remaining_top: u64 = 1;
    loop {
        // Pop finished containers.
        while remaining_top == 0 {
            match stack.pop() {
                Some(r) => remaining_top = r,
                None => {
                    return if pos == body.len() {
                        Ok(())
                    } else {
                        Err(DecodeError::Malformed("trailing bytes after value"))
                    };
                }
            }
        }
        remaining_top -= 1;
        let marker = *body
            .get(pos)
            .ok_or(DecodeError::Malformed("truncated value"))?;
        pos += 1;
        let (skip, children): (u64, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc1 => return Err(DecodeError::Malformed("reserved marker 0xc1")),
            0xc4 | 0xd9 => (read_be(body, &mut pos, 1)?, 0),
            0xc5 | 0xda => (read_be(body, &mut pos, 2)?, 0),
            0xc6 | 0xdb => (read_be(body, &mut pos, 4)?, 0),
            0xc7 => (read_be(body, &mut pos, 1)? + 1, 0),
            0xc8 => (read_be(body, &mut pos, 2)? + 1, 0),
            0xc9 => (read_be(body, &mut pos, 4)? + 1, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, read_be(body, &mut pos, 2)?),
            0xdd => (0, read_be(body, &mut pos, 4)?),
            0xde => (0, 2 * read_be(body, &mut pos, 2)?),
            0xdf => (0, 2 * read_be(body, &mut pos, 4)?),
        };
        let left = (body.len() - pos) as u64;
        if skip > left {
            return Err(DecodeError::Malformed("truncated value"));
        }
        pos += skip as usize;
        if children > 0 {
            // Every element takes at least one byte.
            if children > (body.len() - pos) as u64 {
                return Err(DecodeError::Malformed("container longer than its frame"));
            }
            if stack.len() >= max_depth {
                return Err(DecodeError::TooDeep { max: max_depth });
            }
            stack.push(remaining_top);
            remaining_top = children;
        }
    }
}

fn read_be(body: &[u8], pos: &mut usize, n: usize) -> Result<u64, DecodeError> {
    let bytes = body
        .get(*pos..*pos + n)
        .ok_or(DecodeError::Malformed("truncated length"))?;
    *pos += n;
    Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}
