//! The job store: one OurDB per circle/topic at `<base>/circles/<circle>/<topic>/jobsdb`,
//! opened once and shared by every thread (never reopened per job). Knows jobs and OurDB,
//! nothing of Redis.

use crate::codec::{self, CodecError};
use crate::job::{Job, JobStatus};
use crate::names::{self, BadName};
use crate::ourdb::{Config, Durability, OurDb, OurDbError};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors of the job store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A circle or topic name that cannot be used.
    #[error(transparent)]
    Name(#[from] BadName),
    /// The database of a circle/topic.
    #[error("job database {path}: {source}")]
    Db {
        /// Its directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: OurDbError,
    },
    /// A stored record that is not a job.
    #[error("job {circle}/{topic}/{id} in OurDB: {source}")]
    Record {
        /// Circle.
        circle: String,
        /// Topic.
        topic: String,
        /// Id.
        id: u32,
        /// Why it does not decode.
        #[source]
        source: CodecError,
    },
}

/// A job id with its status, or why its record could not be read.
pub type Listed = (u32, Result<JobStatus, StoreError>);

/// Default base directory: `~/hero/var` (or `./hero/var` when there is no home).
pub fn default_base() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("hero/var")
}

/// Fixes circle and topic names for keys and paths (empty topic → `default`).
pub fn fix_names(circle: &str, topic: &str) -> Result<(String, String), BadName> {
    Ok((
        names::path_name("circle", circle)?,
        names::topic_name(topic)?,
    ))
}

/// All job databases under one base directory.
pub struct JobStore {
    base: PathBuf,
    durability: Durability,
    dbs: RwLock<HashMap<(String, String), Arc<OurDb>>>,
}

impl JobStore {
    /// A store under `base` (created lazily, per circle/topic).
    pub fn new(base: impl Into<PathBuf>, durability: Durability) -> JobStore {
        JobStore {
            base: base.into(),
            durability,
            dbs: RwLock::new(HashMap::new()),
        }
    }

    /// The base directory.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Directory of the database of (already fixed) `circle`/`topic`.
    pub fn db_dir(&self, circle: &str, topic: &str) -> PathBuf {
        self.base
            .join("circles")
            .join(circle)
            .join(topic)
            .join("jobsdb")
    }

    /// The open database of `circle`/`topic` (fixed names), opening it on first use.
    pub fn db(&self, circle: &str, topic: &str) -> Result<Arc<OurDb>, StoreError> {
        let key = (circle.to_string(), topic.to_string());
        if let Some(db) = self.dbs.read().get(&key) {
            return Ok(Arc::clone(db));
        }
        let mut dbs = self.dbs.write();
        if let Some(db) = dbs.get(&key) {
            return Ok(Arc::clone(db));
        }
        let path = self.db_dir(circle, topic);
        let cfg = Config {
            durability: self.durability,
            ..Config::default()
        };
        let db = OurDb::open(&path, cfg).map_err(|source| StoreError::Db { path, source })?;
        let db = Arc::new(db);
        dbs.insert(key, Arc::clone(&db));
        Ok(db)
    }

    /// Circle/topic pairs that have a database on disk.
    pub fn topics(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let Ok(circles) = std::fs::read_dir(self.base.join("circles")) else {
            return out;
        };
        for c in circles.flatten() {
            let Ok(topics) = std::fs::read_dir(c.path()) else {
                continue;
            };
            for t in topics.flatten() {
                if t.path().join("jobsdb").is_dir() {
                    out.push((
                        c.file_name().to_string_lossy().into_owned(),
                        t.file_name().to_string_lossy().into_owned(),
                    ));
                }
            }
        }
        out.sort();
        out
    }

    fn db_err(&self, circle: &str, topic: &str, source: OurDbError) -> StoreError {
        StoreError::Db {
            path: self.db_dir(circle, topic),
            source,
        }
    }

