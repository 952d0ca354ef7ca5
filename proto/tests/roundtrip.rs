//! Property-based round trips: arbitrary values encode, then decode to themselves, whether the
//! decoder sees the whole buffer at once or one byte at a time.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use swarmcast_proto::{Frame, Limits, Message, decode, decode_value, encode, payload_len};

/// Encode `msg`, then decode it from the whole buffer and from every prefix of it.
#[track_caller]
fn check_message(msg: &Message) {
    let limits = Limits::default();
    let mut buf = Vec::new();
    encode(msg, &limits, &mut buf).unwrap();

    for cut in 0..buf.len() {
        assert!(
            decode_value::<Message>(&buf[..cut], &limits)
                .unwrap()
                .is_none(),
            "a strict prefix of {cut} bytes decoded"
        );
    }
    let (back, used) = decode_value::<Message>(&buf, &limits).unwrap().unwrap();
    assert_eq!(&back, msg);
    assert_eq!(used, buf.len());

    // Through `decode`: a control message is a whole frame; a header wants its payload.
    match payload_len(msg, &limits) {
        Ok(None) => {
            for cut in 0..buf.len() {
                assert!(decode(&buf[..cut], &limits).unwrap().is_none());
            }
            let (frame, used) = decode(&buf, &limits).unwrap().unwrap();
            assert_eq!(frame, Frame::Message(msg.clone()));
            assert_eq!(used, buf.len());
        }
        Ok(Some(0)) => assert!(decode(&buf, &limits).unwrap().is_some()),
        Ok(Some(_)) => assert!(decode(&buf, &limits).unwrap().is_none()),
        Err(_) => assert!(decode(&buf, &limits).is_err()),
    }
}

/// Encode `frame` with its payload, then decode it whole and from every prefix.
#[track_caller]
fn check_frame(frame: &Frame) {
    let limits = Limits::default();
    let mut buf = Vec::new();
    common::encode_frame(frame, &limits, &mut buf);

    for cut in 0..buf.len() {
        assert!(
            decode(&buf[..cut], &limits).unwrap().is_none(),
            "a strict prefix of {cut} bytes decoded"
        );
    }
    let (back, used) = decode(&buf, &limits).unwrap().unwrap();
    assert_eq!(&back, frame);
    assert_eq!(used, buf.len());
}

macro_rules! round_trip_each_kind {
    ($($name:ident),* $(,)?) => {
        proptest! {
            $(
                #[test]
                fn $name(msg in common::$name()) {
                    check_message(&msg);
                }
            )*
        }

        /// The list above names every kind: a new variant must be added to it.
        #[test]
        fn every_kind_is_covered() {
            let listed: BTreeSet<&str> = [$(stringify!($name)),*].into_iter().collect();
            let mut runner = TestRunner::deterministic();
            let generated: BTreeSet<&str> = common::each_kind()
                .into_iter()
                .map(|(name, strategy)| {
                    let msg = strategy.new_tree(&mut runner).unwrap().current();
                    assert_eq!(msg.kind(), name);
                    name
                })
                .collect();
            assert_eq!(listed, generated);
            assert_eq!(listed.len(), 18);
        }
    };
}

round_trip_each_kind!(
    register,
    heartbeat,
    lookup,
    announce,
    registered,
    ack,
    registry,
    digest,
    delta,
    ping,
    pong,
    error,
    have,
    have_update,
    chunk_request,
    chunk_data,
    manifest_request,
    manifest_data,
);

proptest! {
    #[test]
    fn chunk_with_payload(frame in common::chunk_frame(2000)) {
        check_frame(&frame);
    }

    #[test]
    fn manifest_with_payload(frame in common::manifest_frame(2000)) {
        check_frame(&frame);
    }

    #[test]
    fn two_frames_decode_in_order(first in common::frame(), second in common::frame()) {
        let limits = Limits::default();
        let mut buf = Vec::new();
        common::encode_frame(&first, &limits, &mut buf);
        let first_len = buf.len();
        common::encode_frame(&second, &limits, &mut buf);

        let (a, used) = decode(&buf, &limits).unwrap().unwrap();
        prop_assert_eq!(a, first);
        prop_assert_eq!(used, first_len);
        let (b, used) = decode(&buf[first_len..], &limits).unwrap().unwrap();
        prop_assert_eq!(b, second);
        prop_assert_eq!(used, buf.len() - first_len);
    }

    /// A reader that receives a stream of frames in pieces of any size gets them all, in order.
    #[test]
    fn stream_in_pieces(
        frames in proptest::collection::vec(common::frame(), 0..6),
        pieces in proptest::collection::vec(1..64usize, 1..20),
    ) {
        let limits = Limits::default();
        let mut wire = Vec::new();
        for f in &frames {
            common::encode_frame(f, &limits, &mut wire);
        }

        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut sent = 0;
        for size in pieces.iter().cycle() {
            let end = (sent + size).min(wire.len());
            buf.extend_from_slice(&wire[sent..end]);
            sent = end;
            while let Some((frame, used)) = decode(&buf, &limits).unwrap() {
                got.push(frame);
                buf.drain(..used);
            }
            if sent == wire.len() {
                break;
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }
}
