//! What a finished job may weigh: the result and error caps that keep a finished job's
//! OurDB record within the database's `record_size_max` (so its outcome is always
//! recordable), and the submit-time check that params leave room for an outcome.
//!
//! Budget of a finished record: the submitted job (params, session key, signature...) plus
//! an error of at most [`ERROR_CAP`], the log (capped as written, see
//! [`crate::processor::LogLimits`]), and the result, which gets the rest. A submit is refused
//! unless [`MIN_OUTCOME_ROOM`] is left for those.

use crate::codec::record_len;
use crate::job::Job;
use crate::processor::floor_char_boundary;

/// Longest error text kept (bytes).
pub const ERROR_CAP: usize = 16 * 1024;
/// Room a submitted job must leave under `record_size_max` for its outcome: a full error,
/// a short log and result, and the cut notes.
pub const MIN_OUTCOME_ROOM: usize = 32 * 1024;
/// Log bytes a cut keeps at least, when there is room, so the cut note has company.
const LOG_KEEP: usize = 8 * 1024;
/// Bytes reserved for the notes a cut adds and the length prefixes of fields.
const SLACK: usize = 512;

/// Why a job cannot be submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("job for {circle}/{topic} is {size} bytes as a record; with {MIN_OUTCOME_ROOM} bytes of room for its result it would not fit this database's record_size_max of {max} bytes (make the params smaller)")]
pub struct TooLarge {
    /// Circle.
    pub circle: String,
    /// Topic.
    pub topic: String,
    /// The job's record size as submitted.
    pub size: usize,
    /// The database's `record_size_max`.
    pub max: usize,
}

/// Refuses a job whose record, as submitted, leaves less than [`MIN_OUTCOME_ROOM`] under
/// `max`.
pub(crate) fn check_submit(job: &Job, max: usize) -> Result<(), TooLarge> {
    let size = record_len(job);
    if size.saturating_add(MIN_OUTCOME_ROOM) > max {
        return Err(TooLarge {
            circle: job.circle.clone(),
            topic: job.topic.clone(),
            size,
            max,
        });
    }
    Ok(())
}

fn cut(s: &mut String, max: usize) -> usize {
    let keep = floor_char_boundary(s, max);
    let gone = s.len() - keep;
    s.truncate(keep);
    gone
}

/// Cuts a finished job's error, result and log so its record fits `max` bytes; the log's
/// last line says what was cut. Returns whether anything was cut. Errors are capped at
/// [`ERROR_CAP`] even when they would fit.
pub(crate) fn fit_finished(job: &mut Job, max: usize) -> bool {
    let mut notes = Vec::new();
    if job.error.len() > ERROR_CAP {
        let gone = cut(&mut job.error, ERROR_CAP);
        notes.push(format!("… error cut: {gone} bytes past {ERROR_CAP}"));
    }
    if notes.is_empty() && record_len(job) <= max {
        return false;
    }
    let bare = Job {
        result: String::new(),
        error: String::new(),
        logs: Vec::new(),
        ..job.clone()
    };
    let mut room = max.saturating_sub(record_len(&bare) + SLACK);
    if job.error.len() > room {
        let gone = cut(&mut job.error, room);
        notes.push(format!("… error cut: {gone} more bytes to fit the record"));
    }
    room -= job.error.len();
    let log_bytes: usize = job.logs.iter().map(|l| l.len() + 8).sum();
    let result_room = room.saturating_sub(log_bytes.min(LOG_KEEP));
    if job.result.len() > result_room {
        let total = job.result.len();
        let gone = cut(&mut job.result, result_room);
        notes.push(format!(
            "… result cut: {gone} of {total} bytes cut to fit the record limit of {max} bytes"
        ));
    }
    room -= job.result.len();
    let mut used = 0;
    let mut kept = 0;
    for l in &job.logs {
        if used + l.len() + 8 > room {
            break;
        }
        used += l.len() + 8;
        kept += 1;
    }
    if kept < job.logs.len() {
        let gone: usize = job.logs[kept..].iter().map(String::len).sum();
        notes.push(format!(
            "… {gone} bytes in {} log lines cut to fit the record",
            job.logs.len() - kept
        ));
        job.logs.truncate(kept);
    }
    // The notes live in the slack (each is short); drop the oldest log lines if they do not.
    job.logs.extend(notes);
    while record_len(job) > max && job.logs.len() > 1 {
        job.logs.remove(0);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::ParamsType;

    #[test]
    fn a_finished_job_is_cut_to_fit_and_says_so() {
        let max = 100 * 1024;
        let mut job = Job::new("c", "t", ParamsType::RhaiScript, "x".repeat(20 * 1024));
        check_submit(&job, max).unwrap();
        job.result = "r".repeat(1024 * 1024);
        job.error = "e".repeat(40 * 1024);
        job.logs = (0..100)
            .map(|i| format!("line {i} {}", "l".repeat(500)))
            .collect();
        assert!(fit_finished(&mut job, max));
        assert!(record_len(&job) <= max, "{}", record_len(&job));
        assert!(job.error.len() <= ERROR_CAP);
        assert!(!job.result.is_empty());
        assert!(
            job.logs.iter().any(|l| l.contains("result cut")),
            "{:?}",
            job.logs.last()
        );
        assert!(job.logs.iter().any(|l| l.contains("error cut")));
        // A job that fits is left alone.
        let mut small = Job::new("c", "t", ParamsType::RhaiScript, "1");
        small.result = "2".into();
        let before = small.clone();
        assert!(!fit_finished(&mut small, max));
        assert_eq!(small, before);
    }

    #[test]
    fn params_that_leave_no_room_for_an_outcome_are_refused() {
        let job = Job::new("c", "t", ParamsType::RhaiScript, "x".repeat(90 * 1024));
        let e = check_submit(&job, 100 * 1024).unwrap_err();
        assert!(e.to_string().contains("record_size_max of 102400"), "{e}");
    }
}
