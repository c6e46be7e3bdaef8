//! Requests: routing, the `/api/...` JSON behind each page, the token-guarded actions, and
//! the embedded static assets. Every read is bounded (a page of ids, a page of OurDB
//! records, one peek): no request scans a whole queue or database.

use super::fleet::{all_queues, oldest_wait, unix_ms, FleetView};
use super::{App, TOKEN_HEADER};
use crate::client::PageQuery;
use crate::job::{unix_now, Job, JobStatus};
use crate::names::{JobRef, QueueName};
use serde_json::{json, Value};
use std::io::Read;
use tiny_http::{Header, Method, Request, Response};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Jobs on a page at most (a bigger `limit` is cut to this).
const MAX_LIMIT: usize = 500;
/// Versions of a job shown on its page.
const HISTORY_DEPTH: usize = 50;
/// Longest action request body read.
const MAX_BODY: u64 = 64 * 1024;
/// Longest text of a result or error in a list row (the job page shows it whole).
const SNIPPET: usize = 200;

/// What a handler answers: status, content type, body.
pub(crate) struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn json(status: u16, v: Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: v.to_string(),
        }
    }
    fn error(status: u16, msg: impl std::fmt::Display) -> Reply {
        Reply::json(status, json!({ "error": msg.to_string() }))
    }
    fn text(content_type: &'static str, body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: body.into(),
        }
    }
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

