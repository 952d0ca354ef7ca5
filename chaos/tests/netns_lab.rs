//! The network lab itself, on real namespaces: addressing, isolation from the machine's own
//! namespace, rate (HTB both ways, and `tbf` on the uplink only), delay, loss, partitions (both
//! ways and one way) and cleanup.
//!
//! Needs root, `ip`, `tc` and `iptables`. Runs when `SWARMCAST_NETNS=1` (as CI does) and then
//! fails, never skips, if the lab cannot be built; without the variable it is skipped with a note.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::netns_wanted;
use swarmcast_chaos::netns::{Lab, LinkSpec, Shaper};

/// Send `n` datagrams of `size` bytes from `from` to `to`:9000, each answered by an echo; the
/// round trip times of the answered ones.
fn echo_rtts(lab: &Lab, from: &str, to: &str, n: usize, size: usize) -> Result<Vec<Duration>> {
    let dst = SocketAddr::from((lab.ip(to)?, 9000));
    let server = lab.in_host(to, move || -> Result<()> {
        let s = UdpSocket::bind(dst)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = vec![0u8; 65_536];
        while let Ok((len, peer)) = s.recv_from(&mut buf) {
            if &buf[..len] == b"stop" {
                break;
            }
            s.send_to(&buf[..len], peer)?;
        }
        Ok(())
    })?;
    std::thread::sleep(Duration::from_millis(200));
    let client = lab.in_host(from, move || -> Result<Vec<Duration>> {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_millis(300)))?;
        let mut rtts = Vec::new();
        let mut buf = vec![0u8; 65_536];
        for i in 0..n {
            let mut msg = vec![0u8; size.max(8)];
            msg[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let t = Instant::now();
            s.send_to(&msg, dst)?;
            // Wait for this datagram's echo (late ones of earlier rounds are skipped).
            while let Ok((len, _)) = s.recv_from(&mut buf) {
                if len >= 8 && buf[..8] == msg[..8] {
                    rtts.push(t.elapsed());
                    break;
                }
            }
        }
        let _ = s.send_to(b"stop", dst);
        Ok(rtts)
    })?;
    let rtts = client
        .join()
        .map_err(|_| anyhow::anyhow!("client panicked"))???;
    // The server stops on "stop" or after 2 s of silence (if "stop" was dropped).
    let _ = server.join();
    Ok(rtts)
}

/// Offer `offered` bit/s of UDP from `from` to `to` for `secs`; the rate that arrived (bit/s,
/// over the span between the first and the last datagram) and the bytes that arrived.
fn push(lab: &Lab, from: &str, to: &str, offered: f64, secs: f64) -> Result<(f64, usize)> {
    let dst = SocketAddr::from((lab.ip(to)?, 9001));
    let sink = lab.in_host(to, move || -> Result<(usize, Duration)> {
        let s = UdpSocket::bind(dst)?;
        s.set_read_timeout(Some(Duration::from_millis(1000)))?;
        let mut buf = vec![0u8; 2048];
        let mut got = 0;
        let mut first = None;
        let mut last = Instant::now();
        while let Ok((len, _)) = s.recv_from(&mut buf) {
            first.get_or_insert_with(Instant::now);
            got += len;
            last = Instant::now();
        }
        Ok((got, first.map_or(Duration::ZERO, |f| last - f)))
    })?;
    std::thread::sleep(Duration::from_millis(200));
    let sender = lab.in_host(from, move || -> Result<()> {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        let chunk = vec![7u8; 1200];
        let t0 = Instant::now();
        let mut sent = 0f64;
        while t0.elapsed().as_secs_f64() < secs {
            // Paced at `offered`; a full queue drops datagrams like a switch would.
            if sent * 8.0 < offered * t0.elapsed().as_secs_f64() {
                let _ = s.send_to(&chunk, dst);
                sent += chunk.len() as f64;
            } else {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        Ok(())
    })?;
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))???;
    let (got, span) = sink
        .join()
        .map_err(|_| anyhow::anyhow!("sink panicked"))???;
    if got == 0 {
        bail!("nothing arrived");
    }
    Ok((got as f64 * 8.0 / span.as_secs_f64().max(1e-3), got))
}

/// The tests measure rates: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn root_links() -> Result<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(':').nth(1).unwrap_or_default().trim().to_owned())
        .collect::<Vec<_>>()
        .join(","))
}

