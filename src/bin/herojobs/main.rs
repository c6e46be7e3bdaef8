//! The `herojobs` command: one file per subcommand group; this file parses the command line,
//! sets up logging and turns errors into a message on stderr and a non-zero exit status.

mod ourdb_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// herojobs: a job queue and processing engine (Redis queues, OurDB persistence, a watchdog).
#[derive(Parser)]
#[command(name = "herojobs", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and maintain an OurDB database directory.
    #[command(subcommand)]
    Ourdb(ourdb_cmd::OurdbCommand),
}

/// What a subcommand reports when it fails: the message, and the exit status to use.
pub struct Failure {
    /// Printed to stderr after "herojobs: ".
    pub message: String,
    /// Process exit status (1 for errors, 2 for usage problems).
    pub code: u8,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            message: e.to_string(),
            code: 1,
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ourdb(cmd) => ourdb_cmd::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("herojobs: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
