//! Bytes from a local client through the daemon's control-socket reader
//! (`control::read_request`, the very function `control::serve` runs on each connection), and
//! the same bytes through the CLI's reader of the daemon's answers (`control::read_response`).
//!
//! Properties: nothing panics; a request reads no more than its frame; a decoded request
//! re-encodes to a frame that decodes to the same request; a `Fleet` id that parses prints
//! back to itself; and the daemon's error answer to a bad request is itself sendable.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use swarmcast_node::control::{ControlRequest, ControlResponse, read_request, read_response};
use swarmcast_proto::{BroadcastId, Limits, PREFIX_LEN, encode_value};

/// Reading from a byte slice never waits, so one poll finishes the future.
fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a read from a byte slice was pending"),
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut rest = data;
    match now(read_request(&mut rest)) {
        Ok(request) => {
            let used = data.len() - rest.len();
            let declared = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
            assert_eq!(used, PREFIX_LEN + declared);
            let mut again = Vec::new();
            encode_value(&request, &limits, &mut again).expect("a request re-encodes");
            let back =
                now(read_request(&mut again.as_slice())).expect("a re-encoded request reads");
            let mut twice = Vec::new();
            encode_value(&back, &limits, &mut twice).expect("a request re-encodes");
            assert_eq!(again, twice);
            if let ControlRequest::Fleet { id } = &request {
                if let Ok(parsed) = id.parse::<BroadcastId>() {
                    assert_eq!(parsed.to_string().parse::<BroadcastId>().ok(), Some(parsed));
                }
            }
        }
        Err(e) => {
            // What `serve` answers: it must fit in a frame, or the client hears nothing.
            let answer = ControlResponse::Error(e.to_string());
            let mut buf = Vec::new();
            encode_value(&answer, &limits, &mut buf).expect("the error answer is sendable");
        }
    }
    let mut rest = data;
    let _ = now(read_response(&mut rest));
});
