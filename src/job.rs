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
        Ok(s.parse().unwrap_or_default())
    }
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
    /// How to read `params`.
    #[serde(rename = "params_type", default)]
    pub params_type: ParamsType,
    /// Where the job is in its life.
    #[serde(default)]
    pub status: JobStatus,
    /// Seconds the job may run; 0 means the default (60).
    #[serde(default)]
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
    /// herojobs: starts that were handed back without a verdict (graceful shutdown, or an
    /// engine without a processor for the job's type). They do not count against the
    /// attempt limit; `attempts - released` is the number of runs that ended or died.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub released: u32,
    /// herojobs: the submitter's HMAC-SHA256 of the job (hex; see [`crate::signing`]);
    /// empty when unsigned. Engines that require signatures for the circle check it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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

    /// Sets the timeout in seconds (builder style).
    pub fn with_timeout(mut self, secs: u64) -> Job {
        self.timeout = secs;
        self
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

/// Now, in unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
