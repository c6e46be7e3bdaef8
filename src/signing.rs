//! Per-circle job signing: an HMAC-SHA256 over a job's identity (circle, topic, id) and
//! content (params type, params, timeout, session key, log flag), keyed by a secret the
//! circle's submitters and its engines share. Pure: no I/O, no clock.
//!
//! Why: anyone who can write Redis can plant a job in any circle. An engine that requires
//! signatures for a circle runs only jobs whose signature verifies with that circle's secret,
//! so reaching Redis is no longer enough to run code there (see docs/security.md).
//!
//! The signed message is a fixed, length-prefixed encoding (below), so no two different
//! jobs share a message; the signature is stored as lowercase hex in the job's `signature`
//! field (JSON and OurDB record v2).

use crate::job::Job;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Domain tag of the signed message; a new layout gets a new tag.
const TAG: &[u8] = b"herojobs-job-signature-v1";

/// Shortest secret accepted (bytes): shorter ones are guessable.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a job's signature was refused, or a secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The circle requires signed jobs and this one carries no signature.
    #[error("job {circle}/{topic}/{id} is not signed, and circle {circle:?} requires signed jobs")]
    Unsigned {
        /// Circle.
        circle: String,
        /// Topic.
        topic: String,
        /// Id.
        id: u32,
    },
    /// The signature does not match the job (altered, or signed with another secret).
    #[error("job {circle}/{topic}/{id}: bad signature (the job was altered or signed with another secret); refused")]
    BadSignature {
        /// Circle.
        circle: String,
        /// Topic.
        topic: String,
        /// Id.
        id: u32,
    },
    /// A secret too short to be safe.
    #[error(
        "signing secret of circle {circle:?} is {len} bytes; at least {MIN_SECRET_LEN} are needed"
    )]
    WeakSecret {
        /// Circle.
        circle: String,
        /// Its length.
        len: usize,
    },
}

/// Checks a circle's secret is usable.
pub fn check_secret(circle: &str, secret: &[u8]) -> Result<(), SignError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(SignError::WeakSecret {
            circle: circle.to_string(),
            len: secret.len(),
        });
    }
    Ok(())
}

fn field(mac: &mut HmacSha256, bytes: &[u8]) {
    mac.update(&(bytes.len() as u64).to_be_bytes());
    mac.update(bytes);
}

fn mac_of(job: &Job, secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    };
    field(&mut mac, TAG);
    field(&mut mac, job.circle.as_bytes());
    field(&mut mac, job.topic.as_bytes());
    mac.update(&job.id.to_be_bytes());
    field(&mut mac, job.params_type.as_str().as_bytes());
    field(&mut mac, job.params.as_bytes());
    mac.update(&job.timeout.to_be_bytes());
    field(&mut mac, job.session_key.as_bytes());
    mac.update(&[job.log as u8]);
    mac
}

#[cold]
fn unreachable_hmac() -> ! {
    // `Hmac::new_from_slice` only fails for fixed-size-key MACs, which HMAC is not.
    panic!("HMAC-SHA256 refused a key: HMAC accepts keys of any length")
}

/// The signature of `job` (its names fixed and its id assigned) under `secret`, as hex.
pub fn sign(job: &Job, secret: &[u8]) -> String {
    let tag = mac_of(job, secret).finalize().into_bytes();
    let mut out = String::with_capacity(tag.len() * 2);
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Verifies `job.signature` under `secret` (in constant time).
pub fn verify(job: &Job, secret: &[u8]) -> Result<(), SignError> {
    let who = || (job.circle.clone(), job.topic.clone(), job.id);
    if job.signature.is_empty() {
        let (circle, topic, id) = who();
        return Err(SignError::Unsigned { circle, topic, id });
    }
    let bad = || {
        let (circle, topic, id) = who();
        SignError::BadSignature { circle, topic, id }
    };
    let tag = from_hex(&job.signature).ok_or_else(bad)?;
    mac_of(job, secret).verify_slice(&tag).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::ParamsType;

    const SECRET: &[u8] = b"0123456789abcdef-circle-a";

    fn job() -> Job {
        Job {
            id: 7,
            ..Job::new("a", "t", ParamsType::RhaiScript, "40 + 2")
        }
    }

    #[test]
    fn a_signed_job_verifies_and_any_change_breaks_it() {
        let mut j = job();
        j.signature = sign(&j, SECRET);
        assert_eq!(j.signature.len(), 64);
        verify(&j, SECRET).unwrap();
        // Status, result and times are not signed: the engine changes them.
        let mut run = j.clone();
        run.result = "42".into();
        run.attempts = 2;
        verify(&run, SECRET).unwrap();
        type Change = Box<dyn Fn(&mut Job)>;
        let changes: Vec<Change> = vec![
            Box::new(|j| j.circle = "b".into()),
            Box::new(|j| j.topic = "u".into()),
            Box::new(|j| j.id = 8),
            Box::new(|j| j.params.push(';')),
            Box::new(|j| j.params_type = ParamsType::HeroScript),
            Box::new(|j| j.timeout = 1),
            Box::new(|j| j.session_key = "x".into()),
            Box::new(|j| j.log = true),
        ];
        for change in changes {
            let mut k = j.clone();
            change(&mut k);
            assert!(matches!(
                verify(&k, SECRET),
                Err(SignError::BadSignature { .. })
            ));
        }
        assert!(matches!(
            verify(&j, b"another-secret-of-16+"),
            Err(SignError::BadSignature { .. })
        ));
        let mut garbage = j.clone();
        garbage.signature = "zz".into();
        assert!(matches!(
            verify(&garbage, SECRET),
            Err(SignError::BadSignature { .. })
        ));
        assert!(matches!(
            verify(&job(), SECRET),
            Err(SignError::Unsigned { .. })
        ));
    }

    #[test]
    fn field_boundaries_are_part_of_the_message() {
        // "ab" + "c" and "a" + "bc" must not sign alike.
        let mut x = job();
        x.circle = "ab".into();
        x.topic = "c".into();
        let mut y = job();
        y.circle = "a".into();
        y.topic = "bc".into();
        assert_ne!(sign(&x, SECRET), sign(&y, SECRET));
        assert!(check_secret("a", b"short").is_err());
        assert!(check_secret("a", SECRET).is_ok());
    }
}
