//! The network lab (netns mode, root only): every host is a network namespace whose `eth0` is
//! one end of a veth pair; the other ends are ports of a bridge inside a switch namespace the
//! lab creates. Hosts get addresses on a private subnet that exists only on that bridge, with no
//! default route; the machine's own namespace gets no interface, address or route.
//!
//! * Rate, as the lab's [`Shaper`] says: by default an HTB class on both ends of each host's
//!   veth (host egress = its upload, switch egress = its download), with a byte FIFO of about
//!   50 ms; or ([`Shaper::TbfUplink`]) a `tbf` on the host's egress only (50 ms queue, 64 KiB
//!   burst), downloads unshaped.
//! * Delay, jitter, loss: every packet in or out of `eth0` goes through an nfqueue whose
//!   verdicts a thread of the harness delays or drops (`impair`), because this lab must also
//!   work on kernels without `sch_netem`.
//! * Partitions: `iptables` DROP rules (by source) in a chain of each host's INPUT, so a cut is
//!   silent, like a broken network, and can be one way.
//!
//! Everything is undone when the [`Lab`] is dropped (the namespaces are deleted, which takes
//! the veths, the bridge, the qdiscs and the rules with them), and a lab left behind by a
//! harness that was SIGKILLed is swept by the next one (its namespaces carry the harness PID).

mod impair;
mod nfqueue;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use impair::Impairer;
pub use impair::Impairment;

/// Prefix of every namespace a lab creates: `swc<harness pid>x<n>-<host>`.
const PREFIX: &str = "swc";
/// The lab's subnet (a /16 that exists only on the lab's bridge).
const SUBNET: [u8; 2] = [10, 77];
/// Hosts per lab.
pub const MAX_HOSTS: usize = 250;
/// Port every bootstrap listens on inside its namespace.
pub const BOOTSTRAP_PORT: u16 = 7000;
/// Port every node listens on inside its namespace.
pub const NODE_PORT: u16 = 7001;
const PARTITION_CHAIN: &str = "SC_PART";

/// How a lab applies a link's rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shaper {
    /// The rate in both directions: an HTB class with a byte FIFO of about 50 ms on the host's
    /// egress (its upload) and on the switch port's egress (its download).
    #[default]
    HtbBoth,
    /// The rate on the host's uplink only (its egress into the switch): `tbf` with a 50 ms
    /// queue (`latency 50ms`) and a 64 KiB burst; downloads unshaped.
    TbfUplink,
}

impl Shaper {
    /// Its name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HtbBoth => "htb-both",
            Self::TbfUplink => "tbf-uplink",
        }
    }

    /// Whether a host's download is limited to its rate too.
    pub fn shapes_download(self) -> bool {
        self == Self::HtbBoth
    }
}

/// The `tbf` burst of [`Shaper::TbfUplink`], bytes.
pub const TBF_BURST: u32 = 64 << 10;
/// The `tbf` queue of [`Shaper::TbfUplink`] (`latency`), ms.
pub const TBF_LATENCY_MS: u32 = 50;

/// The shape of one host's link: its rate in the directions the lab's [`Shaper`] shapes (both
/// by default), delay, jitter and loss in both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Rate in Mbit/s (none: unlimited), applied as the lab's [`Shaper`] says.
    pub rate_mbit: Option<f64>,
    /// Delay added in each direction, in ms: the RTT between two hosts with the same link is
    /// four times this.
    #[serde(default)]
    pub delay_ms: f64,
    /// Each packet's delay is uniform in `delay ± jitter`, in ms.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Packets dropped in each direction, in percent: two hosts with the same link lose about
    /// twice this between them.
    #[serde(default)]
    pub loss_pct: f64,
}

impl LinkSpec {
    /// Check the ranges.
    pub fn validate(&self) -> Result<()> {
        if self
            .rate_mbit
            .is_some_and(|r| !(r.is_finite() && r >= 0.01))
        {
            bail!("rate_mbit must be at least 0.01");
        }
        if !(0.0..=60_000.0).contains(&self.delay_ms) || !(0.0..=60_000.0).contains(&self.jitter_ms)
        {
            bail!("delay_ms and jitter_ms must be within 0..=60000");
        }
        if !(0.0..=100.0).contains(&self.loss_pct) {
            bail!("loss_pct must be within 0..=100");
        }
        Ok(())
    }

    fn impairment(&self) -> Impairment {
        Impairment {
            delay: Duration::from_secs_f64(self.delay_ms / 1e3),
            jitter: Duration::from_secs_f64(self.jitter_ms / 1e3),
            loss: self.loss_pct / 100.0,
        }
    }
}

#[derive(Debug)]
struct Host {
    ns: String,
    ip: Ipv4Addr,
    /// The switch side of its veth.
    port: String,
    link: LinkSpec,
    impairer: Option<Impairer>,
}

