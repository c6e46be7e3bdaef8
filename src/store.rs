//! The job store: one OurDB per circle/topic at `<base>/circles/<circle>/<topic>/jobsdb`,
//! opened once and shared by every thread (never reopened per job). Knows jobs and OurDB,
//! nothing of Redis.

use crate::codec::{self, CodecError};
use crate::job::{Job, JobStatus};
use crate::names::{BadName, QueueName};
use crate::ourdb::{Config, Durability, OurDb, OurDbError};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Errors of the job store (OurDB per circle/topic).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The store's identity file cannot be read or created.
    #[error("store identity {path}: {reason}")]
    Identity {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// No id block could be reserved for new jobs.
    #[error("job database {path}: reserving ids: {reason}")]
    Reserve {
        /// The database directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A stored record that is not a job.
    #[error("job {job} in OurDB: {source}")]
    Record {
        /// The job.
        job: crate::names::JobRef,
        /// Why it does not decode.
        #[source]
        source: CodecError,
    },
}

/// A job id with its status, or why its record could not be read.
pub(crate) type Listed = (u32, Result<JobStatus, StoreError>);

/// Name of the file under the base directory that holds the store's identity.
pub(crate) const IDENTITY_FILE: &str = "store.id";

/// Ids reserved at a time (at least; a larger batch reserves its own size). A block costs
/// one extra round trip, so submit stays one round trip on average; a process that stops
/// leaves at most the rest of its block as a gap (the next process on the same base
/// continues inside it).
pub(crate) const ID_BLOCK: u64 = 1000;

/// How far above a store's next id the fleet's id counter restarts when Redis lost it (see
/// `broker::Broker::reserve_ids`): more than the blocks other stores can be in the middle
/// of, so ids stay unique while every store re-asserts its high-water mark.
pub(crate) const LOSS_MARGIN: u64 = 100 * ID_BLOCK;

/// How often an add retries with a fresh block when other processes on the same base keep
/// using up the one it reserved.
const RESERVE_ROUNDS: usize = 8;

/// Reserves an id block for one circle/topic fleet-wide: given the lowest id the block may
/// start at (this database's next id) and the number of ids wanted, returns the block
/// `start..end`. The client implements it with the broker's id counter.
pub(crate) type Reserve<'a> = dyn FnMut(u64, u64) -> Result<(u64, u64), String> + 'a;

/// A submit token: 16 hex digits, different for every call in this process (a counter
/// mixed by splitmix64) and across processes (the counter starts from OS randomness), with
/// no system call per token: a submit makes one per job.
pub(crate) fn token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| u64::from_str_radix(&random_hex(8), 16).unwrap_or(0));
    let mut z = seed.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}", z ^ (z >> 31))
}

/// Random bytes as hex digits (store identities, seeds).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::getrandom(&mut buf).is_err() {
        // No OS randomness (never seen on Linux): time and address hashed, unique enough
        // for a token that only has to differ from other submits' tokens.
        use std::hash::{BuildHasher, Hasher};
        for chunk in buf.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            let v = h.finish().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Default base directory: `~/hero/var` (or `./hero/var` when there is no home).
pub(crate) fn default_base() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("hero/var")
}

/// `<base>/circles/<circle>/<topic>/jobsdb`: where the database of `q` lives.
pub(crate) fn db_dir(base: &Path, q: &QueueName) -> PathBuf {
    base.join("circles")
        .join(q.circle())
        .join(q.topic())
        .join("jobsdb")
}

/// How many job databases a store keeps open by default (see [`JobStore::with_max_open`]).
///
/// An open database costs 4 file descriptors plus one per data file (`ourdb.open`,
/// `ourdb.lock`, `ourdb.state`, `lookup/data`, `N.db`; one more for a moment while the
/// sparse dump is written), one background thread and its address-space reservations (the
/// maps reserve, not use, memory). 64 databases of one data file are 320 descriptors.
pub(crate) const DEFAULT_MAX_OPEN: usize = 64;

