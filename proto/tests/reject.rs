//! Rejection: every check the decoder makes, each with a test that fails if the check goes;
//! and properties that no input makes it panic or misreport a message.

#![allow(clippy::unwrap_used)]

mod common;

use proptest::prelude::*;
use swarmcast_proto::{
    BroadcastId, ChunkHeader, ChunkIndex, DecodeError, Frame, Limits, ManifestHeader, Message,
    PREFIX_LEN, Ping, check_prefix, decode, decode_value, encode, scan_msgpack,
};

/// Small limits, so that every bound is easy to reach (a chunk header frame is 72 bytes).
const TINY: Limits = Limits {
    max_frame: 96,
    max_chunk: 16,
    max_manifest: 32,
    max_depth: 3,
};

/// A frame whose prefix states the length of `body`.
fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// The msgpack body of `msg`.
fn body_of(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, &Limits::default(), &mut out).unwrap();
    out.split_off(PREFIX_LEN)
}

#[track_caller]
fn assert_malformed(buf: &[u8], limits: &Limits, why: &str) {
    match decode(buf, limits) {
        Err(DecodeError::Malformed(got)) => assert_eq!(got, why),
        other => panic!("expected Malformed({why:?}), got {other:?}"),
    }
    match decode_value::<Message>(buf, limits) {
        Err(DecodeError::Malformed(got)) => assert_eq!(got, why),
        other => panic!("expected Malformed({why:?}), got {other:?}"),
    }
}

// ----- length prefix -----

