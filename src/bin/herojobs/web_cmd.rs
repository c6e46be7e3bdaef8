//! `herojobs web`: the dashboard and `/metrics` on their own (any number of watchdogs
//! elsewhere publish what it shows), until Ctrl-C / SIGTERM.

use crate::{Failure, Global};
use clap::Args;
use herojobs::web::{serve, WebConfig};
use herojobs::Client;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Options of the dashboard (`web`, and `run --http`).
#[derive(Args)]
pub struct WebArgs {
    /// Address to listen on (keep it on localhost unless a proxy in front adds TLS).
    #[arg(long, default_value = "127.0.0.1:8088")]
    pub addr: String,
    /// Token that allows actions (delete, empty); without one the dashboard is read-only.
    #[arg(long, env = "HEROJOBS_WEB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Starts the dashboard and says where (on stderr: stdout stays for data).
pub fn start(
    client: Client,
    addr: &str,
    token: Option<String>,
) -> Result<herojobs::web::WebHandle, Failure> {
    let web = serve(client, WebConfig::new(addr).token(token.clone()))?;
    eprintln!(
        "herojobs: dashboard at http://{} ({}); metrics at http://{}/metrics",
        web.addr(),
        if token.is_some_and(|t| !t.is_empty()) {
            "actions need the token"
        } else {
            "read-only: no --token"
        },
        web.addr()
    );
    Ok(web)
}

pub fn run(g: &Global, a: WebArgs) -> Result<ExitCode, Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst))?;
    let client = Client::connect(&g.redis, g.base())?;
    let mut web = start(client, &a.addr, a.token)?;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    web.stop();
    Ok(ExitCode::SUCCESS)
}
