//! The five stores behind one small interface, each opened with the settings that give the
//! durability promise a workload asks for (see README.md, "Settings per store").

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// The stores this harness knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OurDb,
    Fjall,
    Lmdb,
    Redb,
    Sled,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind> {
        Ok(match s {
            "ourdb" => Kind::OurDb,
            "fjall" => Kind::Fjall,
            "lmdb" | "heed" => Kind::Lmdb,
            "redb" => Kind::Redb,
            "sled" => Kind::Sled,
            other => bail!("unknown store {other:?}: expected ourdb, fjall, lmdb, redb or sled"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::OurDb => "ourdb",
            Kind::Fjall => "fjall",
            Kind::Lmdb => "lmdb",
            Kind::Redb => "redb",
            Kind::Sled => "sled",
        }
    }

    /// The crate and version that implements it (from Cargo.lock, see build.rs).
    pub fn version(self) -> &'static str {
        match self {
            Kind::OurDb => concat!("herojobs ", env!("VERSION_HEROJOBS")),
            Kind::Fjall => concat!("fjall ", env!("VERSION_FJALL")),
            Kind::Lmdb => concat!(
                "heed ",
                env!("VERSION_HEED"),
                " (lmdb-master-sys ",
                env!("VERSION_LMDB_MASTER_SYS"),
                ")"
            ),
            Kind::Redb => concat!("redb ", env!("VERSION_REDB")),
            Kind::Sled => concat!("sled ", env!("VERSION_SLED")),
        }
    }

    /// Whether what this store calls "sync to disk" is a real fsync/fdatasync: sled's
    /// `flush()` is `sync_file_range`, which neither flushes the drive's cache nor commits
    /// file metadata, so it does not survive a power loss the way the others' syncs do.
    pub fn real_fsync(self) -> bool {
        self != Kind::Sled
    }
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Writes reach the store (and, where the store does so, the OS) without an fsync; one
    /// `sync()` at the end makes them durable. OurDB: `Durability::Periodic`.
    Periodic,
    /// Every `add`/`add_batch` returns only after its data is synced to disk.
    /// OurDB: `Durability::Strict`.
    Strict,
}

/// How a reader treats transactions (only LMDB and redb have read transactions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTxn {
    /// One read transaction per get: every get is a standalone call that sees the latest
    /// commit, as a get of OurDB, fjall or sled does.
    PerGet,
    /// One read transaction per reading thread, kept for the whole run (a snapshot).
    PerThread,
}

/// fjall's sync call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FjallSync {
    /// `PersistMode::SyncData` (`fdatasync`, what OurDB, LMDB and redb call).
    Data,
    /// `PersistMode::SyncAll` (`fsync`).
    All,
}

/// Store settings that are not the workload's.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub read_txn: ReadTxn,
    pub fjall_sync: FjallSync,
}

/// A write/read interface every store implements. Keys are u32 ids; stores with byte keys
/// get them big-endian, so the key order is the id order.
pub trait Store: Sync {
    /// Writes one record (in `Strict`: durable when this returns) and returns its id. OurDB
    /// assigns the id itself (the next one); the others store under `key`.
    fn add(&self, key: u32, value: &[u8]) -> Result<u32>;
    /// Writes `values` under `first_key`, `first_key + 1`, ... as one transaction/batch (in
    /// `Strict`: one sync).
    fn add_batch(&self, first_key: u32, values: &[&[u8]]) -> Result<()>;
    /// Makes every write so far durable.
    fn sync(&self) -> Result<()>;
    /// A reader for one thread.
    fn reader(&self) -> Result<Box<dyn Reader + '_>>;
    /// Waits for background work started by the writes (fjall's memtable flushes and
    /// compactions) to finish, so a database built for reading is in its settled state.
    fn settle(&self) -> Result<()> {
        Ok(())
    }
}

/// Reads for one thread: copies the value of `key` into `out` (replacing its contents).
pub trait Reader {
    fn get_into(&mut self, key: u32, out: &mut Vec<u8>) -> Result<()>;
}

