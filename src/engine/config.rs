//! What an engine is told: its settings ([`EngineConfig`]) and which queues it serves
//! ([`QueueSelection`]). Plain data, checked where it is used (`WatchDogBuilder::build`).

use crate::broker::Retention;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::names::QueueName;
use std::sync::Arc;
use std::time::Duration;

/// Engine settings. Start from `EngineConfig::default()` and change fields (new settings
/// may be added, so the struct cannot be written out whole outside this crate), or use the
/// [`WatchDogBuilder`](crate::WatchDogBuilder)'s setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Worker threads.
    pub workers: usize,
    /// Timeout of jobs that say 0.
    pub default_timeout: Duration,
    /// How long a running job's lease lasts without renewal (renewed every third of it).
    pub lease: Duration,
    /// On shutdown, how long running jobs may finish before they are cancelled.
    pub grace: Duration,
    /// Runs of one job before it is failed for good (a run counts when its engine died).
    pub max_attempts: u32,
    /// How often recovery looks for lost jobs.
    pub recovery_interval: Duration,
    /// How long a job must look lost, seen twice, before recovery queues it again.
    pub recovery_grace: Duration,
    /// Longest a blocking broker call waits (bounds shutdown and queue-list refresh).
    pub poll: Duration,
    /// Name under which counters are published (default `hostname-pid`).
    pub name: String,
    /// Which queues this engine takes from, and in what order (default: every registered
    /// queue, rotated so none starves).
    pub queues: QueueSelection,
    /// A job whose params type no processor here runs is handed back to its queue (for an
    /// engine that runs it) while some engine of the fleet claimed that type within this;
    /// once the job is older than this and no engine claims its type, it fails.
    pub unclaimed_timeout: Duration,
    /// Run no jobs: only recovery (re-queue lost jobs of this store, copy outcomes other
    /// engines recorded) and lease reclaim. For a host that submits but does not execute.
    pub reconcile_only: bool,
    /// Retry policy of jobs that carry none (`None`, the default: an error is final).
    pub retry: Option<crate::job::RetryPolicy>,
    /// Whether a timed-out run is retried like an error (default: no, a timeout is final).
    pub retry_timeouts: bool,
    /// How much each job may log (64 KiB, 4 KiB per line by default).
    pub log_limits: crate::processor::LogLimits,
    /// After the grace period, how long cancelled jobs get to return before the engine gives
    /// up on their workers (their jobs go back to their queues; the threads are left to end
    /// on their own).
    pub give_up_after: Duration,
    /// How long Redis keeps finished and dead jobs (when the engine connects to Redis
    /// itself; an embedded engine keeps finished jobs in memory until a restart).
    pub retention: Retention,
    /// When the engine compacts its OurDB databases (every job writes three or more
    /// versions; without compaction the files only grow).
    pub compaction: Compaction,
}

/// The engine's OurDB compaction policy: keeps disk use bounded.
///
/// Every job writes at least three versions (new → active → done), so a job database grows
/// by about three records per job forever unless superseded versions are dropped. The
/// recovery thread looks at each database's dead bytes (a counter OurDB keeps, no scan:
/// [`OurDb::space`](crate::ourdb::OurDb::space)) at most every `check_every`; when the
/// bytes that became dead since the last compaction reach `min_dead_bytes` *and*
/// `dead_ratio` of the data, a background thread runs an online compaction (writers and
/// readers go on; see `docs/ourdb-format.md`). A compaction never loses an acknowledged
/// write. Counted in [`EngineStats`](crate::EngineStats) (`compactions`,
/// `compaction_reclaimed`).
///
/// "Since the last compaction": a compaction that keeps history leaves the kept older
/// versions as dead bytes, which it cannot reclaim; counting only the growth keeps it from
/// running again at once. After a restart the first look counts all dead bytes (at most one
/// extra compaction per database).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Compaction {
    /// Whether the engine compacts at all.
    pub enabled: bool,
    /// Dead bytes (grown since the last compaction) below which a database is never
    /// compacted: copying a small database to save little is not worth its I/O.
    /// Default 64 MiB.
    pub min_dead_bytes: u64,
    /// Dead bytes (grown since the last compaction) as a fraction of the data bytes at which
    /// a database is compacted. Default 0.5: the files stay at most about twice the live
    /// data (the copy then costs as much I/O as it saves).
    pub dead_ratio: f64,
    /// Versions kept per job (0 or 1: the latest only, the default: a finished job's
    /// earlier versions are in its own record — times, attempts, logs — and the broker
    /// keeps the history that operators read; keep more to debug transitions).
    pub keep_history: usize,
    /// How often the dead bytes are looked at. Default 60 s.
    pub check_every: Duration,
}

