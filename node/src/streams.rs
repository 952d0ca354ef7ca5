//! What an inbound connection's streams may take, and what their endings mean, free of I/O.
//!
//! Two small cores, in the manner of the others: the shell tells them what happened, with
//! `now`, sleeps until [`poll_timeout`](ServedStream::poll_timeout) at most, and on waking calls
//! `handle_timeout(now)`, which gives up exactly at the deadline and never before (an early
//! wake-up changes nothing).
//!
//! * [`FirstStream`]: a new inbound connection must open a stream within [`FIRST_STREAM_WAIT`]
//!   and send its first message within [`FIRST_MESSAGE_WAIT`] of that; a ping makes it a
//!   neighbour, a request a one-off request connection, anything else closes it.
//!   Call order: [`FirstStream::new`] at the handshake, [`FirstStream::stream_opened`],
//!   [`FirstStream::first_message`].
//! * [`ServedStream`]: one request stream at the serving side. Its request must arrive within
//!   [`REQUEST_READ_TIMEOUT`] (a slowloris stream holds nothing for long); once the answer is
//!   written, its upload permit is kept until the requester acknowledged every byte, for at most
//!   [`ACK_WAIT`]; the send counts as delivered (for super-seeding) only if it was acknowledged.
//!   Call order: [`ServedStream::awaiting_request`] (or [`ServedStream::with_request`] when the
//!   request was read already), [`ServedStream::request_read`], [`ServedStream::written`],
//!   [`ServedStream::ended`]; [`ServedStream::delivered`] after.
//!
//! The answer's own writing has no deadline here: it is bounded by the requester (which stops
//! the stream) and by the connection's idle timeout.

use std::time::{Duration, Instant};

use swarmcast_proto::Message;

/// How long a new inbound connection may take to open its first stream.
pub(crate) const FIRST_STREAM_WAIT: Duration = Duration::from_secs(5);
/// How long the first stream may take to deliver its first message.
pub(crate) const FIRST_MESSAGE_WAIT: Duration = Duration::from_secs(5);
/// How long a request stream may take to deliver its request frame.
pub(crate) const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a served request keeps its permit waiting for the peer's acknowledgements once
/// everything was written. A live peer acknowledges within round trips; a dead one closes the
/// connection (idle timeout) before this.
pub(crate) const ACK_WAIT: Duration = Duration::from_secs(15);

/// A wait that ran out (the deadline was reached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    /// No first stream: close the connection.
    FirstStream,
    /// The first stream sent no complete message: close the connection.
    FirstMessage,
    /// The request was not read in time: stop and reset the stream.
    Request,
    /// The answer was not acknowledged in time: release the permit; not delivered.
    Acks,
}

impl Expired {
    /// How long the wait that ran out was.
    pub(crate) fn after(self) -> Duration {
        match self {
            Expired::FirstStream => FIRST_STREAM_WAIT,
            Expired::FirstMessage => FIRST_MESSAGE_WAIT,
            Expired::Request => REQUEST_READ_TIMEOUT,
            Expired::Acks => ACK_WAIT,
        }
    }
}

/// A core with one deadline at a time: what the shell's [`until_expired`] waits on.
///
/// [`until_expired`]: crate::data::serve::until_expired
pub(crate) trait Deadline {
    /// The instant to wake at, if something is awaited.
    fn poll_timeout(&self) -> Option<Instant>;
    /// `Some` exactly once the deadline is reached: give up.
    fn handle_timeout(&mut self, now: Instant) -> Option<Expired>;
}

/// What a new inbound connection is, by its first message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FirstKind {
    /// A ping: a neighbour's control stream.
    Neighbour,
    /// Anything else that decoded: a one-off request connection, whose first stream is served
    /// as a request (a bad request is refused there).
    Request,
    /// The stream ended or failed before a whole message: close the connection.
    Close,
}

/// The first stream of an inbound connection.
#[derive(Debug)]
pub(crate) struct FirstStream {
    deadline: Option<(Instant, Expired)>,
}

