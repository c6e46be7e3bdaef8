//! Opening a database: creation under the writer lock, recovery of an interrupted
//! compaction, replay of the commit records past the lookup table's durable mark (crash
//! recovery), reconciliation of the shared state with the files, and read-only opens that
//! create, lock and write nothing.

use super::config::{Config, Durability, StoredConfig, CONFIG_FILE};
use super::datafile::DataFile;
use super::durability::SyncCtl;
use super::error::{OurDbError, Result};
use super::format::Location;
use super::inner::MarkCtl;
use super::inner::{open_rw, DumpCtl, Inner, Maps};
use super::lookup::{self, Lookup};
use super::mark::{self, Mark};
use super::state::{self, State};
use super::write::Writer;
use super::{compact, dump, format, LOCK_FILE, OPEN_LOCK_FILE};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// Bytes of the lookup table scanned backwards on open for the last set entry (see
/// [`lookup::GROW_MAX`]): protects the next id against a state file older than the table.
const OPEN_SCAN_WINDOW: u64 = lookup::GROW_MAX + 64 * 1024;

/// Whether `dir` holds records or a table that some writer put there: a non-empty data file,
/// a non-empty `lookup/data` or a sparse dump. Decided under the writer lock at creation, so
/// that a half-created database (a crash, or another opener that has made `lookup/` and the
/// lock files but not yet `ourdb.json`) is created again instead of taken for a foreign one.
fn has_data(dir: &Path) -> bool {
    let len = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    len(dir.join(format::data_file_name(0))) > format::DATA_FILE_PREAMBLE
        || dir.join(format::data_file_name(1)).exists()
        || len(dir.join("lookup/data")) > 0
        || dir.join(dump::DUMP_DIR).join("data").exists()
}

fn no_database(dir: &Path) -> OurDbError {
    OurDbError::NoDatabase {
        dir: dir.to_path_buf(),
    }
}

/// The next id from its sources, each checked against the table (see
/// [`format::MAX_ID_GAP`]): the state file, `.inc`, the dump's `.inc`, the mark, the ids the
/// replay met, and (`scan`) the last set entry in the table's tail — needed only when the
/// table may hold entries none of the others knows (no mark, a stale state after a crash with
/// writes that no commit record names). Returns the next id and the value before the scan.
#[allow(clippy::too_many_arguments)]
fn reconcile_next_id(
    dir: &Path,
    lookup: &Lookup,
    state_next: Option<u64>,
    dump_inc: Option<u64>,
    mark_next: Option<u64>,
    replay_next: u64,
    scan: bool,
) -> Result<(u64, u64)> {
    let table_ids = lookup.entries().max(1);
    let bound = table_ids + format::MAX_ID_GAP;
    let implausible = |path: PathBuf, next: u64| OurDbError::NextIdImplausible {
        path,
        next,
        table_ids,
        gap: format::MAX_ID_GAP,
        bound,
    };
    let inc_path = dir.join("lookup/.inc");
    let inc = lookup::read_inc(&inc_path)?;
    if let Some(n) = inc.filter(|n| *n > bound) {
        return Err(implausible(inc_path, n));
    }
    if let Some(n) = dump_inc.filter(|n| *n > bound) {
        return Err(implausible(dir.join(dump::DUMP_DIR).join(".inc"), n));
    }
    // The state file is a cache rebuilt from the files: an absurd value there is dropped.
    let state_next = state_next.filter(|n| {
        let ok = *n <= bound;
        if !ok {
            log::warn!(
                "ourdb {}: ignoring next id {n} in {}: beyond the table (bound {bound})",
                dir.display(),
                state::STATE_FILE
            );
        }
        ok
    });
    let prior = state_next
        .into_iter()
        .chain(inc)
        .chain(dump_inc)
        .chain(mark_next.filter(|n| *n <= bound))
        .max()
        .unwrap_or(1)
        .max(1)
        .max(replay_next);
    let scanned = if scan {
        lookup
            .last_set_id(OPEN_SCAN_WINDOW)
            .map(|id| id as u64 + 1)
            .unwrap_or(1)
    } else {
        1
    };
    Ok((prior.max(scanned), prior))
}