/// Opens the store in `dir` (created empty, or holding a database this harness built),
/// runs `f` on it, and closes it cleanly. Returns `f`'s result and how long the close took.
pub fn with_store<T>(
    kind: Kind,
    dir: &Path,
    mode: Mode,
    opts: Options,
    f: impl FnOnce(&dyn Store) -> Result<T>,
) -> Result<(T, Duration)> {
    match kind {
        Kind::OurDb => ourdb::run(dir, mode, f),
        Kind::Fjall => fjall_store::run(dir, mode, opts, f),
        Kind::Lmdb => lmdb::run(dir, mode, opts, f),
        Kind::Redb => redb_store::run(dir, mode, opts, f),
        Kind::Sled => sled_store::run(dir, mode, f),
    }
}

fn missing(kind: Kind, key: u32) -> anyhow::Error {
    anyhow!("{}: key {key} not found", kind.name())
}

mod ourdb {
    use super::*;
    use herojobs::ourdb::{Config, Durability, OurDb};

    struct Db(OurDb);

    pub fn run<T>(
        dir: &Path,
        mode: Mode,
        f: impl FnOnce(&dyn Store) -> Result<T>,
    ) -> Result<(T, Duration)> {
        // Defaults otherwise: the configuration herojobs itself runs with (herolib's sparse
        // dump kept current, 50 ms periodic fsync, keysize picked from the defaults).
        let config = Config {
            durability: match mode {
                Mode::Periodic => Durability::Periodic,
                Mode::Strict => Durability::Strict,
            },
            ..Config::default()
        };
        let db = OurDb::open(dir, config)
            .with_context(|| format!("ourdb: opening {}", dir.display()))?;
        let db = Db(db);
        let out = f(&db)?;
        let t = Instant::now();
        db.0.close().context("ourdb: close")?;
        Ok((out, t.elapsed()))
    }

    impl Store for Db {
        fn add(&self, _key: u32, value: &[u8]) -> Result<u32> {
            self.0.add(value).context("ourdb: add")
        }
        fn add_batch(&self, first_key: u32, values: &[&[u8]]) -> Result<()> {
            let ids = self
                .0
                .add_many(values.iter().copied())
                .context("ourdb: add_many")?;
            if ids.first() != Some(&first_key) {
                bail!(
                    "ourdb: add_many gave ids from {:?}, expected {first_key}",
                    ids.first()
                );
            }
            Ok(())
        }
        fn sync(&self) -> Result<()> {
            self.0.sync().context("ourdb: sync")
        }
        fn reader(&self) -> Result<Box<dyn Reader + '_>> {
            Ok(Box::new(DbReader(&self.0)))
        }
    }

    struct DbReader<'a>(&'a OurDb);

    impl Reader for DbReader<'_> {
        fn get_into(&mut self, key: u32, out: &mut Vec<u8>) -> Result<()> {
            // OurDB's normal get: entry lookup, copy out, CRC check of the record.
            self.0
                .get_into(key, out)
                .with_context(|| format!("ourdb: get {key}"))
        }
    }
}

mod fjall_store {
    use super::*;
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

    struct Db {
        db: Database,
        ks: Keyspace,
        mode: Mode,
        sync_mode: PersistMode,
    }

    pub fn run<T>(
        dir: &Path,
        mode: Mode,
        opts: Options,
        f: impl FnOnce(&dyn Store) -> Result<T>,
    ) -> Result<(T, Duration)> {
        // Default builder: every insert/batch is written to the OS (journal buffer flushed,
        // `manual_journal_persist` off), 32 MiB block cache, LZ4 for older levels.
        let db = Database::builder(dir)
            .open()
            .with_context(|| format!("fjall: opening {}", dir.display()))?;
        let ks = db
            .keyspace("records", KeyspaceCreateOptions::default)
            .context("fjall: opening keyspace")?;
        let sync_mode = match opts.fjall_sync {
            FjallSync::Data => PersistMode::SyncData,
            FjallSync::All => PersistMode::SyncAll,
        };
        let store = Db {
            db,
            ks,
            mode,
            sync_mode,
        };
        let out = f(&store)?;
        let t = Instant::now();
        // Dropping also persists, but cannot report a failure.
        store
            .db
            .persist(PersistMode::SyncAll)
            .context("fjall: persist at close")?;
        drop(store);
        Ok((out, t.elapsed()))
    }