impl FirstStream {
    /// The handshake completed at `now`: waiting for a stream.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            deadline: Some((now + FIRST_STREAM_WAIT, Expired::FirstStream)),
        }
    }

    /// The peer opened its first stream: waiting for its first message.
    pub(crate) fn stream_opened(&mut self, now: Instant) {
        if self.deadline.is_some() {
            self.deadline = Some((now + FIRST_MESSAGE_WAIT, Expired::FirstMessage));
        }
    }

    /// The first message (`None`: the stream ended or failed first). No deadline after.
    pub(crate) fn first_message(&mut self, message: Option<&Message>) -> FirstKind {
        self.deadline = None;
        match message {
            Some(Message::Ping(_)) => FirstKind::Neighbour,
            Some(_) => FirstKind::Request,
            None => FirstKind::Close,
        }
    }
}

impl Deadline for FirstStream {
    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.map(|(at, _)| at)
    }

    fn handle_timeout(&mut self, now: Instant) -> Option<Expired> {
        match self.deadline {
            Some((at, what)) if now >= at => {
                self.deadline = None;
                Some(what)
            }
            _ => None,
        }
    }
}

/// How the wait for a served answer's acknowledgements ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckEnd {
    /// The requester acknowledged every byte.
    Acknowledged,
    /// The requester stopped the stream (it has the chunks from elsewhere, or gave up).
    Stopped,
    /// The connection is gone.
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitingRequest(Instant),
    Serving,
    AwaitingAcks(Instant),
    Done { delivered: bool },
}

/// One request stream at the serving side.
#[derive(Debug)]
pub(crate) struct ServedStream {
    phase: Phase,
}

impl ServedStream {
    /// A stream accepted at `now`; its request is still to be read.
    pub(crate) fn awaiting_request(now: Instant) -> Self {
        Self {
            phase: Phase::AwaitingRequest(now + REQUEST_READ_TIMEOUT),
        }
    }

    /// A stream whose request was read already (a one-off connection's first stream).
    pub(crate) fn with_request() -> Self {
        Self {
            phase: Phase::Serving,
        }
    }

    /// The request arrived whole.
    pub(crate) fn request_read(&mut self) {
        if matches!(self.phase, Phase::AwaitingRequest(_)) {
            self.phase = Phase::Serving;
        }
    }

    /// Every byte of the answer was handed to the transport and the stream finished, at `now`.
    pub(crate) fn written(&mut self, now: Instant) {
        if self.phase == Phase::Serving {
            self.phase = Phase::AwaitingAcks(now + ACK_WAIT);
        }
    }

    /// The wait for acknowledgements ended before its deadline.
    pub(crate) fn ended(&mut self, end: AckEnd) {
        if let Phase::AwaitingAcks(_) = self.phase {
            self.phase = Phase::Done {
                delivered: end == AckEnd::Acknowledged,
            };
        }
    }

    /// Whether the answer reached the requester whole: only an acknowledged one did.
    pub(crate) fn delivered(&self) -> bool {
        matches!(self.phase, Phase::Done { delivered: true })
    }
}

