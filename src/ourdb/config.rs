//! How a database is configured: the options given at open, and `ourdb.json`, the record of
//! the layout choices (keysize, file size, mode) that lets a database reopen without options.

use super::error::{OurDbError, Result};
use super::format;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Name of the configuration record inside the database directory (a herojobs addition).
pub const CONFIG_FILE: &str = "ourdb.json";

/// When an acknowledged write is safe, and from what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every write is in the operating system before it is acknowledged (a killed process
    /// loses nothing); an fsync runs at least every `interval` and at close, so a power loss
    /// loses at most that window. Redis's `appendfsync everysec`, tightened.
    #[default]
    Periodic,
    /// Acknowledged only after fsync; concurrent writers share one fsync (group commit).
    Strict,
    /// Left to the operating system (fsync only at close and on `sync()`).
    None,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "periodic" => Ok(Durability::Periodic),
            "strict" => Ok(Durability::Strict),
            "none" => Ok(Durability::None),
            other => Err(format!(
                "unknown durability {other:?}: expected periodic, strict or none"
            )),
        }
    }
}

/// Options for opening a database.
#[derive(Debug, Clone)]
pub struct Config {
    /// Planned maximum record count; with `record_size_max` it picks the keysize the way
    /// herolib does. It is *not* a cap: the table grows up to `u32::MAX` ids regardless.
    pub record_nr_max: u64,
    /// Largest record accepted (also an input to the keysize choice). At most 256 MiB.
    pub record_size_max: usize,
    /// A new data file starts once the current one reaches this size (keysize 6 only).
    pub file_size: u64,
    /// `true`: `add` hands out ids 1, 2, 3...; `false`: key-value mode, the caller picks ids.
    pub incremental: bool,
    /// Force a keysize (2, 3, 4 or 6). Needed to open a herolib database, which records none.
    pub keysize: Option<u8>,
    /// When writes become durable.
    pub durability: Durability,
    /// How often `Periodic` fsyncs.
    pub sync_interval: Duration,
    /// Create the database if the directory holds none.
    pub create: bool,
    /// Open for reading only: nothing is created or written inside the directory (no
    /// `ourdb.json`, `lookup/`, state, lock or dump files), which makes it safe on a foreign
    /// or read-only database. Writes fail with `ReadOnly`. Implies `create: false`.
    pub read_only: bool,
    /// Shortest time between two background rewrites of herolib's sparse dump while the
    /// table changes (it is also rewritten at `sync()`, close and compaction). The effective
    /// interval is at least 20 × the last dump's cost, so dumping a large table takes at most
    /// about 5 % of a core.
    pub dump_interval: Duration,
    /// Keep herolib's sparse dump (`lookup_dump.db/`) current, so stock herolib reads the
    /// database. Off: no dump is written (the cost of `sync()` and close stays O(1)), and a
    /// dump already there goes stale — for databases herolib never opens.
    pub herolib_dump: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            record_nr_max: 16_777_215,
            record_size_max: 16 * 1024 * 1024,
            file_size: 500 * 1024 * 1024,
            incremental: true,
            keysize: None,
            durability: Durability::Periodic,
            sync_interval: Duration::from_millis(50),
            create: true,
            read_only: false,
            dump_interval: Duration::from_secs(1),
            herolib_dump: true,
        }
    }
}

/// What `ourdb.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredConfig {
    /// Version of the herojobs layout additions (1).
    pub format: u32,
    /// Lookup entry width.
    pub keysize: u8,
    /// Data file rollover size.
    pub file_size: u64,
    /// Incremental (true) or key-value (false).
    pub incremental: bool,
    /// Largest record accepted.
    pub record_size_max: usize,
}

impl StoredConfig {
    /// Reads `ourdb.json` from `dir`, `None` if absent.
    pub fn load(dir: &Path) -> Result<Option<StoredConfig>> {
        let path = dir.join(CONFIG_FILE);
        // One read when it returns the whole object: `ourdb.json` is one flat JSON object,
        // so its last non-blank byte is the only `}` that can end it.
        let whole = |b: &[u8]| b.trim_ascii_end().last() == Some(&b'}');
        let text = match super::inner::read_small(&path, 512, whole) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(OurDbError::io("read", &path, e)),
        };
        let cfg: StoredConfig = serde_json::from_slice(&text).map_err(|e| {
            OurDbError::corrupt(
                &path,
                e.column() as u64,
                format!("not a valid ourdb.json: {e}"),
            )
        })?;
        cfg.validate()
            .map_err(|reason| OurDbError::corrupt(&path, 0, reason))?;
        Ok(Some(cfg))
    }

    /// Writes `ourdb.json` into `dir` atomically.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let path = dir.join(CONFIG_FILE);
        let tmp = dir.join("ourdb.json.tmp");
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| OurDbError::InvalidConfig(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(|e| OurDbError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| OurDbError::io("rename", &path, e))
    }

    /// Checks the values are ones this implementation can run with.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !format::KEYSIZES.contains(&self.keysize) {
            return Err(format!("keysize {} is not one of 2, 3, 4, 6", self.keysize));
        }
        if self.file_size < 1024 || self.file_size > format::MAX_POSITION {
            return Err(format!(
                "file size {} is outside 1024..={}",
                self.file_size,
                format::MAX_POSITION
            ));
        }
        if self.record_size_max == 0 || self.record_size_max > format::MAX_RECORD_SIZE {
            return Err(format!(
                "record size max {} is outside 1..={}",
                self.record_size_max,
                format::MAX_RECORD_SIZE
            ));
        }
        Ok(())
    }
}