    impl Store for Db {
        fn add(&self, key: u32, value: &[u8]) -> Result<u32> {
            self.ks
                .insert(key.to_be_bytes(), value)
                .context("fjall: insert")?;
            if self.mode == Mode::Strict {
                self.db.persist(self.sync_mode).context("fjall: persist")?;
            }
            Ok(key)
        }
        fn add_batch(&self, first_key: u32, values: &[&[u8]]) -> Result<()> {
            let mut batch = self.db.batch();
            if self.mode == Mode::Strict {
                batch = batch.durability(Some(self.sync_mode));
            }
            for (i, v) in values.iter().enumerate() {
                batch.insert(&self.ks, (first_key + i as u32).to_be_bytes(), *v);
            }
            batch.commit().context("fjall: batch commit")
        }
        fn sync(&self) -> Result<()> {
            self.db.persist(self.sync_mode).context("fjall: persist")
        }
        fn reader(&self) -> Result<Box<dyn Reader + '_>> {
            Ok(Box::new(KsReader(&self.ks)))
        }
        fn settle(&self) -> Result<()> {
            let deadline = Instant::now() + Duration::from_secs(300);
            while self.db.outstanding_flushes() > 0 || self.db.active_compactions() > 0 {
                if Instant::now() > deadline {
                    bail!("fjall: flushes/compactions still running after 300 s");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // A sealed journal is deleted some time after its memtable is flushed; without
            // this wait the footprint counted its data twice in 2 of 3 runs (1.53 vs 1.07).
            // The active journal (count 1) keeps the unflushed memtable: that is fjall's
            // state after a clean close, left as it is.
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.db.journal_count() > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        }
    }

    struct KsReader<'a>(&'a Keyspace);

    impl Reader for KsReader<'_> {
        fn get_into(&mut self, key: u32, out: &mut Vec<u8>) -> Result<()> {
            let v = self
                .0
                .get(key.to_be_bytes())
                .with_context(|| format!("fjall: get {key}"))?
                .ok_or_else(|| missing(Kind::Fjall, key))?;
            out.clear();
            out.extend_from_slice(&v);
            Ok(())
        }
    }
}

