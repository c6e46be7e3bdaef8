//! The crate-level error: every module's error converts into it, so library users can match
//! one type (or use `?` into `Box<dyn Error>`) and still see where a failure came from.

use crate::broker::BrokerError;
use crate::names::{BadName, BadRef, JobRef, QueueName};
use crate::ourdb::OurDbError;
use crate::store::StoreError;
use std::time::Duration;

/// Any herojobs failure. Each variant says what went wrong and where (which job, queue,
/// path or server); new variants may be added, so match with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The OurDB store.
    #[error("ourdb: {0}")]
    OurDb(#[from] OurDbError),
    /// The job store (OurDB per circle/topic).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker (Redis or in-process).
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A circle or topic name that cannot be used.
    #[error(transparent)]
    Name(#[from] BadName),
    /// A `circle/topic/id` text that is not a job address.
    #[error(transparent)]
    Ref(#[from] BadRef),
    /// A job too large to be submitted (it would leave no room for its outcome).
    #[error(transparent)]
    TooLarge(#[from] crate::limits::TooLarge),
    /// Job signing (a secret that cannot be used).
    #[error(transparent)]
    Sign(#[from] crate::signing::SignError),
    /// A finished job that failed, from [`Job::outcome`](crate::Job::outcome).
    #[error(transparent)]
    Failed(#[from] crate::job::JobFailed),
    /// No such job in the broker or in OurDB.
    #[error("job {job} not found")]
    NotFound {
        /// The job asked for.
        job: JobRef,
    },
    /// The job was saved in OurDB but could not be queued; recovery will queue it.
    #[error("job {job} is saved in OurDB but was not queued ({source}); a watchdog's recovery will queue it")]
    NotQueued {
        /// The job, with the id it got.
        job: JobRef,
        /// Why queueing failed.
        #[source]
        source: Box<BrokerError>,
    },
    /// Every id the store took for a job was already used in Redis by another job (another
    /// store's, after Redis lost its id counter): the job was not queued, and its OurDB
    /// record was removed. Nothing was acknowledged.
    #[error("job for {queue} not queued: {rounds} fresh ids in a row were already taken in Redis by other jobs")]
    IdConflict {
        /// The queue.
        queue: QueueName,
        /// How many ids were tried.
        rounds: usize,
    },
    /// `wait` gave up.
    #[error("job {job} did not finish within {waited:?}")]
    WaitTimeout {
        /// The job waited for.
        job: JobRef,
        /// How long we waited.
        waited: Duration,
    },
    /// An engine's base directory cannot be written: it would run jobs whose outcomes it
    /// cannot record, so it does not start.
    #[error("base directory {path} is not writable ({reason}): a watchdog that cannot record outcomes does not start")]
    BaseNotWritable {
        /// The base directory.
        path: std::path::PathBuf,
        /// What the probe (create, write, fsync a file) ran into.
        reason: String,
    },
    /// A setting that cannot be used.
    #[error("{setting}: {reason}")]
    Config {
        /// The setting (`workers`, `queues`, `signing secret for circle ops`, ...).
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `start` on an engine that was stopped: an engine runs once; build a new one.
    #[error("this engine was stopped; an engine starts once (build a new one)")]
    Stopped,
    /// A thread could not be started.
    #[error("cannot start thread {thread}: {source}")]
    Spawn {
        /// The thread's name.
        thread: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A broken promise inside herojobs (a bug): says which.
    #[error("internal error: {0} (please report this)")]
    Internal(&'static str),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A setting that cannot be used.
    pub(crate) fn config(setting: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Config {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}
