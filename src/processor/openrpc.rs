//! The OpenRPC processor: the job's params are one JSON-RPC 2.0 request. Methods come from a
//! registry of Rust closures, each with its OpenRPC description; `rpc.discover` answers with
//! the OpenRPC document of everything registered. Required params that are missing or of the
//! wrong JSON type are refused (-32602) before the method runs; an unknown method is -32601;
//! a method's own failure carries its code (or -32603). The job's result is the JSON of the
//! response's `result`; its error is `RPC error <code>: <message>`.
//!
//! Topics can instead be forwarded to an external JSON-RPC server on a Unix socket
//! (newline-delimited JSON both ways, the job's deadline as timeout).

use super::{JobContext, JobError, Processor};
use crate::job::Job;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A JSON-RPC error (`RpcError::new(code, message)`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RpcError {
    /// JSON-RPC error code.
    pub code: i64,
    /// Message.
    pub message: String,
}

impl RpcError {
    /// An error with a code and message.
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

impl From<String> for RpcError {
    fn from(m: String) -> Self {
        RpcError::new(-32603, m)
    }
}

/// One parameter of a method, as OpenRPC describes it.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    /// Name.
    pub name: String,
    /// JSON-Schema type: `string`, `number`, `integer`, `boolean`, `object`, `array`, or
    /// empty for any.
    pub schema_type: String,
    /// Must be present.
    pub required: bool,
}

impl ParamSpec {
    /// A required parameter.
    pub fn required(name: &str, schema_type: &str) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            schema_type: schema_type.into(),
            required: true,
        }
    }
    /// An optional parameter.
    pub fn optional(name: &str, schema_type: &str) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            schema_type: schema_type.into(),
            required: false,
        }
    }
}

/// Runs a method: params (object, array or null), the job, its context.
pub type MethodFn = Arc<dyn Fn(&Value, &Job, &JobContext) -> Result<Value, RpcError> + Send + Sync>;

/// A registered method.
#[derive(Clone)]
pub struct Method {
    /// What it does (OpenRPC `summary`).
    pub summary: String,
    /// Its parameters.
    pub params: Vec<ParamSpec>,
    /// JSON-Schema type of its result.
    pub result_type: String,
    /// The code.
    pub run: MethodFn,
}

/// An integer JSON number, exactly (i64 or u64 range).
fn as_int(v: &Value) -> Option<i128> {
    v.as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from))
}

/// `math.add`: integers add exactly (2^53 + 1 stays 9007199254740993, not a float); a sum
/// outside the i64/u64 range, or a float sum that overflows to infinity, is an error (-32602
/// names it), never `null` or a rounded float.
pub fn add_numbers(a: &Value, b: &Value) -> Result<Value, RpcError> {
    if let (Some(x), Some(y)) = (as_int(a), as_int(b)) {
        let sum = x + y; // both fit in 65 bits: no i128 overflow
        if let Ok(v) = i64::try_from(sum) {
            return Ok(json!(v));
        }
        if let Ok(v) = u64::try_from(sum) {
            return Ok(json!(v));
        }
        return Err(RpcError::new(
            -32602,
            format!("Invalid params: {x} + {y} = {sum} does not fit in a 64-bit integer"),
        ));
    }
    let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
        return Err(RpcError::new(
            -32602,
            "Invalid params: a and b must be numbers",
        ));
    };
    let sum = x + y;
    if !sum.is_finite() {
        return Err(RpcError::new(
            -32602,
            format!("Invalid params: {x} + {y} overflows a 64-bit float"),
        ));
    }
    // A whole float stays a float: the caller sent a float.
    serde_json::Number::from_f64(sum)
        .map(Value::Number)
        .ok_or_else(|| RpcError::new(-32603, format!("the sum {sum} is not a JSON number")))
}

