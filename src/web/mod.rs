//! The web dashboard and `/metrics`: a blocking HTTP server (tiny_http on a few threads of
//! our own, no async runtime) that serves the fleet, queue and job pages (static assets
//! embedded in the binary), the `/api/...` JSON behind them, the token-guarded actions and
//! the Prometheus metrics. It reads what every engine publishes (`herojobs-stats:*`), the
//! queues and OurDB, so it runs beside a watchdog (`run --http`, [`serve`] in a program) or
//! alone (`herojobs web`).
//!
//! Routes: `GET /`, `/queue/<circle>/<topic>`, `/job/<circle>/<topic>/<id>` (the page shell;
//! `static/app.js` renders it from the JSON and polls it every 1.5 s), `GET /api/fleet`,
//! `/api/queue/<circle>/<topic>`, `/api/job/<circle>/<topic>/<id>`, `POST /api/action`
//! (token in the `X-Herojobs-Token` header), `GET /metrics`.

mod api;
mod fleet;
mod metrics;

use crate::client::Client;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The header that carries the action token. A cross-site page cannot set it without a
/// CORS preflight, which this server never grants: that is the CSRF protection.
pub const TOKEN_HEADER: &str = "X-Herojobs-Token";

/// Dashboard settings: `WebConfig::new(addr)`, then `.token(..)`, or change the fields of
/// `WebConfig::default()`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebConfig {
    /// Address to listen on (`127.0.0.1:8088`; port 0 picks a free one, see
    /// [`WebHandle::addr`]).
    pub addr: String,
    /// The token actions need; `None` makes the dashboard read-only.
    pub token: Option<String>,
    /// Threads answering requests.
    pub threads: usize,
    /// How often the fleet's counters are sampled for the rate chart.
    pub sample_every: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            addr: "127.0.0.1:8088".into(),
            token: None,
            threads: 4,
            sample_every: Duration::from_secs(2),
        }
    }
}

impl WebConfig {
    /// Listening on `addr` (`127.0.0.1:8088`; port 0 picks a free one), read-only.
    pub fn new(addr: impl Into<String>) -> WebConfig {
        WebConfig {
            addr: addr.into(),
            ..WebConfig::default()
        }
    }

    /// Allows actions to requests that carry `token` (`None` or empty: read-only).
    pub fn token(mut self, token: Option<String>) -> WebConfig {
        self.token = token;
        self
    }
}

/// Why the dashboard could not start or answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The address could not be bound.
    #[error("web dashboard: cannot listen on {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// What the server said.
        reason: String,
    },
    /// A thread could not be started.
    #[error("web dashboard: cannot spawn thread {name}: {source}")]
    Spawn {
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// State shared by the server's threads.
pub(crate) struct App {
    pub(crate) client: Client,
    pub(crate) token: Option<String>,
    pub(crate) rates: Mutex<fleet::Rates>,
}

/// A running dashboard. `stop()` (or drop) ends its threads.
pub struct WebHandle {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl WebHandle {
    /// The address it listens on (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops answering and joins the threads. Idempotent.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for WebHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the dashboard on `config.addr` for the jobs `client` sees; returns at once. An
/// embedding program calls this beside its `WatchDog` (sharing the engine's client or one
/// of its own).
///
/// ```
/// use herojobs::web::{serve, WebConfig};
/// # let dir = tempfile::tempdir()?;
/// let engine = herojobs::WatchDog::builder().embedded().base(dir.path()).build()?;
/// let mut web = serve(engine.client(), WebConfig::new("127.0.0.1:0").token(None))?;
/// println!("dashboard at http://{}", web.addr());
/// web.stop();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn serve(client: Client, config: WebConfig) -> Result<WebHandle, WebError> {
    let server = tiny_http::Server::http(&config.addr).map_err(|e| WebError::Bind {
        addr: config.addr.clone(),
        reason: e.to_string(),
    })?;
    let addr = server.server_addr().to_ip().ok_or_else(|| WebError::Bind {
        addr: config.addr.clone(),
        reason: "not an IP address".into(),
    })?;
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let app = Arc::new(App {
        client,
        token: config.token.filter(|t| !t.is_empty()),
        rates: Mutex::new(fleet::Rates::default()),
    });
    let mut threads = Vec::new();
    let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(f)
            .map_err(|source| WebError::Spawn { name, source })
    };
    for i in 0..config.threads.max(1) {
        let (server, stop, app) = (Arc::clone(&server), Arc::clone(&stop), Arc::clone(&app));
        threads.push(spawn(
            format!("herojobs-web-{i}"),
            Box::new(move || {
                while !stop.load(Ordering::Acquire) {
                    match server.recv_timeout(Duration::from_millis(250)) {
                        Ok(Some(req)) => api::handle(&app, req),
                        Ok(None) => {}
                        Err(e) => log::warn!("web dashboard: {e}"),
                    }
                }
            }),
        )?);
    }
    {
        let (stop, app) = (Arc::clone(&stop), Arc::clone(&app));
        let every = config.sample_every.max(Duration::from_millis(100));
        threads.push(spawn(
            "herojobs-web-sampler".into(),
            Box::new(move || {
                // Sampling on a timer (not per request) keeps the chart's rates the same
                // whoever polls, and the cost one stats read per period.
                let mut next = std::time::Instant::now();
                while !stop.load(Ordering::Acquire) {
                    if std::time::Instant::now() >= next {
                        fleet::sample(&app);
                        next += every;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }),
        )?);
    }
    Ok(WebHandle {
        addr,
        server,
        stop,
        threads,
    })
}
