//! Every fsync OurDB issues on its own files goes through here, so that errors name the file
//! and, in this crate's unit tests, the power-loss simulator (`powerloss`) learns what each
//! fsync made durable.

use super::error::{OurDbError, Result};
use std::fs::File;
use std::path::Path;

/// Unit tests: every path fsynced, in order (tests filter by their own directory).
#[cfg(test)]
pub(crate) static SYNCED: parking_lot::Mutex<Vec<std::path::PathBuf>> =
    parking_lot::Mutex::new(Vec::new());

/// `fdatasync` of `file` (named `path` in errors): its data, and its size if that changed.
pub(crate) fn data(file: &File, path: &Path) -> Result<()> {
    #[cfg(test)]
    {
        super::powerloss::before_sync(path);
        SYNCED.lock().push(path.to_path_buf());
    }
    file.sync_data()
        .map_err(|e| OurDbError::io("fsync", path, e))
}

/// `fsync` of `file` (named `path` in errors): data and metadata.
pub(crate) fn all(file: &File, path: &Path) -> Result<()> {
    #[cfg(test)]
    {
        super::powerloss::before_sync(path);
        SYNCED.lock().push(path.to_path_buf());
    }
    file.sync_all()
        .map_err(|e| OurDbError::io("fsync", path, e))
}
