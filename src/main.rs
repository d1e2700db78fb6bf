//! The `staylinked` command line: parses flags (mirroring env vars) and hands off to the library.
//! `run` is the default command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use staylinked::config::{Config, LogFormat, RunArgs};

/// staylinked — a hydrate-and-run WhatsApp Web multi-device gateway for ephemeral containers.
///
/// Without a subcommand, runs the gateway (`run`). Every flag mirrors an environment variable.
#[derive(Debug, Parser)]
#[command(
    name = "staylinked",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = "Other environment variables:\n  \
      RUST_LOG                        log filter (default info), e.g. staylinked=debug\n  \
      GOOGLE_CLOUD_PROJECT            Firestore project (selects the firestore store by default)\n  \
      FIRESTORE_EMULATOR_HOST         host:port of a Firestore emulator\n  \
      STAYLINKED_FIRESTORE_DATABASE   Firestore database id (default \"(default)\")\n  \
      STAYLINKED_MASTER_KEYS_OLD      comma-separated old master keys (rotation)\n  \
      STAYLINKED_ALLOW_PLAINTEXT=1    allow Firestore without a master key (not recommended)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (default): hydrate every tenant, reconnect linked ones without QR, serve
    /// the HTTP API; SIGTERM/SIGINT flush and exit 0 within the shutdown deadline.
    Run(Box<RunArgs>),
    /// Zero-setup demo: in-process simulator + embedded store in a temp dir, 3 tenants linked by
    /// QR, two restarts (graceful, then a crash); prints a table. Exits non-zero if an
    /// invariant broke.
    Demo {
        /// Log format for the demo's logs (stderr; RUST_LOG filters, default warn).
        #[arg(long, env = "STAYLINKED_LOG_FORMAT", default_value = "text")]
        log_format: LogFormat,
    },
    /// Re-seal every stored value under the current master key (STAYLINKED_MASTER_KEY), opening
    /// old ones with STAYLINKED_MASTER_KEYS_OLD; prints progress per tenant. Resumable: safe to
    /// interrupt and rerun. Embedded store: run it while the gateway is stopped (file lock);
    /// Firestore: may run beside a gateway that already uses the new key.
    Rekey(Box<RunArgs>),
    /// Print the crate's protocol constants (intro header, dictionary version) and exit.
    Info,
    /// Probe the local gateway's `/healthz` (the container HEALTHCHECK): exit 0 on 200, 1
    /// otherwise. Uses PORT and STAYLINKED_BIND like `run` (127.0.0.1 for an unspecified bind).
    Healthcheck {
        /// Port of the gateway.
        #[arg(long, env = "PORT", default_value_t = 8080)]
        port: u16,
        /// Address the gateway binds (`run`'s STAYLINKED_BIND).
        #[arg(long, env = "STAYLINKED_BIND")]
        bind: Option<std::net::IpAddr>,
    },
    /// Run the WhatsApp server simulator (WebSocket `/ws/chat` + JSON `/admin` on one port).
    /// Prints one JSON line (`ws_url`, `admin_url`, `root_public_key`) when ready; runs until
    /// SIGINT/SIGTERM.
    Sim {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, env = "STAYLINKED_SIM_LISTEN", default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Oldest client version accepted (`2.3000.N`): older ClientPayloads get
        /// `<failure reason="405">` at registration and login (`PUT /admin/config
        /// {"min_version":…}` changes it at run time). Default: any version.
        #[arg(long, env = "STAYLINKED_SIM_MIN_VERSION")]
        min_version: Option<staylinked::wa::version::WaVersion>,
    },
    /// Sleep/wake chaos: link tenants through a simulator, then stop and start real gateway
    /// processes (SIGTERM, SIGKILL, overlapping starts) against one store and check that nothing
    /// re-pairs, duplicates a device or conflicts (440). Writes chaos.json + chaos.md; exits
    /// non-zero on any violation. `scripts/chaos.sh` wraps it.
    #[command(hide = true)]
    Chaos(Box<ChaosArgs>),
    /// Run a benchmark and write a JSON + Markdown report.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Session store: commit latency p50/p99 for a typical delta batch and hydration throughput
    /// for N tenants x (creds + prekeys + sessions), per backend (memory, embedded redb file, and
    /// the Firestore emulator when FIRESTORE_EMULATOR_HOST is set).
    Store {
        /// Tenants to hydrate.
        #[arg(long, default_value_t = 1000)]
        tenants: usize,
        /// One-time prekeys per tenant.
        #[arg(long, default_value_t = 30)]
        prekeys: u32,
        /// Signal sessions per tenant.
        #[arg(long, default_value_t = 5)]
        sessions: u32,
        /// Commits timed for the latency percentiles.
        #[arg(long, default_value_t = 300)]
        commits: usize,
        /// Hydration concurrency.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Directory for store-bench.json and store-bench.md.
        #[arg(long, default_value = "bench-reports")]
        out: std::path::PathBuf,
    },
    /// Messaging end to end through an in-process simulator: send → delivered latency (p50/p99)
    /// and messages/s in each direction for one hosted tenant and a simulated phone (outbox
    /// pacing bypassed). Writes messages.json and messages.md.
    Messages {
        /// Sequential messages for the latency figures.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Messages per burst (each direction).
        #[arg(long, default_value_t = 500)]
        burst: usize,
        /// Use the memory store instead of the embedded store (fsync per commit).
        #[arg(long)]
        memory: bool,
        /// Directory for messages.json and messages.md.
        #[arg(long, default_value = "bench-reports")]
        out: std::path::PathBuf,
    },
    /// The real gateway at scale: provisions N linked tenants (no QR) into the store and an
    /// in-process simulator, runs `staylinked run` as a child process, and measures cold start
    /// (p50/p99 per tenant), RSS per idle tenant, SIGTERM → exit and delta latency; then N
    /// Baileys sockets on the same simulator (scripts/interop/bench-baileys.mjs). Writes
    /// scale.json and scale.md.
    Scale {
        /// Linked tenants (and Baileys sockets).
        #[arg(long, default_value_t = 1000)]
        tenants: usize,
        /// Store of the gateway: embedded (redb file) or firestore (the emulator at
        /// FIRESTORE_EMULATOR_HOST, a fresh project per run).
        #[arg(long, value_enum, default_value = "embedded")]
        store: staylinked::bench::ScaleStore,
        /// Idle settle before each RSS reading (`30s`, `500ms`).
        #[arg(long, default_value = "30s", value_parser = staylinked::config::parse_duration)]
        idle: std::time::Duration,
        /// Connect stagger of the gateway per tenant in ms (0: all at once, like Baileys here).
        #[arg(long, default_value_t = 0)]
        connect_stagger_ms: u64,
        /// Hydration concurrency of the gateway.
        #[arg(long, default_value_t = 16)]
        hydrate_concurrency: usize,
        /// Skip the Baileys side.
        #[arg(long)]
        no_baileys: bool,
        /// Skip the delta-latency burst.
        #[arg(long)]
        no_deltas: bool,
        /// The Baileys script.
        #[arg(long, default_value = "scripts/interop/bench-baileys.mjs")]
        baileys_script: std::path::PathBuf,
        /// The gateway binary (default: this executable).
        #[arg(long)]
        bin: Option<std::path::PathBuf>,
        /// Directory for scale.json and scale.md.
        #[arg(long, default_value = "bench-reports")]
        out: std::path::PathBuf,
    },
}

