//! The command line: every clap type and value parser. Parse, don't validate: values become
//! typed here, and rules between them are checked by the library constructors in `cmd`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use swarmcast_node::neighbours::NeighbourConfig;
use swarmcast_proto::Role;

/// The product's chunk size as a flag default: `swarmcast_node::manifest::DEFAULT_CHUNK_SIZE`
/// (a unit test checks they agree).
pub(crate) const DEFAULT_CHUNK_SIZE_ARG: &str = "256KiB";

/// Push a directory to every machine of a fleet over an authenticated QUIC swarm.
#[derive(Debug, Parser)]
#[command(name = "swarmcast", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage the cluster CA and issue certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Run a bootstrap (registry) server in the foreground.
    Bootstrap(BootstrapArgs),
    /// Run or query a node daemon.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Print one bootstrap's view of the registry.
    Registry(RegistryArgs),
    /// The built-in default: a local fleet on 127.0.0.1 receives a sample dataset through faults.
    Demo(DemoArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Chaos scenarios: kill, stop and restart processes mid-transfer, then prove nothing is lost.
    #[command(subcommand)]
    Chaos(ChaosCommand),
    /// Simulate a fleet on a virtual clock: the node's own broadcast and swarm cores, one
    /// origin and --nodes receivers on a random graph, max-min fair links, seeded. Prints T
    /// (the last completion), the lower bound T*, the origin's upload and the completion CDF.
    Sim(SimArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Receivers (node 0 is the origin, the receivers 1 to N).
    #[arg(long, default_value_t = 100, value_parser = parse_positive_count::<usize>)]
    pub(crate) nodes: usize,
    /// Bytes of the one file sent (e.g. 1GiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub(crate) size: u64,
    /// Chunk size (one chunk per piece in the simulation: at least 256KiB).
    #[arg(long, default_value = DEFAULT_CHUNK_SIZE_ARG, value_parser = parse_bytes)]
    pub(crate) chunk_size: u32,
    /// Every host's link rate in Mbit/s, both directions (the origin's too).
    #[arg(long, default_value_t = 1000.0)]
    pub(crate) rate_mbit: f64,
    /// Every host's upload instead, Mbit/s.
    #[arg(long)]
    pub(crate) up_mbit: Option<f64>,
    /// Every host's download instead, Mbit/s.
    #[arg(long)]
    pub(crate) down_mbit: Option<f64>,
    /// One-way latency of every link, in ms.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) latency_ms: f64,
    /// Packets lost on every link, in percent: what is resent is taken off the payload rate.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) loss: f64,
    /// Seed of the graph and of every core's random choices.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Neighbours per node.
    #[arg(long, default_value_t = NeighbourConfig::default().target, value_parser = parse_positive_count::<usize>)]
    pub(crate) degree: usize,
    /// Kill receiver NODE at a virtual time (`12s`, `500ms`) or when the fleet's progress
    /// reaches a percentage (`50%`): NODE@WHEN, repeatable. What it made durable stays.
    #[arg(long = "kill", value_name = "NODE@WHEN", value_parser = parse_sim_fault)]
    pub(crate) kills: Vec<(usize, SimWhen)>,
    /// Restart receiver NODE (killed before, or killed now) with its data: NODE@WHEN.
    #[arg(long = "restart", value_name = "NODE@WHEN", value_parser = parse_sim_fault)]
    pub(crate) restarts: Vec<(usize, SimWhen)>,
    /// Pause receiver NODE (SIGSTOP) from one time or percentage to another:
    /// NODE@FROM..TO, e.g. `3@2s..10s` or `3@20%..60%`.
    #[arg(long = "pause", value_name = "NODE@FROM..TO", value_parser = parse_sim_pause)]
    pub(crate) pauses: Vec<(usize, SimWhen, SimWhen)>,
    /// Print the outcome as JSON: the figures, every receiver's completion time, the payload
    /// of every connection that carried any, and when each fault happened.
    #[arg(long)]
    pub(crate) json: bool,
    /// Write the completion over time (receivers complete against virtual time, with T*) as
    /// an SVG picture.
    #[arg(long, value_name = "FILE")]
    pub(crate) svg: Option<PathBuf>,
    /// Show a progress bar on stderr (default: when stderr is a terminal).
    #[arg(long)]
    pub(crate) progress: bool,
}

/// When a simulated fault happens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SimWhen {
    /// At this virtual time.
    At(Duration),
    /// When the fleet's progress reaches this percentage.
    Percent(f64),
}

/// `NODE@WHEN`: a node index, and a time (`12s`) or a percentage (`50%`).
pub(crate) fn parse_sim_fault(s: &str) -> Result<(usize, SimWhen), String> {
    let (node, when) = s
        .split_once('@')
        .ok_or_else(|| format!("expected NODE@WHEN, e.g. 3@10s or 3@50%, got {s:?}"))?;
    Ok((parse_sim_node(node)?, parse_sim_when(when)?))
}

/// `NODE@FROM..TO`.
pub(crate) fn parse_sim_pause(s: &str) -> Result<(usize, SimWhen, SimWhen), String> {
    let (node, span) = s
        .split_once('@')
        .ok_or_else(|| format!("expected NODE@FROM..TO, e.g. 3@2s..10s, got {s:?}"))?;
    let (from, to) = span
        .split_once("..")
        .ok_or_else(|| format!("expected FROM..TO after '@', e.g. 2s..10s, got {span:?}"))?;
    Ok((
        parse_sim_node(node)?,
        parse_sim_when(from)?,
        parse_sim_when(to)?,
    ))
}

