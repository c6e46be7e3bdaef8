//! The job: pure data. What a job is, its statuses and params types, and their JSON names
//! (the original Go system's, so clients in other languages interoperate). No I/O here.

use serde::{Deserialize, Serialize};

/// Default timeout when a job says 0.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// Where a job is in its life. Other clients know exactly these four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Submitted, waiting in a queue.
    #[default]
    New,
    /// A worker is running it.
    Active,
    /// Failed (including timeouts).
    Error,
    /// Finished successfully.
    Done,
}

impl JobStatus {
    /// Done or error: nothing more will happen to the job.
    pub fn is_finished(self) -> bool {
        matches!(self, JobStatus::Done | JobStatus::Error)
    }

    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::New => "new",
            JobStatus::Active => "active",
            JobStatus::Error => "error",
            JobStatus::Done => "done",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of params a job carries, and so which processor runs it. A type this version
/// does not know (written by a newer client) is kept as `Other`, so the job still loads and
/// fails with a clear message instead of being unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum ParamsType {
    /// HeroScript actions.
    #[default]
    HeroScript,
    /// A Rhai script.
    RhaiScript,
    /// A JSON-RPC 2.0 request.
    OpenRpc,
    /// An AI (OpenAI-compatible) request.
    Ai,
    /// Anything else.
    Other(String),
}

impl ParamsType {
    /// The JSON name.
    pub fn as_str(&self) -> &str {
        match self {
            ParamsType::HeroScript => "heroscript",
            ParamsType::RhaiScript => "rhaiscript",
            ParamsType::OpenRpc => "openrpc",
            ParamsType::Ai => "ai",
            ParamsType::Other(s) => s,
        }
    }
}

impl std::str::FromStr for ParamsType {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "heroscript" => ParamsType::HeroScript,
            "rhaiscript" => ParamsType::RhaiScript,
            "openrpc" => ParamsType::OpenRpc,
            "ai" => ParamsType::Ai,
            other => ParamsType::Other(other.to_string()),
        })
    }
}

impl std::fmt::Display for ParamsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ParamsType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ParamsType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(ParamsType::absent());
        }
        Ok(s.parse().unwrap_or_default())
    }
}

impl ParamsType {
    /// The type of a job whose JSON names none: `openrpc`, as the Go original reads it, so a
    /// Go client's job runs the same here.
    pub fn absent() -> ParamsType {
        ParamsType::OpenRpc
    }
}

/// Reads a JSON timeout: any integer; zero or negative (Go's `-1`) means the default, 0.
fn timeout_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a timeout in whole seconds")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            Ok(v.max(0) as u64)
        }
    }
    d.deserialize_i64(V)
}

