//! The AI processor (experimental): the job's params are `{"endpoint": ..., "request": {...}}`
//! for an OpenAI-compatible API. Endpoints: `chat.completions`, `completions`, `embeddings`
//! (POST `/v1/...`), `models.list` (GET `/v1/models`), `models.get` (GET
//! `/v1/models/{model}`, the id from `request.model`, percent-encoded as one path segment;
//! `.`/`..` refused). A blocking HTTP client with the job's deadline as timeout, on a helper
//! thread so the worker returns as soon as the job is cancelled (timeout or the shutdown
//! grace); `stream` is forced off; redirects are not followed, so the bearer key only ever
//! goes to paths under the configured base URL. 2xx → the response body is the result;
//! otherwise the job fails with `ai upstream <status>: <body>`. The API key never enters the
//! job or the log.

use super::{JobContext, JobError, Processor};
use crate::job::Job;
use serde_json::Value;
use std::time::Duration;

/// Where the API is.
#[derive(Clone)]
pub struct AiConfig {
    /// Base URL, e.g. `http://127.0.0.1:8080` (`HEROJOBS_AI_URL`).
    pub base_url: Option<String>,
    /// Bearer key (`OPENAI_API_KEY`).
    pub api_key: Option<String>,
}

impl std::fmt::Debug for AiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs and debug output.
        f.debug_struct("AiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl AiConfig {
    /// From `HEROJOBS_AI_URL` and `OPENAI_API_KEY`.
    pub fn from_env() -> AiConfig {
        AiConfig {
            base_url: std::env::var("HEROJOBS_AI_URL")
                .ok()
                .filter(|s| !s.is_empty()),
            api_key: std::env::var("OPENAI_API_KEY")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }
}

/// The processor for `ai` jobs.
#[derive(Debug, Clone)]
pub struct AiProcessor {
    config: AiConfig,
}

impl AiProcessor {
    /// A processor for this API.
    pub fn new(config: AiConfig) -> AiProcessor {
        AiProcessor { config }
    }
}

/// Longest model id accepted in a URL path.
const MAX_MODEL_ID: usize = 256;

/// Percent-encodes `s` as one URL path segment: everything but RFC 3986 unreserved
/// characters is encoded (`/`, `?`, `#`, `%`, spaces...), so the value cannot leave its
/// segment. `.` and `..` are refused (a URL parser resolves them as path steps).
pub(crate) fn path_segment(s: &str) -> Result<String, String> {
    if s.is_empty() || s == "." || s == ".." {
        return Err(format!("{s:?} is not a usable id in a URL path"));
    }
    if s.len() > MAX_MODEL_ID {
        return Err(format!(
            "an id of {} bytes is longer than the {MAX_MODEL_ID} allowed in a URL path",
            s.len()
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{s:?} holds control characters"));
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// Checks the configured base URL: `http://` or `https://`, a host, no query, fragment or
/// userinfo (the bearer key is the only credential, and it goes only under this base).
fn check_base(base: &str) -> Result<&str, String> {
    let base = base.trim_end_matches('/');
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"))
        .ok_or_else(|| format!("the AI endpoint {base:?} must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || base.contains(['?', '#', '@']) || base.chars().any(char::is_whitespace) {
        return Err(format!(
            "the AI endpoint {base:?} must be scheme://host[:port][/path] with no query, fragment or user"
        ));
    }
    Ok(base)
}

/// The method and path (under the base URL) of an endpoint; values from the request are
/// encoded so that they stay in their path segment.
fn route(endpoint: &str, request: &Value) -> Result<(&'static str, String), String> {
    Ok(match endpoint {
        "chat.completions" => ("POST", "/v1/chat/completions".to_string()),
        "completions" => ("POST", "/v1/completions".to_string()),
        "embeddings" => ("POST", "/v1/embeddings".to_string()),
        "models.list" => ("GET", "/v1/models".to_string()),
        "models.get" => {
            let model = request
                .get("model")
                .and_then(Value::as_str)
                .ok_or("models.get needs request.model")?;
            let seg = path_segment(model).map_err(|e| format!("models.get: request.model {e}"))?;
            ("GET", format!("/v1/models/{seg}"))
        }
        other => return Err(format!("unsupported ai endpoint: {other}")),
    })
}

/// How often a waiting worker looks at the job's cancel flag during an HTTP call.
const CANCEL_POLL: Duration = Duration::from_millis(10);

impl AiProcessor {
    /// Runs `job`: the result, or the error message it fails with.
    fn run_text(&self, job: &Job, ctx: &JobContext) -> Result<String, String> {
        let base = check_base(
            self.config
                .base_url
                .as_deref()
                .ok_or("no AI endpoint configured (set HEROJOBS_AI_URL)")?,
        )?
        .to_string();
        let params: Value = serde_json::from_str(&job.params)
            .map_err(|e| format!("ai params are not JSON: {e}"))?;
        let endpoint = params
            .get("endpoint")
            .and_then(Value::as_str)
            .ok_or("ai params need \"endpoint\"")?;
        let mut request = params
            .get("request")
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        if let Some(obj) = request.as_object_mut() {
            if obj.contains_key("stream") {
                obj.insert("stream".into(), Value::Bool(false));
            }
        }
        let (method, path) = route(endpoint, &request)?;
        let timeout = ctx.remaining();
        if timeout.is_zero() {
            return Err(format!("timeout after {} s", ctx.timeout().as_secs()));
        }
        let url = format!("{base}{path}");
        let key = self.config.api_key.clone();
        // The blocking call runs on a helper thread so this worker can give up the moment the
        // job is cancelled (its timeout, or the engine's shutdown grace ended); the helper
        // ends by itself when the call's own timeout (the job's deadline) passes.
        let (tx, rx) = std::sync::mpsc::channel();
        let shown = base.clone();
        std::thread::Builder::new()
            .name("herojobs-ai-call".into())
            .spawn(move || {
                let _ = tx.send(call(method, &url, key.as_deref(), request, timeout, &shown));
            })
            .map_err(|e| format!("cannot start the ai call: {e}"))?;
        loop {
            match rx.recv_timeout(CANCEL_POLL) {
                Ok(Ok(body)) => return Ok(body),
                Ok(Err(CallError::TimedOut)) => {
                    return Err(format!(
                        "timeout after {} s waiting for the ai endpoint",
                        ctx.timeout().as_secs()
                    ))
                }
                Ok(Err(CallError::Other(e))) => {
                    if ctx.remaining() < Duration::from_millis(5) {
                        return Err(format!(
                            "timeout after {} s waiting for the ai endpoint",
                            ctx.timeout().as_secs()
                        ));
                    }
                    return Err(e);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if ctx.is_cancelled() {
                        return Err(if ctx.remaining().is_zero() {
                            format!(
                                "timeout after {} s waiting for the ai endpoint",
                                ctx.timeout().as_secs()
                            )
                        } else {
                            "cancelled while waiting for the ai endpoint".to_string()
                        });
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the ai call ended without an answer".into())
                }
            }
        }
    }
}

impl Processor for AiProcessor {
    fn process(&self, job: &Job, ctx: &JobContext) -> Result<String, JobError> {
        self.run_text(job, ctx).map_err(Into::into)
    }
}

enum CallError {
    TimedOut,
    Other(String),
}

/// One HTTP call. Redirects are not followed: the bearer key goes to the configured
/// endpoint's paths and nowhere else, and a 3xx is an upstream error.
fn call(
    method: &str,
    url: &str,
    key: Option<&str>,
    request: Value,
    timeout: Duration,
    base: &str,
) -> Result<String, CallError> {
    let agent = ureq::AgentBuilder::new()
        .timeout(timeout)
        .redirects(0)
        .build();
    let mut req = if method == "POST" {
        agent.post(url)
    } else {
        agent.get(url)
    };
    if let Some(key) = key {
        req = req.set("Authorization", &format!("Bearer {key}"));
    }
    let resp = if method == "POST" {
        req.send_json(request)
    } else {
        req.call()
    };
    let read = |r: ureq::Response| {
        r.into_string()
            .map_err(|e| CallError::Other(format!("reading the ai response: {e}")))
    };
    match resp {
        Ok(r) if (200..300).contains(&r.status()) => read(r),
        Ok(r) => {
            let code = r.status();
            Err(CallError::Other(format!(
                "ai upstream {code}: {}",
                read(r).unwrap_or_else(|_| String::new())
            )))
        }
        Err(ureq::Error::Status(code, r)) => Err(CallError::Other(format!(
            "ai upstream {code}: {}",
            read(r).unwrap_or_else(|_| String::new())
        ))),
        Err(ureq::Error::Transport(t)) => {
            let msg = t.to_string();
            if msg.contains("timed out") || msg.contains("Timeout") {
                Err(CallError::TimedOut)
            } else {
                Err(CallError::Other(format!("ai endpoint {base}: {msg}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_in_their_path_segment() {
        assert_eq!(path_segment("gpt-4o").unwrap(), "gpt-4o");
        assert_eq!(
            path_segment("../../admin/secret?x=1").unwrap(),
            "..%2F..%2Fadmin%2Fsecret%3Fx%3D1"
        );
        assert_eq!(path_segment("%2e%2e").unwrap(), "%252e%252e");
        for bad in ["", ".", "..", "a\nb"] {
            assert!(path_segment(bad).is_err(), "{bad:?}");
        }
        assert!(path_segment(&"m".repeat(300)).is_err());
        let (m, p) = route("models.get", &serde_json::json!({"model": "a/b#c"})).unwrap();
        assert_eq!((m, p.as_str()), ("GET", "/v1/models/a%2Fb%23c"));
        assert!(route("models.get", &serde_json::json!({"model": ".."})).is_err());
    }

    #[test]
    fn the_base_url_is_checked() {
        assert_eq!(
            check_base("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_base("https://api.example/openai").is_ok());
        for bad in [
            "ftp://x",
            "http://",
            "http://u:p@h",
            "http://h/?q=1",
            "http://h/#f",
        ] {
            assert!(check_base(bad).is_err(), "{bad}");
        }
    }
}
