//! Feed arbitrary bytes to the frame decoder under two sets of limits.
//!
//! Properties: nothing panics or overflows; a successful decode consumed no more than it was
//! given; and what decodes re-encodes to bytes that decode to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmcast_proto::{
    Frame, Limits, Message, PREFIX_LEN, decode, decode_value, encode, encode_chunk, scan_msgpack,
};

/// Small enough that every bound is reachable by short inputs.
const TINY: Limits = Limits {
    max_frame: 96,
    max_chunk: 16,
    max_manifest: 32,
    max_depth: 3,
};

fuzz_target!(|data: &[u8]| {
    for limits in [Limits::default(), TINY] {
        check(data, &limits);
    }
});

fn check(data: &[u8], limits: &Limits) {
    // Re-encoding may be larger than the input (a struct sent as an array comes back as a map,
    // a variant sent by index comes back by name), so the round trip gets room to grow.
    let roomy = Limits {
        max_frame: u32::MAX,
        max_depth: 64,
        ..*limits
    };

    if let Ok(Some((frame, used))) = decode(data, limits) {
        assert!(used <= data.len());
        let mut again = Vec::new();
        match &frame {
            Frame::Message(msg) => encode(msg, &roomy, &mut again).expect("re-encode"),
            Frame::Chunk { header, data } => {
                assert_eq!(header.len as usize, data.len());
                encode_chunk(*header, data, &roomy, &mut again).expect("re-encode");
            }
            Frame::Manifest { header, data } => {
                assert_eq!(header.len, data.len() as u64);
                encode(&Message::ManifestData(*header), &roomy, &mut again).expect("re-encode");
                again.extend_from_slice(data);
            }
        }
        let (back, used_again) = decode(&again, &roomy)
            .expect("a re-encoded frame decodes")
            .expect("a re-encoded frame is complete");
        assert_eq!(back, frame);
        assert_eq!(used_again, again.len());
    }

    if let Ok(Some((msg, used))) = decode_value::<Message>(data, limits) {
        assert!(used <= data.len());
        let mut again = Vec::new();
        encode(&msg, &roomy, &mut again).expect("re-encode");
        let (back, used_again) = decode_value::<Message>(&again, &roomy)
            .expect("a re-encoded message decodes")
            .expect("a re-encoded message is complete");
        assert_eq!(back, msg);
        assert_eq!(used_again, again.len());
    }

    // The scanner alone, on the bytes after what would be the prefix.
    if let Some(body) = data.get(PREFIX_LEN..) {
        let _ = scan_msgpack(body, limits.max_depth);
    }
}