/// The processor for `openrpc` jobs.
#[derive(Clone, Default)]
pub struct OpenRpcProcessor {
    methods: BTreeMap<String, Method>,
    forward: HashMap<String, PathBuf>,
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "" => true,
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => true,
    }
}

impl OpenRpcProcessor {
    /// No methods.
    pub fn new() -> OpenRpcProcessor {
        OpenRpcProcessor::default()
    }

    /// With the built-in methods `math.add`, `echo` and `job.info`.
    pub fn with_builtins() -> OpenRpcProcessor {
        let mut p = OpenRpcProcessor::new();
        p.register(
            "math.add",
            "Adds two numbers.",
            vec![
                ParamSpec::required("a", "number"),
                ParamSpec::required("b", "number"),
            ],
            "number",
            |params, _, _| {
                let get = |name: &str, idx: usize| {
                    params
                        .get(name)
                        .or_else(|| params.get(idx))
                        .cloned()
                        .unwrap_or(Value::Null)
                };
                add_numbers(&get("a", 0), &get("b", 1))
            },
        );
        p.register("echo", "Returns its params.", vec![], "", |params, _, _| {
            Ok(params.clone())
        });
        p.register(
            "job.info",
            "Describes the job running the call.",
            vec![],
            "object",
            |_, job, ctx| {
                Ok(json!({
                    "jobid": job.id,
                    "circleid": job.circle,
                    "topic": job.topic,
                    "timeout_ms": ctx.timeout().as_millis() as u64,
                }))
            },
        );
        p
    }

    /// Registers a method with its description.
    pub fn register(
        &mut self,
        name: &str,
        summary: &str,
        params: Vec<ParamSpec>,
        result_type: &str,
        run: impl Fn(&Value, &Job, &JobContext) -> Result<Value, RpcError> + Send + Sync + 'static,
    ) -> &mut Self {
        self.methods.insert(
            name.to_string(),
            Method {
                summary: summary.into(),
                params,
                result_type: result_type.into(),
                run: Arc::new(run),
            },
        );
        self
    }

    /// Sends every job of `topic` to the JSON-RPC server listening on `socket` instead.
    pub fn forward(&mut self, topic: &str, socket: impl Into<PathBuf>) -> &mut Self {
        self.forward
            .insert(crate::names::name_fix(topic), socket.into());
        self
    }

    /// The OpenRPC document of the registered methods.
    pub fn discover(&self) -> Value {
        let methods: Vec<Value> = self
            .methods
            .iter()
            .map(|(name, m)| {
                let schema = |t: &str| {
                    if t.is_empty() {
                        json!({})
                    } else {
                        json!({ "type": t })
                    }
                };
                json!({
                    "name": name,
                    "summary": m.summary,
                    "params": m.params.iter().map(|p| json!({
                        "name": p.name, "required": p.required, "schema": schema(&p.schema_type)
                    })).collect::<Vec<_>>(),
                    "result": { "name": "result", "schema": schema(&m.result_type) },
                })
            })
            .collect();
        json!({
            "openrpc": "1.2.6",
            "info": { "title": "herojobs", "version": env!("CARGO_PKG_VERSION") },
            "methods": methods,
        })
    }

