//! How a job becomes bytes: JSON for Redis (other clients read it), bincode for OurDB
//! (compact and fast), with a leading format-version byte so that later versions of this
//! crate still read records written by this one. bincode 1.x is pinned in Cargo.toml and
//! used nowhere else.

use crate::job::{Job, JobStatus, ParamsType};
use serde::{Deserialize, Serialize};

/// Version byte of the first OurDB job record layout (still read).
pub(crate) const RECORD_V1: u8 = 1;
/// Version byte of the current layout: version 1's fields, then the fields herojobs added
/// since, as one JSON object (so a field added later needs no new version: older readers
/// of v2 ignore what they do not know, and records without a field get its default).
pub(crate) const RECORD_V2: u8 = 2;

/// Why bytes could not be turned into a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Not valid job JSON.
    #[error("invalid job JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An OurDB record with no bytes.
    #[error("empty job record")]
    Empty,
    /// An OurDB record written by a newer (or foreign) version.
    #[error(
        "job record format version {0} is not known to this version of herojobs (it reads 1 and 2)"
    )]
    UnknownVersion(u8),
    /// A record whose body does not decode.
    #[error("job record v{version} does not decode: {reason}")]
    Bincode {
        /// The record version.
        version: u8,
        /// The decoder's message.
        reason: String,
    },
}

/// The job as stored in OurDB, version 1. Positional (bincode): fields are only ever added
/// in a new version, never reordered. Generic over how strings are held: decoded as owned
/// `String`s, encoded from the job's own fields borrowed (`&str`, `&[String]`: the same
/// bytes, no copy of params and result for each of a job's three versions).
#[derive(Serialize, Deserialize)]
struct RecordV1<S, L> {
    session_key: S,
    circle: S,
    topic: S,
    params: S,
    params_type: S,
    status: u8,
    timeout: u64,
    time_scheduled: i64,
    time_start: i64,
    time_end: i64,
    error: S,
    result: S,
    log: bool,
    attempts: u32,
    logs: L,
}

/// The fields added after version 1, stored as JSON after the v1 fields in a v2 record.
/// Every field defaults, so a record missing one (or a v1 record) loads. Generic like
/// [`RecordV1`]: owned when decoded, borrowed when encoded.
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: Serialize + AsRef<str>, R: Serialize",
    deserialize = "S: Deserialize<'de> + Default, R: Deserialize<'de>"
))]
struct Added<S, R> {
    #[serde(default, skip_serializing_if = "is_empty")]
    store: S,
    #[serde(default, skip_serializing_if = "is_empty")]
    token: S,
    #[serde(default, skip_serializing_if = "is_zero")]
    released: u32,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    run_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry: Option<R>,
    #[serde(default, skip_serializing_if = "is_zero")]
    attempt_base: u32,
    /// The submitter's signature (see `crate::signing`), empty when unsigned.
    #[serde(default, skip_serializing_if = "is_empty")]
    signature: S,
}

/// What a record decodes into.
type RecordV1Owned = RecordV1<String, Vec<String>>;
/// What a record is encoded from: the job's fields, borrowed.
type RecordV1Ref<'a> = RecordV1<&'a str, &'a [String]>;
type AddedOwned = Added<String, crate::job::RetryPolicy>;
type AddedRef<'a> = Added<&'a str, &'a crate::job::RetryPolicy>;

impl Default for AddedOwned {
    fn default() -> AddedOwned {
        Added {
            store: String::new(),
            token: String::new(),
            released: 0,
            run_at_ms: 0,
            retry: None,
            attempt_base: 0,
            signature: String::new(),
        }
    }
}

fn is_empty<S: AsRef<str>>(s: &S) -> bool {
    s.as_ref().is_empty()
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The version-1 fields of `job` (the first part of every record), borrowed.
fn v1_of(job: &Job) -> RecordV1Ref<'_> {
    RecordV1 {
        session_key: &job.session_key,
        circle: &job.circle,
        topic: &job.topic,
        params: &job.params,
        params_type: job.params_type.as_str(),
        status: status_code(job.status),
        timeout: job.timeout,
        time_scheduled: job.time_scheduled,
        time_start: job.time_start,
        time_end: job.time_end,
        error: &job.error,
        result: &job.result,
        log: job.log,
        attempts: job.attempts,
        logs: &job.logs,
    }
}

/// The added fields of `job`, as a v2 record stores them, borrowed.
fn added_of(job: &Job) -> AddedRef<'_> {
    Added {
        store: &job.store,
        token: &job.token,
        released: job.released,
        run_at_ms: job.run_at_ms,
        retry: job.retry.as_ref(),
        attempt_base: job.attempt_base,
        signature: &job.signature,
    }
}