/// Bytes and packets through one host's link since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Bytes sent by the host.
    pub up: u64,
    /// Bytes received by the host.
    pub down: u64,
    /// Packets sent by the host (a GSO batch counts once).
    pub up_packets: u64,
    /// Packets received by the host (a GSO batch counts once).
    pub down_packets: u64,
}

/// One lab: a switch namespace and its hosts.
#[derive(Debug)]
pub struct Lab {
    id: String,
    switch: String,
    hosts: BTreeMap<String, Host>,
    default_link: LinkSpec,
    shaper: Shaper,
    seed: u64,
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

/// Why netns mode cannot run here, if it cannot: not root, or `ip` / `tc` / `iptables` missing.
pub fn preflight() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "netns mode needs root (network namespaces, tc and iptables); run it as root or use --mode process"
        );
    }
    let missing: Vec<&str> = ["ip", "tc", "iptables"]
        .into_iter()
        .filter(|t| !which(t))
        .collect();
    if !missing.is_empty() {
        bail!(
            "netns mode needs {} on PATH (Debian: apt-get install iproute2 iptables)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Run a command; its stderr in the error.
fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn netns_path(ns: &str) -> PathBuf {
    Path::new("/run/netns").join(ns)
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Delete the namespaces of labs whose harness is gone, killing (by PID) what still runs in
/// them. Returns how many were removed.
pub fn sweep_stale() -> usize {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return 0;
    };
    let mut removed = 0;
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(owner) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('x').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid_alive(owner) {
            continue;
        }
        if let Ok(pids) = sh("ip", &["netns", "pids", &name]) {
            for pid in pids.split_whitespace() {
                let _ = sh("kill", &["-KILL", pid]);
            }
        }
        if sh("ip", &["netns", "del", &name]).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// An HTB class of `bits` per second on `dev`'s egress, with a byte FIFO of about 50 ms at the
/// rate, like a switch port's buffer.
fn htb(netns: &str, dev: &str, bits: u64) -> Result<()> {
    let rate_s = format!("{bits}bit");
    let limit = ((bits / 8) / 20).max(64 << 10).to_string();
    let quantum = (((bits / 8) / 1000).clamp(1514, 60_000)).to_string();
    sh(
        "tc",
        &[
            "-n", netns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1",
        ],
    )?;
    sh(
        "tc",
        &[
            "-n", netns, "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
            "rate", &rate_s, "ceil", &rate_s, "burst", "64k", "cburst", "64k", "quantum", &quantum,
        ],
    )?;
    sh(
        "tc",
        &[
            "-n", netns, "qdisc", "add", "dev", dev, "parent", "1:1", "bfifo", "limit", &limit,
        ],
    )?;
    Ok(())
}

/// A token bucket of `bits` per second on `dev`'s egress: [`TBF_LATENCY_MS`] of queue,
/// [`TBF_BURST`] bytes of burst.
fn tbf(netns: &str, dev: &str, bits: u64) -> Result<()> {
    let rate_s = format!("{bits}bit");
    let burst = TBF_BURST.to_string();
    let latency = format!("{TBF_LATENCY_MS}ms");
    sh(
        "tc",
        &[
            "-n", netns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "tbf", "rate",
            &rate_s, "burst", &burst, "latency", &latency,
        ],
    )?;
    Ok(())
}

/// The root qdisc kinds on `dev` in `netns` (`tc -j qdisc show`), e.g. `["tbf"]`.
fn root_qdiscs(netns: &str, dev: &str) -> Result<Vec<String>> {
    let out = sh("tc", &["-n", netns, "-j", "qdisc", "show", "dev", dev])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing `tc -j qdisc`")?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter(|q| q["root"].as_bool() == Some(true))
        .filter_map(|q| q["kind"].as_str().map(str::to_owned))
        .collect())
}

static LABS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// A new empty lab: checks [`preflight`], sweeps stale labs, creates the switch.
    /// `seed` seeds the packet fates of impaired links.
    pub fn new(seed: u64) -> Result<Self> {
        preflight()?;
        let stale = sweep_stale();
        if stale > 0 {
            tracing::warn!(stale, "removed namespaces left by an earlier lab");
        }
        let id = format!(
            "{PREFIX}{}x{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("{id}-switch");
        // Constructed first, so that a failure below still deletes what was made.
        let lab = Self {
            id,
            switch,
            hosts: BTreeMap::new(),
            default_link: LinkSpec::default(),
            shaper: Shaper::default(),
            seed,
        };
        sh("ip", &["netns", "add", &lab.switch])?;
        sh(
            "ip",
            &["-n", &lab.switch, "link", "add", "br0", "type", "bridge"],
        )?;
        sh("ip", &["-n", &lab.switch, "link", "set", "br0", "up"])?;
        Ok(lab)
    }

    /// How rates are applied from now on, to every host's link (existing links are shaped
    /// again).
    pub fn set_shaper(&mut self, shaper: Shaper) -> Result<()> {
        self.shaper = shaper;
        let links: Vec<(String, LinkSpec)> = self
            .hosts
            .iter()
            .map(|(n, h)| (n.clone(), h.link))
            .collect();
        for (n, spec) in links {
            self.set_link(&n, spec)?;
        }
        Ok(())
    }

    /// How rates are applied.
    pub fn shaper(&self) -> Shaper {
        self.shaper
    }

    /// The link new hosts get, also applied now to every existing host.
    pub fn set_default_link(&mut self, spec: LinkSpec) -> Result<()> {
        spec.validate()?;
        self.default_link = spec;
        let names: Vec<String> = self.hosts.keys().cloned().collect();
        for n in names {
            self.set_link(&n, spec)?;
        }
        Ok(())
    }

    /// Add host `name` (a namespace with `eth0` on the bridge); its address.
    pub fn add_host(&mut self, name: &str) -> Result<Ipv4Addr> {
        if let Some(h) = self.hosts.get(name) {
            return Ok(h.ip);
        }
        let i = self.hosts.len();
        if i >= MAX_HOSTS {
            bail!("a lab holds at most {MAX_HOSTS} hosts");
        }
        let ns = format!("{}-{name}", self.id);
        let port = format!("p{i}");
        let ip = Ipv4Addr::new(SUBNET[0], SUBNET[1], 0, (i + 2) as u8);
        sh("ip", &["netns", "add", &ns])?;
        self.hosts.insert(
            name.to_owned(),
            Host {
                ns: ns.clone(),
                ip,
                port: port.clone(),
                link: LinkSpec::default(),
                impairer: None,
            },
        );
        let sw = self.switch.as_str();
        sh(
            "ip",
            &[
                "-n", sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ],
        )?;
        sh(
            "ip",
            &["-n", sw, "link", "set", &port, "master", "br0", "up"],
        )?;
        sh("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        let cidr = format!("{ip}/16");
        sh("ip", &["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
        sh("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        self.iptables(name, &["-N", PARTITION_CHAIN])?;
        // Partitions drop at the receiver, silently, like a broken network: a DROP in OUTPUT
        // would tell the sender at once (EPERM from sendmsg).
        self.iptables(name, &["-A", "INPUT", "-i", "eth0", "-j", PARTITION_CHAIN])?;
        let spec = self.default_link;
        self.set_link(name, spec)?;
        tracing::debug!(host = name, %ip, ns, "lab host added");
        Ok(ip)
    }

    fn host(&self, name: &str) -> Result<&Host> {
        self.hosts
            .get(name)
            .with_context(|| format!("no lab host named {name}"))
    }

    /// Its address.
    pub fn ip(&self, name: &str) -> Result<Ipv4Addr> {
        Ok(self.host(name)?.ip)
    }

    /// Host names.
    pub fn hosts(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }

    fn iptables(&self, name: &str, args: &[&str]) -> Result<String> {
        let ns = &self.host(name)?.ns;
        let mut full = vec!["netns", "exec", ns.as_str(), "iptables", "-w"];
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    /// A command running `program` inside host `name`'s namespace (same PID: `ip netns exec`
    /// enters the namespace and execs).
    pub fn command(&self, name: &str, program: &Path) -> Result<Command> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host(name)?.ns]).arg(program);
        Ok(c)
    }

    /// Shape host `name`'s link in both directions.
    pub fn set_link(&mut self, name: &str, spec: LinkSpec) -> Result<()> {
        spec.validate()?;
        let (ns, port) = {
            let h = self.host(name)?;
            (h.ns.clone(), h.port.clone())
        };
        // Both ends lose their qdisc first, so that a change of shaper leaves nothing behind.
        for (netns, dev) in [(ns.as_str(), "eth0"), (self.switch.as_str(), port.as_str())] {
            let _ = sh("tc", &["-n", netns, "qdisc", "del", "dev", dev, "root"]);
        }
        if let Some(rate) = spec.rate_mbit {
            let bits = (rate * 1e6) as u64;
            match self.shaper {
                // HTB on the host's egress (upload) and the switch port's egress (download).
                Shaper::HtbBoth => {
                    for (netns, dev) in
                        [(ns.as_str(), "eth0"), (self.switch.as_str(), port.as_str())]
                    {
                        htb(netns, dev, bits)?;
                    }
                }
                // tbf on the host's egress only.
                Shaper::TbfUplink => tbf(&ns, "eth0", bits)?,
            }
        }
        // Delay, jitter, loss: an nfqueue on both directions, started on first use.
        let imp = spec.impairment();
        let seed = self.seed ^ (self.host(name)?.ip.to_bits() as u64).wrapping_mul(0x9e37_79b9);
        let needs_rules = {
            let h = self.hosts.get_mut(name).context("host")?;
            h.link = spec;
            match &h.impairer {
                Some(i) => {
                    i.set(imp);
                    false
                }
                None if imp.is_none() => false,
                None => {
                    h.impairer = Some(Impairer::start(netns_path(&h.ns), imp, seed)?);
                    true
                }
            }
        };
        if needs_rules {
            self.iptables(
                name,
                &[
                    "-A",
                    "OUTPUT",
                    "-o",
                    "eth0",
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    "0",
                ],
            )?;
            self.iptables(
                name,
                &[
                    "-A",
                    "INPUT",
                    "-i",
                    "eth0",
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    "0",
                ],
            )?;
        }
        tracing::info!(host = name, ?spec, "link shaped");
        Ok(())
    }

    /// Drop every packet from each host of `a` to each host of `b`, and (unless `one_way`)
    /// from `b` to `a`.
    pub fn partition(&self, a: &[String], b: &[String], one_way: bool) -> Result<()> {
        let cut = |from: &[String], to: &[String]| -> Result<()> {
            let src: Vec<String> = from
                .iter()
                .map(|n| self.ip(n).map(|ip| ip.to_string()))
                .collect::<Result<_>>()?;
            if src.is_empty() {
                return Ok(());
            }
            let src = src.join(",");
            for n in to {
                self.iptables(n, &["-A", PARTITION_CHAIN, "-s", &src, "-j", "DROP"])?;
            }
            Ok(())
        };
        cut(a, b)?;
        if !one_way {
            cut(b, a)?;
        }
        Ok(())
    }

    /// Remove every partition.
    pub fn heal(&self) -> Result<()> {
        for n in self.hosts.keys() {
            self.iptables(n, &["-F", PARTITION_CHAIN])?;
        }
        Ok(())
    }

    /// Bytes through every host's link, read on the switch side (a port's rx is its host's
    /// upload).
    pub fn counters(&self) -> Result<BTreeMap<String, Counters>> {
        let out = sh("ip", &["-n", &self.switch, "-s", "-j", "link", "show"])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("parsing `ip -j -s link`")?;
        let by_port: BTreeMap<String, Counters> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| {
                let name = l["ifname"].as_str()?.to_owned();
                let s = &l["stats64"];
                Some((
                    name,
                    Counters {
                        up: s["rx"]["bytes"].as_u64()?,
                        down: s["tx"]["bytes"].as_u64()?,
                        up_packets: s["rx"]["packets"].as_u64()?,
                        down_packets: s["tx"]["packets"].as_u64()?,
                    },
                ))
            })
            .collect();
        Ok(self
            .hosts
            .iter()
            .filter_map(|(n, h)| Some((n.clone(), *by_port.get(&h.port)?)))
            .collect())
    }

    /// Every namespace of the lab (the switch first).
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.switch.clone())
            .chain(self.hosts.values().map(|h| h.ns.clone()))
            .collect()
    }

    /// Run `f` on a thread inside host `name`'s namespace (sockets it opens stay there).
    pub fn in_host<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<std::thread::JoinHandle<Result<T>>> {
        let path = netns_path(&self.host(name)?.ns);
        Ok(std::thread::spawn(move || -> Result<T> {
            let file = std::fs::File::open(&path)?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            Ok(f())
        }))
    }

    /// The root qdiscs of host `name`'s link: on its uplink (the host's `eth0` egress) and on
    /// its downlink (the switch port's egress), e.g. `(["tbf"], ["noqueue"])`.
    pub fn root_qdiscs(&self, name: &str) -> Result<(Vec<String>, Vec<String>)> {
        let h = self.host(name)?;
        Ok((
            root_qdiscs(&h.ns, "eth0")?,
            root_qdiscs(&self.switch, &h.port)?,
        ))
    }

    /// The link of host `name`.
    pub fn link(&self, name: &str) -> Result<LinkSpec> {
        Ok(self.host(name)?.link)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Stop the impairment threads first: deleting a namespace with a bound queue is fine,
        // but their verdicts would then fail.
        for h in self.hosts.values_mut() {
            h.impairer.take();
        }
        for h in self.hosts.values() {
            if let Err(e) = sh("ip", &["netns", "del", &h.ns]) {
                tracing::warn!(error = %format!("{e:#}"), ns = h.ns, "could not delete a lab namespace");
            }
        }
        if let Err(e) = sh("ip", &["netns", "del", &self.switch]) {
            tracing::warn!(error = %format!("{e:#}"), ns = self.switch, "could not delete the lab switch");
        }
    }
}