fn parse_sim_node(s: &str) -> Result<usize, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("invalid node {s:?} (a node's index: 1 to --nodes)"))
}

fn parse_sim_when(s: &str) -> Result<SimWhen, String> {
    match s.trim().strip_suffix('%') {
        Some(p) => {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("invalid percentage {s:?}"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("percentage {s:?} is not between 0% and 100%"));
            }
            Ok(SimWhen::Percent(p))
        }
        None => parse_duration(s).map(SimWhen::At),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ChaosCommand {
    /// Run one scenario (a preset or a TOML file) with a seed; exit 0 only if every check passed.
    Run(ChaosArgs),
    /// List the presets.
    Presets,
    /// Continuous churn with repeated broadcasts for --minutes, on 127.0.0.1: fails if any
    /// long-lived process's RSS, open fds or threads grew more than 20% from the run's second
    /// quarter to its last, or if any copy differs (not part of CI).
    Soak(SoakArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SoakArgs {
    /// How long, in minutes (fractions allowed).
    #[arg(long, default_value_t = 30.0)]
    pub(crate) minutes: f64,
    /// Nodes (3 bootstraps come with them).
    #[arg(long, default_value_t = 8)]
    pub(crate) nodes: usize,
    /// Of the nodes, how many are SIGKILLed and restarted in turn; the others never are.
    #[arg(long, default_value_t = 3)]
    pub(crate) churners: usize,
    /// Bytes per broadcast.
    #[arg(long, default_value = "4MiB", value_parser = parse_size)]
    pub(crate) size: u64,
    /// Names the versions rotate through (each send is the next version of one).
    #[arg(long, default_value_t = 3)]
    pub(crate) names: usize,
    /// Seconds between samples of every process.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) sample_secs: f64,
    /// Seed of the datasets and of the victims.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Write soak.json (every sample) and summary.txt here, and keep the logs.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ChaosMode {
    /// Child processes on 127.0.0.1, faults as signals (no privileges).
    Process,
    /// Network namespaces with shaped links (root).
    Netns,
}

#[derive(Debug, Args)]
pub(crate) struct ChaosArgs {
    /// A built-in scenario (see `swarmcast chaos presets`).
    #[arg(
        long,
        conflicts_with = "scenario",
        required_unless_present = "scenario"
    )]
    pub(crate) preset: Option<String>,
    /// A scenario file (TOML).
    #[arg(long)]
    pub(crate) scenario: Option<PathBuf>,
    /// Seed of the random choices: the same seed gives the same schedule.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Where the hosts run.
    #[arg(long, value_enum, default_value_t = ChaosMode::Process)]
    pub(crate) mode: ChaosMode,
    /// Write report.json, summary.txt, progress.svg, traffic.svg and the logs here.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// One origin and N receivers on 127.0.0.1: time, throughput, origin upload, peak RSS.
    Local(BenchLocalArgs),
    /// Netns lab (root): one origin and N receivers on shaped links, run with the product's
    /// defaults; T (`node send --wait` at the origin) against the lower bound T*, beside a
    /// client-server run on the same links.
    ///
    /// Every daemon is a plain `node join` and the broadcast a plain `node send DIR --wait`
    /// run at the origin, inside its namespace: the user's figure T_user is from the start of
    /// `node send` to the return of `--wait`, reported beside the last receiver's completion.
    /// Flags marked "experiment" change a product default.
    Swarm(SwarmBenchArgs),
    /// One origin to one receiver: swarmcast against bare quinn on the same bytes.
    ///
    /// A file of --size goes from one origin to one receiver through swarmcast processes on
    /// 127.0.0.1; then the same bytes go over one bare quinn connection with swarmcast's TLS and
    /// transport settings, the receiver only reading: the transport's ceiling on this machine.
    /// Prints both times and throughputs and their ratio (target >= 0.75).
    Pair(BenchPairArgs),
    /// Many small files to N receivers, against one file of the same total size.
    ///
    /// Files per second and bytes per second per receiver for --files files of --file-size,
    /// then one file of the same total size to the same fleet; prints the ratio of their
    /// throughputs (target >= 0.5).
    Files(BenchFilesArgs),
    /// The second send: a directory sent, one of its files changed, sent again.
    ///
    /// One origin and --receivers receivers on 127.0.0.1 with the product's defaults. Reports
    /// both sends' user figures (node send to the return of --wait), what the origin hashed the
    /// second time, and the chunk payload each receiver fetched over QUIC for it.
    Versions(BenchVersionsArgs),
    /// What idle daemons cost: CPU per node and per bootstrap, packets per node.
    ///
    /// Starts --bootstraps bootstraps and --nodes nodes with the binary's default timings and
    /// log level, waits until every node has its neighbours, then measures each process's CPU
    /// time (/proc/<pid>/stat) over --seconds. With --netns (root) every process runs in its own
    /// namespace of the lab, which makes the kernel's UDP counters per process: packets per node.
    Idle(BenchIdleArgs),
    /// The bootstraps under a large fleet's heartbeats.
    ///
    /// Starts --bootstraps bootstraps and plays --nodes nodes from this process, each with a
    /// certificate and a QUIC connection of its own, registering and heartbeating at the
    /// default period. Reports each bootstrap's CPU and RSS, heartbeat latency p50/p99, answer
    /// bytes per heartbeat, anti-entropy bytes per second and the time until a registration is
    /// visible at every bootstrap.
    Registry(BenchRegistryArgs),
    /// Many small sends: --count tiny broadcasts of distinct names from one origin to
    /// --receivers, through the origin's control socket. Reports the time of one send over the
    /// first and the last 100, when every receiver holds every broadcast, each process's RSS
    /// after, and its CPU over --idle-seconds idle before the sends and after them.
    Sends(BenchSendsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BenchLocalArgs {
    /// Receivers (the origin is extra).
    #[arg(long, default_value_t = 1, value_parser = parse_positive_count::<usize>)]
    pub(crate) receivers: usize,
    /// Bytes to send (e.g. 1GiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub(crate) size: u64,
    /// Split the bytes into this many files (1: one large file).
    #[arg(long, default_value_t = 1, value_parser = parse_positive_count::<u64>)]
    pub(crate) files: u64,
    /// Chunk size.
    #[arg(long, default_value = DEFAULT_CHUNK_SIZE_ARG, value_parser = parse_bytes)]
    pub(crate) chunk_size: u32,
    /// Repetitions (median, min and max are reported).
    #[arg(long, default_value_t = 1, value_parser = parse_positive_count::<usize>)]
    pub(crate) runs: usize,
    /// Give up on a run after this long.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct SwarmBenchArgs {
    /// Receivers (the origin is extra).
    #[arg(long, default_value_t = 16)]
    pub(crate) receivers: usize,
    /// Bytes of the generated directory (e.g. 256MiB).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub(crate) size: u64,
    /// Every host's link rate in Mbit/s: both directions, or its uplink only with
    /// `--shape tbf-uplink`.
    #[arg(long, default_value_t = 100.0)]
    pub(crate) rate_mbit: f64,
    /// A host's own rate, e.g. `origin=200` or `r3=20` (repeatable): heterogeneous fleets.
    #[arg(long = "host-rate", value_parser = parse_host_rate)]
    pub(crate) host_rates: Vec<(String, f64)>,
    /// `both` (swarm, then client-server on the same links), `swarm` or `origin-only`. The
    /// client-server baseline runs `node join --strategy origin-only --neighbours N+1`: a
    /// baseline, not the product.
    #[arg(long, value_enum, default_value_t = BenchStrategy::Both)]
    pub(crate) strategy: BenchStrategy,
    /// Passed to `node send --chunk-size` (experiment: changes the product default). Without
    /// it no flag is passed and `node send`'s own default applies.
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) chunk_size: Option<u32>,
    /// An extra `node join` flag for the origin, repeatable (experiment), e.g.
    /// `--origin-flag=--max-upload=20Mbit`.
    #[arg(long = "origin-flag", allow_hyphen_values = true)]
    pub(crate) origin_flags: Vec<String>,
    /// An extra `node join` flag for every node, the origin included, repeatable
    /// (experiment), e.g. `--node-flag=--congestion=bbr`.
    #[arg(long = "node-flag", allow_hyphen_values = true)]
    pub(crate) node_flags: Vec<String>,
    /// How links are shaped: `htb-both` (HTB on both directions of each host's link with a
    /// 50 ms byte FIFO) or `tbf-uplink` (a tbf on each host's uplink only, 50 ms queue and
    /// 64 KiB burst; downloads unshaped).
    #[arg(long, value_enum, default_value_t = ShapeArg::HtbBoth)]
    pub(crate) shape: ShapeArg,
    /// Delay added in each direction of every host's link, in ms (two hosts see four times
    /// this as RTT): a lab condition, like the rates.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) delay_ms: f64,
    /// Packets dropped in each direction of every host's link, in percent (two hosts lose about
    /// twice this between them): a lab condition, like the rates.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) loss_pct: f64,
    /// Start every daemon with its wire trace in DIR (SWARMCAST_WIRE_TRACE) and write each
    /// run's summary there, as text and JSON: per host, bytes from the origin and from peers,
    /// duplicates, declines, latencies, queue depths, unused upload; how late --wait returned.
    #[arg(long, value_name = "DIR")]
    pub(crate) trace: Option<PathBuf>,
    /// Give up on a run after this long.
    #[arg(long, default_value = "1800s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Print the whole report (with utilisation samples) as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BenchPairArgs {
    /// Bytes to send (e.g. 1GiB); one file.
    #[arg(long, default_value = "1GiB", value_parser = parse_positive_size)]
    pub(crate) size: u64,
    /// swarmcast's chunk size.
    #[arg(long, default_value = DEFAULT_CHUNK_SIZE_ARG, value_parser = parse_bytes)]
    pub(crate) chunk_size: u32,
    /// Streams of the bare quinn transfer (on one connection).
    #[arg(long, default_value_t = swarmcast_chaos::pair::DEFAULT_STREAMS, value_parser = parse_positive_count::<usize>)]
    pub(crate) streams: usize,
    /// Repetitions (median, min and max are reported).
    #[arg(long, default_value_t = 3, value_parser = parse_positive_count::<usize>)]
    pub(crate) runs: usize,
    /// Give up on a transfer after this long.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Machine-readable output (every run, then median, min and max).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ShapeArg {
    /// HTB on both directions of each host's link, 50 ms byte FIFO.
    HtbBoth,
    /// tbf on each host's uplink only (50 ms queue, 64 KiB burst); downloads unshaped.
    TbfUplink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BenchStrategy {
    /// The swarm, then the client-server baseline.
    Both,
    /// The swarm only.
    Swarm,
    /// The client-server baseline only.
    OriginOnly,
}

pub(crate) fn parse_host_rate(s: &str) -> Result<(String, f64), String> {
    let (host, rate) = s
        .split_once('=')
        .ok_or_else(|| format!("expected HOST=MBIT, e.g. r3=20, got {s:?}"))?;
    let rate: f64 = rate
        .parse()
        .map_err(|_| format!("invalid rate {rate:?} in {s:?}"))?;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!("rate must be positive in {s:?}"));
    }
    Ok((host.to_owned(), rate))
}

#[derive(Debug, Args)]
pub(crate) struct BenchIdleArgs {
    /// Idle nodes.
    #[arg(long, default_value_t = 8, value_parser = parse_positive_count::<usize>)]
    pub(crate) nodes: usize,
    /// Bootstraps.
    #[arg(long, default_value_t = 3, value_parser = parse_positive_count::<usize>)]
    pub(crate) bootstraps: usize,
    /// The measuring window, in seconds.
    #[arg(long, default_value_t = 20, value_parser = parse_positive_count::<u64>)]
    pub(crate) seconds: u64,
    /// Wait this long after the fleet joined before measuring.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) settle: Duration,
    /// Every process in its own network namespace (root): exact packets per node.
    #[arg(long)]
    pub(crate) netns: bool,
    /// The swarmcast binary to start the fleet from (default: this one), e.g. an older build
    /// to compare with.
    #[arg(long)]
    pub(crate) exe: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BenchRegistryArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 1000, value_parser = parse_positive_count::<usize>)]
    pub(crate) nodes: usize,
    /// Bootstraps.
    #[arg(long, default_value_t = 3, value_parser = parse_positive_count::<usize>)]
    pub(crate) bootstraps: usize,
    /// The measuring window, in seconds.
    #[arg(long, default_value_t = 20, value_parser = parse_positive_count::<u64>)]
    pub(crate) seconds: u64,
    /// Wait this long after the fleet registered before measuring.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) settle: Duration,
    /// Registrations timed for propagation during the window.
    #[arg(long, default_value_t = 10)]
    pub(crate) probes: usize,
    /// UDP sockets the simulated nodes' connections share.
    #[arg(long, default_value_t = 8, value_parser = parse_positive_count::<usize>)]
    pub(crate) sockets: usize,
    /// The swarmcast binary to start the bootstraps from (default: this one).
    #[arg(long)]
    pub(crate) exe: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BenchSendsArgs {
    /// Broadcasts to send.
    #[arg(long, default_value_t = 5000, value_parser = parse_positive_count::<usize>)]
    pub(crate) count: usize,
    /// Receivers (the origin is extra).
    #[arg(long, default_value_t = 2, value_parser = parse_positive_count::<usize>)]
    pub(crate) receivers: usize,
    /// Bootstraps.
    #[arg(long, default_value_t = 1, value_parser = parse_positive_count::<usize>)]
    pub(crate) bootstraps: usize,
    /// The idle windows before and after the sends, in seconds.
    #[arg(long, default_value_t = 20, value_parser = parse_positive_count::<u64>)]
    pub(crate) idle_seconds: u64,
    /// Repetitions, each on a fresh cluster.
    #[arg(long, default_value_t = 1, value_parser = parse_positive_count::<usize>)]
    pub(crate) runs: usize,
    /// Give up waiting for the receivers after this long.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Send each as a user does, `node send DIR --wait` (a process per send), and report the
    /// time of each from spawn to exit: e.g. `--count 20 --receivers 3 --wait --file-size 1KiB`.
    #[arg(long)]
    pub(crate) wait: bool,
    /// Bytes of each broadcast's one file.
    #[arg(long, default_value = "16", value_parser = parse_size)]
    pub(crate) file_size: u64,
    /// The swarmcast binary to start the fleet from (default: this one), e.g. an older build
    /// to compare with.
    #[arg(long)]
    pub(crate) exe: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct BenchVersionsArgs {
    /// Bytes of the first version.
    #[arg(long, default_value = "1GiB", value_parser = parse_positive_size)]
    pub(crate) size: u64,
    /// Files it is split into (one of them changes).
    #[arg(long, default_value_t = 8, value_parser = parse_positive_count::<u64>)]
    pub(crate) files: u64,
    /// Receivers (the origin is extra).
    #[arg(long, default_value_t = 2, value_parser = parse_positive_count::<usize>)]
    pub(crate) receivers: usize,
    /// How the second version differs: one file rewritten, 1 MiB appended to one, 1 MiB (or
    /// 1 MiB and 1 KiB) inserted at the start of one; `all` runs each.
    #[arg(long, value_enum, default_value_t = ChangeArg::All)]
    pub(crate) change: ChangeArg,
    /// Repetitions of each (median, min and max are reported).
    #[arg(long, default_value_t = 3, value_parser = parse_positive_count::<usize>)]
    pub(crate) runs: usize,
    /// Give up on a send after this long.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Print every run as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ChangeArg {
    /// One file rewritten.
    Rewrite,
    /// 1 MiB appended to one file.
    Append,
    /// 1 MiB inserted at the start of one file (chunk boundaries of the rest unchanged).
    Insert,
    /// 1 MiB and 1 KiB inserted at the start of one file (every later boundary moves).
    InsertShifted,
    /// Each of them.
    All,
}

#[derive(Debug, Args)]
pub(crate) struct BenchFilesArgs {
    /// Files in the many-files dataset.
    #[arg(long, default_value_t = 100_000, value_parser = parse_positive_count::<u64>)]
    pub(crate) files: u64,
    /// Bytes of each file (e.g. 4KiB).
    #[arg(long, default_value = "4KiB", value_parser = parse_positive_size)]
    pub(crate) file_size: u64,
    /// Receivers (the origin is extra).
    #[arg(long, default_value_t = 4, value_parser = parse_positive_count::<usize>)]
    pub(crate) receivers: usize,
    /// Chunk size.
    #[arg(long, default_value = DEFAULT_CHUNK_SIZE_ARG, value_parser = parse_bytes)]
    pub(crate) chunk_size: u32,
    /// Repetitions (median, min and max are reported).
    #[arg(long, default_value_t = 3, value_parser = parse_positive_count::<usize>)]
    pub(crate) runs: usize,
    /// Give up on a transfer after this long.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Machine-readable output (every run, then median, min and max).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Size of the sample dataset (e.g. 200MiB, 1GiB).
    #[arg(long, default_value = "200MiB", value_parser = parse_size)]
    pub(crate) size: u64,
    /// Nodes, the origin included.
    #[arg(long, default_value_t = 8)]
    pub(crate) nodes: usize,
    /// Bootstraps.
    #[arg(long, default_value_t = 3)]
    pub(crate) bootstraps: usize,
    /// Keep the temporary directory (certificates, data dirs, logs) for inspection.
    #[arg(long)]
    pub(crate) keep: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// Create the cluster CA: D/ca.pem and D/ca.key (mode 0600). Refuses to overwrite.
    Init {
        /// Directory for the CA.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a certificate: D/N/cert.pem, D/N/key.pem, D/N/ca.pem.
    Issue {
        /// Directory holding the CA.
        #[arg(long)]
        dir: PathBuf,
        /// Name of the process (DNS SAN; lower-case letters, digits and '-').
        #[arg(long)]
        name: String,
        /// What the certificate allows.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// A group the node belongs to (repeatable; lower-case letters, digits and '-'):
        /// `node send --to group:G` restricts a broadcast to the nodes whose certificate
        /// names G. Written by the CA, never declared by the node.
        #[arg(long = "group", value_name = "G", value_parser = parse_cert_group)]
        groups: Vec<String>,
        /// Days of validity from now (a daemon warns from 30 days before the end).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u16).range(1..=3650))]
        days: u16,
        /// The end of validity instead, as an RFC 3339 time (e.g. 2027-06-30T00:00:00Z). It may
        /// be in the past: an already expired certificate, to check that peers refuse it.
        #[arg(long, value_name = "TIME", conflicts_with = "days", value_parser = parse_not_after)]
        not_after: Option<swarmcast_certs::Validity>,
    },
    /// Renew a certificate: sign the same key again (so its NodeId, name and role stay), valid
    /// for a year from now by default. Replaces cert.pem; a running daemon picks it up within 10 s.
    Renew {
        /// Directory holding the CA that signs (for a CA rotation, the new CA).
        #[arg(long)]
        dir: PathBuf,
        /// Renew D/N.
        #[arg(
            long,
            required_unless_present = "identity",
            conflicts_with = "identity"
        )]
        name: Option<String>,
        /// Renew this identity directory instead (e.g. one under the old CA's directory).
        #[arg(long)]
        identity: Option<PathBuf>,
        /// Days of validity from now (a daemon warns from 30 days before the end).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u16).range(1..=3650))]
        days: u16,
    },
}

