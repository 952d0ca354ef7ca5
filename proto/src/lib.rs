//! # The swarmcast wire protocol, `swarmcast/1`
//!
//! This crate is the wire specification in code and in prose. It has no async runtime: it turns
//! bytes into [`Message`]s and back, and nothing else.
//!
//! ## Transport
//! Every connection is QUIC with mutual TLS; the ALPN is [`ALPN`] (`swarmcast/1`). A peer whose
//! certificate does not chain to the cluster CA never gets an application byte parsed.
//!
//! ## Streams
//! * **Requests** (node → bootstrap, bootstrap → bootstrap, node → node for chunks and manifests)
//!   each use one bidirectional stream: the client writes one request frame and finishes its
//!   side; the server writes one response frame (plus a payload, for chunks and manifests) and
//!   finishes. A refused request is answered with [`Message::Error`].
//! * **Control** (node ↔ node): one long-lived bidirectional stream per neighbour connection,
//!   opened by the dialler, carrying pings, have-bitfields and have-updates in both directions.
//!
//! ## Frames
//! A frame is a big-endian `u32` length `L` followed by `L` bytes of msgpack: a [`Message`] in
//! *named* encoding. `L` must be between 1 and [`Limits::max_frame`] and is checked before
//! anything is allocated; the body must be exactly one msgpack value nested at most
//! [`Limits::max_depth`] deep.
//!
//! How each Rust shape is written (pinned by the golden-bytes tests):
//! * a struct is a map from field name (str) to value, in declaration order; an empty struct
//!   ([`Lookup`], [`Ack`]) is an empty map;
//! * an enum variant with a body, [`Message`] included, is a one-entry map `{"Variant": body}`;
//!   a variant without one ([`Role`], [`Status`], [`BroadcastState`], [`ErrorCode`]) is just its
//!   name as a str (`"node"`, `"alive"`, `"not_found"`);
//! * [`NodeId`] and [`BroadcastId`] are bin8 of 32 bytes; [`Have::bits`] is a bin;
//! * [`ChunkIndex`] is a plain integer; every integer uses its smallest msgpack form;
//! * a tuple (as in [`Digest`]) is an array;
//! * a `SocketAddr` is `{"V4": [[a, b, c, d], port]}` or `{"V6": [[16 octets], port]}`, the
//!   octets being an array of integers (not a bin). IPv6 flow info and scope id are not
//!   carried: they decode as zero.
//!
//! Decoders are lenient where serde is: a struct given as an array of its fields, or a variant
//! given by index, is accepted, and re-encodes in the form above.
//!
//! [`Message::ChunkData`] and [`Message::ManifestData`] are *headers*: exactly `len` raw bytes
//! follow the frame, outside msgpack, so bulk data is never copied through a serializer. The
//! declared `len` is checked against [`Limits::max_chunk`] / [`Limits::max_manifest`] first.
//!
//! ## Why named msgpack
//! Positional encoding (structs as arrays) is smaller, but every field becomes a position forever:
//! a decoder rejects arrays of a length it does not expect, so adding a field breaks old peers.
//! Named encoding costs a few bytes per field on control messages (chunk data is raw and pays
//! nothing) and buys schema evolution inside `swarmcast/1`: unknown fields are ignored, and a new
//! field marked `#[serde(default)]` decodes from old peers. Removing or retyping a field, or
//! changing its meaning, requires a new ALPN (`swarmcast/2`). The golden-bytes tests pin the
//! encoding so that such a change cannot happen by accident.
//!
//! ## Decoding
//! [`decode`] is incremental: `Ok(None)` means "need more bytes", `Err` means "invalid, close the
//! stream". It never panics and never allocates more than the limits allow.

mod frame;
mod ids;
mod message;

pub use frame::{
    DecodeError, EncodeError, Frame, LOGGED_ERROR_BYTES, Limits, PREFIX_LEN, check_prefix, decode,
    decode_body, decode_value, encode, encode_chunk, encode_value, payload_len, scan_msgpack,
};
pub use ids::{BroadcastId, IdParseError, NodeId, Role, RoleParseError, Version};
pub use message::*;

/// The protocol version, carried in ALPN.
pub const ALPN: &[u8] = b"swarmcast/1";
