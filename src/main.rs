//! The `staylinked` command line: parses flags (mirroring env vars) and hands off to the library.

use clap::{Parser, Subcommand};

/// staylinked — a hydrate-and-run WhatsApp Web multi-device gateway for ephemeral containers.
#[derive(Debug, Parser)]
#[command(name = "staylinked", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the crate's protocol constants (intro header, dictionary version) and exit.
    Info,
    /// Run the WhatsApp server simulator (WebSocket `/ws/chat` + JSON `/admin` on one port).
    /// Prints one JSON line (`ws_url`, `admin_url`, `root_public_key`) when ready; runs until
    /// SIGINT/SIGTERM.
    Sim {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, env = "STAYLINKED_SIM_LISTEN", default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Info) {
        Command::Info => {
            let intro = staylinked::wa::frame::INTRO;
            #[expect(clippy::print_stdout, reason = "the CLI's output")]
            {
                println!("staylinked {}: WhatsApp Web intro {intro:02x?}", env!("CARGO_PKG_VERSION"));
            }
        }
        Command::Sim { listen } => run_sim(listen)?,
        Command::Bench {
            what: BenchCommand::Store { tenants, prekeys, sessions, commits, concurrency, out },
        } => {
            let options = staylinked::store::bench::BenchOptions {
                tenants,
                prekeys,
                sessions,
                commits,
                concurrency,
                out_dir: out,
                ..Default::default()
            };
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let report = rt.block_on(staylinked::store::bench::run(options));
            #[expect(clippy::print_stdout, reason = "the command's output is the report")]
            {
                println!("{}", staylinked::store::bench::markdown(&report));
                for f in &report.files {
                    println!("wrote {}", f.display());
                }
            }
        }
    }
    Ok(())
}

/// `staylinked sim`: start the simulator, print the ready line, serve until a signal.
fn run_sim(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let server = staylinked::sim::Server::start(staylinked::sim::SimConfig::new(listen)).await?;
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