#[derive(Debug, Args)]
pub(crate) struct BootstrapArgs {
    /// Identity directory (from `certs issue`), e.g. certs/b1.
    #[arg(long)]
    pub(crate) identity: PathBuf,
    /// QUIC address to listen on (must be a concrete address: it is what others dial).
    #[arg(long)]
    pub(crate) listen: SocketAddr,
    /// A fellow bootstrap to replicate with (repeatable).
    #[arg(long = "peer")]
    pub(crate) peers: Vec<SocketAddr>,
    /// Where the registry snapshot and incarnation are kept.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// No heartbeat for this long: suspect.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub(crate) suspect_after: Duration,
    /// No heartbeat for this long: dead.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    pub(crate) dead_after: Duration,
    /// Dead entries are dropped this long after death.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) gc_after: Duration,
    /// Push-pull period with each fellow.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    pub(crate) anti_entropy: Duration,
    /// Serve Prometheus metrics (`GET /metrics`) on this TCP address, e.g. 127.0.0.1:9400.
    #[arg(long)]
    pub(crate) metrics: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Run the node daemon in the foreground.
    Join(Box<JoinArgs>),
    /// Publish a directory to every node of the fleet (asks the local daemon).
    Send(SendArgs),
    /// List every broadcast this node knows.
    Ls {
        #[command(flatten)]
        data: DataDir,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon for its state.
    Status {
        #[command(flatten)]
        data: DataDir,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove one version (by id, or a unique start of it) or every version of a name from
    /// this node; removing the current version points received/<name> at the newest left.
    Rm {
        /// A broadcast id (or its first 4+ hex digits), or a name.
        target: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Cancel a broadcast fleet-wide, at its origin (with a name: this origin's versions of
    /// it); receivers stop and free the space, and `--wait` on it ends with exit 1.
    Cancel {
        /// A broadcast id (or its first 4+ hex digits), or a name.
        target: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Fetch a broadcast from the swarm: the newest version of a name, or an id (found
    /// through the registry, fetched from every peer holding it). The way a `--pull` node
    /// receives, and a way to get back a version removed with `node rm`.
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// A broadcast name (its newest version), or an id (or its first 4+ hex digits).
    #[arg(value_parser = parse_fetch_target)]
    pub(crate) target: String,
    #[command(flatten)]
    pub(crate) data: DataDir,
    /// Wait until it is complete and verified here (received/<name> shows it), showing
    /// progress; exit 1 if it fails.
    #[arg(long)]
    pub(crate) wait: bool,
    /// With --wait: give up (exit 1) after this long.
    #[arg(long, value_parser = parse_duration, requires = "wait")]
    pub(crate) timeout: Option<Duration>,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The directory to send (regular files and directories only).
    pub(crate) dir: PathBuf,
    #[command(flatten)]
    pub(crate) data: DataDir,
    /// Bytes per chunk, the unit of verification (e.g. 256KiB, 1MiB); requests carry runs of
    /// chunks of at least 256 KiB.
    #[arg(long, default_value = DEFAULT_CHUNK_SIZE_ARG, value_parser = parse_bytes)]
    pub(crate) chunk_size: u32,
    /// Wait until every alive node holds the broadcast, showing fleet progress.
    #[arg(long)]
    pub(crate) wait: bool,
    /// With --wait: give up (exit 1) after this long.
    #[arg(long, value_parser = parse_duration, requires = "wait")]
    pub(crate) timeout: Option<Duration>,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
    /// Hash every file again. Without it, a file whose size, modification and status-change
    /// times and inode match the previous version of the same name sent from this node keeps
    /// its hashes (it is not read).
    #[arg(long)]
    pub(crate) rehash: bool,
    /// Restrict the broadcast to a node (its certificate name) or to a group (`group:G`, the
    /// nodes whose certificate names G); repeatable. Only they (and this node) may fetch it,
    /// every node serves it to them only, and --wait counts only them.
    #[arg(long = "to", value_name = "NAME|group:G", value_parser = parse_to)]
    pub(crate) to: Vec<AudienceMember>,
    /// How this broadcast competes with others for the nodes' links: a higher priority gets
    /// request budget and upload slots first (a lower one keeps a small floor), equal ones
    /// share them. Bound into the broadcast id, like the audience.
    #[arg(long, value_enum, default_value_t = SendPriority::Normal)]
    pub(crate) priority: SendPriority,
}

/// `node send --priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SendPriority {
    High,
    Normal,
    Low,
}

impl From<SendPriority> for swarmcast_proto::Priority {
    fn from(p: SendPriority) -> Self {
        match p {
            SendPriority::High => Self::High,
            SendPriority::Normal => Self::Normal,
            SendPriority::Low => Self::Low,
        }
    }
}

/// One `--to` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AudienceMember {
    /// A node, by its certificate name.
    Node(String),
    /// The nodes whose certificate names this group.
    Group(String),
}

/// `--to NAME` or `--to group:G`, each checked as certificates check them.
pub(crate) fn parse_to(s: &str) -> Result<AudienceMember, String> {
    match s.strip_prefix("group:") {
        Some(g) => parse_cert_group(g).map(AudienceMember::Group),
        None => swarmcast_certs::validate_name(s)
            .map(|()| AudienceMember::Node(s.to_owned()))
            .map_err(|e| e.to_string()),
    }
}

/// A certificate group (`certs issue --group`, `--to group:G`).
pub(crate) fn parse_cert_group(s: &str) -> Result<String, String> {
    swarmcast_certs::validate_group(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// `certs issue --not-after TIME`: an RFC 3339 time, up to 3650 days from now.
pub(crate) fn parse_not_after(s: &str) -> Result<swarmcast_certs::Validity, String> {
    swarmcast_certs::Validity::parse_not_after(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub(crate) struct DataDir {
    /// The node's data dir (control socket, incarnation, broadcasts).
    #[arg(long, env = "SWARMCAST_DATA_DIR", default_value_os_t = default_data_dir())]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct JoinArgs {
    /// Identity directory (from `certs issue`), e.g. certs/n1.
    #[arg(long)]
    pub(crate) identity: PathBuf,
    /// A bootstrap to register through (repeatable; the first that answers is used).
    #[arg(long = "seed", required = true)]
    pub(crate) seeds: Vec<SocketAddr>,
    /// QUIC address to bind.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) listen: SocketAddr,
    /// Address other nodes dial (default: the bound address).
    #[arg(long)]
    pub(crate) advertise: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) data: DataDir,
    /// Heartbeat period.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) heartbeat: Duration,
    /// Give up (exit 1) if no seed accepts the registration in this time.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) join_timeout: Option<Duration>,
    /// Target number of neighbours.
    #[arg(long, default_value_t = NeighbourConfig::default().target)]
    pub(crate) neighbours: usize,
    /// Who serves receivers: `swarm`, or `origin-only` (client-server, a baseline for
    /// benchmarks: every node of the fleet must use it, with `--neighbours` at least the
    /// fleet size so that every receiver is connected to the origin).
    #[arg(long, value_enum, default_value_t = StrategyArg::Swarm)]
    pub(crate) strategy: StrategyArg,
    /// Members of this group may use the control socket too (`node send`, `node status`;
    /// `node send` reads as the caller): the data dir becomes 0710 and the socket 0660,
    /// owned by the group. Without it, only the daemon's user and root may.
    #[arg(long, value_parser = parse_group)]
    pub(crate) control_group: Option<u32>,
    /// Serve Prometheus metrics (`GET /metrics`) on this TCP address, e.g. 127.0.0.1:9401.
    #[arg(long)]
    pub(crate) metrics: Option<SocketAddr>,
    /// Complete versions kept per broadcast name (older ones are removed; never the one
    /// received/<name> points at).
    #[arg(long, default_value_t = swarmcast_node::data::DEFAULT_KEEP, value_parser = parse_positive_count::<usize>)]
    pub(crate) keep: usize,
    /// Disk budget for every broadcast received here (e.g. 100GiB): the oldest removable
    /// versions go first; a broadcast that still does not fit fails.
    #[arg(long, value_parser = parse_positive_size)]
    pub(crate) max_disk: Option<u64>,
    /// Pull on demand: receive nothing unasked (no workspace, no manifest fetched) until
    /// `node fetch` asks for a broadcast; what this node holds is still served.
    #[arg(long)]
    pub(crate) pull: bool,
    /// Cap on what this node uploads, to every peer and for every broadcast together: bits
    /// (`200Mbit`, `1Gbit/s`, `50Mbps`) or bytes (`50MiB/s`, `10MB/s`) per second.
    #[arg(long, value_parser = parse_rate)]
    pub(crate) max_upload: Option<u64>,
    /// Cap on what this node downloads, from every peer together (same units).
    #[arg(long, value_parser = parse_rate)]
    pub(crate) max_download: Option<u64>,
    /// The congestion controller of this node's QUIC connections (experiment: cubic is the
    /// product's choice, see docs/ARCHITECTURE.md "Transport settings").
    #[arg(long, value_enum, default_value_t = CongestionArg::Cubic)]
    pub(crate) congestion: CongestionArg,
}

/// `node join --congestion`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CongestionArg {
    /// quinn's Cubic (the default).
    Cubic,
    /// NewReno.
    NewReno,
    /// quinn's BBR (experimental in quinn).
    Bbr,
}

/// A rate in bytes per second from bits (`200Mbit`, `1Gbit/s`, `50Mbps`; k, M, G are powers
/// of 1000) or bytes (`50MiB/s`, `10MB/s`, `512KiB`; a bare number is bytes); more than 0.
pub(crate) fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("invalid rate {s:?} (try 200Mbit or 50MiB/s)");
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n <= 0.0 {
        return Err(format!("rate {s:?} must be more than 0"));
    }
    // "/s" is optional; "bps" is bits ("50Mbps"), "Bps" bytes ("10MBps").
    let unit = unit.trim();
    let unit = unit.strip_suffix("/s").unwrap_or(unit);
    let unit = match (unit.strip_suffix("bps"), unit.strip_suffix("Bps")) {
        (Some(prefix), _) => format!("{prefix}bit"),
        (_, Some(prefix)) => format!("{prefix}B"),
        _ => unit.to_owned(),
    }
    .to_ascii_lowercase();
    let bytes_per_s = match unit.as_str() {
        "" | "b" => n,
        "kb" => n * 1e3,
        "kib" => n * 1024.0,
        "mb" => n * 1e6,
        "mib" => n * f64::from(1u32 << 20),
        "gb" => n * 1e9,
        "gib" => n * f64::from(1u32 << 30),
        "bit" => n / 8.0,
        "kbit" => n * 1e3 / 8.0,
        "mbit" => n * 1e6 / 8.0,
        "gbit" => n * 1e9 / 8.0,
        _ => return Err(bad()),
    };
    if bytes_per_s < 1.0 {
        return Err(format!("rate {s:?} is below 1 byte per second"));
    }
    if bytes_per_s > 1e15 {
        return Err(format!("rate {s:?} is too large"));
    }
    Ok(bytes_per_s as u64)
}

/// What `node fetch` asks for: one valid path component (a name, or hex digits of an id).
pub(crate) fn parse_fetch_target(s: &str) -> Result<String, String> {
    let limits = swarmcast_node::manifest::ManifestLimits::default();
    swarmcast_node::manifest::check_name(s, &limits)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// A group name, as its gid (`--control-group`).
pub(crate) fn parse_group(s: &str) -> Result<u32, String> {
    swarmcast_node::control::group_by_name(s).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StrategyArg {
    /// Receivers serve each other; the origin super-seeds.
    Swarm,
    /// Only the origin serves.
    OriginOnly,
}

#[derive(Debug, Args)]
pub(crate) struct RegistryArgs {
    /// The bootstrap to ask.
    #[arg(long)]
    pub(crate) seed: SocketAddr,
    /// Identity directory to authenticate with (any role).
    #[arg(long)]
    pub(crate) identity: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".swarmcast"))
        .unwrap_or_else(|| PathBuf::from(".swarmcast"))
}

pub(crate) fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: swarmcast_proto::RoleParseError| e.to_string())
}

/// "4096", "256KiB", "1MiB", "4M" (K/M/G are powers of 1024 too); must fit in 32 bits.
pub(crate) fn parse_bytes(s: &str) -> Result<u32, String> {
    parse_size(s).and_then(|v| u32::try_from(v).map_err(|_| format!("size {s:?} is too large")))
}

/// Like [`parse_bytes`], up to 64 bits.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid size {s:?} (try 1MiB or 262144)"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("unknown unit in {s:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Like [`parse_size`], but zero is refused.
pub(crate) fn parse_positive_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("must be more than 0 bytes".to_owned()),
        n => Ok(n),
    }
}

/// A count of at least 1.
pub(crate) fn parse_positive_count<T: std::str::FromStr + PartialEq + From<u8>>(
    s: &str,
) -> Result<T, String> {
    match s.trim().parse::<T>() {
        Ok(n) if n == T::from(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("invalid count {s:?} (a whole number, at least 1)")),
    }
}

/// "250ms", "3s", "1.5s", "2m"; a bare number is seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (try 500ms, 3s, 1m)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_in_bits_or_bytes_per_second() {
        assert_eq!(parse_rate("200Mbit"), Ok(25_000_000));
        assert_eq!(parse_rate("20Mbit/s"), Ok(2_500_000));
        assert_eq!(parse_rate("50Mbps"), Ok(6_250_000));
        assert_eq!(parse_rate("1Gbit"), Ok(125_000_000));
        assert_eq!(parse_rate("1.5gbit"), Ok(187_500_000));
        assert_eq!(parse_rate("50MiB/s"), Ok(50 << 20));
        assert_eq!(parse_rate("10MB/s"), Ok(10_000_000));
        assert_eq!(parse_rate("10MBps"), Ok(10_000_000));
        assert_eq!(parse_rate("512KiB"), Ok(512 << 10));
        assert_eq!(parse_rate("4096"), Ok(4096));
        for bad in [
            "0",
            "0Mbit",
            "-5MiB/s",
            "fast",
            "10 parsecs",
            "1bit",
            "NaNMbit",
            "",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("NaNs").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("256KiB"), Ok(256 << 10));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(
            parse_bytes(DEFAULT_CHUNK_SIZE_ARG),
            Ok(swarmcast_node::manifest::DEFAULT_CHUNK_SIZE)
        );
        assert_eq!(parse_bytes("4m"), Ok(4 << 20));
        assert!(parse_bytes("8GiB").is_err());
        assert!(parse_bytes("1 parsec").is_err());
        assert!(parse_bytes("-1").is_err());
    }

    #[test]
    fn node_send_defaults_to_the_librarys_chunk_size() {
        use clap::Parser as _;
        use swarmcast_node::manifest::DEFAULT_CHUNK_SIZE;
        let cli = Cli::try_parse_from(["swarmcast", "node", "send", "/tmp"]).expect("parses");
        let Command::Node(NodeCommand::Send(args)) = cli.command else {
            panic!("not node send");
        };
        assert_eq!(args.chunk_size, DEFAULT_CHUNK_SIZE);
    }

    #[test]
    fn bench_swarm_passes_no_chunk_size_unless_asked() {
        use clap::Parser as _;
        let parse = |extra: &[&str]| {
            let mut argv = vec!["swarmcast", "bench", "swarm"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).expect("parses").command {
                Command::Bench(BenchCommand::Swarm(a)) => a,
                _ => panic!("not bench swarm"),
            }
        };
        let a = parse(&[]);
        assert_eq!((a.chunk_size, a.shape), (None, ShapeArg::HtbBoth));
        let a = parse(&["--chunk-size", "256KiB", "--shape", "tbf-uplink"]);
        assert_eq!(
            (a.chunk_size, a.shape),
            (Some(256 << 10), ShapeArg::TbfUplink)
        );
    }

    #[test]
    fn experiment_flags_say_so() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let swarm = cmd
            .find_subcommand("bench")
            .and_then(|b| b.find_subcommand("swarm"))
            .expect("bench swarm");
        let help = |id: &str| {
            swarm
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_help())
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        assert!(
            help("chunk_size").contains("(experiment: changes the product default)"),
            "{}",
            help("chunk_size")
        );
    }

    #[test]
    fn positive_values() {
        assert_eq!(parse_positive_size("4KiB"), Ok(4096));
        assert!(parse_positive_size("0").is_err());
        assert!(parse_positive_size("0GiB").is_err());
        assert_eq!(parse_positive_count::<usize>("3"), Ok(3));
        assert_eq!(parse_positive_count::<u64>("100000"), Ok(100_000));
        assert!(parse_positive_count::<usize>("0").is_err());
        assert!(parse_positive_count::<u64>("-1").is_err());
        assert!(parse_positive_count::<u64>("1.5").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
