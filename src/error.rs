//! The crate-level error: every module's error converts into it, so library users can match
//! one type (or use `?` into `Box<dyn Error>`) and still see where a failure came from.

use crate::broker::BrokerError;
use crate::names::BadName;
use crate::ourdb::OurDbError;
use crate::store::StoreError;
use std::time::Duration;

/// Any herojobs failure.
#[derive(Debug, thiserror::Error)]
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
    /// A job too large to be submitted (it would leave no room for its outcome).
    #[error(transparent)]
    TooLarge(#[from] crate::limits::TooLarge),
    /// Job signing (a secret that cannot be used).
    #[error(transparent)]
    Sign(#[from] crate::signing::SignError),
    /// No such job in the broker or in OurDB.
    #[error("job {circle}/{topic}/{id} not found")]
    NotFound {
        /// Circle.
        circle: String,
        /// Topic.
        topic: String,
        /// Id.
        id: u32,
    },
    /// The job was saved in OurDB but could not be queued; recovery will queue it.
    #[error("job {circle}/{topic}/{id} is saved in OurDB but was not queued ({source}); a watchdog's recovery will queue it")]
    NotQueued {
        /// Circle.
        circle: String,
        /// Topic.
        topic: String,
        /// Id the job got.
        id: u32,
        /// Why queueing failed.
        #[source]
        source: Box<BrokerError>,
    },
    /// Every id the store took for a job was already used in Redis by another job (another
    /// store's, after Redis lost its id counter): the job was not queued, and its OurDB
    /// record was removed. Nothing was acknowledged.
    #[error("job for {circle}/{topic} not queued: {rounds} fresh ids in a row were already taken in Redis by other jobs")]
    IdConflict {
        /// Circle.
        circle: String,
        /// Topic.
        topic: String,
        /// How many ids were tried.
        rounds: usize,
    },
    /// `wait` gave up.
    #[error("job {circle}/{topic}/{id} did not finish within {waited:?}")]
    WaitTimeout {
        /// Circle.
        circle: String,
        /// Topic.
        topic: String,
        /// Id.
        id: u32,
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
    /// An invalid argument or configuration.
    #[error("{0}")]
    Invalid(String),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