#[test]
fn oversized_prefix_is_rejected_before_the_body_arrives() {
    for limits in [Limits::default(), TINY] {
        let over = (limits.max_frame + 1).to_be_bytes();
        assert!(matches!(
            decode(&over, &limits),
            Err(DecodeError::FrameTooLarge { len, max }) if len == limits.max_frame + 1 && max == limits.max_frame
        ));
        assert!(matches!(
            decode_value::<Message>(&over, &limits),
            Err(DecodeError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            decode(&u32::MAX.to_be_bytes(), &limits),
            Err(DecodeError::FrameTooLarge { .. })
        ));
        // At the limit, the same four bytes only ask for more.
        assert!(
            decode(&limits.max_frame.to_be_bytes(), &limits)
                .unwrap()
                .is_none()
        );
    }
    assert!(matches!(
        check_prefix(97u32.to_be_bytes(), &TINY),
        Err(DecodeError::FrameTooLarge { len: 97, max: 96 })
    ));
    assert_eq!(check_prefix(96u32.to_be_bytes(), &TINY).unwrap(), 96);
}

#[test]
fn zero_length_frame_is_rejected() {
    for buf in [&[0u8, 0, 0, 0][..], &[0, 0, 0, 0, 0xc0, 0xc0]] {
        assert!(matches!(
            decode(buf, &Limits::default()),
            Err(DecodeError::Empty)
        ));
        assert!(matches!(
            decode_value::<Message>(buf, &Limits::default()),
            Err(DecodeError::Empty)
        ));
    }
}

#[test]
fn fewer_than_four_bytes_need_more() {
    for buf in [&[][..], &[0xff], &[0xff, 0xff], &[0xff, 0xff, 0xff]] {
        assert!(decode(buf, &TINY).unwrap().is_none());
    }
}

// ----- payload headers -----

#[test]
fn oversized_chunk_is_rejected_without_its_payload() {
    for limits in [Limits::default(), TINY] {
        let header = |len| {
            Message::ChunkData(ChunkHeader {
                broadcast: BroadcastId([7; 32]),
                index: ChunkIndex(1),
                len,
            })
        };
        let mut over = Vec::new();
        encode(&header(limits.max_chunk + 1), &Limits::default(), &mut over).unwrap();
        match decode(&over, &limits) {
            Err(DecodeError::PayloadTooLarge { what, len, max }) => {
                assert_eq!(what, "chunk");
                assert_eq!(len, u64::from(limits.max_chunk) + 1);
                assert_eq!(max, u64::from(limits.max_chunk));
            }
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
        // At the limit, the header alone asks for the payload.
        let mut at = Vec::new();
        encode(&header(limits.max_chunk), &Limits::default(), &mut at).unwrap();
        assert!(decode(&at, &limits).unwrap().is_none());
    }
}

#[test]
fn oversized_manifest_is_rejected_without_its_payload() {
    for limits in [Limits::default(), TINY] {
        let header = |len| {
            Message::ManifestData(ManifestHeader {
                broadcast: BroadcastId([7; 32]),
                len,
            })
        };
        let mut over = Vec::new();
        encode(
            &header(limits.max_manifest + 1),
            &Limits::default(),
            &mut over,
        )
        .unwrap();
        match decode(&over, &limits) {
            Err(DecodeError::PayloadTooLarge { what, len, max }) => {
                assert_eq!(what, "manifest");
                assert_eq!(len, limits.max_manifest + 1);
                assert_eq!(max, limits.max_manifest);
            }
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
        let mut at = Vec::new();
        encode(&header(limits.max_manifest), &Limits::default(), &mut at).unwrap();
        assert!(decode(&at, &limits).unwrap().is_none());
    }
}

/// Regression: with no manifest limit (`u64::MAX`), a header declaring `u64::MAX` bytes made
/// `decode` compute `consumed + len`, which overflowed (a panic in debug builds). Such a header
/// is within the limits, so it asks for more bytes, as in release builds.
#[test]
fn unlimited_manifest_of_huge_length_does_not_overflow() {
    let limits = Limits {
        max_manifest: u64::MAX,
        ..Limits::default()
    };
    let mut buf = Vec::new();
    let header = ManifestHeader {
        broadcast: BroadcastId([7; 32]),
        len: u64::MAX,
    };
    encode(&Message::ManifestData(header), &limits, &mut buf).unwrap();
    assert!(decode(&buf, &limits).unwrap().is_none());
    buf.extend_from_slice(b"some of the payload");
    assert!(decode(&buf, &limits).unwrap().is_none());
}

// ----- nesting -----

#[test]
fn deep_nesting_is_too_deep_without_recursion() {
    let mut body = vec![0x91; 10_000]; // [[[[...
    body.push(0xc0); // nil
    let buf = frame_of(&body);
    // A small stack: the scanner must not recurse.
    std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            let limits = Limits::default();
            assert!(matches!(
                decode(&buf, &limits),
                Err(DecodeError::TooDeep { max: 16 })
            ));
            assert!(matches!(
                decode_value::<Message>(&buf, &limits),
                Err(DecodeError::TooDeep { max: 16 })
            ));
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn nesting_limit_is_exact() {
    let nested = |depth: usize, marker: u8, leaf: &[u8]| {
        let mut body = vec![marker; depth];
        body.extend_from_slice(leaf);
        body
    };
    for max in [0, 1, 3, 16] {
        // Arrays.
        assert!(scan_msgpack(&nested(max, 0x91, &[0xc0]), max).is_ok());
        assert!(matches!(
            scan_msgpack(&nested(max + 1, 0x91, &[0xc0]), max),
            Err(DecodeError::TooDeep { max: m }) if m == max
        ));
        // Maps: {nil: {nil: ... nil}}, each map a one-entry map.
        let map = |depth| {
            let mut body = Vec::new();
            for _ in 0..depth {
                body.extend_from_slice(&[0x81, 0xc0]);
            }
            body.push(0xc0);
            body
        };
        assert!(scan_msgpack(&map(max), max).is_ok());
        assert!(matches!(
            scan_msgpack(&map(max + 1), max),
            Err(DecodeError::TooDeep { .. })
        ));
    }
}

#[test]
fn deep_nesting_past_serde_limit_is_an_error_not_a_crash() {
    // With the scanner's bound lifted, serde must still refuse (it has its own depth limit), and
    // nothing may overflow the stack.
    let limits = Limits {
        max_depth: usize::MAX,
        ..Limits::default()
    };
    let mut body = Vec::new();
    body.extend_from_slice(&[0x81, 0xa4]);
    body.extend_from_slice(b"Ping");
    body.extend(std::iter::repeat_n(0x91, 100_000));
    body.push(0xc0);
    let buf = frame_of(&body);
    assert!(matches!(
        decode(&buf, &limits),
        Err(DecodeError::Invalid(_))
    ));
}

// ----- container lengths -----

#[test]
fn huge_container_headers_are_malformed() {
    let why = "container longer than its frame";
    // array32 of 2^32-1 elements in a 10-byte frame.
    let array32 = [0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0];
    assert_malformed(&frame_of(&array32), &Limits::default(), why);
    // map32 of 2^32-1 entries.
    let map32 = [0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0];
    assert_malformed(&frame_of(&map32), &Limits::default(), why);
    // array16 of 3 with 2 elements present; fixmap of 1 entry with only a key.
    assert_malformed(&frame_of(&[0xdc, 0, 3, 1, 2]), &Limits::default(), why);
    assert_malformed(&frame_of(&[0x81, 0xc0]), &Limits::default(), why);
    // Inside a message: Register whose `addrs` claims 2^32-1 addresses.
    let mut body = vec![0x81, 0xa8];
    body.extend_from_slice(b"Register");
    body.extend_from_slice(&[0x81, 0xa5]);
    body.extend_from_slice(b"addrs");
    body.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0]);
    assert_malformed(&frame_of(&body), &Limits::default(), why);
}

// ----- one value, exactly -----

#[test]
fn trailing_bytes_are_malformed() {
    let mut body = body_of(&Message::Ping(Ping { nonce: 1 }));
    body.push(0xc0);
    assert_malformed(
        &frame_of(&body),
        &Limits::default(),
        "trailing bytes after value",
    );
    // Two whole messages in one frame.
    let mut two = body_of(&Message::Ping(Ping { nonce: 1 }));
    two.extend(body_of(&Message::Ping(Ping { nonce: 2 })));
    assert_malformed(
        &frame_of(&two),
        &Limits::default(),
        "trailing bytes after value",
    );
}

#[test]
fn reserved_marker_is_malformed() {
    let why = "reserved marker 0xc1";
    assert_malformed(&frame_of(&[0xc1]), &Limits::default(), why);
    // In place of a Ping's nonce.
    let mut body = body_of(&Message::Ping(Ping { nonce: 1 }));
    *body.last_mut().unwrap() = 0xc1;
    assert_malformed(&frame_of(&body), &Limits::default(), why);
}

#[test]
fn truncated_strings_and_bins_are_malformed() {
    let limits = Limits::default();
    // str8 declaring 10 bytes, 3 present.
    assert_malformed(
        &frame_of(&[0xd9, 10, b'a', b'b', b'c']),
        &limits,
        "truncated value",
    );
    // fixstr declaring 5 bytes, 1 present.
    assert_malformed(&frame_of(&[0xa5, b'a']), &limits, "truncated value");
    // bin32 declaring 4 GiB.
    assert_malformed(
        &frame_of(&[0xc6, 0xff, 0xff, 0xff, 0xff, 0]),
        &limits,
        "truncated value",
    );
    // str16 whose length itself is cut off.
    assert_malformed(&frame_of(&[0xda, 0x01]), &limits, "truncated length");
    // A NodeId bin8 of 32 cut after 10 bytes, inside a message.
    let mut body = vec![0x81, 0xa8];
    body.extend_from_slice(b"Register");
    body.extend_from_slice(&[0x81, 0xa2, b'i', b'd', 0xc4, 32]);
    body.extend_from_slice(&[0x11; 10]);
    assert_malformed(&frame_of(&body), &limits, "truncated value");
    // ext8 and fixext16 cut short.
    assert_malformed(&frame_of(&[0xc7, 4, 1, 0]), &limits, "truncated value");
    assert_malformed(&frame_of(&[0xd8, 1, 0, 0]), &limits, "truncated value");
}

#[test]
fn a_body_that_ends_inside_a_container_is_malformed() {
    // fixarray of 2: a nil, then a str8 whose length byte is missing.
    assert_malformed(
        &frame_of(&[0x92, 0xc0, 0xd9]),
        &Limits::default(),
        "truncated length",
    );
}

// ----- properties -----

/// Decode `buf` every way there is; check that a success is self-consistent.
fn decode_everything(buf: &[u8], limits: &Limits) {
    if let Ok(Some((frame, used))) = decode(buf, limits) {
        assert!(used <= buf.len());
        let mut again = Vec::new();
        common::encode_frame(
            &frame,
            &Limits {
                max_frame: u32::MAX,
                ..*limits
            },
            &mut again,
        );
        let roomy = Limits {
            max_frame: u32::MAX,
            max_depth: 64,
            ..*limits
        };
        let (back, _) = decode(&again, &roomy).unwrap().unwrap();
        assert_eq!(back, frame);
    }
    if let Ok(Some((_msg, used))) = decode_value::<Message>(buf, limits) {
        assert!(used <= buf.len());
    }
    if let Some(body) = buf.get(PREFIX_LEN..) {
        let _ = scan_msgpack(body, limits.max_depth);
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&buf, &Limits::default());
        decode_everything(&buf, &TINY);
    }

    /// Random bodies behind a correct prefix, so that the scanner and serde both get to work.
    #[test]
    fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 1..512)) {
        let buf = frame_of(&body);
        decode_everything(&buf, &Limits::default());
        decode_everything(&buf, &TINY);
    }

    /// Bodies made of msgpack markers only: containers, strings and lengths in odd places.
    #[test]
    fn marker_soup_never_panics(
        body in proptest::collection::vec(
            prop_oneof![
                Just(0x81u8), Just(0x91), Just(0xa1), Just(0xc0), Just(0xc4), Just(0xdc),
                Just(0xdd), Just(0xde), Just(0xdf), Just(0xd9), Just(0xc7), Just(0xff),
                Just(0x00), Just(0x01), Just(0x20),
            ],
            1..128,
        )
    ) {
        let buf = frame_of(&body);
        decode_everything(&buf, &Limits::default());
        decode_everything(&buf, &TINY);
    }

    /// A valid body cut short, with its prefix rewritten to match, is an error: it never
    /// decodes, let alone to some other message. (msgpack is prefix-free.)
    #[test]
    fn truncated_bodies_are_errors(msg in common::message()) {
        let body = body_of(&msg);
        for cut in 1..body.len() {
            let buf = frame_of(&body[..cut]);
            prop_assert!(decode(&buf, &Limits::default()).is_err(), "cut at {}", cut);
            prop_assert!(decode_value::<Message>(&buf, &Limits::default()).is_err());
        }
    }

    /// Truncated frames (prefix intact) ask for more bytes; they never yield a message.
    #[test]
    fn truncated_frames_never_yield_another_message(frame in common::frame()) {
        let mut buf = Vec::new();
        common::encode_frame(&frame, &Limits::default(), &mut buf);
        for cut in 0..buf.len() {
            prop_assert!(decode(&buf[..cut], &Limits::default()).unwrap().is_none());
        }
    }

    /// One corrupted byte never panics, and whatever still decodes re-encodes consistently.
    #[test]
    fn corrupted_frames_never_panic(
        frame in common::frame(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut buf = Vec::new();
        common::encode_frame(&frame, &Limits::default(), &mut buf);
        let i = at.index(buf.len());
        buf[i] = byte;
        decode_everything(&buf, &Limits::default());
        decode_everything(&buf, &TINY);
    }
}

