//! Processors: what runs a job of one params type. One trait, one registry keyed by params
//! type; users register their own (a closure is a processor). A processor gets the job and
//! a [`JobContext`] with its deadline, its cancel flag and its log, and returns the result
//! text or a [`JobError`].
//!
//! ```
//! use herojobs::{JobContext, ParamsType, Registry};
//! let mut registry = Registry::with_builtins();
//! registry.register(ParamsType::Other("upper".into()), |job, ctx| {
//!     ctx.log("upper-casing");
//!     Ok(job.params.to_uppercase())
//! });
//! ```

#[cfg(feature = "ai")]
pub mod ai;
mod error;
pub mod heroscript;
pub mod openrpc;
#[cfg(feature = "rhai")]
pub mod rhai;

pub use error::JobError;

use crate::job::{Job, ParamsType};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs jobs of one params type. Called from worker threads: implementations are `Send +
/// Sync` and must honour [`JobContext::is_cancelled`] in anything that can take long.
pub trait Processor: Send + Sync {
    /// Runs `job`: `Ok(result)`, or the error the job fails with.
    fn process(&self, job: &Job, ctx: &JobContext) -> Result<String, JobError>;
}

impl<F> Processor for F
where
    F: Fn(&Job, &JobContext) -> Result<String, JobError> + Send + Sync,
{
    fn process(&self, job: &Job, ctx: &JobContext) -> Result<String, JobError> {
        self(job, ctx)
    }
}

/// How much a job may log. Enforced as each line is written, so a job printing without
/// bound costs at most these bytes of memory (and of its record in Redis and OurDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Bytes of log kept per job, counting 8 bytes per line (default 64 KiB).
    pub max_bytes: usize,
    /// Longest line kept, in bytes; longer lines are cut (default 4 KiB).
    pub max_line: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_bytes: 64 * 1024,
            max_line: 4 * 1024,
        }
    }
}

/// Per-line cost counted against [`LogLimits::max_bytes`]: what a line costs in a record
/// (its length prefix), so a million empty lines are bounded too.
const LINE_OVERHEAD: usize = 8;

/// The largest index `<= max` that is a char boundary of `s`.
pub(crate) fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    let mut i = max;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[derive(Default)]
struct LogBuf {
    lines: Vec<String>,
    bytes: usize,
    cut_bytes: u64,
    cut_lines: u64,
    dropped_lines: u64,
}

/// A job's log: shared by the job's context and any callback that writes to it (a Rhai
/// `print`), bounded by [`LogLimits`] as it is written. Cheap to clone.
#[derive(Clone)]
pub struct JobLog {
    limits: LogLimits,
    buf: Arc<Mutex<LogBuf>>,
}

impl JobLog {
    /// An empty log with these limits.
    pub(crate) fn new(limits: LogLimits) -> JobLog {
        JobLog {
            limits,
            buf: Arc::new(Mutex::new(LogBuf::default())),
        }
    }

    /// Appends a line: cut to `max_line` bytes, dropped once the log holds `max_bytes`.
    /// Only the kept part is copied.
    pub fn write(&self, line: &str) {
        let l = self.limits;
        let mut b = self.buf.lock();
        let room = l.max_bytes.saturating_sub(b.bytes + LINE_OVERHEAD);
        if room == 0 || b.dropped_lines > 0 {
            b.dropped_lines += 1;
            b.cut_bytes += line.len() as u64;
            return;
        }
        let keep = floor_char_boundary(line, l.max_line.min(room));
        if keep < line.len() {
            b.cut_lines += 1;
            b.cut_bytes += (line.len() - keep) as u64;
        }
        b.bytes += keep + LINE_OVERHEAD;
        b.lines.push(line[..keep].to_string());
    }

    /// Takes the lines written so far; if anything was cut, a last line says how much.
    pub(crate) fn take(&self) -> Vec<String> {
        let mut b = self.buf.lock();
        let mut lines = std::mem::take(&mut b.lines);
        if b.cut_bytes > 0 {
            lines.push(format!(
                "… {} bytes cut from this log ({} lines shortened to {} bytes, {} lines dropped past {} bytes)",
                b.cut_bytes, b.cut_lines, self.limits.max_line, b.dropped_lines, self.limits.max_bytes
            ));
        }
        *b = LogBuf::default();
        lines
    }