/// What replaying the data past the mark found.
#[derive(Default, Debug)]
pub(super) struct Replayed {
    /// Bytes exist past the mark (records, a torn tail, a `strict` writer's fill).
    pub(super) beyond: bool,
    /// Entries set from commit records.
    pub(super) applied: u64,
    /// One more than the highest id a valid commit record names (1 if none).
    pub(super) next: u64,
    /// Intact records no valid commit record covers (`periodic` or `none` writes, or a
    /// `strict` group cut short): their ids are unknown, so the table's tail is scanned for
    /// the next id.
    pub(super) unframed: bool,
}

/// A record replay met past the mark.
struct Met {
    /// The id a commit record framed it for; `None` for a write without a commit record.
    id: Option<u32>,
    /// The location it replaced (its header's previous location).
    prev: Location,
}

/// Whether the record at `from` is a later version of `id` than its committed record `r`:
/// a later commit of `id`, or a write without a commit record whose chain of replaced
/// locations leads back to `r` or to a later commit of `id` (a `set` replaces whatever the
/// entry named when it was written, and everything written after `r` lies past the mark).
/// A location replay did not meet — a torn entry — is not.
fn replaces_back_to(met: &HashMap<Location, Met>, from: Location, id: u32, r: Location) -> bool {
    let mut at = from;
    // Each step goes to an earlier record; the bound only guards against a damaged chain.
    for _ in 0..met.len().min(1 << 16) {
        let Some(m) = met.get(&at) else {
            return false;
        };
        if let Some(framed) = m.id {
            return framed == id;
        }
        if m.prev == r {
            return true;
        }
        if m.prev.is_none() || m.prev.append_order() >= at.append_order() {
            return false;
        }
        at = m.prev;
    }
    false
}