/// A job. Field names in JSON are the original system's; fields after `log` are herojobs
/// additions that other readers may ignore (and that default when absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Job {
    /// Id, unique within its circle and topic; assigned by OurDB on submit.
    #[serde(rename = "jobid", default)]
    pub id: u32,
    /// Opaque session key of the submitter.
    #[serde(rename = "sessionkey", default)]
    pub session_key: String,
    /// The circle (a tenant / namespace).
    #[serde(rename = "circleid", default)]
    pub circle: String,
    /// The topic (a queue within the circle); empty means `default`.
    #[serde(default)]
    pub topic: String,
    /// The script or request to run.
    #[serde(default)]
    pub params: String,
    /// How to read `params`. Absent (or empty) in JSON means `openrpc`, as the Go original
    /// reads it (its zero value falls through to OpenRPC).
    #[serde(rename = "params_type", default = "ParamsType::absent")]
    pub params_type: ParamsType,
    /// Where the job is in its life.
    #[serde(default)]
    pub status: JobStatus,
    /// Seconds the job may run; 0 means the default (60). In JSON any integer loads: a
    /// negative one (the Go original's `-1`) means the default too.
    #[serde(default, deserialize_with = "timeout_secs")]
    pub timeout: u64,
    /// Unix seconds when submitted.
    #[serde(default)]
    pub time_scheduled: i64,
    /// Unix seconds when a worker started it (0: not yet).
    #[serde(default)]
    pub time_start: i64,
    /// Unix seconds when it finished (0: not yet).
    #[serde(default)]
    pub time_end: i64,
    /// Why it failed.
    #[serde(default)]
    pub error: String,
    /// What it produced.
    #[serde(default)]
    pub result: String,
    /// Whether the job asked for its log to be kept.
    #[serde(default)]
    pub log: bool,
    /// herojobs: how many times a worker has started it (a retry after a crash is attempt 2).
    #[serde(default)]
    pub attempts: u32,
    /// herojobs: log lines written by the processor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    /// herojobs: identity of the job store (base directory) that submitted the job, so a
    /// reader on any host can say where the job's history lives (see `JobStore::identity`).
    /// Kept in OurDB and in the job hash's field `store`, not in the JSON: the JSON is
    /// copied by every step of the engine's scripts, and each byte there costs throughput.
    #[serde(skip)]
    pub store: String,
    /// herojobs: a random token chosen at submit, so an enqueue that meets another job under
    /// the same id is detected, never acknowledged. Kept in OurDB and in the job hash's
    /// field `token` (not in the JSON, like `store`).
    #[serde(skip)]
    pub token: String,
    /// herojobs: the progress its processor last reported while it ran (hash field
    /// `progress`, not in the JSON or OurDB).
    #[serde(skip)]
    pub progress: String,
    /// herojobs: starts that were handed back without a verdict (graceful shutdown, or an
    /// engine without a processor for the job's type). They do not count against the
    /// attempt limit; `attempts - released` is the number of runs that ended or died.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub released: u32,
    /// herojobs: when the job may run, unix milliseconds (0: at once). A delayed job, and a
    /// job waiting for its retry, waits in its queue's scheduled set until then.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub run_at_ms: u64,
    /// herojobs: how the job is retried after an error (none: the engine's default, which
    /// out of the box is "an error is final").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// herojobs: attempts before the last manual retry (`Client::retry`): the retry policy
    /// counts runs from there, so a retried dead job gets its attempts afresh.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt_base: u32,
    /// herojobs: the submitter's HMAC-SHA256 of the job (hex; see [`crate::signing`]);
    /// empty when unsigned. Engines that require signatures for the circle check it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// How a failed job is tried again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Runs in all, the first included (1: no retry).
    pub max_attempts: u32,
    /// How the wait between runs grows.
    #[serde(default)]
    pub backoff: Backoff,
    /// The first wait, milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// The longest wait, milliseconds (0: no cap).
    #[serde(default)]
    pub max_delay_ms: u64,
    /// Spread each wait randomly over 50-100 % of its value, so jobs that failed together
    /// do not come back together.
    #[serde(default)]
    pub jitter: bool,
}

/// How the wait between retries grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// The same wait every time.
    Fixed,
    /// Doubling: delay, 2 × delay, 4 × delay, ...
    #[default]
    Exponential,
}

impl RetryPolicy {
    /// `retries` retries after the first attempt, `delay` apart (fixed) or doubling from
    /// `delay` (exponential), with jitter and no cap.
    pub fn new(retries: u32, backoff: Backoff, delay: std::time::Duration) -> RetryPolicy {
        RetryPolicy {
            max_attempts: retries.saturating_add(1),
            backoff,
            delay_ms: delay.as_millis() as u64,
            max_delay_ms: 0,
            jitter: false,
        }
    }

    /// The wait before run `next` (2 for the first retry), given a random value in
    /// `0..=u32::MAX` for the jitter.
    pub fn delay_before(&self, next: u32, random: u32) -> std::time::Duration {
        let n = next.saturating_sub(2).min(40);
        let mut ms = match self.backoff {
            Backoff::Fixed => self.delay_ms,
            Backoff::Exponential => self.delay_ms.saturating_mul(1u64 << n),
        };
        if self.max_delay_ms > 0 {
            ms = ms.min(self.max_delay_ms);
        }
        if self.jitter {
            // 50 % to 100 % of the wait.
            ms = ms / 2 + (ms / 2).saturating_mul(random as u64) / u32::MAX as u64;
        }
        std::time::Duration::from_millis(ms)
    }
}

