//! `swarmcast`: the command-line interface. Thin: clap → typed config → library call.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use swarmcast_proto::Role;

mod output;
mod send;

/// Push a directory to every machine of a fleet over an authenticated QUIC swarm.
#[derive(Debug, Parser)]
#[command(name = "swarmcast", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
}

#[derive(Debug, Subcommand)]
enum ChaosCommand {
    /// Run one scenario (a preset or a TOML file) with a seed; exit 0 only if every check passed.
    Run(ChaosArgs),
    /// List the presets.
    Presets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ChaosMode {
    /// Child processes on 127.0.0.1, faults as signals (no privileges).
    Process,
    /// Network namespaces with shaped links (root).
    Netns,
}

#[derive(Debug, Args)]
struct ChaosArgs {
    /// A built-in scenario (see `swarmcast chaos presets`).
    #[arg(
        long,
        conflicts_with = "scenario",
        required_unless_present = "scenario"
    )]
    preset: Option<String>,
    /// A scenario file (TOML).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Seed of the random choices: the same seed gives the same schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the hosts run.
    #[arg(long, value_enum, default_value_t = ChaosMode::Process)]
    mode: ChaosMode,
    /// Write report.json, summary.txt, traffic.svg, completion.svg and the logs here.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// One origin and N receivers on 127.0.0.1: time, throughput, origin upload, peak RSS.
    Local {
        /// Receivers (the origin is extra).
        #[arg(long, default_value_t = 1)]
        receivers: usize,
        /// Bytes to send (e.g. 1GiB).
        #[arg(long, default_value = "1GiB", value_parser = parse_size)]
        size: u64,
        /// Split the bytes into this many files (1: one large file).
        #[arg(long, default_value_t = 1)]
        files: u64,
        /// Chunk size.
        #[arg(long, default_value = "1MiB", value_parser = parse_bytes)]
        chunk_size: u32,
        /// Repetitions (median, min and max are reported).
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Give up on a run after this long.
        #[arg(long, default_value = "600s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Netns lab (root): one origin and N receivers, each link shaped both ways; T against
    /// the lower bound T*, beside a client-server run on the same links.
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
}

#[derive(Debug, Args)]
struct SwarmBenchArgs {
    /// Receivers (the origin is extra).
    #[arg(long, default_value_t = 16)]
    receivers: usize,
    /// Bytes of the generated directory (e.g. 256MiB).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    size: u64,
    /// Every host's link rate in Mbit/s, both directions.
    #[arg(long, default_value_t = 100.0)]
    rate_mbit: f64,
    /// A host's own rate, e.g. `origin=200` or `r3=20` (repeatable): heterogeneous fleets.
    #[arg(long = "host-rate", value_parser = parse_host_rate)]
    host_rates: Vec<(String, f64)>,
    /// `both` (swarm, then client-server on the same links), `swarm` or `origin-only`.
    #[arg(long, value_enum, default_value_t = BenchStrategy::Both)]
    strategy: BenchStrategy,
    /// Chunk size. 256 KiB: on 20–100 Mbit/s links 1 MiB requests queue long enough behind
    /// each other to time out and be fetched twice (measured: origin upload 2.8 x F at 20 Mbit/s
    /// with 1 MiB, 1.3 x F with 256 KiB).
    #[arg(long, default_value = "256KiB", value_parser = parse_bytes)]
    chunk_size: u32,
    /// Give up on a run after this long.
    #[arg(long, default_value = "1800s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print the whole report (with utilisation samples) as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct BenchPairArgs {
    /// Bytes to send (e.g. 1GiB); one file.
    #[arg(long, default_value = "1GiB", value_parser = parse_positive_size)]
    size: u64,
    /// swarmcast's chunk size.
    #[arg(long, default_value = "1MiB", value_parser = parse_bytes)]
    chunk_size: u32,
    /// Streams of the bare quinn transfer (on one connection).
    #[arg(long, default_value_t = swarmcast_chaos::pair::DEFAULT_STREAMS, value_parser = parse_positive_count::<usize>)]
    streams: usize,
    /// Repetitions (median, min and max are reported).
    #[arg(long, default_value_t = 3, value_parser = parse_positive_count::<usize>)]
    runs: usize,
    /// Give up on a transfer after this long.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    timeout: Duration,
    /// Machine-readable output (every run, then median, min and max).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchStrategy {
    /// The swarm, then the client-server baseline.
    Both,
    /// The swarm only.
    Swarm,
    /// The client-server baseline only.
    OriginOnly,
}