#[test]
fn the_lab_shapes_partitions_and_cleans_up() -> Result<()> {
    if !netns_wanted() {
        return Ok(());
    }
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = root_links()?;
    let mut lab = Lab::new(1).context("building the lab")?;
    for h in ["a", "b", "c"] {
        lab.add_host(h)?;
    }
    let names = lab.namespaces();
    assert_eq!(names.len(), 4);
    // Nothing appears in the machine's own namespace.
    assert_eq!(root_links()?, before);
    // No default route in a host.
    let routes = std::process::Command::new("ip")
        .args(["-n", &names[1], "route"])
        .output()?;
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(!routes.contains("default"), "{routes}");

    // Plain link: every echo answered quickly.
    let rtts = echo_rtts(&lab, "a", "b", 20, 100)?;
    assert_eq!(rtts.len(), 20);

    // Delay 10 ms each way on both links: RTT a<->b at least 40 ms.
    let slow = LinkSpec {
        delay_ms: 10.0,
        ..LinkSpec::default()
    };
    lab.set_link("a", slow)?;
    lab.set_link("b", slow)?;
    let rtts = echo_rtts(&lab, "a", "b", 10, 100)?;
    assert_eq!(rtts.len(), 10);
    assert!(
        rtts.iter().all(|r| *r >= Duration::from_millis(39)),
        "{rtts:?}"
    );

    // Loss 20 % each way on a's link: about a third of the echoes (1 - 0.8²) go missing.
    lab.set_link(
        "a",
        LinkSpec {
            loss_pct: 20.0,
            ..LinkSpec::default()
        },
    )?;
    lab.set_link("b", LinkSpec::default())?;
    let answered = echo_rtts(&lab, "a", "b", 200, 100)?.len();
    assert!((100..=170).contains(&answered), "{answered}/200 answered");
    lab.set_link("a", LinkSpec::default())?;

    // Rate: 20 Mbit/s on c's link; 4 MB from a to c arrive at about that rate.
    lab.set_link(
        "c",
        LinkSpec {
            rate_mbit: Some(20.0),
            ..LinkSpec::default()
        },
    )?;
    // 40 Mbit/s offered for 1.5 s: about 20 Mbit/s arrive.
    let (bps, _) = push(&lab, "a", "c", 40e6, 1.5)?;
    assert!(
        (12e6..=24e6).contains(&bps),
        "{bps} bit/s through a 20 Mbit/s link"
    );

    // Partition both ways, then one way only, then heal.
    let (a, b) = (vec!["a".to_owned()], vec!["b".to_owned()]);
    lab.partition(&a, &b, false)?;
    assert!(echo_rtts(&lab, "a", "b", 3, 100)?.is_empty());
    assert!(echo_rtts(&lab, "b", "a", 3, 100)?.is_empty());
    assert_eq!(echo_rtts(&lab, "a", "c", 3, 100)?.len(), 3);
    lab.heal()?;
    assert_eq!(echo_rtts(&lab, "a", "b", 3, 100)?.len(), 3);
    // One way: a's packets to b are dropped; b still reaches a (the echo back is cut, so probe
    // that direction with a sink on a).
    lab.partition(&a, &b, true)?;
    assert!(echo_rtts(&lab, "a", "b", 3, 100)?.is_empty());
    assert!(push(&lab, "b", "a", 1e6, 0.3).is_ok());
    assert!(push(&lab, "a", "b", 1e6, 0.3).is_err());
    lab.heal()?;

    // Counters saw the traffic.
    let c = lab.counters()?;
    assert!(c["c"].down >= 2 << 20, "{c:?}");
    assert!(c["a"].up >= 2 << 20, "{c:?}");

    drop(lab);
    let left: Vec<String> = std::fs::read_dir("/run/netns")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| names.contains(n))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(root_links()?, before);
    Ok(())
}

#[test]
fn the_tbf_uplink_shaper_limits_the_upload_and_not_the_download() -> Result<()> {
    if !netns_wanted() {
        return Ok(());
    }
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = root_links()?;
    let mut lab = Lab::new(2).context("building the lab")?;
    lab.set_shaper(Shaper::TbfUplink)?;
    for h in ["a", "c"] {
        lab.add_host(h)?;
    }
    let names = lab.namespaces();
    let twenty = LinkSpec {
        rate_mbit: Some(20.0),
        ..LinkSpec::default()
    };
    lab.set_link("c", twenty)?;
    // A tbf on c's uplink, nothing on its downlink (the veth's default noqueue).
    let (up, down) = lab.root_qdiscs("c")?;
    assert_eq!(up, ["tbf"], "uplink qdiscs");
    assert!(
        !down.iter().any(|q| q == "tbf" || q == "htb"),
        "downlink shaped: {down:?}"
    );
    // 40 Mbit/s offered each way for 1.5 s: about 20 arrive from c, about 40 reach c.
    let (from_c, _) = push(&lab, "c", "a", 40e6, 1.5)?;
    assert!(
        (12e6..=24e6).contains(&from_c),
        "{from_c} bit/s up through a 20 Mbit/s tbf uplink"
    );
    let (to_c, _) = push(&lab, "a", "c", 40e6, 1.5)?;
    assert!(
        to_c >= 30e6,
        "{to_c} bit/s down to c: its download must be unshaped"
    );

    // Back to HTB both ways: c's download is limited now, and no tbf is left.
    lab.set_shaper(Shaper::HtbBoth)?;
    let (up, down) = lab.root_qdiscs("c")?;
    assert_eq!(
        (up.as_slice(), down.as_slice()),
        (&["htb".to_owned()][..], &["htb".to_owned()][..])
    );
    let (to_c, _) = push(&lab, "a", "c", 40e6, 1.5)?;
    assert!(
        (12e6..=24e6).contains(&to_c),
        "{to_c} bit/s down through a 20 Mbit/s HTB link"
    );

    drop(lab);
    let left: Vec<String> = std::fs::read_dir("/run/netns")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| names.contains(n))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(root_links()?, before);
    Ok(())
}
