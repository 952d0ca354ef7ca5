//! The local control socket: how `node status`, `node send`, `node ls` talk to the running
//! daemon. A Unix socket at `<data-dir>/control.sock`, one request and one answer per
//! connection, framed like the wire protocol (u32 length + named msgpack).
//!
//! It is private whatever the umask of whoever started the daemon ([`prepare_data_dir`],
//! [`bind`]):
//! * the daemon's umask becomes 077, the data dir is made 0700 and the socket 0600 (with a
//!   `--control-group`: 0710 and 0660, group-owned by it);
//! * every connection's credentials are read from the kernel (`SO_PEERCRED`): only the daemon's
//!   own uid, root and members of the control group ([`ControlAccess`]) are answered, anyone
//!   else gets [`ControlResponse::Refused`] before a byte of their request is read;
//! * the handler is told who asked ([`Credentials`], with the caller's supplementary groups),
//!   so that `node send` reads the directory with the caller's permissions, not the daemon's
//!   ([`ReadAs`](crate::manifest::ReadAs)).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use swarmcast_proto::{Limits, PREFIX_LEN, check_prefix, decode_body, encode_value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};

pub use crate::manifest::Credentials;
pub use crate::status::{
    FleetOutcome, FleetProgress, NeighbourStatus, NodeOutcome, NodeStatus, SeedStatus,
};

/// File name of the socket inside the data dir.
pub const SOCKET: &str = "control.sock";

/// How often the daemon says [`ControlResponse::Working`] to a caller that asked for it.
pub const KEEPALIVE: Duration = Duration::from_secs(1);