    /// Its limits (the Rhai processor cuts its `print` lines to them).
    #[cfg_attr(not(feature = "rhai"), allow(dead_code))]
    pub(crate) fn limits(&self) -> LogLimits {
        self.limits
    }

    /// Bytes held now (with the per-line overhead).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.buf.lock().bytes
    }
}

/// What a running job may look at and write to.
pub struct JobContext {
    deadline: Instant,
    timeout: Duration,
    cancel: Arc<AtomicBool>,
    log: JobLog,
    attempt: u32,
    no_retry: AtomicBool,
    progress: Progress,
}

/// A running job's progress as its processor last reported it, shared with the engine,
/// which publishes a changed value to Redis on its next tick (the dashboard shows it).
#[derive(Clone, Default)]
pub(crate) struct Progress(Arc<Mutex<(u64, String)>>);

impl Progress {
    /// Reports progress (a percentage, "3 of 10 files", ...).
    pub(crate) fn set(&self, text: impl Into<String>) {
        let mut g = self.0.lock();
        g.0 += 1;
        g.1 = text.into();
    }

    /// The change count and the text.
    pub(crate) fn get(&self) -> (u64, String) {
        self.0.lock().clone()
    }
}

/// Returned by [`JobContext::sleep`] when the job was cancelled (timeout, cancel or
/// shutdown). An error, so a handler can pass it on with `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cancelled")
    }
}

impl std::error::Error for Cancelled {}

impl JobContext {
    /// A context whose deadline is `timeout` from now.
    pub fn new(timeout: Duration, cancel: Arc<AtomicBool>) -> JobContext {
        JobContext::with_deadline(Instant::now() + timeout, timeout, cancel)
    }

    /// A context with an explicit deadline (the engine's, which its watchdog enforces).
    pub fn with_deadline(
        deadline: Instant,
        timeout: Duration,
        cancel: Arc<AtomicBool>,
    ) -> JobContext {
        JobContext::with_log(deadline, timeout, cancel, JobLog::new(LogLimits::default()))
    }

    /// A context that writes to `log` (an engine's limits, or a parent job's log shared
    /// with a nested run).
    pub(crate) fn with_log(
        deadline: Instant,
        timeout: Duration,
        cancel: Arc<AtomicBool>,
        log: JobLog,
    ) -> JobContext {
        JobContext {
            deadline,
            timeout,
            cancel,
            log,
            attempt: 1,
            no_retry: AtomicBool::new(false),
            progress: Progress::default(),
        }
    }

    /// The same context reporting progress into `p` (the engine's cell for this run).
    pub(crate) fn with_progress(mut self, p: Progress) -> JobContext {
        self.progress = p;
        self
    }

    /// Reports the job's progress: visible in `get` and on the dashboard within a tick of
    /// the engine (≈ 20 ms), one Redis write per change and tick.
    pub fn set_progress(&self, text: impl Into<String>) {
        self.progress.set(text);
    }

    /// The job's log, for callbacks that outlive a borrow of the context.
    pub fn log_handle(&self) -> JobLog {
        self.log.clone()
    }

    /// The same context for run number `attempt` of its job (1 on the first run); the worker
    /// sets it from the engine's attempt count so a processor can behave differently on a
    /// retry (the `fake.fail_attempts` action does).
    pub fn with_attempt(mut self, attempt: u32) -> JobContext {
        self.attempt = attempt.max(1);
        self
    }

    /// Which run of its job this is: 1 on the first run, 2 on the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Makes the error this run returns final, whatever the job's retry policy: for
    /// failures a retry cannot fix (bad input, a refused request).
    pub fn fail_permanently(&self) {
        self.no_retry.store(true, Ordering::Release);
    }

    /// Whether [`fail_permanently`](JobContext::fail_permanently) was called.
    pub fn is_permanent(&self) -> bool {
        self.no_retry.load(Ordering::Acquire)
    }