    /// Handles one request object; returns the `result` value or the error.
    pub fn call(&self, request: &Value, job: &Job, ctx: &JobContext) -> Result<Value, RpcError> {
        let obj = request
            .as_object()
            .ok_or_else(|| RpcError::new(-32600, "Invalid Request: expected a JSON object"))?;
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(RpcError::new(
                -32600,
                "Invalid Request: \"jsonrpc\" must be \"2.0\"",
            ));
        }
        let method = obj
            .get("method")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::new(-32600, "Invalid Request: \"method\" must be a string"))?;
        let params = obj.get("params").cloned().unwrap_or(Value::Null);
        if !(params.is_object() || params.is_array() || params.is_null()) {
            return Err(RpcError::new(
                -32600,
                "Invalid Request: \"params\" must be an object or an array",
            ));
        }
        if method == "rpc.discover" {
            return Ok(self.discover());
        }
        let m = self
            .methods
            .get(method)
            .ok_or_else(|| RpcError::new(-32601, format!("Method not found: {method}")))?;
        for (i, spec) in m.params.iter().enumerate() {
            let v = match &params {
                Value::Object(o) => o.get(&spec.name),
                Value::Array(a) => a.get(i),
                _ => None,
            };
            match v {
                None | Some(Value::Null) if spec.required => {
                    return Err(RpcError::new(
                        -32602,
                        format!("Invalid params: missing required param {:?}", spec.name),
                    ))
                }
                Some(v) if !v.is_null() && !type_matches(&spec.schema_type, v) => {
                    return Err(RpcError::new(
                        -32602,
                        format!(
                            "Invalid params: param {:?} must be of type {}, got {v}",
                            spec.name, spec.schema_type
                        ),
                    ))
                }
                _ => {}
            }
        }
        (m.run)(&params, job, ctx)
    }

    fn call_socket(
        &self,
        socket: &PathBuf,
        params: &str,
        ctx: &JobContext,
    ) -> Result<String, String> {
        use std::os::unix::net::UnixStream;
        let timeout = ctx.remaining().max(Duration::from_millis(1));
        let mut s = UnixStream::connect(socket)
            .map_err(|e| format!("forward to {}: {e}", socket.display()))?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let line: String = params.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        s.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| format!("forward to {}: {e}", socket.display()))?;
        let mut reply = String::new();
        BufReader::new(&s).take_line(&mut reply).map_err(|e| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                format!(
                    "timeout after {} s waiting for {}",
                    ctx.timeout().as_secs(),
                    socket.display()
                )
            } else {
                format!("forward to {}: {e}", socket.display())
            }
        })?;
        let v: Value = serde_json::from_str(&reply).map_err(|e| {
            format!(
                "forward to {}: invalid JSON-RPC response: {e}",
                socket.display()
            )
        })?;
        response_to_result(&v)
    }
}

/// Reads one line, bounded so a misbehaving server cannot make us buffer without limit.
trait TakeLine {
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize> {
        use std::io::Read;
        let n = self.take(64 * 1024 * 1024).read_line(out)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection without answering",
            ));
        }
        Ok(n)
    }
}

fn response_to_result(v: &Value) -> Result<String, String> {
    if let Some(err) = v.get("error") {
        let code = err.get("code").and_then(Value::as_i64).unwrap_or(-32603);
        let msg = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        return Err(format!("RPC error {code}: {msg}"));
    }
    match v.get("result") {
        Some(r) => Ok(r.to_string()),
        None => Err("RPC error -32603: the response has neither result nor error".into()),
    }
}

impl OpenRpcProcessor {
    /// Runs `job`: the result, or the error message it fails with.
    fn run_text(&self, job: &Job, ctx: &JobContext) -> Result<String, String> {
        if let Some(socket) = self.forward.get(&job.topic) {
            return self.call_socket(socket, &job.params, ctx);
        }
        let request: Value = serde_json::from_str(&job.params)
            .map_err(|e| format!("RPC error -32700: Parse error: {e}"))?;
        match self.call(&request, job, ctx) {
            Ok(v) => Ok(v.to_string()),
            Err(e) => Err(format!("RPC error {}: {}", e.code, e.message)),
        }
    }
}