/// How long a caller waits for the daemon: for the whole exchange, or, when the request asked
/// for keep-alives, for each frame.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

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
        /// Hash every file, even those unchanged since the previous version of the name.
        #[serde(default)]
        rehash: bool,
        /// Send [`ControlResponse::Working`] every [`KEEPALIVE`] until the answer, so that a
        /// caller can wait for a slow build (a large directory hashed on a loaded machine)
        /// without a fixed timeout on the whole exchange. Off for older callers.
        #[serde(default)]
        keepalive: bool,
        /// `--to`: restrict the broadcast to these nodes and groups (absent: everyone).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<swarmcast_proto::Audience>,
        /// `--priority` (absent: normal, for older callers).
        #[serde(default, skip_serializing_if = "swarmcast_proto::Priority::is_normal")]
        priority: swarmcast_proto::Priority,
    },
    /// Every broadcast this node knows (`node ls`).
    List,
    /// Fleet-wide progress of one broadcast, from the registry (`node send --wait`).
    Fleet {
        /// Hex broadcast id.
        id: String,
    },
    /// Remove one version (id or unique id prefix) or every version of a name (`node rm`).
    Remove {
        /// What to remove.
        target: String,
    },
    /// Cancel, fleet-wide, this origin's version(s) of an id or a name (`node cancel`).
    Cancel {
        /// What to cancel.
        target: String,
    },
    /// Fetch the newest version of a name, or an id or unique id prefix (`node fetch`):
    /// answered once the fetch is asked for, with the id; `node ls` follows it.
    Fetch {
        /// What to fetch.
        target: String,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ControlResponse {
    /// Answer to [`ControlRequest::Status`].
    Status(Box<NodeStatus>),
    /// Answer to [`ControlRequest::Send`].
    Sent(crate::status::PublishInfo),
    /// Not an answer: the daemon is still working on the request (see `keepalive`).
    Working,
    /// Answer to [`ControlRequest::List`].
    List(Vec<crate::data::BroadcastInfo>),
    /// Answer to [`ControlRequest::Fleet`].
    Fleet(FleetProgress),
    /// Answer to [`ControlRequest::Remove`], [`ControlRequest::Cancel`] and
    /// [`ControlRequest::Fetch`]: the hex ids acted on.
    Done(Vec<String>),
    /// The request failed.
    Error(String),
    /// The caller may not use this daemon (see [`ControlAccess`]).
    Refused(String),
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
    /// The socket or data dir is not ours to open: a daemon of another user.
    #[error(
        "permission denied on {socket}: the control socket is private to the user the daemon \
         runs as, root and its --control-group ({reason})"
    )]
    Forbidden {
        /// The socket path.
        socket: PathBuf,
        /// The underlying error.
        reason: std::io::Error,
    },
    /// The daemon refused this caller.
    #[error("the daemon refused this request: {0}")]
    Refused(String),
    /// A daemon already owns the data dir.
    #[error("a daemon is already running with data dir {0}")]
    AlreadyRunning(PathBuf),
    /// The data dir is not a directory owned by this user, or could not be made private.
    #[error(transparent)]
    DataDir(#[from] swarmcast_net::DataDirError),
    /// No such group (`--control-group`).
    #[error("no group named {0:?}")]
    NoSuchGroup(String),
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

/// Longest error text the daemon sends back for a request it could not read, in bytes. The
/// decoder's error can quote the request (serde names an unknown variant verbatim), and a
/// request may be as large as a frame.
pub const MAX_ERROR_TEXT: usize = 1024;

/// `text` cut to at most [`MAX_ERROR_TEXT`] bytes (at a character boundary), marked with `…`
/// when cut.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Path of the socket for a data dir.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// Read one request the way the daemon reads it from a local client (length prefix checked
/// against the wire's default [`Limits`] before the body is allocated, then the body scanned and
/// decoded). For fuzzing (`fuzz/`, target `control`): [`serve`] uses exactly this on each
/// connection.
pub async fn read_request<R: AsyncRead + Unpin>(r: &mut R) -> Result<ControlRequest, ControlError> {
    read_value(r).await
}

/// Read one answer the way the CLI reads the daemon's (same framing as [`read_request`]).
pub async fn read_response<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<ControlResponse, ControlError> {
    read_value(r).await
}

async fn read_value<T: DeserializeOwned, R: AsyncRead + Unpin>(
    s: &mut R,
) -> Result<T, ControlError> {
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
///
/// The whole exchange must end within [`ANSWER_TIMEOUT`], unless the request asked for
/// keep-alives (`node send`): then each frame must come within it, so a build that takes
/// minutes is waited for while the daemon says it is working on it, and a daemon that stops
/// answering is still given up on.
pub async fn call(
    data_dir: &Path,
    request: &ControlRequest,
) -> Result<ControlResponse, ControlError> {
    let path = socket_path(data_dir);
    let timeout = ANSWER_TIMEOUT;
    let keepalive = matches!(
        request,
        ControlRequest::Send {
            keepalive: true,
            ..
        }
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let frame_deadline = || {
        if keepalive {
            tokio::time::Instant::now() + timeout
        } else {
            deadline
        }
    };
    let connect = async {
        let mut s = UnixStream::connect(&path)
            .await
            .map_err(|reason| match reason.kind() {
                std::io::ErrorKind::PermissionDenied => ControlError::Forbidden {
                    socket: path.clone(),
                    reason,
                },
                _ => ControlError::NotRunning {
                    dir: data_dir.to_owned(),
                    reason,
                },
            })?;
        let written = write_value(&mut s, request).await;
        Ok::<_, ControlError>((s, written))
    };
    let (mut s, written) = tokio::time::timeout_at(deadline, connect)
        .await
        .map_err(|_| ControlError::Timeout(timeout))??;
    loop {
        let answer = tokio::time::timeout_at(frame_deadline(), read_response(&mut s))
            .await
            .map_err(|_| ControlError::Timeout(timeout))?;
        match answer {
            Ok(ControlResponse::Working) if keepalive => continue,
            Ok(answer) => return Ok(answer),
            // A daemon that refuses us answers and closes without reading: when it did not
            // even answer, our failed write says why.
            Err(e) => return Err(written.err().unwrap_or(e)),
        }
    }
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
) -> Result<crate::status::PublishInfo, ControlError> {
    send_with(data_dir, dir, chunk_size, false).await
}

/// [`send`], with `rehash`: hash every file, even those whose size, times and inode match the
/// previous version of the same name sent from this node (`node send --rehash`).
pub async fn send_with(
    data_dir: &Path,
    dir: PathBuf,
    chunk_size: u32,
    rehash: bool,
) -> Result<crate::status::PublishInfo, ControlError> {
    send_to(data_dir, dir, chunk_size, rehash, None).await
}

/// [`send_with`], restricted to `audience` when given (`node send --to`).
pub async fn send_to(
    data_dir: &Path,
    dir: PathBuf,
    chunk_size: u32,
    rehash: bool,
    audience: Option<swarmcast_proto::Audience>,
) -> Result<crate::status::PublishInfo, ControlError> {
    let meta = SendMeta {
        audience,
        priority: swarmcast_proto::Priority::Normal,
    };
    send_as(data_dir, dir, chunk_size, rehash, meta).await
}

/// What `node send` binds into a broadcast besides its directory: its audience (`--to`) and
/// its priority (`--priority`).
#[derive(Debug, Clone, Default)]
pub struct SendMeta {
    /// Restricted to these nodes and groups (`None`: everyone).
    pub audience: Option<swarmcast_proto::Audience>,
    /// How it competes with other broadcasts.
    pub priority: swarmcast_proto::Priority,
}

/// [`send_with`] with `meta`.
pub async fn send_as(
    data_dir: &Path,
    dir: PathBuf,
    chunk_size: u32,
    rehash: bool,
    meta: SendMeta,
) -> Result<crate::status::PublishInfo, ControlError> {
    let request = ControlRequest::Send {
        dir,
        chunk_size,
        rehash,
        keepalive: true,
        audience: meta.audience,
        priority: meta.priority,
    };
    match call(data_dir, &request).await? {
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

/// Remove `target` (an id, a unique id prefix, or a name) from this node (`node rm`); the ids
/// removed.
pub async fn remove(data_dir: &Path, target: &str) -> Result<Vec<String>, ControlError> {
    let request = ControlRequest::Remove {
        target: target.to_owned(),
    };
    match call(data_dir, &request).await? {
        ControlResponse::Done(ids) => Ok(ids),
        other => Err(refusal(other)),
    }
}

/// Cancel `target` fleet-wide (`node cancel`, at its origin); the ids cancelled.
pub async fn cancel(data_dir: &Path, target: &str) -> Result<Vec<String>, ControlError> {
    let request = ControlRequest::Cancel {
        target: target.to_owned(),
    };
    match call(data_dir, &request).await? {
        ControlResponse::Done(ids) => Ok(ids),
        other => Err(refusal(other)),
    }
}

/// Fetch `target` (a name, an id or a unique id prefix) from the swarm (`node fetch`); the id
/// asked for, once the fetch is started.
pub async fn fetch(data_dir: &Path, target: &str) -> Result<Vec<String>, ControlError> {
    let request = ControlRequest::Fetch {
        target: target.to_owned(),
    };
    match call(data_dir, &request).await? {
        ControlResponse::Done(ids) => Ok(ids),
        other => Err(refusal(other)),
    }
}

/// An answer that is not the one asked for: the daemon's error, or a mismatch.
fn refusal(answer: ControlResponse) -> ControlError {
    match answer {
        ControlResponse::Error(e) => ControlError::Daemon(e),
        ControlResponse::Refused(e) => ControlError::Refused(e),
        _ => ControlError::Unexpected("a different kind of answer"),
    }
}

/// Who may use the control socket besides root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlAccess {
    /// The daemon's own effective uid.
    pub uid: u32,
    /// Members of this group (primary or supplementary) too (`--control-group`).
    pub group: Option<u32>,
}

impl ControlAccess {
    /// The daemon's own user, and members of `group` if given.
    pub fn own(group: Option<u32>) -> Self {
        Self {
            uid: nix::unistd::geteuid().as_raw(),
            group,
        }
    }

    /// Whether `caller` may use the socket.
    pub fn allows(&self, caller: &Credentials) -> bool {
        caller.uid == 0
            || caller.uid == self.uid
            || self
                .group
                .is_some_and(|g| caller.gid == g || caller.groups.contains(&g))
    }

    fn refusal(&self, caller: &Credentials) -> String {
        // A daemon run by root names root once, not as "uid 0 and root".
        let who = match (self.uid, self.group) {
            (0, None) => "root".to_owned(),
            (0, Some(g)) => format!("root and members of group {g}"),
            (u, None) => format!("uid {u} and root"),
            (u, Some(g)) => format!("uid {u}, root and members of group {g}"),
        };
        format!(
            "permission denied: uid {} may not use this daemon (only {who} may)",
            caller.uid
        )
    }
}

/// The gid of a group named on the command line (`--control-group`).
pub fn group_by_name(name: &str) -> Result<u32, ControlError> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(ControlError::NoSuchGroup(name.to_owned())),
        Err(e) => Err(ControlError::Io(e.into())),
    }
}

/// Make the daemon's files private whatever the umask it was started with: see
/// [`swarmcast_net::private_dir::prepare`] (shared with the bootstrap). With a control group
/// the data dir is 0710 and group-owned, so that its members can reach the socket.
pub fn prepare_data_dir(data_dir: &Path, group: Option<u32>) -> Result<(), ControlError> {
    Ok(swarmcast_net::private_dir::prepare(data_dir, group)?)
}

/// Bind the control socket, refusing if a live daemon already answers on it; the socket is
/// made 0600 (0660 and group-owned with a control group).
pub async fn bind(data_dir: &Path, group: Option<u32>) -> Result<UnixListener, ControlError> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    if path.exists() {
        match UnixStream::connect(&path).await {
            Ok(_) => return Err(ControlError::AlreadyRunning(data_dir.to_owned())),
            // A stale socket of a daemon that died.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(&path)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let listener = UnixListener::bind(&path)?;
    let mode = match group {
        Some(g) => {
            nix::unistd::chown(&path, None, Some(nix::unistd::Gid::from_raw(g)))
                .map_err(std::io::Error::from)?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Something that answers control requests.
pub trait Handler: Send + Sync + 'static {
    /// Answer one request from `caller` (already allowed by [`ControlAccess`]).
    fn handle(
        &self,
        caller: Credentials,
        request: ControlRequest,
    ) -> impl std::future::Future<Output = ControlResponse> + Send;
}

/// The caller's credentials from the kernel: uid and gid from `SO_PEERCRED`, supplementary
/// groups from `/proc/<pid>/status` when that process still has the same uid and gid (else
/// none: group access then rests on the primary gid alone).
fn peer_credentials(stream: &UnixStream) -> std::io::Result<Credentials> {
    let cred = stream.peer_cred()?;
    let (uid, gid) = (cred.uid(), cred.gid());
    let groups = cred
        .pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|status| groups_of(&status, uid, gid))
        .unwrap_or_default();
    Ok(Credentials { uid, gid, groups })
}

/// The `Groups:` of a `/proc/<pid>/status` whose effective uid and gid are `uid` and `gid`.
fn groups_of(status: &str, uid: u32, gid: u32) -> Option<Vec<u32>> {
    let field = |key: &str, index: usize| -> Option<u32> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        line.split_whitespace().nth(index)?.parse().ok()
    };
    if field("Uid:", 1)? != uid || field("Gid:", 1)? != gid {
        return None;
    }
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:"))?;
    line.split_whitespace().map(|g| g.parse().ok()).collect()
}

/// Serve the control socket forever, answering only callers `access` allows.
pub async fn serve<H: Handler>(listener: UnixListener, handler: Arc<H>, access: ControlAccess) {
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
            let caller = match peer_credentials(&stream) {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "control caller without credentials");
                    return;
                }
            };
            let answer = if !access.allows(&caller) {
                warn!(
                    uid = caller.uid,
                    gid = caller.gid,
                    "control socket: caller refused"
                );
                ControlResponse::Refused(access.refusal(&caller))
            } else {
                match read_request(&mut stream).await {
                    Ok(req) => {
                        let keepalive = matches!(
                            req,
                            ControlRequest::Send {
                                keepalive: true,
                                ..
                            }
                        );
                        let answer = handler.handle(caller, req);
                        if keepalive {
                            match with_keepalive(&mut stream, answer).await {
                                Some(answer) => answer,
                                // The caller went away.
                                None => return,
                            }
                        } else {
                            answer.await
                        }
                    }
                    Err(e) => {
                        debug!(error = %bounded(e.to_string()), "bad control request");
                        ControlResponse::Error(bounded(e.to_string()))
                    }
                }
            };
            if let Err(e) = write_value(&mut stream, &answer).await {
                debug!(error = %e, "control answer not delivered");
            }
        });
    }
}