/// Answers one request (never panics on its input; a failed write is the client's loss).
pub(crate) fn handle(app: &App, mut req: Request) {
    let reply = route(app, &mut req);
    let mut resp = Response::from_string(reply.body).with_status_code(reply.status);
    for (k, v) in [
        ("Content-Type", reply.content_type),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        (
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    ] {
        if let Some(h) = header(k, v) {
            resp.add_header(h);
        }
    }
    if let Err(e) = req.respond(resp) {
        log::debug!("web dashboard: answering: {e}");
    }
}

fn route(app: &App, req: &mut Request) -> Reply {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let get = *req.method() == Method::Get || *req.method() == Method::Head;
    match (get, parts.as_slice()) {
        (true, [] | ["queue", _, _] | ["job", _, _, _]) => {
            Reply::text("text/html; charset=utf-8", INDEX_HTML)
        }
        (true, ["static", "app.js"]) => Reply::text("text/javascript; charset=utf-8", APP_JS),
        (true, ["static", "style.css"]) => Reply::text("text/css; charset=utf-8", STYLE_CSS),
        (true, ["metrics"]) => match super::metrics::render(app) {
            Ok(body) => Reply::text("text/plain; version=0.0.4; charset=utf-8", body),
            Err(e) => Reply::error(503, e),
        },
        (true, ["api", "fleet"]) => fleet(app),
        (true, ["api", "queue", c, t]) => queue(app, c, t, query),
        (true, ["api", "job", c, t, id]) => match id.parse::<u32>() {
            Ok(id) if id > 0 => job(app, c, t, id),
            _ => Reply::error(400, format!("job id {id:?}: expected a number from 1")),
        },
        (false, ["api", "action"]) if *req.method() == Method::Post => action(app, req),
        (false, _) => Reply::error(405, "only GET here (actions: POST /api/action)"),
        _ => Reply::error(404, format!("no page {path}")),
    }
}

/// `key=value` pairs of a query string (values here are numbers and status names: no
/// percent-decoding needed beyond `+`).
fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn queue_summary(app: &App, fleet: &FleetView, q: &QueueName) -> Value {
    let counts = fleet.queue(q);
    let rate = app.rates.lock().queues.get(q).copied().unwrap_or_default();
    let mut v = json!({
        "circle": q.circle(),
        "topic": q.topic(),
        "done": counts.done,
        "failed": counts.failed,
        "timed_out": counts.timed_out,
        "done_per_s": rate.0,
        "failed_per_s": rate.1,
        "highest_id": app.client.highest_id(q).unwrap_or(0),
    });
    /// Waiting, running, oldest wait, (dead, scheduled), paused.
    type Live = (u64, usize, Option<i64>, (u64, u64), bool);
    let live = (|| -> crate::Result<Live> {
        Ok((
            app.client.queue_len(q)?,
            app.client.running_ids(q)?.len(),
            oldest_wait(app, q)?,
            {
                let c = app.client.lifecycle_counts(q)?;
                (c.dead, c.scheduled)
            },
            app.client.paused()?.contains(q),
        ))
    })();
    match live {
        Ok((waiting, running, oldest, (dead, scheduled), paused)) => {
            v["waiting"] = json!(waiting);
            v["running"] = json!(running);
            v["oldest_wait_s"] = json!(oldest);
            v["dead"] = json!(dead);
            v["scheduled"] = json!(scheduled);
            v["paused"] = json!(paused);
        }
        Err(e) => v["error"] = json!(e.to_string()),
    }
    v
}

fn fleet(app: &App) -> Reply {
    let (fleet, fleet_err) = match FleetView::read(&app.client) {
        Ok(f) => (f, None),
        Err(e) => (FleetView::default(), Some(e.to_string())),
    };
    let (queues, q_err) = all_queues(app, &fleet);
    let queues: Vec<Value> = queues
        .iter()
        .map(|q| queue_summary(app, &fleet, q))
        .collect();
    let rates: Vec<Value> = app.rates.lock().samples.iter().map(|s| json!(s)).collect();
    Reply::json(
        200,
        json!({
            "now_ms": unix_ms(),
            "read_only": app.token.is_none(),
            "error": fleet_err.or(q_err),
            "engines": fleet.engines,
            "queues": queues,
            "rates": rates,
        }),
    )
}

/// A job as a list row: no params or logs, result and error cut short.
fn row(job: &Job) -> Value {
    let cut = |s: &str| -> String {
        if s.len() <= SNIPPET {
            return s.to_string();
        }
        let mut end = SNIPPET;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    };
    json!({
        "id": job.id,
        "status": job.status.as_str(),
        "params_type": job.params_type.as_str(),
        "attempts": job.attempts,
        "time_scheduled": job.time_scheduled,
        "time_start": job.time_start,
        "time_end": job.time_end,
        "result": cut(&job.result),
        "error": cut(&job.error),
    })
}

/// A job from the broker while it holds it, else OurDB; with where it came from.
fn find(app: &App, r: &JobRef) -> crate::Result<Option<(Job, String)>> {
    match app.client.broker().get(r.queue(), r.id()) {
        Ok(Some(j)) => Ok(Some((j, "redis".into()))),
        Ok(None) => Ok(app.client.stored(r)?.map(|j| (j, "ourdb".into()))),
        Err(e) => Ok(app
            .client
            .stored(r)?
            .map(|j| (j, format!("ourdb (broker unreachable: {e})")))),
    }
}

/// Why a request is answered 400 (what it asked for cannot be), or 503 (it could not be
/// done now).
enum Refusal {
    Bad(String),
    Failed(crate::Error),
}

impl From<crate::Error> for Refusal {
    fn from(e: crate::Error) -> Refusal {
        match e {
            crate::Error::Name(_) | crate::Error::Ref(_) => Refusal::Bad(e.to_string()),
            e => Refusal::Failed(e),
        }
    }
}

fn queue(app: &App, c: &str, t: &str, query: &str) -> Reply {
    let q = match QueueName::new(c, t) {
        Ok(q) => q,
        Err(e) => return Reply::error(400, e),
    };
    let limit = param(query, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, MAX_LIMIT);
    let status = match param(query, "status") {
        None | Some("all") => None,
        Some(s @ ("new" | "active" | "done" | "error")) => Some(s.to_string()),
        Some(s) => {
            return Reply::error(
                400,
                format!("status {s:?}: expected new, active, done, error or all"),
            )
        }
    };
    let fleet = FleetView::read(&app.client).unwrap_or_default();
    let mut out = json!({
        "summary": queue_summary(app, &fleet, &q),
        "read_only": app.token.is_none(),
        "status": status.as_deref().unwrap_or("all"),
        "limit": limit,
    });
    // Rows, where the next page starts, and (OurDB pages) how many records were read.
    let listed = (|| -> Result<(Vec<Value>, Value, Option<usize>), Refusal> {
        if let Some(id) = param(query, "id") {
            let id: u32 = id
                .parse()
                .map_err(|_| Refusal::Bad(format!("id {id:?}: expected a number")))?;
            let rows = find(app, &q.job(id))?
                .map(|(j, _)| row(&j))
                .into_iter()
                .collect();
            return Ok((rows, Value::Null, None));
        }
        match status.as_deref() {
            // Waiting jobs come from the queue itself, a page at a time (LRANGE).
            Some("new") => {
                let start: u64 = param(query, "start")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let ids = app.client.queue_page(&q, start, limit as u64)?;
                let mut rows = Vec::with_capacity(ids.len());
                for id in &ids {
                    if let Some((j, _)) = find(app, &q.job(*id))? {
                        rows.push(row(&j));
                    }
                }
                let next = if ids.len() == limit {
                    json!({ "start": start + limit as u64 })
                } else {
                    Value::Null
                };
                Ok((rows, next, None))
            }
            // Running jobs: the leases (bounded by the fleet's workers).
            Some("active") => {
                let mut rows = Vec::new();
                for id in app.client.running_ids(&q)?.iter().take(limit) {
                    if let Some((j, _)) = find(app, &q.job(*id))? {
                        rows.push(row(&j));
                    }
                }
                Ok((rows, Value::Null, None))
            }
            // Everything else from OurDB, newest first, a bounded number of reads.
            _ => {
                let pq = PageQuery::newest(limit)
                    .status(match status.as_deref() {
                        Some("done") => Some(JobStatus::Done),
                        Some("error") => Some(JobStatus::Error),
                        _ => None,
                    })
                    .before(param(query, "before").and_then(|b| b.parse().ok()));
                let page = app.client.list_page(&q, &pq)?;
                let mut rows: Vec<Value> = page.jobs.iter().map(row).collect();
                for (id, why) in &page.unreadable {
                    rows.push(json!({ "id": id, "status": "unreadable", "error": why }));
                }
                let next = page.next.map_or(Value::Null, |b| json!({ "before": b }));
                Ok((rows, next, Some(page.scanned)))
            }
        }
    })();
    match listed {
        Ok((rows, next, scanned)) => {
            out["jobs"] = json!(rows);
            out["next"] = next;
            out["scanned"] = json!(scanned);
            Reply::json(200, out)
        }
        Err(Refusal::Bad(e)) => Reply::error(400, e),
        Err(Refusal::Failed(e)) => {
            out["jobs"] = json!([]);
            out["error"] = json!(e.to_string());
            Reply::json(503, out)
        }
    }
}

fn job(app: &App, c: &str, t: &str, id: u32) -> Reply {
    let r = match QueueName::new(c, t) {
        Ok(q) => q.job(id),
        Err(e) => return Reply::error(400, e),
    };
    let found = match find(app, &r) {
        Ok(Some(f)) => f,
        Ok(None) => return Reply::error(404, format!("job {r} not found")),
        Err(e) => return Reply::error(503, e),
    };
    let (history, history_error) = match app.client.history(&r, HISTORY_DEPTH) {
        Ok(h) => (
            h.into_iter()
                .map(|v| match v {
                    Ok(j) => json!({
                        "status": j.status.as_str(),
                        "attempts": j.attempts,
                        "time_start": j.time_start,
                        "time_end": j.time_end,
                        "result": j.result,
                        "error": j.error,
                    }),
                    Err(e) => json!({ "unreadable": e }),
                })
                .collect::<Vec<_>>(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let (job, source) = found;
    // Which store submitted it, and whether that is this dashboard's own (where its history
    // lives): the identity is not in the JSON (see `Job::store`).
    let own = app.client.store_identity().ok();
    let store = (!job.store.is_empty()).then(|| {
        if own.as_deref() == Some(job.store.as_str()) {
            format!("{} (this base)", job.store)
        } else {
            job.store.clone()
        }
    });
    Reply::json(
        200,
        json!({
            "progress": job.progress,
            "job": job,
            "store": store,
            "source": source,
            "history": history,
            "history_error": history_error,
            "read_only": app.token.is_none(),
            "now": unix_now(),
        }),
    )
}

fn header_value<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Equal strings, in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether a POST may act: the token matches, and a browser's `Origin` (when sent) is this
/// server. Reads stay open; writes need the token, which a cross-site page cannot put in a
/// header (no CORS is ever granted), so a forged form or fetch is refused.
fn authorize(app: &App, req: &Request) -> Result<(), Reply> {
    let Some(token) = app.token.as_deref() else {
        return Err(Reply::error(
            403,
            "read-only dashboard: start it with --token (or HEROJOBS_WEB_TOKEN) to allow actions",
        ));
    };
    if let (Some(origin), Some(host)) = (header_value(req, "Origin"), header_value(req, "Host")) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin_host != host {
            return Err(Reply::error(
                403,
                format!("cross-site request from {origin} refused"),
            ));
        }
    }
    match header_value(req, TOKEN_HEADER) {
        Some(given) if same(given, token) => Ok(()),
        Some(_) => Err(Reply::error(403, "wrong token")),
        None => Err(Reply::error(
            403,
            format!("actions need the {TOKEN_HEADER} header"),
        )),
    }
}

/// An action request: `{"action": "...", "circle": "...", "topic": "...", "id": N}`.
#[derive(serde::Deserialize)]
struct ActionRequest {
    action: String,
    circle: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    id: Option<u32>,
}

impl ActionRequest {
    fn queue(&self) -> Result<QueueName, Refusal> {
        QueueName::new(&self.circle, &self.topic).map_err(|e| Refusal::Bad(e.to_string()))
    }

    fn job(&self) -> Result<JobRef, Refusal> {
        let id = self
            .id
            .filter(|id| *id > 0)
            .ok_or_else(|| Refusal::Bad(format!("action {:?} needs a job id", self.action)))?;
        Ok(self.queue()?.job(id))
    }
}

/// The actions, one line each: what the request names and what the client does.
fn act(c: &crate::Client, r: &ActionRequest) -> Result<Value, Refusal> {
    Ok(match r.action.as_str() {
        "delete" => json!({ "deleted": c.delete(&r.job()?)? }),
        "empty" => json!({ "removed": c.empty_queue(&r.queue()?)? }),
        "retry" => json!({ "retried": c.retry(&r.job()?)? }),
        "cancel" => json!({ "cancelled": c.cancel(&r.job()?)? }),
        "purge_dead" => json!({ "purged": c.purge_dead(&r.queue()?)? }),
        "pause" => {
            c.pause(&r.queue()?)?;
            json!({ "paused": true })
        }
        "resume" => {
            c.resume(&r.queue()?)?;
            json!({ "paused": false })
        }
        other => return Err(Refusal::Bad(format!("unknown action {other:?}"))),
    })
}

fn action(app: &App, req: &mut Request) -> Reply {
    if let Err(reply) = authorize(app, req) {
        return reply;
    }
    let is_json = header_value(req, "Content-Type")
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
    if !is_json {
        return Reply::error(
            415,
            "actions take a JSON body (Content-Type: application/json)",
        );
    }
    let mut body = String::new();
    if let Err(e) = req.as_reader().take(MAX_BODY).read_to_string(&mut body) {
        return Reply::error(400, format!("reading the request body: {e}"));
    }
    let r: ActionRequest = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => return Reply::error(400, format!("action request: {e}")),
    };
    match act(&app.client, &r) {
        Ok(v) => {
            log::info!(
                "web dashboard: {} {}/{} {:?}",
                r.action,
                r.circle,
                r.topic,
                r.id
            );
            Reply::json(200, v)
        }
        Err(Refusal::Bad(e)) => Reply::error(400, e),
        Err(Refusal::Failed(e)) => Reply::error(503, e),
    }
}
