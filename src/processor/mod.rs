//! Processors: what runs a job of one params type. One trait, one registry keyed by params
//! type; users register their own. A processor gets the job and a [`JobContext`] with its
//! deadline, its cancel flag and its log, and returns the result text or an error text.

pub mod ai;
pub mod heroscript;
pub mod openrpc;
pub mod rhai;

use crate::job::{Job, ParamsType};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs jobs of one params type. Called from worker threads: implementations are `Send +
/// Sync` and must honour [`JobContext::is_cancelled`] in anything that can take long.
pub trait Processor: Send + Sync {
    /// Runs `job`; `Ok(result)` or `Err(error message)`.
    fn process(&self, job: &Job, ctx: &JobContext) -> Result<String, String>;
}

impl<F> Processor for F
where
    F: Fn(&Job, &JobContext) -> Result<String, String> + Send + Sync,
{
    fn process(&self, job: &Job, ctx: &JobContext) -> Result<String, String> {
        self(job, ctx)
    }
}

/// What a running job may look at and write to.
pub struct JobContext {
    deadline: Instant,
    timeout: Duration,
    cancel: Arc<AtomicBool>,
    log: Mutex<Vec<String>>,
    attempt: u32,
    no_retry: AtomicBool,
}

/// Returned by [`JobContext::sleep`] when the job was cancelled (timeout or shutdown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled;

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
        JobContext {
            deadline,
            timeout,
            cancel,
            log: Mutex::new(Vec::new()),
            attempt: 1,
            no_retry: AtomicBool::new(false),
        }
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

    /// Appends a line to the job's log.
    pub fn log(&self, line: impl Into<String>) {
        let mut log = self.log.lock();
        if log.len() < 10_000 {
            log.push(line.into());
        }
    }

    /// Takes the log lines written so far.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock())
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

    /// The four built-in processors: HeroScript (with the `fake` actor), Rhai, OpenRPC
    /// (with `math.add`, `echo`, `job.info`) and AI (configured from the environment).
    pub fn with_builtins() -> Registry {
        let actors = heroscript::Actors::with_builtins();
        let mut r = Registry::new();
        r.register(
            ParamsType::HeroScript,
            heroscript::HeroScriptProcessor::new(actors.clone()),
        );
        r.register(
            ParamsType::RhaiScript,
            rhai::RhaiProcessor::new(rhai::RhaiLimits::default(), actors),
        );
        r.register(
            ParamsType::OpenRpc,
            openrpc::OpenRpcProcessor::with_builtins(),
        );
        r.register(
            ParamsType::Ai,
            ai::AiProcessor::new(ai::AiConfig::from_env()),
        );
        r
    }

    /// Registers (or replaces) the processor of a params type.
    pub fn register(&mut self, params_type: ParamsType, p: impl Processor + 'static) -> &mut Self {
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
    pub fn get(&self, params_type: &ParamsType) -> Option<Arc<dyn Processor>> {
        self.map.get(params_type.as_str()).cloned()
    }
}