/// Crash recovery: reads the data files from the mark on, record by record, and for every
/// commit record whose CRC matches the records right before it, points each id it names at
/// its record — unless the table already holds a later version of that id (a write that
/// another handle published after it, or one without a commit record) — and for every delete
/// commit, clears the entry of the id it names. Stops at the first
/// bytes that are not a whole record (a torn tail, a `strict` writer's fill). Never hands
/// out anything: it only raises the next id past the ids it met.
///
/// "A later version" is believed only if the table's entry names an intact record past the
/// mark, later than the committed one, that is this id's: committed for it, or written
/// without a commit record and replacing, link by link, the committed one
/// ([`replaces_back_to`]). After a power loss an
/// entry can be *torn*: six bytes may straddle two pages of the table, and the kernel may
/// have written back one page and not the other, so the entry holds the file number of one
/// version and the position of another — a location nobody wrote. Compared by append order
/// alone it can look newer than the commit and send reads into the fill or the middle of a
/// record; checked against the records the scan actually met, it cannot.
pub(super) fn replay(
    lookup: &Lookup,
    files: &[Arc<DataFile>],
    m: &Mark,
    max: usize,
) -> Result<Replayed> {
    let mut out = Replayed {
        next: 1,
        ..Replayed::default()
    };
    // Nothing past the mark (a clean close): nothing to replay, and nothing to set up for it
    // (its map's hasher is seeded from the OS: a system call a fresh open need not make).
    let start = |nr: usize| {
        if nr == m.file_nr as usize {
            m.position.max(format::DATA_FILE_PREAMBLE)
        } else {
            format::DATA_FILE_PREAMBLE
        }
    };
    let past = files
        .iter()
        .enumerate()
        .skip(m.file_nr as usize)
        .any(|(nr, f)| start(nr) < f.known_len());
    if !past {
        return Ok(out);
    }
    let mut buf = Vec::new();
    // Each record since the last commit record: location, data CRC, data length.
    let mut group: Vec<(Location, u32, u32)> = Vec::new();
    let mut crcs: Vec<(u32, u32)> = Vec::new();
    // Every intact record past the mark: the id a commit record framed it for (`None`: not
    // framed, a write without a commit record) and the location it replaced.
    let mut met: HashMap<Location, Met> = HashMap::new();
    // The committed location of each id, the latest commit last; for a delete commit,
    // Location::NONE and where the delete commit lies.
    let mut committed: Vec<(u32, Location, Option<Location>)> = Vec::new();
    for (nr, file) in files.iter().enumerate().skip(m.file_nr as usize) {
        let mut pos = start(nr);
        let nr = nr as u16;
        let len = file.known_len();
        if pos < len {
            out.beyond = true;
        }
        group.clear();
        while pos < len && pos <= format::MAX_POSITION {
            match file.read_commit(pos) {
                Ok(Some(c)) => {
                    let n = c.ids.count();
                    let framed = n <= group.len() && {
                        crcs.clear();
                        crcs.extend(group[group.len() - n..].iter().map(|r| (r.1, r.2)));
                        c.matches(&crcs)
                    };
                    if framed && n == 0 {
                        // A delete commit: its id's entry is cleared ([`Inner::delete`]).
                        out.unframed |= !group.is_empty();
                        if let Some(id) = c.deleted() {
                            let at = Location {
                                file_nr: nr,
                                position: pos as u32,
                            };
                            committed.push((id, Location::NONE, Some(at)));
                        }
                    } else if framed {
                        out.unframed |= group.len() > n;
                        let first = group.len() - n;
                        for (i, r) in group[first..].iter().enumerate() {
                            let id = c.ids.id(i);
                            if id == 0 {
                                continue;
                            }
                            out.next = out.next.max(id as u64 + 1);
                            if let Some(m) = met.get_mut(&r.0) {
                                m.id = Some(id);
                            }
                            committed.push((id, r.0, None));
                        }
                    } else {
                        out.unframed |= !group.is_empty();
                    }
                    group.clear();
                    pos += c.total_len as u64;
                    continue;
                }
                Ok(None) => {}
                Err(_) => break,
            }
            match file.read_record(pos as u32, max, &mut buf) {
                Ok(h) => {
                    let at = Location {
                        file_nr: nr,
                        position: pos as u32,
                    };
                    met.entry(at).or_insert(Met {
                        id: None,
                        prev: h.prev,
                    });
                    group.push((at, h.crc, h.data_len as u32));
                    pos += h.total_len() as u64;
                }
                Err(_) => break,
            }
        }
        out.unframed |= !group.is_empty();
    }
    // Apply, in commit order (a later commit of an id is a later version of it).
    for &(id, r, deleted_at) in &committed {
        let current = lookup.get(id, lookup.known_len())?;
        if let Some(at) = deleted_at {
            // A delete commit past the mark: the delete was cut off (its checkpoint moves
            // the mark past it before it returns), and the entry — cleared, untouched or
            // torn — is cleared, unless it names a later version of the id met past the
            // commit (another process's write after a delete that died, or a write after a
            // delete that failed after its commit was written). A later commit of the id is
            // applied after this anyway; a write without one must lead back, link by link,
            // to a new history (a `set` after a delete replaces nothing).
            let later = current.is_some_and(|l| {
                !l.is_none()
                    && l.append_order() > at.append_order()
                    && replaces_back_to(&met, l, id, Location::NONE)
            });
            if !later && current.is_some_and(|l| !l.is_none()) {
                lookup.set(id, Location::NONE)?;
                out.applied += 1;
            }
            continue;
        }
        if current == Some(r) {
            continue;
        }
        let later = current.is_some_and(|l| {
            !l.is_none() && l.append_order() > r.append_order() && replaces_back_to(&met, l, id, r)
        });
        if !later {
            lookup.ensure_capacity(id, lookup.known_len())?;
            lookup.set(id, r)?;
            out.applied += 1;
        }
    }
    Ok(out)
}

