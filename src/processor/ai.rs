//! The AI processor (experimental): the job's params are `{"endpoint": ..., "request": {...}}`
//! for an OpenAI-compatible API. Endpoints: `chat.completions`, `completions`, `embeddings`
//! (POST `/v1/...`), `models.list` (GET `/v1/models`), `models.get` (GET
//! `/v1/models/{model}`, the id from `request.model`). A blocking HTTP client with the job's
//! deadline as timeout; `stream` is forced off. 2xx → the response body is the result;
//! otherwise the job fails with `ai upstream <status>: <body>`. The API key never enters the
//! job or the log.

use super::{JobContext, Processor};
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

impl Processor for AiProcessor {
    fn process(&self, job: &Job, ctx: &JobContext) -> Result<String, String> {
        let base = self
            .config
            .base_url
            .as_deref()
            .ok_or("no AI endpoint configured (set HEROJOBS_AI_URL)")?
            .trim_end_matches('/');
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
        let (method, path) = match endpoint {
            "chat.completions" => ("POST", "/v1/chat/completions".to_string()),
            "completions" => ("POST", "/v1/completions".to_string()),
            "embeddings" => ("POST", "/v1/embeddings".to_string()),
            "models.list" => ("GET", "/v1/models".to_string()),
            "models.get" => {
                let model = request
                    .get("model")
                    .and_then(Value::as_str)
                    .ok_or("models.get needs request.model")?;
                ("GET", format!("/v1/models/{model}"))
            }
            other => return Err(format!("unsupported ai endpoint: {other}")),
        };
        let timeout = ctx.remaining();
        if timeout.is_zero() {
            return Err(format!("timeout after {} s", ctx.timeout().as_secs()));
        }
        let agent = ureq::AgentBuilder::new().timeout(timeout).build();
        let url = format!("{base}{path}");
        let mut req = if method == "POST" {
            agent.post(&url)
        } else {
            agent.get(&url)
        };
        if let Some(key) = &self.config.api_key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        let resp = if method == "POST" {
            req.send_json(request)
        } else {
            req.call()
        };
        let read = |r: ureq::Response| {
            r.into_string()
                .map_err(|e| format!("reading the ai response: {e}"))
        };
        match resp {
            Ok(r) => read(r),
            Err(ureq::Error::Status(code, r)) => Err(format!(
                "ai upstream {code}: {}",
                read(r).unwrap_or_default()
            )),
            Err(ureq::Error::Transport(t)) => {
                let msg = t.to_string();
                if msg.contains("timed out")
                    || msg.contains("Timeout")
                    || ctx.remaining() < Duration::from_millis(5)
                {
                    Err(format!(
                        "timeout after {} s waiting for the ai endpoint",
                        ctx.timeout().as_secs()
                    ))
                } else {
                    Err(format!("ai endpoint {base}: {msg}"))
                }
            }
        }
    }
}