/// Counts the bytes written to it (the added fields' JSON length, without the JSON).
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn status_code(s: JobStatus) -> u8 {
    match s {
        JobStatus::New => 0,
        JobStatus::Active => 1,
        JobStatus::Error => 2,
        JobStatus::Done => 3,
    }
}

/// The encodings as methods of [`Job`], for the public API (defined here, so that `job.rs`
/// stays pure data with no arrow back to its codec).
impl Job {
    /// The job as JSON, with the original Go system's field names (what the job hash's
    /// `job` field holds, and what clients in other languages read).
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// A job from JSON another client wrote: fields this version does not know are
    /// ignored, missing ones take their defaults.
    pub fn from_json(bytes: &[u8]) -> Result<Job, CodecError> {
        from_json(bytes)
    }

    /// The job as herojobs stores it in OurDB (a version byte, then bincode; see
    /// `docs/ourdb-format.md`). The id is not in it: it is the record's OurDB id.
    pub fn to_record(&self) -> Vec<u8> {
        let mut out = Vec::new();
        to_record(self, &mut out);
        out
    }

    /// A job from its OurDB record (`id` is the record's id: records do not store it), as
    /// `herojobs ourdb dump --circle` decodes them. Records of every earlier version load.
    pub fn from_record(id: u32, bytes: &[u8]) -> Result<Job, CodecError> {
        from_record(id, bytes)
    }
}

/// Encodes a job as JSON (for the Redis hash field `job`).
pub(crate) fn to_json(job: &Job) -> String {
    // Serialising a struct of strings and numbers cannot fail.
    serde_json::to_string(job).unwrap_or_default()
}

/// Decodes job JSON; fields this version does not know are ignored, missing ones default.
pub(crate) fn from_json(bytes: &[u8]) -> Result<Job, CodecError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Encodes a job as an OurDB record (version byte + bincode). The id is not stored: it is
/// the record's OurDB id, which is not known before the record is added.
pub(crate) fn to_record(job: &Job, out: &mut Vec<u8>) {
    out.clear();
    out.push(RECORD_V2);
    let rec = v1_of(job);
    let added = added_of(job);
    // Writing into a Vec cannot fail for these types.
    let _ = bincode::serialize_into(&mut *out, &rec);
    // The added fields' JSON as a bincode string (u64 little-endian length, then the
    // bytes), written in place: the length is filled in once the JSON is written.
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    let _ = serde_json::to_writer(&mut *out, &added);
    let len = (out.len() - at - 8) as u64;
    out[at..at + 8].copy_from_slice(&len.to_le_bytes());
}

/// The size of `job`'s OurDB record in bytes (what `record_size_max` is compared with),
/// computed without encoding the large fields: the engine asks for every finished job.
/// bincode's fixed-int layout: 8-byte length before each string and the log vector,
/// `u8`/`bool` 1 byte, `u32` 4, `u64`/`i64` 8; then the added fields' JSON as one string.
pub(crate) fn record_len(job: &Job) -> usize {
    let s = |x: &str| 8 + x.len();
    let strings = s(&job.session_key)
        + s(&job.circle)
        + s(&job.topic)
        + s(&job.params)
        + s(job.params_type.as_str())
        + s(&job.error)
        + s(&job.result);
    let logs = 8 + job.logs.iter().map(|l| s(l)).sum::<usize>();
    let fixed = 1 /* version */ + 1 /* status */ + 8 /* timeout */ + 3 * 8 /* times */
        + 1 /* log */ + 4 /* attempts */;
    let mut added = ByteCount(0);
    let _ = serde_json::to_writer(&mut added, &added_of(job));
    let added = added.0;
    fixed + strings + logs + 8 + added
}