mod lmdb {
    use super::*;
    use heed::types::Bytes;
    use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, RoTxn, WithTls};

    /// Virtual address space reserved for the map (the file grows only as pages are written).
    const MAP_SIZE: usize = 16 << 30;

    struct Db<'e> {
        env: &'e Env,
        db: Database<'e, Bytes, Bytes>,
        read_txn: ReadTxn,
    }

    pub fn run<T>(
        dir: &Path,
        mode: Mode,
        opts: Options,
        f: impl FnOnce(&dyn Store) -> Result<T>,
    ) -> Result<(T, Duration)> {
        let mut options = EnvOpenOptions::new();
        options.map_size(MAP_SIZE);
        if mode == Mode::Periodic {
            // SAFETY: MDB_NOSYNC only drops the fsync at commit (a crash of the OS may lose
            // the last commits, which `sync()` then makes durable with mdb_env_sync); it
            // has no memory-safety consequence.
            unsafe {
                options.flags(EnvFlags::NO_SYNC);
            }
        }
        // SAFETY: the environment lives in a fresh directory that only this process opens,
        // and nothing modifies its files outside LMDB while the map exists.
        let env = unsafe { options.open(dir) }
            .with_context(|| format!("lmdb: opening {}", dir.display()))?;
        let wtxn = env.write_txn().context("lmdb: write txn")?;
        let db: Database<Bytes, Bytes> = match env
            .create_databases_and_commit(wtxn, |dbo, wtxn| {
                dbo.create_database(wtxn, None)
                    .map(CommitOrAbort::<_, ()>::Commit)
            })
            .context("lmdb: creating the database")?
        {
            CommitOrAbort::Commit(db) => db,
            CommitOrAbort::Abort(()) => bail!("lmdb: creating the database was aborted"),
        };
        let store = Db {
            env: &env,
            db,
            read_txn: opts.read_txn,
        };
        let out = f(&store)?;
        let t = Instant::now();
        env.force_sync().context("lmdb: sync at close")?;
        let closing = env.prepare_for_closing();
        closing.wait();
        Ok((out, t.elapsed()))
    }

    impl Store for Db<'_> {
        fn add(&self, key: u32, value: &[u8]) -> Result<u32> {
            // In Strict the commit syncs (default flags: fdatasync of the data, then the
            // meta page through an O_DSYNC descriptor); in Periodic (MDB_NOSYNC) it does not.
            let mut txn = self.env.write_txn().context("lmdb: write txn")?;
            self.db
                .put(&mut txn, &key.to_be_bytes(), value)
                .context("lmdb: put")?;
            txn.commit().context("lmdb: commit")?;
            Ok(key)
        }
        fn add_batch(&self, first_key: u32, values: &[&[u8]]) -> Result<()> {
            let mut txn = self.env.write_txn().context("lmdb: write txn")?;
            for (i, v) in values.iter().enumerate() {
                self.db
                    .put(&mut txn, &(first_key + i as u32).to_be_bytes(), v)
                    .context("lmdb: put")?;
            }
            txn.commit().context("lmdb: commit")
        }
        fn sync(&self) -> Result<()> {
            self.env.force_sync().context("lmdb: mdb_env_sync")
        }
        fn reader(&self) -> Result<Box<dyn Reader + '_>> {
            let snapshot = match self.read_txn {
                ReadTxn::PerGet => None,
                ReadTxn::PerThread => Some(self.env.read_txn().context("lmdb: read txn")?),
            };
            Ok(Box::new(LmdbReader {
                env: self.env,
                db: self.db,
                snapshot,
            }))
        }
    }

    struct LmdbReader<'e> {
        env: &'e Env,
        db: Database<'e, Bytes, Bytes>,
        snapshot: Option<RoTxn<'e, WithTls>>,
    }

    impl Reader for LmdbReader<'_> {
        fn get_into(&mut self, key: u32, out: &mut Vec<u8>) -> Result<()> {
            let k = key.to_be_bytes();
            let copy = |txn: &RoTxn, out: &mut Vec<u8>| -> Result<()> {
                let v = self
                    .db
                    .get(txn, &k)
                    .with_context(|| format!("lmdb: get {key}"))?
                    .ok_or_else(|| missing(Kind::Lmdb, key))?;
                out.clear();
                out.extend_from_slice(v);
                Ok(())
            };
            match &self.snapshot {
                Some(txn) => copy(txn, out),
                None => {
                    let txn = self.env.read_txn().context("lmdb: read txn")?;
                    copy(&txn, out)
                }
            }
        }
    }
}