fn parse_host_rate(s: &str) -> Result<(String, f64), String> {
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
struct BenchFilesArgs {
    /// Files in the many-files dataset.
    #[arg(long, default_value_t = 100_000, value_parser = parse_positive_count::<u64>)]
    files: u64,
    /// Bytes of each file (e.g. 4KiB).
    #[arg(long, default_value = "4KiB", value_parser = parse_positive_size)]
    file_size: u64,
    /// Receivers (the origin is extra).
    #[arg(long, default_value_t = 4, value_parser = parse_positive_count::<usize>)]
    receivers: usize,
    /// Chunk size.
    #[arg(long, default_value = "1MiB", value_parser = parse_bytes)]
    chunk_size: u32,
    /// Repetitions (median, min and max are reported).
    #[arg(long, default_value_t = 3, value_parser = parse_positive_count::<usize>)]
    runs: usize,
    /// Give up on a transfer after this long.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    timeout: Duration,
    /// Machine-readable output (every run, then median, min and max).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Size of the sample dataset (e.g. 200MiB, 1GiB).
    #[arg(long, default_value = "200MiB", value_parser = parse_size)]
    size: u64,
    /// Nodes, the origin included.
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// Bootstraps.
    #[arg(long, default_value_t = 3)]
    bootstraps: usize,
    /// Keep the temporary directory (certificates, data dirs, logs) for inspection.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
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
    },
}

#[derive(Debug, Args)]
struct BootstrapArgs {
    /// Identity directory (from `certs issue`), e.g. certs/b1.
    #[arg(long)]
    identity: PathBuf,
    /// QUIC address to listen on (must be a concrete address: it is what others dial).
    #[arg(long)]
    listen: SocketAddr,
    /// A fellow bootstrap to replicate with (repeatable).
    #[arg(long = "peer")]
    peers: Vec<SocketAddr>,
    /// Where the registry snapshot and incarnation are kept.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// No heartbeat for this long: suspect.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    suspect_after: Duration,
    /// No heartbeat for this long: dead.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    dead_after: Duration,
    /// Dead entries are dropped this long after death.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    gc_after: Duration,
    /// Push-pull period with each fellow.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    anti_entropy: Duration,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Run the node daemon in the foreground.
    Join(JoinArgs),
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
}

#[derive(Debug, Args)]
struct SendArgs {
    /// The directory to send (regular files and directories only).
    dir: PathBuf,
    #[command(flatten)]
    data: DataDir,
    /// Bytes per chunk (e.g. 1MiB, 256KiB).
    #[arg(long, default_value = "1MiB", value_parser = parse_bytes)]
    chunk_size: u32,
    /// Wait until every alive node holds the broadcast, showing fleet progress.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up (exit 1) after this long.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DataDir {
    /// The node's data dir (control socket, incarnation, broadcasts).
    #[arg(long, env = "SWARMCAST_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
struct JoinArgs {
    /// Identity directory (from `certs issue`), e.g. certs/n1.
    #[arg(long)]
    identity: PathBuf,
    /// A bootstrap to register through (repeatable; the first that answers is used).
    #[arg(long = "seed", required = true)]
    seeds: Vec<SocketAddr>,
    /// QUIC address to bind.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Address other nodes dial (default: the bound address).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    #[command(flatten)]
    data: DataDir,
    /// Heartbeat period.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    heartbeat: Duration,
    /// Give up (exit 1) if no seed accepts the registration in this time.
    #[arg(long, value_parser = parse_duration)]
    join_timeout: Option<Duration>,
    /// Target number of neighbours.
    #[arg(long, default_value_t = 8)]
    neighbours: usize,
    /// Who serves receivers: `swarm`, or `origin-only` (client-server, a baseline for
    /// benchmarks: every node of the fleet must use it, with `--neighbours` at least the
    /// fleet size so that every receiver is connected to the origin).
    #[arg(long, value_enum, default_value_t = StrategyArg::Swarm)]
    strategy: StrategyArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StrategyArg {
    /// Receivers serve each other; the origin super-seeds.
    Swarm,
    /// Only the origin serves.
    OriginOnly,
}

#[derive(Debug, Args)]
struct RegistryArgs {
    /// The bootstrap to ask.
    #[arg(long)]
    seed: SocketAddr,
    /// Identity directory to authenticate with (any role).
    #[arg(long)]
    identity: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".swarmcast"))
        .unwrap_or_else(|| PathBuf::from(".swarmcast"))
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: swarmcast_proto::RoleParseError| e.to_string())
}