impl Compaction {
    /// No compaction: the databases only grow (compact by hand: `herojobs ourdb compact`).
    pub fn disabled() -> Compaction {
        Compaction {
            enabled: false,
            ..Compaction::default()
        }
    }

    /// Whether a database with `space` should be compacted, `dead_before` being its dead
    /// bytes right after its last compaction (0 if none is known).
    pub fn due(&self, space: &crate::ourdb::Space, dead_before: u64) -> bool {
        let grown = space.dead_bytes.saturating_sub(dead_before);
        self.enabled
            && grown >= self.min_dead_bytes
            && space.data_bytes > 0
            && grown as f64 >= self.dead_ratio * space.data_bytes as f64
    }
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            enabled: true,
            min_dead_bytes: 64 << 20,
            dead_ratio: 0.5,
            keep_history: 0,
            check_every: Duration::from_secs(60),
        }
    }
}

/// A queue an engine serves, or every topic of a circle (`circle/*`): what
/// [`QueueSelection`] lists. Its names are fixed like a [`QueueName`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePattern {
    circle: String,
    /// `None`: every topic of the circle.
    topic: Option<String>,
}

impl QueuePattern {
    /// Every topic of `circle` (name-fixed).
    pub fn circle(circle: &str) -> Result<QueuePattern> {
        Ok(QueuePattern {
            circle: crate::names::path_name("circle", circle)?,
            topic: None,
        })
    }

    /// Whether `q` is this queue, or one of this circle's topics.
    pub fn matches(&self, q: &QueueName) -> bool {
        self.circle == q.circle() && self.topic.as_deref().is_none_or(|t| t == q.topic())
    }

    /// The one queue this names, if it names one (not `circle/*`).
    pub fn queue(&self) -> Option<QueueName> {
        QueueName::from_fixed(&self.circle, self.topic.as_deref()?)
    }
}

impl From<QueueName> for QueuePattern {
    fn from(q: QueueName) -> QueuePattern {
        QueuePattern {
            circle: q.circle().to_string(),
            topic: Some(q.topic().to_string()),
        }
    }
}

impl std::fmt::Display for QueuePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            self.circle,
            self.topic.as_deref().unwrap_or("*")
        )
    }
}

impl std::str::FromStr for QueuePattern {
    type Err = Error;
    /// Reads `circle/topic` or `circle/*`.
    fn from_str(s: &str) -> Result<QueuePattern> {
        let (c, t) = s.split_once('/').ok_or_else(|| {
            Error::config(
                "queues",
                format!("{s:?}: expected circle/topic (or circle/*)"),
            )
        })?;
        if t.trim() == "*" {
            return QueuePattern::circle(c);
        }
        Ok(QueueName::new(c, t)?.into())
    }
}

/// Which queues an engine serves.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub enum QueueSelection {
    /// Every registered queue, in rotating order.
    #[default]
    All,
    /// These queues, always tried in this order (Sidekiq's strict order: a later queue is
    /// served only when the earlier ones are empty).
    Strict(Vec<QueuePattern>),
    /// These queues with weights: each take tries them in a random order in which a queue of
    /// weight 3 comes first three times as often as one of weight 1 (Sidekiq's weighted
    /// queues), so none starves.
    Weighted(Vec<(QueuePattern, u32)>),
}

