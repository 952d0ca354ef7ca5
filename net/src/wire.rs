//! Framed messages over quinn streams: the async side of `swarmcast_proto`'s framing.
//!
//! One request per bidirectional stream: the client writes one frame and finishes; the server
//! answers with one frame and finishes. These helpers are shared by the bootstrap server, its
//! client, the node daemon and the tests.

use std::time::Duration;

use swarmcast_proto::{
    DecodeError, EncodeError, ErrorCode, Frame, Limits, Message, PREFIX_LEN, check_prefix,
    decode_body, encode, payload_len,
};

use crate::refusal::CertRefusal;

/// Errors of framed stream I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The connection could not be established or was lost.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Establishing the connection failed before the handshake.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// Reading from the stream failed.
    #[error("read: {0}")]
    Read(#[from] quinn::ReadExactError),
    /// Writing to the stream failed.
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    /// The stream was already closed.
    #[error("stream closed")]
    Closed(#[from] quinn::ClosedStream),
    /// The peer sent bytes that do not decode.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// A message could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
    /// The peer answered with a typed refusal.
    #[error("refused ({code:?}): {message}")]
    Refused {
        /// Why.
        code: ErrorCode,
        /// Detail from the peer.
        message: String,
    },
    /// The peer answered with a message that does not fit the request.
    #[error("unexpected answer: {0}")]
    Unexpected(&'static str),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl WireError {
    /// The certificate refusal that ended the connection, if that is what happened (either
    /// side's: see [`CertRefusal`]).
    pub fn cert_refusal(&self) -> Option<CertRefusal> {
        match self {
            Self::Connection(e) => CertRefusal::of(e),
            Self::Read(quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e)))
            | Self::Write(quinn::WriteError::ConnectionLost(e)) => CertRefusal::of(e),
            _ => None,
        }
    }
}

/// Read one frame's length prefix and message, but not its payload: the caller reads the
/// payload where it wants it. A payload's declared length is checked against the limits before
/// anyone reads it. `Ok(None)` if the stream finished cleanly before a frame began.
pub async fn read_header(
    recv: &mut quinn::RecvStream,
    limits: &Limits,
) -> Result<Option<Message>, WireError> {
    Ok(read_header_sized(recv, limits).await?.map(|(m, _)| m))
}

/// [`read_header`], with the bytes read (length prefix and message).
async fn read_header_sized(
    recv: &mut quinn::RecvStream,
    limits: &Limits,
) -> Result<Option<(Message, usize)>, WireError> {
    let mut prefix = [0u8; PREFIX_LEN];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = check_prefix(prefix, limits)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    let msg: Message = decode_body(&body, limits)?;
    payload_len(&msg, limits)?;
    Ok(Some((msg, PREFIX_LEN + len)))
}

/// Read one frame. `Ok(None)` if the stream finished cleanly before a frame began.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    limits: &Limits,
) -> Result<Option<Frame>, WireError> {
    let Some(msg) = read_header(recv, limits).await? else {
        return Ok(None);
    };
    let Some(plen) = payload_len(&msg, limits)? else {
        return Ok(Some(Frame::Message(msg)));
    };
    let mut data = vec![0u8; plen];
    recv.read_exact(&mut data).await?;
    Ok(Some(match msg {
        Message::ChunkData(header) => Frame::Chunk { header, data },
        Message::ManifestData(header) => Frame::Manifest { header, data },
        other => Frame::Message(other),
    }))
}

/// Read one frame that must be a plain message.
pub async fn read_message(
    recv: &mut quinn::RecvStream,
    limits: &Limits,
) -> Result<Option<Message>, WireError> {
    Ok(read_message_sized(recv, limits).await?.map(|(m, _)| m))
}

/// [`read_message`], with the bytes read (length prefix and message), for byte counters.
pub async fn read_message_sized(
    recv: &mut quinn::RecvStream,
    limits: &Limits,
) -> Result<Option<(Message, usize)>, WireError> {
    match read_header_sized(recv, limits).await? {
        None => Ok(None),
        Some((msg, _)) if payload_len(&msg, limits)?.is_some() => Err(WireError::Unexpected(
            "payload frame where a message was expected",
        )),
        Some(read) => Ok(Some(read)),
    }
}

/// Write one message frame.
pub async fn write_message(
    send: &mut quinn::SendStream,
    msg: &Message,
    limits: &Limits,
) -> Result<(), WireError> {
    write_message_sized(send, msg, limits).await.map(|_| ())
}

/// [`write_message`], returning the bytes written (length prefix and message).
pub async fn write_message_sized(
    send: &mut quinn::SendStream,
    msg: &Message,
    limits: &Limits,
) -> Result<usize, WireError> {
    let mut buf = Vec::new();
    encode(msg, limits, &mut buf)?;
    send.write_all(&buf).await?;
    Ok(buf.len())
}

/// The send priority of a neighbour's long-lived control stream (pings, pongs, `Have`,
/// `HaveUpdate`), above the request streams' default 0.
///
/// The transport sends streams in the order written (`send_fairness(false)`, see
/// [`transport_config`](crate::transport_config)): a stream that gets new data queues behind
/// every stream already waiting at its priority. At the default priority a pong or an advert
/// therefore waited behind every piece queued on the connection: in the netns lab (8 receivers
/// × 25 Mbit/s, a piece 256 KiB, a connection about 3 Mbit/s) for seconds, long enough for
/// three pings to be missed and the neighbour dropped mid-transfer (66 requests failed with
/// "connection: closed" in one run) and for adverts to reach peers 150–250 ms late (p90 up to
/// 2.4 s).
pub const CONTROL_PRIORITY: i32 = 1;

/// Give `send`, a control stream, [`CONTROL_PRIORITY`]: its messages go before any queued
/// piece data on the connection.
pub fn prioritise_control(send: &quinn::SendStream) -> Result<(), WireError> {
    send.set_priority(CONTROL_PRIORITY)?;
    Ok(())
}

/// One request on a fresh bidirectional stream; the answer, or `Refused` for a [`Message::Error`].
pub async fn request(
    conn: &quinn::Connection,
    msg: &Message,
    limits: &Limits,
    timeout: Duration,
) -> Result<Message, WireError> {
    Ok(request_sized(conn, msg, limits, timeout).await?.0)
}

/// The bytes of one request and its answer as framed on the stream (length prefixes included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameBytes {
    /// The request's frame.
    pub sent: usize,
    /// The answer's frame.
    pub received: usize,
}

/// [`request`], with the bytes of the request and of its answer.
pub async fn request_sized(
    conn: &quinn::Connection,
    msg: &Message,
    limits: &Limits,
    timeout: Duration,
) -> Result<(Message, FrameBytes), WireError> {
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        let sent = write_message_sized(&mut send, msg, limits).await?;
        send.finish()?;
        match read_message_sized(&mut recv, limits).await? {
            None => Err(WireError::Unexpected("stream finished without an answer")),
            Some((Message::Error(e), _)) => Err(WireError::Refused {
                code: e.code,
                message: e.message,
            }),
            Some((m, received)) => Ok((m, FrameBytes { sent, received })),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| WireError::Timeout(timeout))?
}
