//! The `nodegrid` command.
//!
//! Each subcommand lives in its own module and exposes an `Args` struct (clap derive) and a
//! `run(args) -> Result<ExitCode, String>`; an `Err` is printed as one `error: …` line on stderr
//! and the process exits with code 2.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod inspect;

/// Internode grid (MinIO grid v1) tools.
#[derive(Debug, Parser)]
#[command(name = "nodegrid", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode a grid message (or a WebSocket frame carrying one) and print its fields.
    Inspect(inspect::InspectArgs),
}

/// Exit code for bad input or any other failure (the same code clap uses for usage errors).
const EXIT_FAILURE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Inspect(args) => inspect::run(args),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