/// "4096", "256KiB", "1MiB", "4M" (K/M/G are powers of 1024 too); must fit in 32 bits.
fn parse_bytes(s: &str) -> Result<u32, String> {
    parse_size(s).and_then(|v| u32::try_from(v).map_err(|_| format!("size {s:?} is too large")))
}

/// Like [`parse_bytes`], up to 64 bits.
fn parse_size(s: &str) -> Result<u64, String> {
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
fn parse_positive_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("must be more than 0 bytes".to_owned()),
        n => Ok(n),
    }
}

/// A count of at least 1.
fn parse_positive_count<T: std::str::FromStr + PartialEq + From<u8>>(s: &str) -> Result<T, String> {
    match s.trim().parse::<T>() {
        Ok(n) if n == T::from(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("invalid count {s:?} (a whole number, at least 1)")),
    }
}

/// "250ms", "3s", "1.5s", "2m"; a bare number is seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Daemons log their lifecycle; one-shot commands only warnings, unless RUST_LOG says more.
    let default = match cli.command {
        Command::Bootstrap(_) | Command::Node(NodeCommand::Join(_)) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    swarmcast_certs::install_crypto_provider();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Resolves on SIGINT or SIGTERM.
/// Run `fut` to its end, or stop at SIGINT/SIGTERM: the future is then dropped, which kills
/// its processes (by PID) and takes its network lab down.
fn until_signal<T>(
    rt: &tokio::runtime::Runtime,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    rt.block_on(async {
        tokio::select! {
            r = fut => r,
            () = shutdown_signal() => bail!("interrupted"),
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Certs(CertsCommand::Init { dir }) => {
            let paths = swarmcast_certs::init_ca(&dir)
                .with_context(|| format!("creating the CA in {}", dir.display()))?;
            println!(
                "created {} and {}",
                paths.cert.display(),
                paths.key.display()
            );
            Ok(())
        }
        Command::Certs(CertsCommand::Issue { dir, name, role }) => {
            let paths = swarmcast_certs::issue(&dir, &name, role)
                .with_context(|| format!("issuing {name}"))?;
            println!(
                "issued {role} certificate {} (key {})",
                paths.cert.display(),
                paths.key.display()
            );
            Ok(())
        }
        Command::Bootstrap(args) => {
            let identity = load_identity(&args.identity)?;
            let mut config = swarmcast_bootstrap::BootstrapConfig::new(args.listen);
            config.peers = args.peers;
            config.data_dir = args.data_dir;
            config.anti_entropy_interval = args.anti_entropy;
            config.registry.suspect_after = args.suspect_after;
            config.registry.dead_after = args.dead_after;
            config.registry.gc_after = args.gc_after;
            if args.dead_after <= args.suspect_after {
                bail!("--dead-after must be longer than --suspect-after");
            }
            runtime()?.block_on(swarmcast_bootstrap::run(
                identity,
                config,
                shutdown_signal(),
            ))?;
            Ok(())
        }
        Command::Node(NodeCommand::Join(args)) => {
            let identity = load_identity(&args.identity)?;
            if args.neighbours == 0 {
                bail!("--neighbours must be at least 1");
            }
            let mut config = swarmcast_node::NodeConfig::new(args.seeds, args.data.data_dir);
            config.listen = args.listen;
            config.advertise = args.advertise;
            config.heartbeat = args.heartbeat;
            config.join_timeout = args.join_timeout;
            config.neighbours.target = args.neighbours;
            config.neighbours.max_neighbours = args.neighbours * 2 + 4;
            config.strategy = match args.strategy {
                StrategyArg::Swarm => swarmcast_node::Strategy::Swarm,
                StrategyArg::OriginOnly => swarmcast_node::Strategy::OriginOnly,
            };
            // Test-only fault switches, read from the environment so they never show in --help.
            config.fault_corrupt = std::env::var("SWARMCAST_FAULT_CORRUPT").is_ok_and(|v| v == "1");
            config.fault_serve_delay = std::env::var("SWARMCAST_FAULT_SERVE_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis);
            runtime()?.block_on(swarmcast_node::run(identity, config, shutdown_signal()))?;
            Ok(())
        }
        Command::Node(NodeCommand::Send(args)) => send::run(args),
        Command::Node(NodeCommand::Ls { data, json }) => {
            let list = runtime()?.block_on(swarmcast_node::control::list(&data.data_dir))?;
            output::broadcasts(&list, json)
        }
        Command::Node(NodeCommand::Status { data, json }) => {
            let status = runtime()?.block_on(swarmcast_node::control::status(&data.data_dir))?;
            output::node_status(&status, json)
        }
        Command::Demo(args) => {
            let exe = std::env::current_exe().context("locating the swarmcast binary")?;
            let config = swarmcast_chaos::demo::DemoConfig {
                size: args.size,
                nodes: args.nodes,
                bootstraps: args.bootstraps,
                keep: args.keep,
                ..Default::default()
            };
            until_signal(&runtime()?, swarmcast_chaos::demo::run(exe, config)).map(|_| ())
        }
        Command::Bench(BenchCommand::Local {
            receivers,
            size,
            files,
            chunk_size,
            runs,
            timeout,
        }) => {
            if receivers == 0 || files == 0 || runs == 0 {
                bail!("--receivers, --files and --runs must be at least 1");
            }
            let exe = std::env::current_exe().context("locating the swarmcast binary")?;
            let config = swarmcast_chaos::bench::BenchConfig {
                receivers,
                size,
                files,
                chunk_size,
                timeout,
            };
            let rt = runtime()?;
            let mut results = Vec::new();
            for run in 1..=runs {
                let r = until_signal(&rt, swarmcast_chaos::bench::run(exe.clone(), &config))?;
                let j = r.to_json(&config);
                eprintln!("run {run}/{runs}: {j}");
                results.push(j);
            }
            let mut secs: Vec<f64> = results
                .iter()
                .filter_map(|r| r["transfer_s"].as_f64())
                .collect();
            secs.sort_by(f64::total_cmp);
            let summary = serde_json::json!({
                "runs": results,
                "transfer_s": { "median": secs[secs.len() / 2], "min": secs[0], "max": secs[secs.len() - 1] },
            });
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Command::Bench(BenchCommand::Swarm(args)) => {
            use swarmcast_chaos::lab_bench::{self, Strategy};
            swarmcast_chaos::netns::preflight()?;
            let config = lab_bench::SwarmBenchConfig {
                receivers: args.receivers,
                size: args.size,
                rate_mbit: args.rate_mbit,
                host_rates: args.host_rates.into_iter().collect(),
                chunk_size: args.chunk_size,
                strategies: match args.strategy {
                    BenchStrategy::Both => vec![Strategy::Swarm, Strategy::OriginOnly],
                    BenchStrategy::Swarm => vec![Strategy::Swarm],
                    BenchStrategy::OriginOnly => vec![Strategy::OriginOnly],
                },
                timeout: args.timeout,
                sample: Duration::from_millis(500),
            };
            let exe = std::env::current_exe().context("locating the swarmcast binary")?;
            let report = until_signal(&runtime()?, lab_bench::run(exe, &config))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.summary());
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Pair(args)) => bench_pair(args),
        Command::Bench(BenchCommand::Files(args)) => bench_files(args),
        Command::Chaos(ChaosCommand::Presets) => {
            for (name, text) in swarmcast_chaos::scenario::PRESETS {
                let description = swarmcast_chaos::scenario::Scenario::from_toml(text)
                    .map(|s| s.description)
                    .unwrap_or_default();
                println!("{name:<16} {description}");
            }
            Ok(())
        }
        Command::Chaos(ChaosCommand::Run(args)) => {
            let text = match (&args.preset, &args.scenario) {
                (Some(name), _) => swarmcast_chaos::scenario::preset(name)
                    .with_context(|| format!("no preset {name:?} (see `swarmcast chaos presets`)"))?
                    .to_owned(),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
                (None, None) => bail!("give --preset NAME or --scenario FILE"),
            };
            let scenario = swarmcast_chaos::scenario::Scenario::from_toml(&text)?;
            let mode = match args.mode {
                ChaosMode::Process => swarmcast_chaos::scenario::Mode::Process,
                ChaosMode::Netns => {
                    // Checked before anything starts: a clear error, never a silent skip.
                    swarmcast_chaos::netns::preflight()?;
                    swarmcast_chaos::scenario::Mode::Netns
                }
            };
            let exe = std::env::current_exe().context("locating the swarmcast binary")?;
            until_signal(
                &runtime()?,
                swarmcast_chaos::scenario::run(mode, exe, scenario, args.seed, args.report),
            )
            .map(|_| ())
        }
        Command::Registry(args) => {
            let identity = load_identity(&args.identity)?;
            let (peer, view) = runtime()?.block_on(async {
                let transport = swarmcast_net::transport_config();
                let client_config = identity.client_config(transport)?;
                // Loopback seeds are dialled from loopback; others from any local address.
                let local = match args.seed.ip() {
                    ip if ip.is_loopback() => SocketAddr::new(ip, 0),
                    std::net::IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
                    std::net::IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
                };
                let endpoint = quinn::Endpoint::client(local).context("opening a UDP socket")?;
                let client = swarmcast_bootstrap::BootstrapClient::connect(
                    &endpoint,
                    &client_config,
                    args.seed,
                    Duration::from_secs(5),
                )
                .await
                .with_context(|| format!("connecting to {}", args.seed))?;
                let view = client.lookup().await.context("registry lookup")?;
                let peer = client.peer().clone();
                client.close();
                endpoint.wait_idle().await;
                anyhow::Ok((peer, view))
            })?;
            output::registry(args.seed, &peer, &view, args.json)
        }
    }
}

/// A bad combination of arguments: clap's message and exit code 2, like a bad single value.
fn usage_error(bench: &str, e: anyhow::Error) -> ! {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    cli.build();
    let kind = clap::error::ErrorKind::ValueValidation;
    let msg = format!("{e:#}");
    match cli
        .find_subcommand_mut("bench")
        .and_then(|b| b.find_subcommand_mut(bench))
    {
        Some(sub) => sub.error(kind, msg).exit(),
        None => cli.error(kind, msg).exit(),
    }
}

/// `bench pair`: each run's line on stderr, the summary on stdout.
fn bench_pair(args: BenchPairArgs) -> Result<()> {
    use swarmcast_chaos::pair;
    let exe = std::env::current_exe().context("locating the swarmcast binary")?;
    let config = pair::PairConfig {
        size: args.size,
        chunk_size: args.chunk_size,
        streams: args.streams,
        timeout: args.timeout,
    };
    if let Err(e) = config.validate() {
        usage_error("pair", e);
    }
    let rt = runtime()?;
    let mut runs = Vec::new();
    for i in 1..=args.runs {
        let r = until_signal(&rt, pair::run(exe.clone(), &config))?;
        if args.json {
            eprintln!("run {i}/{}: {}", args.runs, r.to_json(&config));
        } else {
            eprintln!("{}", pair::run_text(&r, i, args.runs));
        }
        runs.push(r);
    }
    if args.json {
        let summary = pair::summary_json(&config, &runs);
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", pair::summary_text(&config, &runs));
    }
    Ok(())
}

/// `bench files`: each run's line on stderr, the summary on stdout.
fn bench_files(args: BenchFilesArgs) -> Result<()> {
    use swarmcast_chaos::files;
    let config = files::FilesConfig {
        files: args.files,
        file_size: args.file_size,
        receivers: args.receivers,
        chunk_size: args.chunk_size,
        timeout: args.timeout,
    };
    if let Err(e) = config.validate() {
        usage_error("files", e);
    }
    let exe = std::env::current_exe().context("locating the swarmcast binary")?;
    let rt = runtime()?;
    let mut runs = Vec::new();
    for i in 1..=args.runs {
        let r = until_signal(&rt, files::run(exe.clone(), &config))?;
        if args.json {
            eprintln!("run {i}/{}: {}", args.runs, r.to_json(&config)?);
        } else {
            eprintln!("{}", files::run_text(&r, i, args.runs));
        }
        runs.push(r);
    }
    if args.json {
        let summary = files::summary_json(&config, &runs)?;
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", files::summary_text(&config, &runs));
    }
    Ok(())
}

fn load_identity(dir: &Path) -> Result<swarmcast_certs::Identity> {
    swarmcast_certs::Identity::load(dir)
        .with_context(|| format!("loading identity from {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse_bytes("4m"), Ok(4 << 20));
        assert!(parse_bytes("8GiB").is_err());
        assert!(parse_bytes("1 parsec").is_err());
        assert!(parse_bytes("-1").is_err());
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