    /// When the job's time is up.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The job's timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether the job should stop now (timed out, or the engine is shutting down).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire) || Instant::now() >= self.deadline
    }

    /// The shared cancel flag (for callbacks that outlive a borrow of the context).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }

    /// Sleeps up to `d`, waking early (with `Err`) if the job is cancelled.
    pub fn sleep(&self, d: Duration) -> Result<(), Cancelled> {
        let end = Instant::now() + d;
        loop {
            if self.is_cancelled() {
                return Err(Cancelled);
            }
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep((end - now).min(Duration::from_millis(10)));
        }
    }

    /// Appends a line to the job's log (bounded: see [`LogLimits`]).
    pub fn log(&self, line: impl AsRef<str>) {
        self.log.write(line.as_ref());
    }

    /// Takes the log lines written so far (with a last line saying what was cut, if any).
    pub fn take_log(&self) -> Vec<String> {
        self.log.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_bounded_as_it_is_written() {
        let log = JobLog::new(LogLimits {
            max_bytes: 1000,
            max_line: 100,
        });
        log.write("short");
        log.write(&"é".repeat(100)); // 200 bytes: cut at a char boundary
        let big = "x".repeat(1_000_000);
        for _ in 0..400 {
            log.write(&big);
        }
        assert!(log.bytes() <= 1000, "{}", log.bytes());
        let lines = log.take();
        assert_eq!(lines[0], "short");
        assert_eq!(lines[1], "é".repeat(50));
        let last = lines.last().unwrap();
        assert!(
            last.starts_with("… ") && last.contains("bytes cut"),
            "{last}"
        );
        let kept: usize = lines[..lines.len() - 1].iter().map(|l| l.len() + 8).sum();
        assert!(kept <= 1000, "{kept}");
        // Taking resets it.
        assert!(log.take().is_empty());
        assert_eq!(floor_char_boundary("aé", 2), 1);
    }
}

/// Processors by params type.
#[derive(Clone, Default)]
pub struct Registry {
    map: HashMap<String, Arc<dyn Processor>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The built-in processors: HeroScript (with the `fake` actor), OpenRPC (with
    /// `math.add`, `echo`, `job.info`), Rhai (feature `rhai`) and AI (feature `ai`,
    /// configured from the environment).
    pub fn with_builtins() -> Registry {
        Registry::with_actors(heroscript::Actors::with_builtins())
    }

    /// The built-in processors, with HeroScript jobs (and Rhai's `heroscript()`) running
    /// these actors: how a program adds actions of its own.
    ///
    /// ```
    /// use herojobs::{Actors, Registry};
    /// let mut actors = Actors::with_builtins();
    /// actors.register("greeter", "hello", |action, _ctx| {
    ///     Ok(format!("hello, {}!", action.params.string("name")?))
    /// });
    /// let registry = Registry::with_actors(actors);
    /// ```
    pub fn with_actors(actors: heroscript::Actors) -> Registry {
        let mut r = Registry::new();
        #[cfg(feature = "rhai")]
        r.register_processor(
            ParamsType::RhaiScript,
            rhai::RhaiProcessor::new(rhai::RhaiLimits::default(), actors.clone()),
        );
        r.register_processor(
            ParamsType::HeroScript,
            heroscript::HeroScriptProcessor::new(actors),
        );
        r.register_processor(
            ParamsType::OpenRpc,
            openrpc::OpenRpcProcessor::with_builtins(),
        );
        #[cfg(feature = "ai")]
        r.register_processor(
            ParamsType::Ai,
            ai::AiProcessor::new(ai::AiConfig::from_env()),
        );
        r
    }

    /// Registers (or replaces) the handler of a params type: a closure, whose argument and
    /// error types are inferred (`|job, ctx| Ok(job.params.to_uppercase())`).
    pub fn register<F>(&mut self, params_type: ParamsType, f: F) -> &mut Self
    where
        F: Fn(&Job, &JobContext) -> Result<String, JobError> + Send + Sync + 'static,
    {
        self.register_processor(params_type, f)
    }

    /// Registers (or replaces) the processor of a params type (any [`Processor`]).
    pub fn register_processor(
        &mut self,
        params_type: ParamsType,
        p: impl Processor + 'static,
    ) -> &mut Self {
        self.map
            .insert(params_type.as_str().to_string(), Arc::new(p));
        self
    }

    /// The params types this registry runs (what an engine claims in the fleet).
    pub fn types(&self) -> Vec<String> {
        let mut t: Vec<String> = self.map.keys().cloned().collect();
        t.sort();
        t
    }

    /// The processor of a params type.
    pub(crate) fn get(&self, params_type: &ParamsType) -> Option<Arc<dyn Processor>> {
        self.map.get(params_type.as_str()).cloned()
    }
}
