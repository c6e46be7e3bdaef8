//! The `herojobs` command: one file per subcommand group; this file parses the command line,
//! sets up logging and turns errors into a message on stderr and a non-zero exit status.

mod bench;
mod demo;
mod heroscript_cmd;
pub mod human;
mod jobs_cmd;
mod lifecycle_cmd;
mod ourdb_cmd;
mod run_cmd;
#[cfg(feature = "web")]
mod web_cmd;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// herojobs: a job queue and processing engine (Redis queues, OurDB persistence, a watchdog).
#[derive(Parser)]
#[command(name = "herojobs", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Args, Clone)]
pub struct Global {
    /// Redis URL (redis://, unix://).
    // `hide_env_values`: `--help` would otherwise print the variable's value, password and all.
    #[arg(
        long = "redis",
        global = true,
        env = "HEROJOBS_REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis: String,
    /// Base directory of the job databases [default: ~/hero/var].
    #[arg(long = "base", global = true, env = "HEROJOBS_BASE")]
    pub base: Option<PathBuf>,
    /// Machine-readable output (JSON).
    #[arg(long, global = true)]
    pub json: bool,
    /// File of per-circle signing secrets, one `circle secret` per line (`#` comments):
    /// `submit` signs the jobs of these circles, `run` refuses their unsigned or badly signed
    /// jobs. Keep it readable by its owner only.
    #[arg(long = "signing-keys", global = true, env = "HEROJOBS_SIGNING_KEYS")]
    pub signing_keys: Option<PathBuf>,
}

impl Global {
    /// The (circle, secret) pairs of `--signing-keys`, none without it.
    pub fn signing_keys(&self) -> Result<Vec<(String, Vec<u8>)>, Failure> {
        let Some(path) = &self.signing_keys else {
            return Ok(Vec::new());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--signing-keys {}: {e}", path.display()))?;
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((circle, secret)) = line.split_once(char::is_whitespace) else {
                return Err(format!(
                    "--signing-keys {} line {}: expected `circle secret`",
                    path.display(),
                    n + 1
                )
                .into());
            };
            out.push((circle.to_string(), secret.trim().as_bytes().to_vec()));
        }
        Ok(out)
    }

    /// The base directory, defaulting to `~/hero/var`.
    pub fn base(&self) -> PathBuf {
        self.base.clone().unwrap_or_else(herojobs::default_base)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the watchdog: take jobs off the queues and run them until Ctrl-C / SIGTERM.
    Run(run_cmd::RunArgs),
    /// Submit a job; prints its id (with --wait, its result).
    Submit(jobs_cmd::SubmitArgs),
    /// Show a job: params, result or error, logs, times and its history (OurDB answers
    /// when Redis is down).
    Get(jobs_cmd::GetArgs),
    /// Wait for a job to finish; exit status 0 if done.
    Wait(jobs_cmd::WaitArgs),
    /// List the jobs of a circle/topic (from OurDB), newest first, with their status.
    List(jobs_cmd::ListArgs),
    /// Cancel a job: waiting, delayed or running (on any watchdog); it ends `cancelled`.
    Cancel(lifecycle_cmd::CancelArgs),
    /// Queue a failed job (or every dead one) again.
    Retry(lifecycle_cmd::RetryArgs),
    /// List the dead jobs of a circle/topic (failed after their last attempt).
    Dead(lifecycle_cmd::DeadArgs),
    /// Empty the dead set of a circle/topic.
    Purge(jobs_cmd::TopicArgs),
    /// Stop every watchdog taking jobs from a queue (submits go on queueing).
    Pause(jobs_cmd::TopicArgs),
    /// Let watchdogs take from a paused queue again.
    Resume(jobs_cmd::TopicArgs),
    /// List the queues and how many jobs wait in each.
    Queues,
    /// Engine counters and queue depths (--watch for a live view).
    Stats(jobs_cmd::StatsArgs),
    /// Run a demo of the whole system (Redis if one answers, embedded otherwise).
    Demo(demo::DemoArgs),
    /// The standard benchmark: enqueue, drain, round trip.
    Bench(bench::BenchArgs),
    /// Serve the web dashboard and /metrics (read-only without a token).
    #[cfg(feature = "web")]
    Web(web_cmd::WebArgs),
    /// Inspect and maintain an OurDB database directory.
    #[command(subcommand)]
    Ourdb(ourdb_cmd::OurdbCommand),
    /// Check HeroScript: show how a script parses.
    #[command(subcommand)]
    Heroscript(heroscript_cmd::HeroscriptCommand),
}

/// What a subcommand reports when it fails: the message, and the exit status to use.
pub struct Failure {
    /// Printed to stderr after "herojobs: ".
    pub message: String,
    /// Process exit status (1 for errors, 2 for usage problems).
    pub code: u8,
}

impl<E: std::fmt::Display + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        // A closed stdout (the reader exited: `herojobs ... | head -1`) is not a failure.
        let broken_pipe = (&e as &dyn std::any::Any)
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
        Failure {
            message: e.to_string(),
            code: if broken_pipe { 0 } else { 1 },
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let g = cli.global;
    let redis_url = g.redis.clone();
    let result = match cli.command {
        Command::Run(a) => run_cmd::run(&g, a),
        Command::Submit(a) => jobs_cmd::submit(&g, a),
        Command::Get(a) => jobs_cmd::get(&g, a),
        Command::Wait(a) => jobs_cmd::wait(&g, a),
        Command::List(a) => jobs_cmd::list(&g, a),
        Command::Queues => jobs_cmd::queues(&g),
        Command::Cancel(a) => lifecycle_cmd::cancel(&g, a),
        Command::Retry(a) => lifecycle_cmd::retry(&g, a),
        Command::Dead(a) => lifecycle_cmd::dead(&g, a),
        Command::Purge(a) => lifecycle_cmd::purge(&g, a),
        Command::Pause(a) => lifecycle_cmd::pause(&g, a, true),
        Command::Resume(a) => lifecycle_cmd::pause(&g, a, false),
        Command::Stats(a) => jobs_cmd::stats(&g, a),
        Command::Demo(a) => demo::run(&g, a),
        Command::Bench(a) => bench::run(&g, a),
        #[cfg(feature = "web")]
        Command::Web(a) => web_cmd::run(&g, a),
        Command::Ourdb(cmd) => ourdb_cmd::run(&g, cmd),
        Command::Heroscript(cmd) => heroscript_cmd::run(&g, cmd),
    };
    match result {
        Ok(code) => code,
        Err(f) if f.code == 0 => ExitCode::SUCCESS,
        Err(f) => {
            // Belt and braces: whatever a message quotes, the Redis password is not shown.
            eprintln!(
                "herojobs: {}",
                herojobs::redact::redact_in(&f.message, &redis_url)
            );
            ExitCode::from(f.code)
        }
    }
}