/// Flags of `staylinked chaos`.
#[derive(Debug, clap::Args)]
struct ChaosArgs {
    /// Tenants to link.
    #[arg(long, default_value_t = 50)]
    tenants: usize,
    /// Disruption cycles.
    #[arg(long, default_value_t = 200)]
    cycles: usize,
    /// Seed of the cycle mix (printed; rerun with it to replay).
    #[arg(long, default_value_t = staylinked::chaos::DEFAULT_SEED)]
    seed: u64,
    /// Store shared by the gateways: `embedded` (redb file) or `firestore` (the emulator at
    /// FIRESTORE_EMULATOR_HOST).
    #[arg(long, default_value = "embedded")]
    store: String,
    /// Send messages both ways during the chaos and check 0 lost / 0 duplicated / 0 decrypt
    /// failures (`--messages false` turns the traffic off). Tenant → phone runs only when the
    /// build has the message API (`POST /v1/tenants/{id}/messages`); the report says when not.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    messages: bool,
    /// Tenants picked per cycle for one message each way.
    #[arg(long, default_value_t = 5)]
    messages_per_cycle: usize,
    /// Lease TTL of the gateways (a SIGKILLed process's tenants wait this long).
    #[arg(long, default_value = "6s", value_parser = staylinked::config::parse_duration)]
    lease_ttl: std::time::Duration,
    /// Deadline of each wait.
    #[arg(long, default_value = "60s", value_parser = staylinked::config::parse_duration)]
    wait: std::time::Duration,
    /// Work directory (store file, per-process logs); emptied first.
    #[arg(long, default_value = "target/chaos")]
    work_dir: std::path::PathBuf,
    /// Directory for chaos.json and chaos.md.
    #[arg(long, default_value = "bench-reports")]
    out: std::path::PathBuf,
    /// The gateway binary (default: this executable).
    #[arg(long)]
    bin: Option<std::path::PathBuf>,
}

fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        _ => builder.try_init(),
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(&cli.run),
        Some(Command::Run(args)) => run(&args),
        Some(Command::Demo { log_format }) => demo(log_format),
        Some(Command::Rekey(args)) => rekey(&args),
        Some(Command::Info) => {
            let intro = staylinked::wa::frame::INTRO;
            #[expect(clippy::print_stdout, reason = "the CLI's output")]
            {
                println!("staylinked {}: WhatsApp Web intro {intro:02x?}", env!("CARGO_PKG_VERSION"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Sim { listen, min_version }) => {
            run_sim(listen, min_version).map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Healthcheck { port, bind }) => Ok(healthcheck(port, bind)),
        Some(Command::Chaos(args)) => chaos(*args),
        Some(Command::Bench {
            what: BenchCommand::Store { tenants, prekeys, sessions, commits, concurrency, out },
        }) => bench_store(staylinked::store::bench::BenchOptions {
            tenants,
            prekeys,
            sessions,
            commits,
            concurrency,
            out_dir: out,
            ..Default::default()
        }),
        Some(Command::Bench { what: BenchCommand::Messages { samples, burst, memory, out } }) => {
            bench_messages(&staylinked::bench::messages::MessagesOptions {
                latency_samples: samples,
                burst,
                embedded: !memory,
                out,
            })
        }
        Some(Command::Bench {
            what:
                BenchCommand::Scale {
                    tenants,
                    store,
                    idle,
                    connect_stagger_ms,
                    hydrate_concurrency,
                    no_baileys,
                    no_deltas,
                    baileys_script,
                    bin,
                    out,
                },
        }) => bench_scale(staylinked::bench::ScaleOptions {
            tenants,
            store,
            idle,
            connect_stagger_ms,
            hydrate_concurrency,
            baileys: !no_baileys,
            deltas: !no_deltas,
            baileys_script,
            bin: match bin {
                Some(b) => b,
                None => std::env::current_exe().unwrap_or_else(|_| "staylinked".into()),
            },
            out_dir: out,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            ..Default::default()
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            #[expect(clippy::print_stderr, reason = "the CLI's error report")]
            {
                eprintln!("staylinked: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `staylinked run`.
fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    // Invariant 5: the signal handlers exist before the first await, so a SIGTERM that arrives
    // during start-up is a flush too.
    let signals = staylinked::host::shutdown::arm_signals()?;
    init_logging(args.log_format, "info");
    let config = Config::from_args(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let summary = rt.block_on(staylinked::host::run(config, signals.cancelled_owned()))?;
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(if summary.clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `staylinked healthcheck`: one `GET /healthz` over a plain socket, 3 s at most.
fn healthcheck(port: u16, bind: Option<std::net::IpAddr>) -> ExitCode {
    use std::io::{Read as _, Write as _};
    let ip = bind.filter(|ip| !ip.is_unspecified()).unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let addr = std::net::SocketAddr::new(ip, port);
    let timeout = std::time::Duration::from_secs(3);
    let probe = || -> std::io::Result<bool> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200")
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// `staylinked rekey`.
fn rekey(args: &RunArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format, "warn");
    let config = Config::from_args(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let summary = rt.block_on(async {
        let mut out = std::io::stdout();
        staylinked::host::rekey(&config, &mut out).await
    })?;
    Ok(if summary.complete() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `staylinked demo`.
fn demo(log_format: LogFormat) -> anyhow::Result<ExitCode> {
    init_logging(log_format, "warn,staylinked::sim=error,staylinked::host::supervisor=error");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = rt.block_on(async {
        let mut out = std::io::stdout();
        staylinked::demo::run(&mut out).await
    })?;
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `staylinked bench store`.
fn bench_store(options: staylinked::store::bench::BenchOptions) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = rt.block_on(staylinked::store::bench::run(options));
    #[expect(clippy::print_stdout, reason = "the command's output is the report")]
    {
        println!("{}", staylinked::store::bench::markdown(&report));
        for f in &report.files {
            println!("wrote {}", f.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `staylinked chaos`.
fn chaos(a: ChaosArgs) -> anyhow::Result<ExitCode> {
    use staylinked::chaos::{ChaosOptions, ChaosStore};
    init_logging(LogFormat::Text, "warn");
    let bin = match a.bin {
        Some(b) => b,
        None => std::env::current_exe()?,
    };
    let store = match a.store.as_str() {
        "embedded" => ChaosStore::Embedded,
        "firestore" => ChaosStore::Firestore {
            emulator_host: std::env::var("FIRESTORE_EMULATOR_HOST")
                .map_err(|_| anyhow::anyhow!("--store firestore needs FIRESTORE_EMULATOR_HOST"))?,
            project: format!("chaos-{}-{}", a.seed, std::process::id()),
        },
        other => anyhow::bail!("--store {other:?} is not embedded or firestore"),
    };
    let mut o = ChaosOptions::new(bin, a.work_dir, a.tenants, a.cycles);
    o.seed = a.seed;
    o.store = store;
    o.messages = a.messages;
    o.messages_per_cycle = a.messages_per_cycle;
    o.lease_ttl = a.lease_ttl;
    o.wait = a.wait;
    o.progress = true;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = rt.block_on(staylinked::chaos::run(o))?;
    let files = staylinked::chaos::report::write(&report, &a.out)?;
    #[expect(clippy::print_stdout, reason = "the command's output is the report")]
    {
        println!("{}", staylinked::chaos::markdown(&report));
        for f in &files {
            println!("wrote {}", f.display());
        }
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `staylinked bench messages`.
fn bench_messages(o: &staylinked::bench::messages::MessagesOptions) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Text, "warn");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (report, files) = rt.block_on(staylinked::bench::messages::run(o))?;
    #[expect(clippy::print_stdout, reason = "the command's output is the report")]
    {
        println!("{}", staylinked::bench::messages::markdown(&report));
        for f in &files {
            println!("wrote {}", f.display());
        }
    }
    Ok(if report.failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `staylinked bench scale`.
fn bench_scale(options: staylinked::bench::ScaleOptions) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Text, "info");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (report, files) = rt.block_on(staylinked::bench::run(options))?;
    #[expect(clippy::print_stdout, reason = "the command's output is the report")]
    {
        println!("{}", staylinked::bench::report::markdown(&report));
        for f in &files {
            println!("wrote {}", f.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `staylinked sim`: start the simulator, print the ready line, serve until a signal.
fn run_sim(
    listen: std::net::SocketAddr,
    min_version: Option<staylinked::wa::version::WaVersion>,
) -> anyhow::Result<()> {
    init_logging(LogFormat::Text, "warn");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let mut config = staylinked::sim::SimConfig::new(listen);
        config.settings.min_version = min_version;
        let server = staylinked::sim::Server::start(config).await?;
        // The ready line is the command's output contract: exactly one JSON line, flushed.
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", server.ready_line())?;
            out.flush()?;
        }
        wait_for_signal().await?;
        server.shutdown().await;
        anyhow::Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
