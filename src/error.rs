//! The crate-level error: every module's error converts into it, so library users can match
//! one type (or use `?` into `Box<dyn Error>`) and still see where a failure came from.

use crate::ourdb::OurDbError;

/// Any herojobs failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OurDB store.
    #[error("ourdb: {0}")]
    OurDb(#[from] OurDbError),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