#[test]
fn frame_of_payload_header_is_never_a_plain_message() {
    // `decode` turns a header into Frame::Chunk / Frame::Manifest, never Frame::Message.
    let header = ChunkHeader {
        broadcast: BroadcastId([1; 32]),
        index: ChunkIndex(0),
        len: 0,
    };
    let mut buf = Vec::new();
    encode(&Message::ChunkData(header), &Limits::default(), &mut buf).unwrap();
    let (frame, _) = decode(&buf, &Limits::default()).unwrap().unwrap();
    assert_eq!(
        frame,
        Frame::Chunk {
            header,
            data: vec![]
        }
    );
}

#[test]
fn a_decode_error_quoting_megabytes_of_the_peer_logs_a_bounded_prefix() {
    // {"xxxx…" (1 MiB): nil}: an unknown message kind, which serde's error quotes in full.
    let name = "é".repeat(512 << 10);
    let mut body = vec![0x81, 0xdb];
    body.extend_from_slice(&u32::try_from(name.len()).unwrap().to_be_bytes());
    body.extend_from_slice(name.as_bytes());
    body.push(0xc0);
    let err = match decode(&frame_of(&body), &Limits::default()) {
        Err(e @ DecodeError::Invalid(_)) => e,
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert!(
        err.to_string().len() > 1 << 20,
        "the full text quotes it all"
    );
    let logged = err.for_log();
    assert!(
        logged.len() <= swarmcast_proto::LOGGED_ERROR_BYTES + 32,
        "{} bytes",
        logged.len()
    );
    assert!(
        logged.starts_with("invalid message: unknown variant `éé"),
        "{logged}"
    );
    assert!(logged.ends_with("more bytes)"), "{logged}");
    // A short error is logged whole.
    assert_eq!(DecodeError::Empty.for_log(), "empty frame");
}
