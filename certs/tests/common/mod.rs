//! A real quinn client and server on 127.0.0.1 exchanging one request, and raw rustls
//! configurations for the credentials `swarmcast-certs` would never produce.
#![allow(dead_code, clippy::unwrap_used)] // each test crate uses a part

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use swarmcast_certs::{IssuedCert, PeerInfo, peer_info};

/// Generous: the machine may be loaded.
pub const TIMEOUT: Duration = Duration::from_secs(10);
pub const REQUEST: &[u8] = b"ping";
pub const REPLY: &[u8] = b"pong";

pub fn transport() -> Arc<quinn::TransportConfig> {
    Arc::new(quinn::TransportConfig::default())
}

/// What the client saw.
#[derive(Debug)]
pub struct ClientSide {
    pub peer: Result<PeerInfo, String>,
    pub reply: Vec<u8>,
}

/// What the server saw.
#[derive(Debug)]
pub struct ServerSide {
    pub peer: Result<PeerInfo, String>,
    pub request: Vec<u8>,
}

/// Both sides of one connection attempt.
#[derive(Debug)]
pub struct Outcome {
    pub client: Result<ClientSide, String>,
    pub server: Result<ServerSide, String>,
    /// Application bytes the server read from any stream, counted as they arrived.
    pub server_bytes: usize,
}

impl Outcome {
    /// Asserts that the exchange completed on both sides; returns the peer each side saw.
    #[track_caller]
    pub fn assert_connected(self) -> Connected {
        let client = self.client.expect("client side failed");
        let server = self.server.expect("server side failed");
        assert_eq!(client.reply, REPLY);
        assert_eq!(server.request, REQUEST);
        assert_eq!(self.server_bytes, REQUEST.len());
        Connected {
            client_saw: client.peer,
            server_saw: server.peer,
        }
    }

    /// Asserts that the handshake failed on both sides before the server read a byte, and
    /// that the side named by `rejecter` failed with an error containing `reason`.
    #[track_caller]
    pub fn assert_rejected(&self, rejecter: Side, reason: &str) {
        let client = self.client.as_ref().err().unwrap_or_else(|| {
            panic!("client side succeeded: {:?}", self.client);
        });
        let server = self.server.as_ref().err().unwrap_or_else(|| {
            panic!("server side succeeded: {:?}", self.server);
        });
        assert_eq!(self.server_bytes, 0, "server read application bytes");
        // The server never got past the handshake, so it never accepted a stream.
        assert!(server.starts_with("handshake:"), "server: {server}");
        for err in [client, server] {
            assert!(!err.contains("timed out"), "{err}");
        }
        let err = match rejecter {
            Side::Client => client,
            Side::Server => server,
        };
        assert!(err.contains(reason), "expected {reason:?} in {err:?}");
    }
}

/// What each side of a completed exchange learnt from [`peer_info`].
#[derive(Debug)]
pub struct Connected {
    pub client_saw: Result<PeerInfo, String>,
    pub server_saw: Result<PeerInfo, String>,
}

/// Which side of a connection.
#[derive(Clone, Copy, Debug)]
pub enum Side {
    Client,
    Server,
}

/// Runs one connection from `client` to `server`: the client sends [`REQUEST`] on a
/// bidirectional stream, the server answers [`REPLY`].
pub async fn exchange(
    server: quinn::ServerConfig,
    client: quinn::ClientConfig,
    server_name: &str,
) -> Outcome {
    let server_endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap())
        .expect("binding the server");
    let addr = server_endpoint.local_addr().expect("server address");
    let server_bytes = Arc::new(AtomicUsize::new(0));
    let server_task = tokio::spawn(with_timeout(serve(
        server_endpoint.clone(),
        server_bytes.clone(),
    )));

    let client_endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("binding the client");
    let client = with_timeout(dial(&client_endpoint, client, addr, server_name)).await;
    let server = server_task.await.expect("server task panicked");
    let _ = tokio::time::timeout(TIMEOUT, client_endpoint.wait_idle()).await;
    server_endpoint.close(0u32.into(), b"");
    Outcome {
        client,
        server,
        server_bytes: server_bytes.load(Ordering::SeqCst),
    }
}

async fn with_timeout<T>(future: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

async fn serve(endpoint: quinn::Endpoint, bytes: Arc<AtomicUsize>) -> Result<ServerSide, String> {
    let incoming = endpoint.accept().await.ok_or("endpoint closed")?;
    let conn = incoming.await.map_err(|e| format!("handshake: {e}"))?;
    let peer = peer_info(&conn).map_err(|e| e.to_string());
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| format!("accept_bi: {e}"))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while let Some(n) = recv
        .read(&mut buf)
        .await
        .map_err(|e| format!("read: {e}"))?
    {
        bytes.fetch_add(n, Ordering::SeqCst);
        request.extend_from_slice(&buf[..n]);
    }
    send.write_all(REPLY)
        .await
        .map_err(|e| format!("write: {e}"))?;
    send.finish().map_err(|e| format!("finish: {e}"))?;
    // Keep the connection until the client has read the reply and closed.
    conn.closed().await;
    Ok(ServerSide { peer, request })
}

async fn dial(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    server_name: &str,
) -> Result<ClientSide, String> {
    let conn = endpoint
        .connect_with(config, addr, server_name)
        .map_err(|e| format!("connect: {e}"))?
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let peer = peer_info(&conn).map_err(|e| e.to_string());
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| format!("open_bi: {e}"))?;
    send.write_all(REQUEST)
        .await
        .map_err(|e| format!("write: {e}"))?;
    send.finish().map_err(|e| format!("finish: {e}"))?;
    let reply = recv
        .read_to_end(1024)
        .await
        .map_err(|e| format!("read: {e}"))?;
    conn.close(0u32.into(), b"done");
    Ok(ClientSide { peer, reply })
}

/// A certificate chain and its key.
pub struct Credentials {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Credentials {
    pub fn from_pem(cert: &str, key: &str) -> Self {
        Self {
            chain: vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            key: PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        }
    }

    pub fn of(issued: &IssuedCert) -> Self {
        Self::from_pem(&issued.cert_pem, &issued.key_pem)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    Arc::new(roots)
}

/// A plain rustls client: verifies the server against `ca_pem` *including its name*
/// (dial it by the name in its certificate), and presents `credentials` if any.
pub fn raw_client(ca_pem: &str, credentials: Option<Credentials>) -> quinn::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(ca_pem));
    let mut tls = match credentials {
        Some(c) => builder.with_client_auth_cert(c.chain, c.key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![swarmcast_proto::ALPN.to_vec()];
    quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()))
}

/// Whether a raw server asks for client certificates optionally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    Optional,
}

/// A plain rustls server presenting `credentials` and verifying client certificates against
/// `client_ca_pem`.
pub fn raw_server(
    client_ca_pem: &str,
    auth: ClientAuth,
    credentials: Credentials,
) -> quinn::ServerConfig {
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(roots(client_ca_pem), provider());
    if auth == ClientAuth::Optional {
        verifier = verifier.allow_unauthenticated();
    }
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier.build().unwrap())
        .with_single_cert(credentials.chain, credentials.key)
        .unwrap();
    tls.alpn_protocols = vec![swarmcast_proto::ALPN.to_vec()];
    quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls).unwrap()))
}