/// Decodes an OurDB record into a job with id `id`.
pub(crate) fn from_record(id: u32, bytes: &[u8]) -> Result<Job, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        RECORD_V1 | RECORD_V2 => {
            let opts = bincode::DefaultOptions::new();
            use bincode::Options;
            // Same encoding as `bincode::serialize`, with a limit so a damaged length prefix
            // cannot make us allocate more than the record holds.
            let opts = opts
                .with_fixint_encoding()
                .allow_trailing_bytes()
                .with_limit(bytes.len() as u64 * 2 + 1024);
            let bad = |e: bincode::Error| CodecError::Bincode {
                version,
                reason: e.to_string(),
            };
            let mut reader = body;
            let r: RecordV1Owned = opts.deserialize_from(&mut reader).map_err(bad)?;
            let added: AddedOwned = if version == RECORD_V2 {
                let text: String = opts.deserialize_from(&mut reader).map_err(bad)?;
                serde_json::from_str(&text).map_err(|e| CodecError::Bincode {
                    version,
                    reason: format!("added fields: {e}"),
                })?
            } else {
                AddedOwned::default()
            };
            let status = match r.status {
                0 => JobStatus::New,
                1 => JobStatus::Active,
                2 => JobStatus::Error,
                3 => JobStatus::Done,
                n => {
                    return Err(CodecError::Bincode {
                        version,
                        reason: format!("status code {n} is not one of 0..=3"),
                    })
                }
            };
            Ok(Job {
                id,
                session_key: r.session_key,
                circle: r.circle,
                topic: r.topic,
                params: r.params,
                params_type: r.params_type.parse::<ParamsType>().unwrap_or_default(),
                status,
                timeout: r.timeout,
                time_scheduled: r.time_scheduled,
                time_start: r.time_start,
                time_end: r.time_end,
                error: r.error,
                result: r.result,
                log: r.log,
                attempts: r.attempts,
                logs: r.logs,
                store: added.store,
                token: added.token,
                progress: String::new(),
                released: added.released,
                run_at_ms: added.run_at_ms,
                retry: added.retry,
                attempt_base: added.attempt_base,
                signature: added.signature,
            })
        }
        v => Err(CodecError::UnknownVersion(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_job() -> Job {
        Job {
            id: 42,
            session_key: "sess".into(),
            circle: "c1".into(),
            topic: "t1".into(),
            params: "!!fake.return_success message:'hi'".into(),
            params_type: ParamsType::RhaiScript,
            status: JobStatus::Done,
            timeout: 7,
            time_scheduled: 1,
            time_start: 2,
            time_end: 3,
            error: "e".into(),
            result: "r\nwith lines".into(),
            log: true,
            attempts: 2,
            logs: vec!["one".into(), "two".into()],
            store: "a1b2".into(),
            token: "t0k".into(),
            progress: String::new(),
            released: 1,
            run_at_ms: 1_700_000_000_123,
            retry: Some(crate::job::RetryPolicy::new(
                2,
                crate::job::Backoff::Fixed,
                std::time::Duration::from_millis(1500),
            )),
            attempt_base: 1,
            signature: String::new(),
        }
    }

    #[test]
    fn the_signature_round_trips_and_record_len_is_exact() {
        let signed = Job {
            signature: "ab".repeat(32),
            ..full_job()
        };
        let mut rec = Vec::new();
        to_record(&signed, &mut rec);
        assert_eq!(from_record(42, &rec).unwrap(), signed);
        assert_eq!(record_len(&signed), rec.len());
        to_record(&full_job(), &mut rec);
        assert_eq!(record_len(&full_job()), rec.len());
        to_record(&Job::default(), &mut rec);
        assert_eq!(record_len(&Job::default()), rec.len());
        // JSON: the field is there when signed (readers that do not know it ignore it), and
        // absent when unsigned.
        let v: serde_json::Value = serde_json::from_str(&to_json(&signed)).unwrap();
        assert_eq!(v["signature"], signed.signature.as_str());
        let v: serde_json::Value = serde_json::from_str(&to_json(&full_job())).unwrap();
        assert!(v.get("signature").is_none());
    }

    /// Encoding from borrowed fields writes the bytes that encoding the owned structs
    /// (bincode of the v1 fields, then of the added fields' JSON as a `String`) wrote.
    #[test]
    fn records_are_the_bytes_the_owned_encoding_wrote() {
        for job in [full_job(), Job::default()] {
            let owned: RecordV1Owned = RecordV1 {
                session_key: job.session_key.clone(),
                circle: job.circle.clone(),
                topic: job.topic.clone(),
                params: job.params.clone(),
                params_type: job.params_type.as_str().to_string(),
                status: status_code(job.status),
                timeout: job.timeout,
                time_scheduled: job.time_scheduled,
                time_start: job.time_start,
                time_end: job.time_end,
                error: job.error.clone(),
                result: job.result.clone(),
                log: job.log,
                attempts: job.attempts,
                logs: job.logs.clone(),
            };
            let added: AddedOwned = Added {
                store: job.store.clone(),
                token: job.token.clone(),
                released: job.released,
                run_at_ms: job.run_at_ms,
                retry: job.retry.clone(),
                attempt_base: job.attempt_base,
                signature: job.signature.clone(),
            };
            let mut want = vec![RECORD_V2];
            bincode::serialize_into(&mut want, &owned).unwrap();
            bincode::serialize_into(&mut want, &serde_json::to_string(&added).unwrap()).unwrap();
            let mut got = Vec::new();
            to_record(&job, &mut got);
            assert_eq!(got, want);
        }
    }

    #[test]
    fn every_field_round_trips_through_json_and_bincode() {
        let job = full_job();
        // `store` and `token` live in hash fields beside the JSON (see `Job::store`).
        assert_eq!(
            from_json(to_json(&job).as_bytes()).unwrap(),
            Job {
                store: String::new(),
                token: String::new(),
                ..job.clone()
            }
        );
        let mut rec = Vec::new();
        to_record(&job, &mut rec);
        assert_eq!(rec[0], RECORD_V2);
        assert_eq!(from_record(42, &rec).unwrap(), job);
        let other = Job {
            params_type: ParamsType::Other("wasm".into()),
            ..full_job()
        };
        to_record(&other, &mut rec);
        assert_eq!(from_record(42, &rec).unwrap(), other);
    }

    #[test]
    fn json_uses_the_original_field_names() {
        let v: serde_json::Value = serde_json::from_str(&to_json(&full_job())).unwrap();
        for key in [
            "jobid",
            "sessionkey",
            "circleid",
            "topic",
            "params",
            "params_type",
            "status",
            "timeout",
            "time_scheduled",
            "time_start",
            "time_end",
            "error",
            "result",
            "log",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["status"], "done");
        assert_eq!(v["params_type"], "rhaiscript");
    }

    #[test]
    fn json_written_by_another_client_loads() {
        let go = br#"{"jobid":7,"sessionkey":"","circleid":"c","topic":"t","params":"x",
            "params_type":"heroscript","status":"new","timeout":0,"time_scheduled":1700000000,
            "time_start":0,"time_end":0,"error":"","result":"","log":false,"future_field":[1,2]}"#;
        let job = from_json(go).unwrap();
        assert_eq!(job.id, 7);
        assert_eq!(job.params_type, ParamsType::HeroScript);
        assert_eq!(job.attempts, 0);
        assert!(from_json(b"{not json").is_err());
    }

    #[test]
    fn a_negative_timeout_means_the_default() {
        let j = from_json(br#"{"jobid":1,"params":"x","params_type":"heroscript","timeout":-1}"#)
            .unwrap();
        assert_eq!(j.timeout, 0);
        let j = from_json(br#"{"params_type":"heroscript","timeout":-86400}"#).unwrap();
        assert_eq!(j.timeout, 0);
        let j = from_json(br#"{"params_type":"heroscript","timeout":30}"#).unwrap();
        assert_eq!(j.timeout, 30);
        assert!(from_json(br#"{"timeout":"soon"}"#).is_err());
        assert!(from_json(br#"{"timeout":1.5}"#).is_err());
    }

    #[test]
    fn a_job_without_params_type_is_openrpc_as_in_the_go_original() {
        let j = from_json(br#"{"jobid":3,"params":"{\"jsonrpc\":\"2.0\"}"}"#).unwrap();
        assert_eq!(j.params_type, ParamsType::OpenRpc);
        let j = from_json(br#"{"params_type":""}"#).unwrap();
        assert_eq!(j.params_type, ParamsType::OpenRpc);
        let j = from_json(br#"{"params_type":"wasm"}"#).unwrap();
        assert_eq!(j.params_type, ParamsType::Other("wasm".into()));
        // Written by herojobs, the type is always named and reads back as written.
        let j = from_json(to_json(&Job::default()).as_bytes()).unwrap();
        assert_eq!(j.params_type, ParamsType::HeroScript);
    }

    #[test]
    fn version_1_records_still_load() {
        let job = full_job();
        let mut rec = vec![RECORD_V1];
        let v1 = v1_of(&job);
        bincode::serialize_into(&mut rec, &v1).unwrap();
        let back = from_record(42, &rec).unwrap();
        assert_eq!(
            back,
            Job {
                store: String::new(),
                token: String::new(),
                released: 0,
                run_at_ms: 0,
                retry: None,
                attempt_base: 0,
                ..job
            }
        );
    }

    #[test]
    fn damaged_records_are_errors() {
        assert!(matches!(from_record(1, &[]), Err(CodecError::Empty)));
        assert!(matches!(
            from_record(1, &[9, 1, 2]),
            Err(CodecError::UnknownVersion(9))
        ));
        let mut rec = Vec::new();
        to_record(&full_job(), &mut rec);
        rec.truncate(20);
        assert!(matches!(
            from_record(1, &rec),
            Err(CodecError::Bincode { .. })
        ));
        // A huge length prefix must not allocate.
        let mut evil = vec![RECORD_V1];
        evil.extend(u64::MAX.to_le_bytes());
        assert!(from_record(1, &evil).is_err());
    }
}