/// An open database and when it was last used (a tick of the store's clock).
struct OpenDb {
    db: Arc<OurDb>,
    used: AtomicU64,
}

/// What [`JobStore::update_many`] does with a job that has no record in OurDB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Absent {
    /// Write it: its first version in this store (a job submitted through another store and
    /// taken here, or a version kept while the database refused writes).
    Create,
    /// Leave it out: the record was deleted. For an outcome, whose job's `active` version
    /// this store wrote before it ran: a client's `delete` in between is not undone.
    Skip,
}

/// All job databases under one base directory.
pub(crate) struct JobStore {
    base: PathBuf,
    durability: Durability,
    dbs: RwLock<HashMap<QueueName, OpenDb>>,
    /// At most this many databases stay open; the least recently used is closed first.
    max_open: usize,
    clock: AtomicU64,
    identity: parking_lot::Mutex<Option<String>>,
}

impl JobStore {
    /// A store under `base` (created lazily, per circle/topic).
    pub(crate) fn new(base: impl Into<PathBuf>, durability: Durability) -> JobStore {
        JobStore {
            base: base.into(),
            durability,
            dbs: RwLock::new(HashMap::new()),
            identity: parking_lot::Mutex::new(None),
            max_open: DEFAULT_MAX_OPEN,
            clock: AtomicU64::new(0),
        }
    }

    /// Keeps at most `n` (at least 1) databases open: opening one more closes the least
    /// recently used (it closes for real once no caller still holds its `Arc`). Bounds the
    /// process's file descriptors however many circles and topics it serves.
    #[cfg(test)]
    pub(crate) fn with_max_open(mut self, n: usize) -> JobStore {
        self.max_open = n.max(1);
        self
    }

    /// Number of databases open now.
    #[cfg(test)]
    pub(crate) fn open_count(&self) -> usize {
        self.dbs.read().len()
    }

    /// The store's identity: 32 random hex digits created with the store and kept in
    /// `<base>/store.id`, written into every job this store submits so that any reader can
    /// say where a job's history lives. A wiped base gets a new identity.
    pub(crate) fn identity(&self) -> Result<String, StoreError> {
        let mut cached = self.identity.lock();
        if let Some(id) = cached.as_ref() {
            return Ok(id.clone());
        }
        let path = self.base.join(IDENTITY_FILE);
        let err = |reason: String| StoreError::Identity {
            path: path.clone(),
            reason,
        };
        let valid = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let id = match std::fs::read_to_string(&path) {
            Ok(s) if valid(s.trim()) => s.trim().to_string(),
            Ok(s) => return Err(err(format!("{:?} is not 32 hex digits", s.trim()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.base).map_err(|e| err(e.to_string()))?;
                // Written aside, then linked into place: of two processes creating it at
                // once, one wins and both read the winner's.
                let fresh = random_hex(16);
                let tmp = self
                    .base
                    .join(format!(".{IDENTITY_FILE}.{}.tmp", random_hex(4)));
                std::fs::write(&tmp, format!("{fresh}\n")).map_err(|e| err(e.to_string()))?;
                let linked = std::fs::hard_link(&tmp, &path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => fresh,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let s = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
                        if !valid(s.trim()) {
                            return Err(err(format!("{:?} is not 32 hex digits", s.trim())));
                        }
                        s.trim().to_string()
                    }
                    Err(e) => return Err(err(e.to_string())),
                }
            }
            Err(e) => return Err(err(e.to_string())),
        };
        *cached = Some(id.clone());
        Ok(id)
    }

    /// The base directory.
    pub(crate) fn base(&self) -> &Path {
        &self.base
    }

    /// Directory of the database of `q`.
    pub(crate) fn db_dir(&self, q: &QueueName) -> PathBuf {
        db_dir(&self.base, q)
    }