mod redb_store {
    use super::*;
    use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, TableDefinition};

    const TABLE: TableDefinition<u32, &[u8]> = TableDefinition::new("records");

    struct Db {
        db: Database,
        durability: Durability,
        read_txn: ReadTxn,
    }

    pub fn run<T>(
        dir: &Path,
        mode: Mode,
        opts: Options,
        f: impl FnOnce(&dyn Store) -> Result<T>,
    ) -> Result<(T, Duration)> {
        let path = dir.join("data.redb");
        // Default builder: 1 GiB cache, exclusive writer.
        let db = Database::builder()
            .create(&path)
            .with_context(|| format!("redb: opening {}", path.display()))?;
        let store = Db {
            db,
            // Durability::None commits are made durable by the next Immediate commit, which
            // `sync()` issues.
            durability: match mode {
                Mode::Periodic => Durability::None,
                Mode::Strict => Durability::Immediate,
            },
            read_txn: opts.read_txn,
        };
        // No write here: opening must stay a pure open (open-get times it). The table is
        // created by the first write transaction.
        let out = f(&store)?;
        let t = Instant::now();
        store.db.close().context("redb: close")?;
        Ok((out, t.elapsed()))
    }

    impl Db {
        fn write(
            &self,
            durability: Durability,
            fill: impl FnOnce(&mut redb::Table<u32, &[u8]>) -> Result<()>,
        ) -> Result<()> {
            let mut txn = self.db.begin_write().context("redb: begin_write")?;
            txn.set_durability(durability)
                .map_err(|e| anyhow!("redb: set_durability: {e}"))?;
            {
                let mut table = txn.open_table(TABLE).context("redb: open_table")?;
                fill(&mut table)?;
            }
            txn.commit().context("redb: commit")
        }
    }

    impl Store for Db {
        fn add(&self, key: u32, value: &[u8]) -> Result<u32> {
            self.write(self.durability, |t| {
                t.insert(key, value).context("redb: insert")?;
                Ok(())
            })?;
            Ok(key)
        }
        fn add_batch(&self, first_key: u32, values: &[&[u8]]) -> Result<()> {
            self.write(self.durability, |t| {
                for (i, v) in values.iter().enumerate() {
                    t.insert(first_key + i as u32, *v).context("redb: insert")?;
                }
                Ok(())
            })
        }
        fn sync(&self) -> Result<()> {
            // An empty Immediate commit makes the preceding Durability::None commits durable.
            self.write(Durability::Immediate, |_| Ok(()))
        }
        fn reader(&self) -> Result<Box<dyn Reader + '_>> {
            let snapshot = match self.read_txn {
                ReadTxn::PerGet => None,
                ReadTxn::PerThread => {
                    let txn = self.db.begin_read().context("redb: begin_read")?;
                    Some(txn.open_table(TABLE).context("redb: open_table")?)
                }
            };
            Ok(Box::new(RedbReader { db: self, snapshot }))
        }
    }

    struct RedbReader<'a> {
        db: &'a Db,
        snapshot: Option<ReadOnlyTable<u32, &'static [u8]>>,
    }

    impl Reader for RedbReader<'_> {
        fn get_into(&mut self, key: u32, out: &mut Vec<u8>) -> Result<()> {
            let copy = |table: &ReadOnlyTable<u32, &'static [u8]>, out: &mut Vec<u8>| {
                let v = table
                    .get(key)
                    .with_context(|| format!("redb: get {key}"))?
                    .ok_or_else(|| missing(Kind::Redb, key))?;
                out.clear();
                out.extend_from_slice(v.value());
                Ok(())
            };
            match &self.snapshot {
                Some(table) => copy(table, out),
                None => {
                    let txn = self.db.db.begin_read().context("redb: begin_read")?;
                    let table = txn.open_table(TABLE).context("redb: open_table")?;
                    copy(&table, out)
                }
            }
        }
    }
}

mod sled_store {
    use super::*;

    struct Db {
        db: sled::Db,
        mode: Mode,
    }

    pub fn run<T>(
        dir: &Path,
        mode: Mode,
        f: impl FnOnce(&dyn Store) -> Result<T>,
    ) -> Result<(T, Duration)> {
        // Default config: 1 GiB cache, background flush every 500 ms.
        let db = sled::Config::new()
            .path(dir)
            .open()
            .with_context(|| format!("sled: opening {}", dir.display()))?;
        let store = Db { db, mode };
        let out = f(&store)?;
        let t = Instant::now();
        store.db.flush().context("sled: flush at close")?;
        drop(store);
        Ok((out, t.elapsed()))
    }

    impl Store for Db {
        fn add(&self, key: u32, value: &[u8]) -> Result<u32> {
            self.db
                .insert(key.to_be_bytes(), value)
                .context("sled: insert")?;
            if self.mode == Mode::Strict {
                // sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER), not fsync: see Kind::real_fsync.
                self.db.flush().context("sled: flush")?;
            }
            Ok(key)
        }
        fn add_batch(&self, first_key: u32, values: &[&[u8]]) -> Result<()> {
            let mut batch = sled::Batch::default();
            for (i, v) in values.iter().enumerate() {
                batch.insert(&(first_key + i as u32).to_be_bytes()[..], *v);
            }
            self.db.apply_batch(batch).context("sled: apply_batch")?;
            if self.mode == Mode::Strict {
                self.db.flush().context("sled: flush")?;
            }
            Ok(())
        }
        fn sync(&self) -> Result<()> {
            self.db.flush().context("sled: flush")?;
            Ok(())
        }
        fn reader(&self) -> Result<Box<dyn Reader + '_>> {
            Ok(Box::new(SledReader(&self.db)))
        }
    }

    struct SledReader<'a>(&'a sled::Db);

    impl Reader for SledReader<'_> {
        fn get_into(&mut self, key: u32, out: &mut Vec<u8>) -> Result<()> {
            let v = self
                .0
                .get(key.to_be_bytes())
                .with_context(|| format!("sled: get {key}"))?
                .ok_or_else(|| missing(Kind::Sled, key))?;
            out.clear();
            out.extend_from_slice(&v);
            Ok(())
        }
    }
}