impl Inner {
    pub(super) fn open(dir: PathBuf, config: &Config) -> Result<Inner> {
        if config.read_only {
            return Self::open_read_only(dir, config);
        }
        // Read once, here: `ourdb.json` is written once, atomically, when the database is
        // created, so a config found now is the one the locked part would read again.
        let loaded = StoredConfig::load(&dir)?;
        let has_config = loaded.is_some();
        let existed = has_config
            || dir.join("lookup").exists()
            || dir.join(dump::DUMP_DIR).exists()
            || dir.join("0.db").exists();
        if !existed && !config.create {
            return Err(no_database(&dir));
        }
        // Every step up to `ourdb.json` is idempotent (directories, empty lock files), and
        // whether the database exists is decided under the writer lock (`open_locked`): so
        // any number of first opens, in threads or processes, agree, and a creation cut short
        // anywhere is completed by the next open. Creation makes `lookup/` before it writes
        // `ourdb.json`, so with the config there the directory is too (and if it was taken
        // away since, opening the table says so instead of starting an empty one).
        if !has_config {
            super::inner::make_lookup_dir(&dir)?;
        }
        let open_path = dir.join(OPEN_LOCK_FILE);
        let open_lock = open_rw(&open_path, true)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = open_rw(&lock_path, true)?;
        lock.lock()
            .map_err(|e| OurDbError::io("lock", &lock_path, e))?;
        // Alone: no other handle, in any process, has the database open, so nothing has kept
        // the shared state file current and it may be stale (a power loss). Not alone: a live
        // handle reconciled it when it opened and keeps it exact. Both the probe and the
        // shared lock are taken under the writer lock, which a handle holds from its probe to
        // the end of its reconciliation (and a closing handle before its probe), so a shared
        // lock seen here always belongs to a handle that has reconciled. (An error other
        // than "held" counts as alone: the safe reading.)
        let alone = !matches!(open_lock.try_lock(), Err(std::fs::TryLockError::WouldBlock));
        if let Err(e) = open_lock.lock_shared() {
            let _ = lock.unlock();
            return Err(OurDbError::io("lock", &open_path, e));
        }
        let opened = Self::open_locked(&dir, config, alone, loaded);
        // Whether open's scan raised the next id: read before the lock is released (after
        // it, another process's adds raise it too, and `check` would then take the value
        // from before them for the ids handed out).
        let state_raised = opened
            .as_ref()
            .is_ok_and(|(_, state, _, prior_next, _)| state.next_id() > *prior_next);
        let _ = lock.unlock();
        let (stored, state, maps, prior_next, last_mark) = opened?;
        Ok(Inner {
            dir,
            open_lock: Some(open_lock),
            read_only: false,
            prior_next,
            scan_raised: state_raised,
            // Unknown until compared: the first `write_dump` compares and writes if needed.
            dump: DumpCtl::new(false, config.dump_interval, config.herolib_dump),
            stored,
            durability: config.durability,
            maps: ArcSwap::from_pointee(maps),
            reload: Mutex::new(()),
            state,
            writer: Mutex::new(Writer::new(Some(lock))),
            lock_held: AtomicBool::new(false),
            sync: SyncCtl::default(),
            mark: Mutex::new(MarkCtl {
                last: Some(last_mark),
                when: Instant::now(),
            }),
            mark_at: (((last_mark.file_nr as u64) << 48) | (last_mark.position & ((1 << 48) - 1)))
                .into(),
        })
    }

    /// The configuration of `dir`: `ourdb.json`, or (none there) the one `config` describes,
    /// for a new database or a herolib one opened with an explicit keysize. `store`: write
    /// it (a writable open); a read-only one only uses it.
    pub(super) fn resolve_config(dir: &Path, config: &Config, store: bool) -> Result<StoredConfig> {
        if let Some(s) = StoredConfig::load(dir)? {
            return Self::accept_config(dir, config, s);
        }
        let data = has_data(dir);
        if !data && (!config.create || config.read_only) {
            return Err(no_database(dir));
        }
        let keysize = match config.keysize {
            Some(k) => k,
            None if data => {
                return Err(OurDbError::KeysizeUnknown {
                    dir: dir.to_path_buf(),
                })
            }
            None => format::herolib_keysize(config.record_nr_max, config.record_size_max as u64),
        };
        let s = StoredConfig {
            format: 1,
            keysize,
            file_size: config.file_size,
            incremental: config.incremental,
            record_size_max: config.record_size_max,
        };
        s.validate().map_err(OurDbError::InvalidConfig)?;
        if store {
            s.store(dir)?;
        }
        Ok(s)
    }

    /// The stored config `s`, if the caller's keysize (when it gives one) agrees with it.
    fn accept_config(dir: &Path, config: &Config, s: StoredConfig) -> Result<StoredConfig> {
        if let Some(k) = config.keysize {
            if k != s.keysize {
                return Err(OurDbError::KeysizeMismatch {
                    path: dir.join(CONFIG_FILE),
                    detail: format!(
                        "database was created with keysize {}, opened with {k}",
                        s.keysize
                    ),
                });
            }
        }
        Ok(s)
    }