    /// The open database of `q`, opening (creating) it on first use. For writes; reads use
    /// [`JobStore::existing_db`], which creates nothing.
    pub(crate) fn db(&self, q: &QueueName) -> Result<Arc<OurDb>, StoreError> {
        self.open_db(q, true)?.ok_or_else(|| {
            self.db_err(
                q,
                OurDbError::NoDatabase {
                    dir: self.db_dir(q),
                },
            )
        })
    }

    /// The database of `q` if one exists on disk, `None` otherwise: a read of a circle or
    /// topic nobody wrote to must not create a database for it.
    pub(crate) fn existing_db(&self, q: &QueueName) -> Result<Option<Arc<OurDb>>, StoreError> {
        self.open_db(q, false)
    }

    fn cached(&self, key: &QueueName) -> Option<Arc<OurDb>> {
        let dbs = self.dbs.read();
        let open = dbs.get(key)?;
        open.used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Some(Arc::clone(&open.db))
    }

    fn open_db(&self, q: &QueueName, create: bool) -> Result<Option<Arc<OurDb>>, StoreError> {
        if let Some(db) = self.cached(q) {
            return Ok(Some(db));
        }
        let mut dbs = self.dbs.write();
        if let Some(open) = dbs.get(q) {
            return Ok(Some(Arc::clone(&open.db)));
        }
        let path = self.db_dir(q);
        let cfg = Config {
            durability: self.durability,
            create,
            ..Config::default()
        };
        let db = match OurDb::open(&path, cfg) {
            Ok(db) => Arc::new(db),
            Err(OurDbError::NoDatabase { .. }) if !create => return Ok(None),
            Err(source) => return Err(StoreError::Db { path, source }),
        };
        while dbs.len() >= self.max_open {
            let Some(oldest) = dbs
                .iter()
                .min_by_key(|(_, o)| o.used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            // Dropping the store's `Arc` closes the database (sync, dump, unlock) unless a
            // caller is still using it; then it closes when that caller is done.
            dbs.remove(&oldest);
        }
        dbs.insert(
            q.clone(),
            OpenDb {
                db: Arc::clone(&db),
                used: AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed)),
            },
        );
        Ok(Some(db))
    }

    /// Forgets the open database of `circle`/`topic`: the next use opens it again. After a
    /// failed write (a failed fsync leaves an OurDB handle refusing every later write, since
    /// the kernel may have dropped the dirty pages) a fresh open is the way to write again.
    /// Threads still holding the old handle keep it until they drop it.
    pub(crate) fn close(&self, q: &QueueName) {
        self.dbs.write().remove(q);
    }

    /// The queues that have a database on disk (directories whose names are not fixed
    /// names are not this store's and are skipped).
    pub(crate) fn topics(&self) -> Vec<QueueName> {
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
                    if let Some(q) = QueueName::from_fixed(
                        &c.file_name().to_string_lossy(),
                        &t.file_name().to_string_lossy(),
                    ) {
                        out.push(q);
                    }
                }
            }
        }
        out.sort();
        out
    }

    fn db_err(&self, q: &QueueName, source: OurDbError) -> StoreError {
        StoreError::Db {
            path: self.db_dir(q),
            source,
        }
    }

    /// Saves new jobs (fixed names) and returns their ids: one OurDB batch. Ids come from
    /// the database's reserved block; when it has too few left, `reserve` is asked for a new
    /// one (at or above the database's next id), so ids are unique fleet-wide.
    pub(crate) fn add(
        &self,
        q: &QueueName,
        jobs: &[Job],
        reserve: &mut Reserve<'_>,
    ) -> Result<Vec<u32>, StoreError> {
        let db = self.db(q)?;
        let records: Vec<Vec<u8>> = jobs
            .iter()
            .map(|j| {
                let mut buf = Vec::new();
                codec::to_record(j, &mut buf);
                buf
            })
            .collect();
        let n = records.len() as u64;
        for _ in 0..RESERVE_ROUNDS {
            if db.id_limit() == 0 || db.next_id() + n > db.id_limit() {
                let (start, end) = reserve(db.next_id(), n.max(ID_BLOCK)).map_err(|reason| {
                    StoreError::Reserve {
                        path: self.db_dir(q),
                        reason,
                    }
                })?;
                db.reserve_ids(start, end).map_err(|e| self.db_err(q, e))?;
            }
            match db.add_many(records.iter().map(|r| r.as_slice())) {
                // Another process of this base used the block up meanwhile: reserve again.
                Err(OurDbError::IdBlockExhausted { .. }) => continue,
                res => return res.map_err(|e| self.db_err(q, e)),
            }
        }
        Err(StoreError::Reserve {
            path: self.db_dir(q),
            reason: format!(
                "other processes used up {RESERVE_ROUNDS} fresh id blocks in a row; try again"
            ),
        })
    }

    /// Gives up the rest of the id block of `circle`/`topic` (an id of it was found taken in
    /// Redis): the next add reserves a new one.
    pub(crate) fn end_block(&self, q: &QueueName) -> Result<(), StoreError> {
        self.db(q)?.end_block().map_err(|e| self.db_err(q, e))
    }

    /// The next id the database of `circle`/`topic` would hand out, if it exists (for
    /// re-asserting the fleet's id counter after Redis lost it).
    pub(crate) fn next_id(&self, q: &QueueName) -> Result<u64, StoreError> {
        Ok(self.db(q)?.next_id())
    }

    /// Writes a new version of a job (its status changed).
    pub(crate) fn update(&self, job: &Job) -> Result<(), StoreError> {
        self.update_one(job, Absent::Create)
    }

    /// Writes a new version of a job over its record, if it still has one (see
    /// [`Absent::Skip`]); for copies onto a record just read, which a `delete` meanwhile
    /// must not see undone.
    pub(crate) fn replace(&self, job: &Job) -> Result<(), StoreError> {
        self.update_one(job, Absent::Skip)
    }

    fn update_one(&self, job: &Job, absent: Absent) -> Result<(), StoreError> {
        self.update_many(std::iter::once(job), absent)
            .into_iter()
            .next()
            .map_or(Ok(()), Err)
    }

    /// Writes new versions of several jobs: one OurDB batch (one lock, one fsync round in
    /// `strict`) per circle and topic, in the order given. `absent` says what becomes of a
    /// job with no record in OurDB. Returns the failures, one per database that could not
    /// be written, each naming it.
    #[must_use = "failures name the databases whose jobs were not recorded"]
    pub(crate) fn update_many<'a>(
        &self,
        jobs: impl IntoIterator<Item = &'a Job>,
        absent: Absent,
    ) -> Vec<StoreError> {
        /// The records of one database, in order.
        struct Group {
            q: QueueName,
            records: Vec<(u32, Vec<u8>)>,
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut failures = Vec::new();
        for job in jobs {
            // The job's names become a path: only fixed names do (see `QueueName`).
            let Some(q) = QueueName::from_fixed(&job.circle, &job.topic) else {
                failures.push(StoreError::Name(BadName::not_fixed(
                    &job.circle,
                    &job.topic,
                )));
                continue;
            };
            let mut buf = Vec::new();
            codec::to_record(job, &mut buf);
            match groups.iter_mut().find(|g| g.q == q) {
                Some(g) => g.records.push((job.id, buf)),
                None => groups.push(Group {
                    q,
                    records: vec![(job.id, buf)],
                }),
            }
        }
        for Group { q, records } in groups {
            let items = records.iter().map(|(id, r)| (*id, r.as_slice()));
            let res = self.db(&q).and_then(|db| match absent {
                // `put`: the job may have been submitted by another store (its id handed
                // out there), and this store records what it runs.
                Absent::Create => db.put_many(items).map_err(|e| self.db_err(&q, e)),
                Absent::Skip => {
                    let left = db.replace_many(items).map_err(|e| self.db_err(&q, e))?;
                    for id in left {
                        log::info!(
                            "job {q}/{id}: deleted meanwhile; its new version is not written"
                        );
                    }
                    Ok(())
                }
            });
            if let Err(e) = res {
                failures.push(e);
            }
        }
        failures
    }

    /// Reads a job; `None` if it has no record.
    pub(crate) fn get(&self, q: &QueueName, id: u32) -> Result<Option<Job>, StoreError> {
        let Some(db) = self.existing_db(q)? else {
            return Ok(None);
        };
        let bytes = match db.get(id) {
            Ok(b) => b,
            Err(OurDbError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.db_err(q, e)),
        };
        codec::from_record(id, &bytes)
            .map(Some)
            .map_err(|source| StoreError::Record {
                job: q.job(id),
                source,
            })
    }

    /// Deletes a job's record; `false` if it had none.
    pub(crate) fn delete(&self, q: &QueueName, id: u32) -> Result<bool, StoreError> {
        let Some(db) = self.existing_db(q)? else {
            return Ok(false);
        };
        match db.delete(id) {
            Ok(()) => Ok(true),
            Err(OurDbError::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.db_err(q, e)),
        }
    }

    /// Every job of a circle/topic with its status (decodes every record: O(jobs)).
    pub(crate) fn list(&self, q: &QueueName) -> Result<Vec<Listed>, StoreError> {
        let Some(db) = self.existing_db(q)? else {
            return Ok(Vec::new());
        };
        let ids: Vec<u32> = db.ids().collect();
        Ok(ids
            .into_iter()
            .map(|id| {
                let status = self.get(q, id).and_then(|j| {
                    j.map(|j| j.status)
                        .ok_or_else(|| self.db_err(q, OurDbError::NotFound { id }))
                });
                (id, status)
            })
            .collect())
    }

    /// Syncs every open database.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        for (q, open) in self.dbs.read().iter() {
            open.db.sync().map_err(|e| self.db_err(q, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Job;

    fn q(circle: &str, topic: &str) -> QueueName {
        QueueName::new(circle, topic).unwrap()
    }

    fn alone(from: u64, n: u64) -> Result<(u64, u64), String> {
        Ok((from, from + n))
    }

    fn job(circle: &str, topic: &str) -> Job {
        Job::new(circle, topic, crate::ParamsType::HeroScript, "ok")
    }

    #[test]
    fn store_reads_never_create_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::new(dir.path(), Durability::Periodic);
        assert!(store.get(&q("nobody", "nothing"), 1).unwrap().is_none());
        assert!(store.list(&q("nobody", "nothing")).unwrap().is_empty());
        assert!(!store.delete(&q("nobody", "nothing"), 1).unwrap());
        assert!(!dir.path().join("circles").exists(), "a read created files");
        assert_eq!(store.open_count(), 0);
        let ids = store
            .add(&q("c", "t"), &[job("c", "t")], &mut alone)
            .unwrap();
        assert!(store.get(&q("c", "t"), ids[0]).unwrap().is_some());
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn store_keeps_the_number_of_open_databases_and_fds_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::new(dir.path(), Durability::Periodic).with_max_open(8);
        let before = open_fds();
        for i in 0..100 {
            let topic = format!("t{i}");
            store
                .add(&q("c", &topic), &[job("c", &topic)], &mut alone)
                .unwrap();
            assert!(store.open_count() <= 8);
        }
        let during = open_fds();
        // 8 open databases of one data file hold 5 descriptors each; other tests running in
        // this process may hold a few more.
        assert!(
            during <= before + 8 * 5 + 16,
            "{during} fds open (before: {before}) with 100 topics and a cap of 8"
        );
        // Closed databases are still readable (they reopen on demand).
        for i in 0..100 {
            let topic = format!("t{i}");
            assert_eq!(store.list(&q("c", &topic)).unwrap().len(), 1, "{topic}");
        }
        assert!(store.open_count() <= 8);
    }
}
