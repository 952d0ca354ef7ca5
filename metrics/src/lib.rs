//! Prometheus metrics for swarmcast daemons: `--metrics ADDR` serves `GET /metrics` in the
//! text exposition format (OpenMetrics text, which Prometheus scrapes), encoded by
//! `prometheus-client` from a [`Registry`] the daemon fills with its own metric handles.
//!
//! * [`bind`] binds the address (so that a port in use fails the daemon's start, naming it);
//! * [`serve`] answers each connection with one HTTP/1.0 response: a tiny responder, since
//!   the only request is `GET /metrics` (anything else is 404, a malformed or oversized
//!   request head 400, a client that sends nothing for 5 s is dropped);
//! * [`register_process`] adds `process_cpu_seconds_total` and `process_resident_memory_bytes`
//!   read from `/proc/self` at each scrape;
//! * [`register_cert_expiry`] adds `swarmcast_cert_expiry_timestamp_seconds`, the daemon's
//!   certificate's notAfter (alert when it is less than 30 days away).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
pub use prometheus_client::registry::Registry;
use prometheus_client::registry::Unit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

/// Most bytes of a request head read before answering 400.
const MAX_HEAD: usize = 8192;
/// A client that has not sent its request head in this time is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Content type of the Prometheus text format 0.0.4 (for clients that do not ask for
/// OpenMetrics: curl, `promtool check metrics`).
const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Bind the metrics address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Serve `GET /metrics` from `registry` forever.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &registry).await {
                debug!(%peer, error = %e, "metrics request failed");
            }
        });
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    Bad,
}

/// Parse a request head (`GET /metrics HTTP/1.1` plus headers, ignored).
fn route(head: &[u8]) -> Route {
    let Some(line) = head.split(|b| *b == b'\n').next() else {
        return Route::Bad;
    };
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Route::Bad;
    }
    let path = target.split('?').next().unwrap_or(target);
    if method == "GET" && path == "/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

async fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(READ_TIMEOUT, async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if head.len() > MAX_HEAD {
                return Ok(false);
            }
        }
    })
    .await
    .unwrap_or(Ok(false))?;
    let (status, content_type, body) = match if complete { route(&head) } else { Route::Bad } {
        Route::Metrics => {
            let mut body = String::new();
            let open = String::from_utf8_lossy(&head)
                .to_ascii_lowercase()
                .contains("application/openmetrics-text");
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) if open => ("200 OK", CONTENT_TYPE, body),
                Ok(()) => ("200 OK", TEXT_0_0_4, to_text_0_0_4(&body)),
                Err(_) => (
                    "500 Internal Server Error",
                    "text/plain",
                    "encoding failed\n".to_owned(),
                ),
            }
        }
        Route::NotFound => (
            "404 Not Found",
            "text/plain",
            "only GET /metrics is served\n".to_owned(),
        ),
        Route::Bad => ("400 Bad Request", "text/plain", "bad request\n".to_owned()),
    };
    let header = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// OpenMetrics text as Prometheus text 0.0.4: a counter family `x` is named by its samples,
/// `x_total`; `# UNIT` and `# EOF` lines do not exist there.
fn to_text_0_0_4(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}\n"));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Add `swarmcast_cert_expiry_timestamp_seconds`: when this process's certificate expires,
/// in seconds since the Unix epoch (set it at start and after each reload). Register on the
/// root registry.
pub fn register_cert_expiry(registry: &mut Registry) -> prometheus_client::metrics::gauge::Gauge {
    let gauge = prometheus_client::metrics::gauge::Gauge::default();
    registry.register_with_unit(
        "swarmcast_cert_expiry_timestamp",
        "When this process's TLS certificate expires (its notAfter), in Unix time",
        Unit::Seconds,
        gauge.clone(),
    );
    gauge
}

/// Add this process's CPU time and resident memory, read at each scrape (register on the root
/// registry, not a prefixed one: these are the standard names dashboards expect).
pub fn register_process(registry: &mut Registry) {
    registry.register_collector(Box::new(Process));
}

/// `process_cpu_seconds_total` and `process_resident_memory_bytes` from `/proc/self`.
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        if let Some(secs) = cpu_seconds(&stat, clock_ticks()) {
            let c = ConstCounter::new(secs);
            let e = encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent by this process",
                Some(&Unit::Seconds),
                c.metric_type(),
            )?;
            c.encode(e)?;
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(bytes) = rss_bytes(&status) {
            let g = ConstGauge::new(bytes);
            let e = encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory of this process",
                Some(&Unit::Bytes),
                g.metric_type(),
            )?;
            g.encode(e)?;
        }
        Ok(())
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, 100 on every Linux ABI.
fn clock_ticks() -> f64 {
    100.0
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds.
fn cpu_seconds(stat: &str, ticks: f64) -> Option<f64> {
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')': state is field 3 of the line; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)] // ticks stay far below 2^52
    Some((utime + stime) as f64 / ticks)
}

/// `VmRSS` of a `/proc/<pid>/status`, in bytes.
fn rss_bytes(status: &str) -> Option<i64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn routes() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::Bad);
        assert_eq!(route(b"\xff\xfe garbage"), Route::Bad);
    }

    #[test]
    fn proc_parsing() {
        let stat = "1234 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(cpu_seconds(stat, 100.0), Some(3.0));
        assert_eq!(cpu_seconds("garbage", 100.0), None);
        assert_eq!(
            rss_bytes("Name:\tx\nVmRSS:\t   2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(rss_bytes("Name:\tx\n"), None);
        // Live values parse.
        let live = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(cpu_seconds(&live, clock_ticks()).is_some());
        let live = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(rss_bytes(&live).unwrap() > 0);
    }

    #[tokio::test]
    async fn serves_metrics_and_refuses_the_rest() {
        let mut registry = Registry::default();
        let c = Counter::<u64>::default();
        registry
            .sub_registry_with_prefix("swarmcast")
            .register("test_events", "Events", c.clone());
        register_process(&mut registry);
        c.inc_by(7);
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Arc::new(registry)));
        let get = |req: &'static [u8]| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(req).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = get(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
        assert!(ok.contains("swarmcast_test_events_total 7"), "{ok}");
        assert!(ok.contains("process_cpu_seconds_total "), "{ok}");
        assert!(ok.contains("process_resident_memory_bytes "), "{ok}");
        assert!(
            ok.contains("# TYPE swarmcast_test_events_total counter"),
            "{ok}"
        );
        assert!(!ok.contains("# EOF"), "{ok}");
        let open =
            get(b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n").await;
        assert!(
            open.contains("# TYPE swarmcast_test_events counter"),
            "{open}"
        );
        assert!(open.trim_end().ends_with("# EOF"), "{open}");
        assert!(
            get(b"GET / HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.0 404")
        );
        assert!(get(b"nonsense\r\n\r\n").await.starts_with("HTTP/1.0 400"));
        // A port in use is an error naming it.
        let taken = bind(addr).await.unwrap_err();
        assert!(taken.to_string().contains(&addr.to_string()), "{taken}");
        server.abort();
    }
}