    /// Open-time work that must not race another process's writer or compaction: finish an
    /// interrupted compaction, import herolib's dump if there is no table, replay the commit
    /// records past the mark (alone: after a crash), reconcile the shared state with the
    /// files, and move the mark to the end when anything was past it.
    ///
    /// `loaded`: `ourdb.json` as read before the lock (`None`: there was none then, so it is
    /// looked for again under the lock, and written if still absent).
    #[allow(clippy::type_complexity)]
    pub(super) fn open_locked(
        dir: &Path,
        config: &Config,
        alone: bool,
        loaded: Option<StoredConfig>,
    ) -> Result<(StoredConfig, State, Maps, u64, Mark)> {
        let recovered = compact::recover(dir)?;
        let stored = match loaded {
            Some(s) => Self::accept_config(dir, config, s)?,
            None => Self::resolve_config(dir, config, true)?,
        };
        let dense = dir.join("lookup/data");
        let dump = dir.join(dump::DUMP_DIR);
        let mut dump_inc = None;
        // The table, if there is one (the usual case: one `open`, no `stat` before it).
        let mut existing = Lookup::open_existing(&dense, stored.keysize)?;
        if existing.is_none() && dump.join("data").exists() {
            super::inner::make_lookup_dir(dir)?;
            dump_inc = lookup::import_sparse(&dump, &dense, stored.keysize)?;
            // A table built from herolib's dump: a mark left from before describes another
            // table. The dump's table is authoritative.
            let p = mark::path(dir);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| OurDbError::io("remove", &p, e))?;
            }
        }
        let lookup = match existing.take() {
            Some(l) => l,
            None => Lookup::open(&dense, stored.keysize)?,
        };
        let mut files = vec![Arc::new(DataFile::open(dir, 0, true)?)];
        while dir
            .join(format::data_file_name(files.len() as u16))
            .exists()
        {
            if files.len() > u16::MAX as usize {
                break;
            }
            files.push(Arc::new(DataFile::open(dir, files.len() as u16, false)?));
        }
        let found = mark::read(dir)?;
        if found == mark::Found::Invalid {
            log::warn!(
                "ourdb {}: {} holds no valid checkpoint; taking lookup/data as complete",
                dir.display(),
                mark::path(dir).display()
            );
        }
        let old_mark = match found {
            mark::Found::Valid(m) => Some(m),
            _ => None,
        };
        // Only alone: a live handle publishes its own writes, so nothing can be missing from
        // the table while another handle has the database open (a writer killed before it
        // published left only unacknowledged writes, which the next lone open replays).
        let replayed = match (&old_mark, alone) {
            (Some(m), true) => replay(&lookup, &files, m, stored.record_size_max)?,
            _ => Replayed {
                next: 1,
                ..Replayed::default()
            },
        };
        if replayed.applied > 0 {
            log::info!(
                "ourdb {}: replayed {} lookup entries from commit records past the mark",
                dir.display(),
                replayed.applied
            );
        }
        let (state, valid) = State::open(dir)?;
        let last = files.len() as u16 - 1;
        let last_len = files[last as usize].known_len();
        // Reconcile the shared state with the files: after a crash or power loss the files may
        // be ahead of it (never trust a position that could overwrite a record). With another
        // handle open the state is live and exact, and the file may be longer than the data
        // by a `strict` writer's preallocated fill, which appends go on using. Alone, the end
        // of the file is the safe choice: a fill left by a crash is skipped, not reused.
        let append = if valid && !recovered && state.file_nr() == last {
            if alone {
                state.append_pos().max(last_len)
            } else {
                state.append_pos()
            }
        } else {
            last_len
        };
        let state_next = valid.then(|| state.next_id());
        let scan = !valid || (alone && (old_mark.is_none() || replayed.unframed));
        let (next, prior_next) = reconcile_next_id(
            dir,
            &lookup,
            state_next,
            dump_inc,
            old_mark.map(|m| m.next_id),
            replayed.next,
            scan,
        )?;
        state.set_next_id(next);
        state.set_file_nr(last);
        state.set_append_pos(append);
        state.set_lookup_len(lookup.known_len());
        if !valid {
            state.set_generation(0);
            // No block is known: the owner reserves a new one (the old one's rest is a gap).
            state.set_id_limit(0);
        } else if recovered {
            // Other handles still map the files the interrupted compaction replaced.
            state.set_generation(state.generation() + 1);
        }
        if !valid || recovered || (alone && replayed.beyond) {
            // Words of an invalid file, counted over the replaced files, or possibly behind
            // the data after a crash (the state file is never fsynced): unknown.
            state.set_live_bytes(None);
        }
        state.set_valid();
        // Past the mark there was something (a crash), or there is no mark yet (a new
        // database, or one written before marks): make the table durable up to the end and
        // move the mark there. The data files first: the replayed entries must not become
        // durable before the records they point at (a kill leaves those in the page cache).
        let at_end = |m: &Mark| (m.file_nr, m.position) == (last, append) && m.next_id >= next;
        let mark = match old_mark {
            Some(m) if at_end(&m) || (!replayed.beyond && alone) => m,
            Some(m) if !alone => m,
            _ => {
                let from = old_mark.map_or(last, |m| m.file_nr.min(last));
                for f in &files[from as usize..] {
                    f.sync()?;
                }
                super::fsync::data(lookup.file(), lookup.path())?;
                let m = Mark {
                    seq: old_mark.map_or(0, |m| m.seq) + 1,
                    file_nr: last,
                    position: append,
                    next_id: next,
                };
                mark::write(dir, &m)?;
                m
            }
        };
        let maps = Maps {
            generation: state.generation(),
            lookup: Arc::new(lookup),
            files,
        };
        Ok((stored, state, maps, prior_next, mark))
    }

    /// A read-only handle: reads the files as they are and creates, locks and writes nothing
    /// in `dir`. Without `lookup/data` the table is built from the sparse dump in a private
    /// temporary file; without `ourdb.state` the state is rebuilt in memory.
    pub(super) fn open_read_only(dir: PathBuf, config: &Config) -> Result<Inner> {
        let stored = Self::resolve_config(&dir, config, false)?;
        if dir.join(compact::STAGING).join(compact::COMMIT).exists() {
            return Err(OurDbError::ReadOnly {
                dir,
                what: "finishing an interrupted compaction (.compact/COMMIT exists)",
            });
        }
        let dense = dir.join("lookup/data");
        let dump_dir = dir.join(dump::DUMP_DIR);
        let mut dump_inc = None;
        let lookup = if dense.exists() {
            Lookup::open_read_only(&dense, stored.keysize)?
        } else if dump_dir.join("data").exists() {
            dump_inc = lookup::read_inc(&dump_dir.join(".inc"))?;
            Lookup::private(&dense, stored.keysize, Some(&dump_dir))?
        } else {
            Lookup::private(&dense, stored.keysize, None)?
        };
        let mut files = Vec::new();
        while files.len() <= u16::MAX as usize
            && dir
                .join(format::data_file_name(files.len() as u16))
                .exists()
        {
            files.push(Arc::new(DataFile::open_read_only(
                &dir,
                files.len() as u16,
            )?));
        }
        let (state, valid) = State::snapshot(&dir)?;
        let state_next = valid.then(|| state.next_id());
        let mark_next = match mark::read(&dir)? {
            mark::Found::Valid(m) => Some(m.next_id),
            _ => None,
        };
        // A read-only handle replays nothing (it writes no table): after a crash, records
        // committed past the mark show once a writable open has replayed them.
        let (next, prior_next) =
            reconcile_next_id(&dir, &lookup, state_next, dump_inc, mark_next, 1, true)?;
        let last = files.len().saturating_sub(1) as u16;
        state.set_next_id(next);
        state.set_file_nr(last);
        state.set_append_pos(files.last().map_or(0, |f| f.known_len()));
        state.set_lookup_len(lookup.known_len());
        if !valid {
            state.set_generation(0);
        }
        state.set_valid();
        let maps = Maps {
            generation: state.generation(),
            lookup: Arc::new(lookup),
            files,
        };
        Ok(Inner {
            dir,
            open_lock: None,
            read_only: true,
            prior_next,
            scan_raised: next > prior_next,
            dump: DumpCtl::new(true, config.dump_interval, false),
            stored,
            durability: Durability::None,
            maps: ArcSwap::from_pointee(maps),
            reload: Mutex::new(()),
            state,
            writer: Mutex::new(Writer::new(None)),
            lock_held: AtomicBool::new(false),
            sync: SyncCtl::default(),
            mark: Mutex::new(MarkCtl {
                last: None,
                when: Instant::now(),
            }),
            mark_at: 0.into(),
        })
    }
}
