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