impl Processor for OpenRpcProcessor {
    fn process(&self, job: &Job, ctx: &JobContext) -> Result<String, JobError> {
        self.run_text(job, ctx).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn run(p: &OpenRpcProcessor, params: &str) -> Result<String, String> {
        let job = Job {
            id: 3,
            circle: "c".into(),
            topic: "t".into(),
            params: params.into(),
            ..Job::default()
        };
        p.run_text(
            &job,
            &JobContext::new(Duration::from_secs(5), Arc::new(AtomicBool::new(false))),
        )
    }

    #[test]
    fn calls_validation_and_discovery() {
        let p = OpenRpcProcessor::with_builtins();
        assert_eq!(
            run(
                &p,
                r#"{"jsonrpc":"2.0","method":"math.add","params":{"a":2,"b":3},"id":1}"#
            )
            .unwrap(),
            "5"
        );
        assert_eq!(
            run(
                &p,
                r#"{"jsonrpc":"2.0","method":"math.add","params":[2.5,3]}"#
            )
            .unwrap(),
            "5.5"
        );
        assert_eq!(
            run(&p, r#"{"jsonrpc":"2.0","method":"echo","params":["x"]}"#).unwrap(),
            r#"["x"]"#
        );
        let info: Value =
            serde_json::from_str(&run(&p, r#"{"jsonrpc":"2.0","method":"job.info"}"#).unwrap())
                .unwrap();
        assert_eq!(info["jobid"], 3);
        assert_eq!(
            run(
                &p,
                r#"{"jsonrpc":"2.0","method":"math.add","params":{"a":2}}"#
            )
            .unwrap_err(),
            "RPC error -32602: Invalid params: missing required param \"b\""
        );
        assert!(run(
            &p,
            r#"{"jsonrpc":"2.0","method":"math.add","params":{"a":"2","b":1}}"#
        )
        .unwrap_err()
        .starts_with("RPC error -32602"));
        assert_eq!(
            run(&p, r#"{"jsonrpc":"2.0","method":"nope"}"#).unwrap_err(),
            "RPC error -32601: Method not found: nope"
        );
        assert!(run(&p, r#"{"jsonrpc":"1.0","method":"echo"}"#)
            .unwrap_err()
            .starts_with("RPC error -32600"));
        assert!(run(&p, r#"{"jsonrpc":"2.0","method":"echo","params":5}"#)
            .unwrap_err()
            .starts_with("RPC error -32600"));
        assert!(run(&p, "{not json")
            .unwrap_err()
            .starts_with("RPC error -32700"));
        let doc: Value =
            serde_json::from_str(&run(&p, r#"{"jsonrpc":"2.0","method":"rpc.discover"}"#).unwrap())
                .unwrap();
        assert_eq!(doc["openrpc"], "1.2.6");
        let add = doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "math.add")
            .unwrap();
        assert_eq!(add["params"][0]["schema"]["type"], "number");
        assert_eq!(add["params"][1]["required"], true);
        let add = |a: &str, b: &str| {
            run(
                &p,
                &format!(r#"{{"jsonrpc":"2.0","method":"math.add","params":[{a},{b}]}}"#),
            )
        };
        assert_eq!(add("9007199254740992", "1").unwrap(), "9007199254740993");
        assert_eq!(
            add("9223372036854775807", "1").unwrap(),
            "9223372036854775808"
        );
        assert!(add("-9223372036854775808", "-1")
            .unwrap_err()
            .contains("does not fit"));
        assert!(add("18446744073709551615", "1")
            .unwrap_err()
            .starts_with("RPC error -32602"));
        assert_eq!(
            add("18446744073709551615", "-1").unwrap(),
            "18446744073709551614"
        );
        let e = add("1e308", "1e308").unwrap_err();
        assert!(
            e.starts_with("RPC error -32602") && e.contains("overflows"),
            "{e}"
        );
        assert_eq!(add("1.5", "1").unwrap(), "2.5");
        assert_eq!(add("-3", "3").unwrap(), "0");
        let mut custom = OpenRpcProcessor::new();
        custom.register("boom", "fails", vec![], "", |_, _, _| {
            Err(RpcError::new(42, "custom failure"))
        });
        assert_eq!(
            run(&custom, r#"{"jsonrpc":"2.0","method":"boom"}"#).unwrap_err(),
            "RPC error 42: custom failure"
        );
    }
}