/// Await `answer`, writing [`ControlResponse::Working`] to `stream` every [`KEEPALIVE`]
/// meanwhile; `None` if the caller went away (the work goes on: a `node send` interrupted by
/// its caller still publishes).
async fn with_keepalive(
    stream: &mut UnixStream,
    answer: impl std::future::Future<Output = ControlResponse>,
) -> Option<ControlResponse> {
    tokio::pin!(answer);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    let mut caller_gone = false;
    loop {
        tokio::select! {
            answer = &mut answer => return (!caller_gone).then_some(answer),
            _ = tick.tick(), if !caller_gone => {
                if let Err(e) = write_value(stream, &ControlResponse::Working).await {
                    debug!(error = %e, "control caller went away while waiting");
                    caller_gone = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    struct Fixed;
    impl Handler for Fixed {
        async fn handle(&self, _: Credentials, _: ControlRequest) -> ControlResponse {
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
                last_heartbeat: None,
                restricted: vec![],
                prioritized: vec![],
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
        let listener = bind(dir.path(), None).await.expect("bind");
        assert!(matches!(
            bind(dir.path(), None).await,
            Err(ControlError::AlreadyRunning(_))
        ));
        let server = tokio::spawn(serve(listener, Arc::new(Fixed), ControlAccess::own(None)));
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

    #[tokio::test]
    async fn a_huge_bad_request_still_gets_an_error_answer() {
        // serde names an unknown variant verbatim in its error: echoed whole, a request of
        // nearly the largest frame made an answer too large to send, and the client heard
        // nothing.
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = bind(dir.path(), None).await.expect("bind");
        let server = tokio::spawn(serve(listener, Arc::new(Fixed), ControlAccess::own(None)));
        let name = "x".repeat(Limits::default().max_frame as usize - 5);
        let mut frame = Vec::new();
        encode_value(&name, &Limits::default(), &mut frame).expect("encode");
        let mut s = UnixStream::connect(socket_path(dir.path()))
            .await
            .expect("connect");
        s.write_all(&frame).await.expect("write");
        let answer = read_response(&mut s).await.expect("an answer");
        match answer {
            ControlResponse::Error(e) => {
                assert!(e.contains("unknown variant"), "{e}");
                assert!(e.len() <= 2 * MAX_ERROR_TEXT, "{} bytes", e.len());
            }
            other => panic!("unexpected {other:?}"),
        }
        server.abort();
    }

    #[test]
    fn access_own_user_root_and_group() {
        let access = ControlAccess {
            uid: 1000,
            group: Some(50),
        };
        let c = |uid, gid, groups: &[u32]| Credentials {
            uid,
            gid,
            groups: groups.to_vec(),
        };
        assert!(access.allows(&c(1000, 1000, &[])));
        assert!(access.allows(&c(0, 0, &[])));
        assert!(access.allows(&c(1001, 50, &[])));
        assert!(access.allows(&c(1001, 1001, &[7, 50])));
        assert!(!access.allows(&c(1001, 1001, &[7])));
        let alone = ControlAccess {
            uid: 1000,
            group: None,
        };
        assert!(!alone.allows(&c(1001, 50, &[50])));
        assert!(alone.refusal(&c(1001, 1, &[])).contains("uid 1001 may not"));
        // Each allowed party is named once: root is not also "uid 0".
        let who = |uid, group| {
            let refusal = ControlAccess { uid, group }.refusal(&c(1001, 1, &[]));
            refusal
                .split_once("(only ")
                .map(|(_, rest)| rest.to_owned())
                .unwrap_or(refusal)
        };
        assert_eq!(who(0, None), "root may)");
        assert_eq!(who(0, Some(50)), "root and members of group 50 may)");
        assert_eq!(who(1000, None), "uid 1000 and root may)");
        assert_eq!(
            who(1000, Some(50)),
            "uid 1000, root and members of group 50 may)"
        );
    }

    #[test]
    fn supplementary_groups_only_from_the_same_credentials() {
        let status = "Name:\tsh\nUid:\t1000\t1001\t1001\t1001\nGid:\t100\t101\t101\t101\nGroups:\t4 27 101 \n";
        assert_eq!(groups_of(status, 1001, 101), Some(vec![4, 27, 101]));
        // Another process now has that pid.
        assert_eq!(groups_of(status, 1000, 101), None);
        assert_eq!(groups_of(status, 1001, 100), None);
        assert_eq!(
            groups_of("Uid:\t1\t1\nGid:\t1\t1\nGroups:\n", 1, 1),
            Some(vec![])
        );
        assert_eq!(
            groups_of("Uid:\t1\t1\nGid:\t1\t1\nGroups:\tx\n", 1, 1),
            None
        );
    }

    #[tokio::test]
    async fn private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777;
        let tmp = tempfile::tempdir().expect("tempdir");
        nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let fresh = tmp.path().join("a/data");
        prepare_data_dir(&fresh, None).expect("prepare");
        assert_eq!(mode(&fresh), 0o700);
        let _listener = bind(&fresh, None).await.expect("bind");
        assert_eq!(mode(&socket_path(&fresh)), 0o600);
        // The umask is now the daemon's: files it makes are private too.
        std::fs::create_dir(fresh.join("sub")).expect("mkdir");
        assert_eq!(mode(&fresh.join("sub")), 0o700);
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        prepare_data_dir(&open, None).expect("prepare");
        assert_eq!(mode(&open), 0o700);
        // A symlink or a file is refused.
        std::os::unix::fs::symlink(&open, tmp.path().join("link")).expect("symlink");
        assert!(matches!(
            prepare_data_dir(&tmp.path().join("link"), None),
            Err(ControlError::DataDir(_))
        ));
    }
}
