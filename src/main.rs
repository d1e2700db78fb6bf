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
    }
    Ok(())
}
