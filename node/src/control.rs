//! The local control socket: how `node status` (and later `node send`, `node ls`) talk to the
//! running daemon. A Unix socket at `<data-dir>/control.sock`, one request and one answer per
//! connection, framed like the wire protocol (u32 length + named msgpack).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use swarmcast_proto::{Limits, PREFIX_LEN, check_prefix, decode_body, encode_value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};

/// File name of the socket inside the data dir.
pub const SOCKET: &str = "control.sock";

/// A request to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ControlRequest {
    /// Identity, bootstrap, neighbours and registry size.
    Status,
    /// Publish a directory (`node send`).
    Send {
        /// Absolute path of the directory.
        dir: PathBuf,
        /// Bytes per chunk.
        chunk_size: u32,
    },
    /// Every broadcast this node knows (`node ls`).
    List,
    /// Fleet-wide progress of one broadcast, from the registry (`node send --wait`).
    Fleet {
        /// Hex broadcast id.
        id: String,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ControlResponse {
    /// Answer to [`ControlRequest::Status`].
    Status(Box<NodeStatus>),
    /// Answer to [`ControlRequest::Send`].
    Sent(crate::data::PublishInfo),
    /// Answer to [`ControlRequest::List`].
    List(Vec<crate::data::BroadcastInfo>),
    /// Answer to [`ControlRequest::Fleet`].
    Fleet(FleetProgress),
    /// The request failed.
    Error(String),
}

/// `node status` (also its JSON shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Hex NodeId.
    pub id: String,
    /// Certificate name.
    pub name: String,
    /// This run's incarnation.
    pub incarnation: u64,
    /// Bound QUIC address.
    pub listen: SocketAddr,
    /// Address given to others.
    pub advertise: SocketAddr,
    /// Whether a bootstrap has accepted the registration.
    pub registered: bool,
    /// The bootstrap in use.
    pub bootstrap: Option<SocketAddr>,
    /// Every known seed and whether it answers.
    pub seeds: Vec<SeedStatus>,
    /// Current neighbours.
    pub neighbours: Vec<NeighbourStatus>,
    /// Entries in the last registry view.
    pub registry_size: usize,
    /// Alive entries in the last registry view.
    pub registry_alive: usize,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// Chunk payload bytes this process uploaded to each peer (hex NodeId), all broadcasts: this
    /// node's row of the traffic matrix.
    #[serde(default)]
    pub uploaded_to: std::collections::BTreeMap<String, u64>,
}

/// Fleet-wide progress of one broadcast, as the registry reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetProgress {
    /// Hex broadcast id.
    pub id: String,
    /// Bytes of the broadcast.
    pub bytes: u64,
    /// Chunks of the broadcast.
    pub chunks: u64,
    /// Nodes alive in the registry.
    pub nodes_alive: u64,
    /// Alive nodes holding every chunk.
    pub nodes_complete: u64,
    /// Chunks held, summed over alive nodes.
    pub chunks_held: u64,
    /// Set when the broadcast failed (at the origin or here).
    pub failed: Option<String>,
    /// Per node: name, chunks held (alive nodes only).
    pub nodes: Vec<(String, u64)>,
}

/// One seed's reachability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedStatus {
    /// Its address.
    pub addr: SocketAddr,
    /// Whether a connection to it is up.
    pub reachable: bool,
    /// The last error met, if any.
    pub last_error: Option<String>,
    /// Failed attempts since it last answered.
    pub failures: u32,
}