impl Deadline for ServedStream {
    fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingRequest(at) | Phase::AwaitingAcks(at) => Some(at),
            Phase::Serving | Phase::Done { .. } => None,
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Option<Expired> {
        match self.phase {
            Phase::AwaitingRequest(at) if now >= at => {
                self.phase = Phase::Done { delivered: false };
                Some(Expired::Request)
            }
            Phase::AwaitingAcks(at) if now >= at => {
                self.phase = Phase::Done { delivered: false };
                Some(Expired::Acks)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use swarmcast_proto::{ManifestRequest, Ping};

    const NS: Duration = Duration::from_nanos(1);

    #[test]
    fn a_request_not_read_gives_up_at_its_deadline_not_before() {
        let t = Instant::now();
        let mut s = ServedStream::awaiting_request(t);
        let at = s.poll_timeout().unwrap();
        assert_eq!(at, t + REQUEST_READ_TIMEOUT);
        assert_eq!(
            s.handle_timeout(at - NS),
            None,
            "nothing a nanosecond early"
        );
        assert_eq!(s.poll_timeout(), Some(at));
        assert_eq!(s.handle_timeout(at), Some(Expired::Request));
        assert_eq!(s.handle_timeout(at), None, "once");
        assert_eq!(s.poll_timeout(), None);
        assert!(!s.delivered());
    }

    #[test]
    fn serving_has_no_deadline_and_acks_wait_from_the_last_write() {
        let t = Instant::now();
        let mut s = ServedStream::awaiting_request(t);
        s.request_read();
        assert_eq!(
            s.poll_timeout(),
            None,
            "writing is bounded by the requester"
        );
        assert_eq!(s.handle_timeout(t + Duration::from_secs(3600)), None);
        let written = t + Duration::from_secs(60);
        s.written(written);
        let at = s.poll_timeout().unwrap();
        assert_eq!(at, written + ACK_WAIT);
        assert_eq!(s.handle_timeout(at - NS), None);
        assert_eq!(s.handle_timeout(at), Some(Expired::Acks));
        assert!(!s.delivered(), "unacknowledged is not delivered");
        s.ended(AckEnd::Acknowledged);
        assert!(!s.delivered(), "a late acknowledgement changes nothing");
    }

    #[test]
    fn only_an_acknowledged_answer_is_delivered() {
        for (end, delivered) in [
            (AckEnd::Acknowledged, true),
            (AckEnd::Stopped, false),
            (AckEnd::Lost, false),
        ] {
            let t = Instant::now();
            let mut s = ServedStream::with_request();
            assert_eq!(s.poll_timeout(), None);
            s.written(t);
            assert!(!s.delivered(), "{end:?}: not yet");
            s.ended(end);
            assert_eq!(s.delivered(), delivered, "{end:?}");
            assert_eq!(s.poll_timeout(), None);
            assert_eq!(s.handle_timeout(t + ACK_WAIT), None, "{end:?}: ended");
        }
    }

    #[test]
    fn a_first_stream_must_open_then_speak_each_within_its_wait() {
        let t = Instant::now();
        let mut f = FirstStream::new(t);
        assert_eq!(f.poll_timeout(), Some(t + FIRST_STREAM_WAIT));
        assert_eq!(f.handle_timeout(t + FIRST_STREAM_WAIT - NS), None);
        let opened = t + FIRST_STREAM_WAIT - NS;
        f.stream_opened(opened);
        assert_eq!(f.poll_timeout(), Some(opened + FIRST_MESSAGE_WAIT));
        assert_eq!(f.handle_timeout(opened + FIRST_MESSAGE_WAIT - NS), None);
        assert_eq!(
            f.handle_timeout(opened + FIRST_MESSAGE_WAIT),
            Some(Expired::FirstMessage)
        );
        assert_eq!(f.poll_timeout(), None);

        let mut g = FirstStream::new(t);
        assert_eq!(
            g.handle_timeout(t + FIRST_STREAM_WAIT),
            Some(Expired::FirstStream)
        );
        g.stream_opened(t + FIRST_STREAM_WAIT);
        assert_eq!(g.poll_timeout(), None, "given up for good");
    }

    #[test]
    fn the_first_message_decides_what_a_connection_is() {
        let t = Instant::now();
        let ping = Message::Ping(Ping { nonce: 1 });
        let request = Message::ManifestRequest(ManifestRequest {
            broadcast: swarmcast_proto::BroadcastId([1; 32]),
        });
        for (m, kind) in [
            (Some(&ping), FirstKind::Neighbour),
            (Some(&request), FirstKind::Request),
            (None, FirstKind::Close),
        ] {
            let mut f = FirstStream::new(t);
            f.stream_opened(t);
            assert_eq!(f.first_message(m), kind);
            assert_eq!(f.poll_timeout(), None);
        }
    }
}