impl QueueSelection {
    /// Only these queues, in this order.
    pub fn strict(queues: impl IntoIterator<Item = impl Into<QueuePattern>>) -> QueueSelection {
        QueueSelection::Strict(queues.into_iter().map(Into::into).collect())
    }

    /// Parses `circle/topic[:weight],...` (`circle/*` for every topic of a circle). Any
    /// weight makes the selection weighted; without weights, `strict` orders it as listed
    /// and otherwise it is weighted equally. Names are name-fixed.
    ///
    /// ```
    /// use herojobs::QueueSelection;
    /// let s = QueueSelection::parse("ops/builds:3, ops/*", false)?;
    /// assert!(s.selects(&herojobs::QueueName::new("ops", "deploys")?));
    /// assert!(QueueSelection::parse("ops/builds:0", false).is_err());
    /// # Ok::<(), herojobs::Error>(())
    /// ```
    pub fn parse(spec: &str, strict: bool) -> Result<QueueSelection> {
        let mut out = Vec::new();
        let mut weighted = false;
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = match item.rsplit_once(':') {
                Some((n, w)) => {
                    let w: u32 = w.parse().ok().filter(|w| *w > 0).ok_or_else(|| {
                        Error::config(
                            "queues",
                            format!("{item:?}: weight {w:?} is not a positive integer"),
                        )
                    })?;
                    weighted = true;
                    (n, w)
                }
                None => (item, 1),
            };
            out.push((name.parse::<QueuePattern>()?, weight));
        }
        if out.is_empty() {
            return Err(Error::config("queues", "no queue given"));
        }
        if weighted && strict {
            return Err(Error::config(
                "queues",
                "strict order and weights exclude each other",
            ));
        }
        Ok(if strict {
            QueueSelection::Strict(out.into_iter().map(|(q, _)| q).collect())
        } else {
            QueueSelection::Weighted(out)
        })
    }

    /// Whether `q` is one of the selected queues.
    pub fn selects(&self, q: &QueueName) -> bool {
        match self {
            QueueSelection::All => true,
            QueueSelection::Strict(v) => v.iter().any(|p| p.matches(q)),
            QueueSelection::Weighted(v) => v.iter().any(|(p, _)| p.matches(q)),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 8,
            default_timeout: Duration::from_secs(crate::job::DEFAULT_TIMEOUT_SECS),
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(10),
            max_attempts: 3,
            recovery_interval: Duration::from_secs(5),
            recovery_grace: Duration::from_secs(5),
            poll: Duration::from_millis(500),
            name: format!(
                "{}-{}",
                std::fs::read_to_string("/etc/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "host".into()),
                std::process::id()
            ),
            queues: QueueSelection::All,
            unclaimed_timeout: Duration::from_secs(60),
            reconcile_only: false,
            retry: None,
            retry_timeouts: false,
            log_limits: crate::processor::LogLimits::default(),
            give_up_after: Duration::from_secs(2),
            retention: Retention::default(),
            compaction: Compaction::default(),
        }
    }
}

/// Called with each job (its session key, circle, params...) before it runs; `Err(reason)`
/// fails the job with that reason and it never runs.
pub type Authenticator = Arc<dyn Fn(&Job) -> std::result::Result<(), String> + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ourdb::Space;

    fn space(data: u64, dead: u64) -> Space {
        Space {
            data_bytes: data,
            live_bytes: data - dead,
            dead_bytes: dead,
        }
    }

    #[test]
    fn compaction_is_due_past_both_thresholds_counting_growth_only() {
        let p = Compaction {
            min_dead_bytes: 100,
            dead_ratio: 0.5,
            ..Compaction::default()
        };
        assert!(p.due(&space(1000, 500), 0));
        assert!(!p.due(&space(1000, 499), 0), "below the ratio");
        assert!(!p.due(&space(150, 99), 0), "below the minimum");
        // Dead bytes left by the last compaction (kept history) do not count again.
        assert!(!p.due(&space(1000, 700), 300));
        assert!(p.due(&space(1000, 800), 300));
        assert!(!Compaction::disabled().due(&space(1000, 1000), 0));
        assert!(!p.due(&space(0, 0), 0));
    }
}