impl Job {
    /// A new job for `circle`/`topic` with these params.
    pub fn new(
        circle: &str,
        topic: &str,
        params_type: ParamsType,
        params: impl Into<String>,
    ) -> Job {
        Job {
            circle: circle.to_string(),
            topic: topic.to_string(),
            params_type,
            params: params.into(),
            ..Job::default()
        }
    }

    /// Runs the job no earlier than `delay` from its submit.
    pub fn with_delay(mut self, delay: std::time::Duration) -> Job {
        self.run_at_ms = unix_now_ms().saturating_add(delay.as_millis() as u64);
        self
    }

    /// Runs the job no earlier than `unix_secs` (unix seconds).
    pub fn with_run_at(mut self, unix_secs: i64) -> Job {
        self.run_at_ms = (unix_secs.max(0) as u64).saturating_mul(1000);
        self
    }

    /// Retries the job after an error as `policy` says.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Job {
        self.retry = Some(policy);
        self
    }

    /// Sets the timeout in seconds (builder style).
    pub fn with_timeout(mut self, secs: u64) -> Job {
        self.timeout = secs;
        self
    }

    /// Its address, `circle/topic/id` (the names fixed as submit fixes them).
    pub fn job_ref(&self) -> Result<crate::names::JobRef, crate::names::BadName> {
        Ok(crate::names::QueueName::new(&self.circle, &self.topic)?.job(self.id))
    }

    /// The job's outcome: its result if it is done; [`JobFailed`] if it failed (with its
    /// error) or has not finished yet. `client.wait(&job, t)?.outcome()?` is the way to
    /// make a failed job an `Err`.
    ///
    /// ```
    /// use herojobs::{Job, JobStatus, ParamsType};
    /// let mut job = Job::new("c", "t", ParamsType::RhaiScript, "6 * 7");
    /// job.status = JobStatus::Done;
    /// job.result = "42".into();
    /// assert_eq!(job.outcome()?, "42");
    /// job.status = JobStatus::Error;
    /// job.error = "boom".into();
    /// assert_eq!(job.outcome().unwrap_err().error(), "boom");
    /// # Ok::<(), herojobs::JobFailed>(())
    /// ```
    pub fn outcome(&self) -> Result<&str, JobFailed> {
        match self.status {
            JobStatus::Done => Ok(&self.result),
            status => Err(JobFailed {
                job: format!("{}/{}/{}", self.circle, self.topic, self.id),
                status,
                error: self.error.clone(),
            }),
        }
    }

    /// The timeout that applies: `timeout`, or 60 s when it is 0.
    pub fn effective_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(if self.timeout == 0 {
            DEFAULT_TIMEOUT_SECS
        } else {
            self.timeout
        })
    }
}

/// A job that did not end done: the `Err` of [`Job::outcome`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job} {}", match .status {
    JobStatus::Error => format!("failed: {}", .error),
    other => format!("has not finished (status {other})"),
})]
pub struct JobFailed {
    job: String,
    status: JobStatus,
    error: String,
}

impl JobFailed {
    /// The job, `circle/topic/id`.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// Its status: `error`, or `new`/`active` for a job that has not finished.
    pub fn status(&self) -> JobStatus {
        self.status
    }

    /// Its error message (empty for a job that has not finished).
    pub fn error(&self) -> &str {
        &self.error
    }

    /// Whether it was cancelled (by `Client::cancel` or `delete`).
    pub fn is_cancelled(&self) -> bool {
        self.status == JobStatus::Error && self.error == "cancelled"
    }
}

/// Now, in unix milliseconds.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Now, in unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
