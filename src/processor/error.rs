//! [`JobError`]: what a processor or handler returns when a job fails. Anything that is a
//! `std::error::Error` converts into it (so `?` works on params, cancellation, I/O and your
//! own errors), and so do `String` and `&str` (so `Err("no such user".into())` works).

use std::error::Error as StdError;

/// Why a job failed, as its processor says: the message becomes the job's `error`.
///
/// ```
/// use herojobs::{JobContext, JobError};
/// fn handler(ctx: &JobContext, n: &str) -> Result<String, JobError> {
///     let n: u32 = n.parse()?;                  // a ParseIntError
///     ctx.sleep(std::time::Duration::ZERO)?;    // Cancelled
///     if n == 0 {
///         return Err(JobError::permanent("n must be positive")); // never retried
///     }
///     Ok((n * 2).to_string())
/// }
/// # let ctx = JobContext::new(std::time::Duration::from_secs(1), Default::default());
/// assert_eq!(handler(&ctx, "21").unwrap(), "42");
/// assert!(handler(&ctx, "x").unwrap_err().to_string().contains("invalid digit"));
/// assert!(handler(&ctx, "0").unwrap_err().is_permanent());
/// ```
///
/// It is not itself a `std::error::Error` (as `anyhow::Error` is not), which is what lets
/// every error convert into it; [`JobError::into_error`] gives a boxed one when needed.
pub struct JobError {
    inner: Box<dyn StdError + Send + Sync + 'static>,
    permanent: bool,
}

impl JobError {
    /// A failure with this message.
    pub fn msg(message: impl Into<String>) -> JobError {
        JobError {
            inner: message.into().into(),
            permanent: false,
        }
    }

    /// A failure that a retry cannot fix (bad input, a refused request): final whatever the
    /// job's retry policy, like [`JobContext::fail_permanently`](crate::JobContext::fail_permanently).
    pub fn permanent(error: impl Into<JobError>) -> JobError {
        JobError {
            permanent: true,
            ..error.into()
        }
    }

    /// Whether retries are ruled out.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The same failure with `context` in front of its message (`context: message`),
    /// keeping whether it is permanent.
    pub fn context(self, context: impl std::fmt::Display) -> JobError {
        JobError {
            inner: format!("{context}: {}", self.inner).into(),
            permanent: self.permanent,
        }
    }

    /// The underlying error.
    pub fn into_error(self) -> Box<dyn StdError + Send + Sync + 'static> {
        self.inner
    }
}

impl<E> From<E> for JobError
where
    E: Into<Box<dyn StdError + Send + Sync + 'static>>,
{
    fn from(e: E) -> JobError {
        JobError {
            inner: e.into(),
            permanent: false,
        }
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.inner, f)
    }
}

impl std::fmt::Debug for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobError")
            .field("error", &self.inner.to_string())
            .field("permanent", &self.permanent)
            .finish()
    }
}