/// One neighbour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeighbourStatus {
    /// Hex NodeId.
    pub id: String,
    /// Certificate name, when connected.
    pub name: Option<String>,
    /// Its address.
    pub addr: SocketAddr,
    /// "outbound" or "inbound".
    pub direction: String,
    /// "dialling" or "connected".
    pub state: String,
    /// Smoothed RTT of application pings, in ms.
    pub rtt_ms: Option<f64>,
    /// Banned for serving bad chunks: a serve-only link, never fetched from.
    #[serde(default)]
    pub banned: bool,
}

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Nothing listens on the socket.
    #[error("no daemon is running with data dir {dir} ({reason})")]
    NotRunning {
        /// The data dir.
        dir: PathBuf,
        /// The underlying error.
        reason: std::io::Error,
    },
    /// A daemon already owns the data dir.
    #[error("a daemon is already running with data dir {0}")]
    AlreadyRunning(PathBuf),
    /// Socket I/O failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something undecodable.
    #[error("control socket: {0}")]
    Decode(#[from] swarmcast_proto::DecodeError),
    /// A value could not be encoded.
    #[error("control socket: {0}")]
    Encode(#[from] swarmcast_proto::EncodeError),
    /// The daemon reported an error.
    #[error("daemon: {0}")]
    Daemon(String),
    /// No answer in time.
    #[error("control socket: no answer in {0:?}")]
    Timeout(Duration),
    /// The daemon answered with something that does not fit the request.
    #[error("daemon gave an unexpected answer: {0}")]
    Unexpected(&'static str),
}

/// Path of the socket for a data dir.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

async fn read_value<T: DeserializeOwned>(s: &mut UnixStream) -> Result<T, ControlError> {
    let limits = Limits::default();
    let mut prefix = [0u8; PREFIX_LEN];
    s.read_exact(&mut prefix).await?;
    let len = check_prefix(prefix, &limits)?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok(decode_body(&body, &limits)?)
}

async fn write_value<T: Serialize>(s: &mut UnixStream, value: &T) -> Result<(), ControlError> {
    let mut buf = Vec::new();
    encode_value(value, &Limits::default(), &mut buf)?;
    s.write_all(&buf).await?;
    s.flush().await?;
    Ok(())
}

/// Ask the daemon of `data_dir` one question.
pub async fn call(
    data_dir: &Path,
    request: &ControlRequest,
) -> Result<ControlResponse, ControlError> {
    let path = socket_path(data_dir);
    let timeout = Duration::from_secs(10);
    let exchange = async {
        let mut s =
            UnixStream::connect(&path)
                .await
                .map_err(|reason| ControlError::NotRunning {
                    dir: data_dir.to_owned(),
                    reason,
                })?;
        write_value(&mut s, request).await?;
        read_value::<ControlResponse>(&mut s).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ControlError::Timeout(timeout))?
}

/// The daemon's state (`node status`).
pub async fn status(data_dir: &Path) -> Result<NodeStatus, ControlError> {
    match call(data_dir, &ControlRequest::Status).await? {
        ControlResponse::Status(s) => Ok(*s),
        other => Err(refusal(other)),
    }
}

/// Every broadcast the daemon knows (`node ls`).
pub async fn list(data_dir: &Path) -> Result<Vec<crate::data::BroadcastInfo>, ControlError> {
    match call(data_dir, &ControlRequest::List).await? {
        ControlResponse::List(l) => Ok(l),
        other => Err(refusal(other)),
    }
}

/// Publish `dir` (`node send`); answers once the manifest is built.
pub async fn send(
    data_dir: &Path,
    dir: PathBuf,
    chunk_size: u32,
) -> Result<crate::data::PublishInfo, ControlError> {
    match call(data_dir, &ControlRequest::Send { dir, chunk_size }).await? {
        ControlResponse::Sent(i) => Ok(i),
        other => Err(refusal(other)),
    }
}

/// Fleet-wide progress of broadcast `id` (hex).
pub async fn fleet(data_dir: &Path, id: &str) -> Result<FleetProgress, ControlError> {
    match call(data_dir, &ControlRequest::Fleet { id: id.to_owned() }).await? {
        ControlResponse::Fleet(f) => Ok(f),
        other => Err(refusal(other)),
    }
}

/// An answer that is not the one asked for: the daemon's error, or a mismatch.
fn refusal(answer: ControlResponse) -> ControlError {
    match answer {
        ControlResponse::Error(e) => ControlError::Daemon(e),
        _ => ControlError::Unexpected("a different kind of answer"),
    }
}

/// Bind the control socket, refusing if a live daemon already answers on it.
pub async fn bind(data_dir: &Path) -> Result<UnixListener, ControlError> {
    let path = socket_path(data_dir);
    if path.exists() {
        if UnixStream::connect(&path).await.is_ok() {
            return Err(ControlError::AlreadyRunning(data_dir.to_owned()));
        }
        // A stale socket of a daemon that died.
        std::fs::remove_file(&path)?;
    }
    Ok(UnixListener::bind(&path)?)
}

/// Something that answers control requests.
pub trait Handler: Send + Sync + 'static {
    /// Answer one request.
    fn handle(
        &self,
        request: ControlRequest,
    ) -> impl std::future::Future<Output = ControlResponse> + Send;
}

/// Serve the control socket forever.
pub async fn serve<H: Handler>(listener: UnixListener, handler: Arc<H>) {
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let answer = match read_value::<ControlRequest>(&mut stream).await {
                Ok(req) => handler.handle(req).await,
                Err(e) => {
                    debug!(error = %e, "bad control request");
                    ControlResponse::Error(e.to_string())
                }
            };
            if let Err(e) = write_value(&mut stream, &answer).await {
                debug!(error = %e, "control answer not delivered");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Handler for Fixed {
        async fn handle(&self, _: ControlRequest) -> ControlResponse {
            let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
            ControlResponse::Status(Box::new(NodeStatus {
                id: "00".repeat(32),
                name: "n1".into(),
                incarnation: 1,
                listen: a,
                advertise: a,
                registered: false,
                bootstrap: None,
                seeds: vec![],
                neighbours: vec![],
                registry_size: 0,
                registry_alive: 0,
                uptime_s: 0,
                uploaded_to: Default::default(),
            }))
        }
    }

    #[tokio::test]
    async fn status_over_the_socket_and_single_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            call(dir.path(), &ControlRequest::Status).await,
            Err(ControlError::NotRunning { .. })
        ));
        let listener = bind(dir.path()).await.expect("bind");
        assert!(matches!(
            bind(dir.path()).await,
            Err(ControlError::AlreadyRunning(_))
        ));
        let server = tokio::spawn(serve(listener, Arc::new(Fixed)));
        match call(dir.path(), &ControlRequest::Status)
            .await
            .expect("call")
        {
            ControlResponse::Status(s) => assert_eq!(s.name, "n1"),
            other => panic!("unexpected {other:?}"),
        }
        // Garbage on the socket gets an error answer, not a crash.
        let mut s = UnixStream::connect(socket_path(dir.path()))
            .await
            .expect("connect");
        s.write_all(&[0xff, 0xff, 0xff, 0xff]).await.expect("write");
        let answer: ControlResponse = read_value(&mut s).await.expect("answer");
        assert!(matches!(answer, ControlResponse::Error(_)));
        server.abort();
    }
}
