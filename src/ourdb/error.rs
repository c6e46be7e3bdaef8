//! The errors OurDB reports. Every variant that comes from a file names the file, and where
//! it makes sense the byte offset, so that a person can open a hex editor at the right place.

use std::path::PathBuf;

/// Everything that can go wrong opening, reading or writing an OurDB database.
///
/// `#[non_exhaustive]`: new failure kinds may be added without a breaking change; match the
/// ones you handle and keep a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OurDbError {
    /// An operating-system call on a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "read", "fsync", ...).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The id has no record (never written, or deleted).
    #[error("record {id} not found")]
    NotFound {
        /// The id asked for.
        id: u32,
    },
    /// Id 0 is reserved for "no id"; ids start at 1.
    #[error("id 0 is not a valid record id (ids start at 1)")]
    ZeroId,
    /// In incremental mode only ids that `add` handed out can be `set`.
    #[error("id {id} was never handed out (next id is {next}); use add() for new records")]
    IdNotAllocated {
        /// The id given to `set`.
        id: u32,
        /// The next id `add` would hand out.
        next: u64,
    },
    /// The id block reserved with `reserve_ids` has too few ids left for this `add`: the
    /// caller reserves a new block and adds again. Nothing was written.
    #[error("id block exhausted: {wanted} id(s) wanted from {next}, block ends before {limit}")]
    IdBlockExhausted {
        /// The next id.
        next: u64,
        /// The end (exclusive) of the reserved block.
        limit: u64,
        /// How many ids the add needed.
        wanted: usize,
    },
    /// `add` in key-value mode, where the caller chooses ids.
    #[error("add() needs incremental mode; this database is key-value: use set(id, data)")]
    NotIncremental,
    /// Every u32 id has been handed out.
    #[error("id space exhausted: all {} ids of this database are used; start a new database or compact into one", u32::MAX)]
    IdSpaceExhausted,
    /// The record is larger than this database accepts.
    #[error("record of {size} bytes is larger than the maximum of {max} bytes")]
    RecordTooLarge {
        /// The size offered.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A location does not fit the lookup entry width (small keysizes address one small file).
    #[error("database full for keysize {keysize}: location {location} does not fit a {keysize}-byte lookup entry")]
    LocationOverflow {
        /// The database's keysize.
        keysize: u8,
        /// The location that did not fit.
        location: super::format::Location,
    },
    /// A record's bytes do not match its CRC.
    #[error("{path} at offset {offset}: CRC mismatch (stored {stored:#010x}, computed {computed:#010x}): data corrupted")]
    Crc {
        /// The data file.
        path: PathBuf,
        /// Offset of the record header.
        offset: u64,
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes found.
        computed: u32,
    },
    /// A file's contents do not follow the format.
    #[error("{path} at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where in it.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// `lookup/.inc` (or the sparse dump's) does not hold a decimal number.
    #[error("{path}: expected the next id as a decimal number, found {content:?}")]
    IncNotNumber {
        /// The `.inc` file.
        path: PathBuf,
        /// What it held (cut to 64 bytes).
        content: String,
    },
    /// The database was opened with a keysize other than the one it was created with, or its
    /// lookup file's length is not a multiple of the keysize.
    #[error("{path}: keysize mismatch: {detail}")]
    KeysizeMismatch {
        /// The file that shows the mismatch.
        path: PathBuf,
        /// What disagreed.
        detail: String,
    },
    /// A database with no recorded configuration (written by herolib) needs the keysize.
    #[error("{dir}: no ourdb.json here, so the lookup keysize is unknown (herolib records none); open with an explicit keysize (CLI: --keysize N)")]
    KeysizeUnknown {
        /// The database directory.
        dir: PathBuf,
    },
    /// The directory holds no OurDB database (and the open was not asked to create one).
    #[error("open {dir}: no OurDB database here")]
    NoDatabase {
        /// The directory.
        dir: PathBuf,
    },
    /// A write (or a repair that needs one) on a handle opened read-only.
    #[error("{dir}: opened read-only: {what} needs a writable open")]
    ReadOnly {
        /// The database directory.
        dir: PathBuf,
        /// What was refused.
        what: &'static str,
    },
    /// A next id (from `.inc`) so far beyond the lookup table that it can only be damage;
    /// accepting it would grow the table to an absurd size on the next `add`.
    #[error("{path}: next id {next} is implausible: the lookup table holds entries for ids below {table_ids}, and a next id may run at most {gap} ids ahead of it (bound {bound}); correct the file or delete it (the next id is then derived from the table)")]
    NextIdImplausible {
        /// The file holding the value.
        path: PathBuf,
        /// The value found.
        next: u64,
        /// Ids the table covers (`0..table_ids`).
        table_ids: u64,
        /// The largest gap accepted ([`super::format::MAX_ID_GAP`]).
        gap: u64,
        /// The largest next id accepted.
        bound: u64,
    },
    /// The configuration asked for is not possible.
    #[error("invalid OurDB configuration: {0}")]
    InvalidConfig(String),
    /// Another compaction of this database (in this or another process) holds
    /// `ourdb.compact.lock`: one runs at a time. Nothing was changed; try again later.
    #[error("a compaction of {dir} is already running")]
    CompactionBusy {
        /// The database directory.
        dir: PathBuf,
    },
    /// An online compaction gave up before its commit point and removed its staging files;
    /// the database is as it was (with every write made meanwhile).
    #[error("compaction of {dir} abandoned: {reason}")]
    CompactionAbandoned {
        /// The database directory.
        dir: PathBuf,
        /// Why (the database changed generation under it, an interrupted compaction waits
        /// for a writable open to finish it, ...).
        reason: String,
    },
    /// The lookup entry of `id` stayed in the middle of a write for as long as a reader
    /// waits ([`OurDb::get`](super::OurDb::get) and the other reads): a writer holding the
    /// write lock stopped between the entry's bytes (suspended, or starved of CPU). Nothing
    /// is wrong with the database; reading it half-written could have named another record,
    /// so the read gives up instead. Try again.
    #[error("the lookup entry of record {id} stayed mid-write for {waited_ms} ms; try again")]
    EntryBusy {
        /// The id read.
        id: u32,
        /// How long the reader waited, in milliseconds.
        waited_ms: u64,
    },
    /// A previous fsync failed; the database refuses further durable writes rather than
    /// pretend they are safe (after a failed fsync the kernel may have dropped dirty pages).
    #[error("an earlier fsync failed ({0}); reopen the database")]
    SyncFailed(String),
}

impl OurDbError {
    /// Shorthand for an I/O error on a path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OurDbError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for a format violation.
    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        OurDbError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

/// Result with [`OurDbError`].
pub type Result<T> = std::result::Result<T, OurDbError>;
