//! The QUIC transport settings of every swarmcast endpoint.

use std::sync::Arc;
use std::time::Duration;

/// The congestion controller of a node's connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Congestion {
    /// quinn's default, and the product's.
    #[default]
    Cubic,
    /// NewReno.
    NewReno,
    /// quinn's BBR (marked experimental by quinn).
    Bbr,
}

/// Transport settings shared by every swarmcast endpoint, with the default congestion
/// controller ([`transport_config_with`] for another).
pub fn transport_config() -> Arc<quinn::TransportConfig> {
    transport_config_with(Congestion::default())
}

/// Transport settings shared by every swarmcast endpoint.
///
/// Idle timeout 10 s with keep-alives after 4 s without a packet sent: a silent peer is noticed
/// by the application's own pings and heartbeats (or the registry) before QUIC gives up on it.
/// (Idle neighbours ping every 5 s each way, so keep-alives seldom fire; at 2 s they were most
/// of an idle link's packets.)
pub fn transport_config_with(congestion: Congestion) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    match congestion {
        Congestion::Cubic => {}
        Congestion::NewReno => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::NewRenoConfig::default()));
        }
        Congestion::Bbr => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
        }
    }
    t.max_concurrent_bidi_streams(256u32.into());
    // Bounded buffers: quinn's defaults let a connection buffer without limit on receive and
    // 10 MB on send, which times a few neighbours is more memory than a node should use. 4 MiB
    // covers the bandwidth-delay product of 1 GB/s at 4 ms, or 100 Mbit/s at 300 ms.
    t.stream_receive_window((2u32 << 20).into());
    t.receive_window((4u32 << 20).into());
    t.send_window(4 << 20);
    t.max_concurrent_uni_streams(0u32.into());
    // Streams in the order written, not round-robin: a node serving 16 pieces at once finishes
    // the first in 1/16 of the time instead of finishing all 16 together at the end, so each
    // piece can be passed on as soon as possible. In the netns lab (4 receivers, 50 Mbit/s,
    // 64 MiB) round-robin gave T/T* 2.69 and origin upload 1.55 x F, in-order 1.94 and 1.18.
    t.send_fairness(false);
    t.keep_alive_interval(Some(Duration::from_secs(4)));
    // 10 s fits comfortably in a VarInt, so this conversion cannot fail.
    if let Ok(idle) = quinn::IdleTimeout::try_from(Duration::from_secs(10)) {
        t.max_idle_timeout(Some(idle));
    }
    Arc::new(t)
}

/// Bytes asked of the kernel for each endpoint's UDP receive and send buffers.
///
/// Linux's default (`net.core.rmem_default`, 208 KiB) holds about a hundred full datagrams: a
/// receiver whose endpoint task is not polled for a fraction of a millisecond at 1 GB/s drops
/// the rest, and every drop is a congestion signal that cuts the sender's window. On loopback
/// (`bench pair`, 1 GiB, two runs) the default dropped some 2,200 datagrams and the transfer took
/// 2.54-2.80 s; with 4 MiB none were dropped and it took 2.19-2.24 s. The kernel grants at
/// most `net.core.rmem_max` / `wmem_max`; less than asked is logged once per endpoint.
pub const UDP_BUFFER_BYTES: usize = 4 << 20;

/// A quinn endpoint on a UDP socket bound to `addr`, with [`UDP_BUFFER_BYTES`] receive and send
/// buffers asked for (a smaller grant is logged, not fatal: the kernel's caps are the
/// operator's). `server` makes it accept connections too.
pub fn endpoint(
    addr: std::net::SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(addr)?;
    size_buffers(&socket, UDP_BUFFER_BYTES);
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        std::sync::Arc::new(quinn::TokioRuntime),
    )
}

/// Asks for `want` bytes of receive and send buffer on `socket`; logs what falls short.
fn size_buffers(socket: &std::net::UdpSocket, want: usize) {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    let set = setsockopt(socket, sockopt::RcvBuf, &want)
        .and_then(|()| setsockopt(socket, sockopt::SndBuf, &want));
    // Linux reports twice what it grants (the doubling covers its bookkeeping).
    let granted = getsockopt(socket, sockopt::RcvBuf).map(|b| b / 2);
    match (set, granted) {
        (Ok(()), Ok(got)) if got >= want => {}
        (set, got) => tracing::warn!(
            want,
            granted = got.ok(),
            error = set.err().map(|e| e.to_string()),
            "UDP receive buffer smaller than asked: raise net.core.rmem_max and wmem_max, \
             or fast transfers drop datagrams"
        ),
    }
}