    /// Saves new jobs (fixed names) and returns their ids: one OurDB batch.
    pub fn add(&self, circle: &str, topic: &str, jobs: &[Job]) -> Result<Vec<u32>, StoreError> {
        let db = self.db(circle, topic)?;
        let records: Vec<Vec<u8>> = jobs
            .iter()
            .map(|j| {
                let mut buf = Vec::new();
                codec::to_record(j, &mut buf);
                buf
            })
            .collect();
        db.add_many(records.iter().map(|r| r.as_slice()))
            .map_err(|e| self.db_err(circle, topic, e))
    }

    /// Writes a new version of a job (its status changed).
    pub fn update(&self, job: &Job) -> Result<(), StoreError> {
        self.update_many(std::iter::once(job))
            .into_iter()
            .next()
            .map_or(Ok(()), Err)
    }

    /// Writes new versions of several jobs: one OurDB batch (one lock, one fsync round in
    /// `strict`) per circle and topic, in the order given. Returns the failures, one per
    /// database that could not be written, each naming it.
    #[must_use = "failures name the databases whose jobs were not recorded"]
    pub fn update_many<'a>(&self, jobs: impl IntoIterator<Item = &'a Job>) -> Vec<StoreError> {
        /// The records of one database, in order.
        struct Group<'j> {
            circle: &'j str,
            topic: &'j str,
            records: Vec<(u32, Vec<u8>)>,
        }
        let mut groups: Vec<Group> = Vec::new();
        for job in jobs {
            let mut buf = Vec::new();
            codec::to_record(job, &mut buf);
            match groups
                .iter_mut()
                .find(|g| g.circle == job.circle && g.topic == job.topic)
            {
                Some(g) => g.records.push((job.id, buf)),
                None => groups.push(Group {
                    circle: &job.circle,
                    topic: &job.topic,
                    records: vec![(job.id, buf)],
                }),
            }
        }
        let mut failures = Vec::new();
        for Group {
            circle,
            topic,
            records,
        } in groups
        {
            let res = self.db(circle, topic).and_then(|db| {
                db.set_many(records.iter().map(|(id, r)| (*id, r.as_slice())))
                    .map_err(|e| self.db_err(circle, topic, e))
            });
            if let Err(e) = res {
                failures.push(e);
            }
        }
        failures
    }

    /// Reads a job; `None` if it has no record.
    pub fn get(&self, circle: &str, topic: &str, id: u32) -> Result<Option<Job>, StoreError> {
        let db = self.db(circle, topic)?;
        let bytes = match db.get(id) {
            Ok(b) => b,
            Err(OurDbError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.db_err(circle, topic, e)),
        };
        codec::from_record(id, &bytes)
            .map(Some)
            .map_err(|source| StoreError::Record {
                circle: circle.into(),
                topic: topic.into(),
                id,
                source,
            })
    }

    /// Deletes a job's record; `false` if it had none.
    pub fn delete(&self, circle: &str, topic: &str, id: u32) -> Result<bool, StoreError> {
        match self.db(circle, topic)?.delete(id) {
            Ok(()) => Ok(true),
            Err(OurDbError::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.db_err(circle, topic, e)),
        }
    }

    /// Every job of a circle/topic with its status (decodes every record: O(jobs)).
    pub fn list(&self, circle: &str, topic: &str) -> Result<Vec<Listed>, StoreError> {
        let db = self.db(circle, topic)?;
        let ids: Vec<u32> = db.ids().collect();
        Ok(ids
            .into_iter()
            .map(|id| {
                let status = self.get(circle, topic, id).and_then(|j| {
                    j.map(|j| j.status)
                        .ok_or_else(|| self.db_err(circle, topic, OurDbError::NotFound { id }))
                });
                (id, status)
            })
            .collect())
    }

    /// Syncs every open database.
    pub fn sync(&self) -> Result<(), StoreError> {
        for ((c, t), db) in self.dbs.read().iter() {
            db.sync().map_err(|e| self.db_err(c, t, e))?;
        }
        Ok(())
    }
}
