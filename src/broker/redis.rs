//! The Redis broker: a small connection pool with reconnect-and-backoff, calling the Lua
//! scripts (in `lua/`, see [`super::lua`]) that make each multi-key change one atomic round
//! trip.
//!
//! Round trips: enqueue of a batch = 1 (`EVALSHA`); the engine's finish-and-take of a
//! batch = 1; an idle engine's wait for submits = 1 (`BLPOP`); finish of a batch = 1;
//! get = 1.

use super::keys;
use super::lua::Scripts;
use super::{Broker, BrokerError, Ensure, JobRef, QueueName, Retention, Taken, Transition, Wake};
use crate::codec;
use crate::job::{Job, JobStatus};
use parking_lot::Mutex;
use redis::{Connection, RedisError, RedisResult};
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// How the broker connects and how hard it retries. Its `Debug` output redacts the URL's
/// credentials.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`, `rediss://` (if the redis crate was built with TLS) or
    /// `unix:///path/to/socket` (also `redis+unix://`).
    pub url: String,
    /// Connect timeout per attempt.
    pub connect_timeout: Duration,
    /// Read/write timeout of ordinary commands (blocking pops add their own wait).
    pub io_timeout: Duration,
    /// How long a failing operation is retried (with exponential backoff from 20 ms) before
    /// the error is reported.
    pub retry_for: Duration,
    /// Idle connections kept.
    pub max_idle: usize,
    /// How long finished jobs and the dead set are kept in Redis.
    pub retention: Retention,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &crate::redact::redact_url(&self.url))
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("retry_for", &self.retry_for)
            .field("max_idle", &self.max_idle)
            .finish()
    }
}

impl RedisConfig {
    /// Defaults for `url`: 1 s connect, 5 s I/O, retry for 2 s, keep 16 idle connections.
    pub fn new(url: &str) -> RedisConfig {
        RedisConfig {
            url: url.to_string(),
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(2),
            max_idle: 16,
            retention: Retention::default(),
        }
    }
}

impl RedisBroker {
    /// One `FINISH_TAKE` call: records `finished` (writing back jobs Redis lost only if
    /// `restore`), then pops and starts up to `max` jobs from `queues` without blocking.
    fn finish_take(
        &self,
        finished: &[(Job, u32)],
        restore: bool,
        queues: &[QueueName],
        max: usize,
        lease: Duration,
        meanwhile: &mut dyn FnMut(),
    ) -> Result<super::TakeResult, BrokerError> {
        // The queues the script takes from: none when nothing is to be taken.
        let queues = if max == 0 { &[][..] } else { queues };
        let max = if queues.is_empty() { 0 } else { max };
        let deadline = now_ms() + lease.as_millis() as u64;
        // The finished jobs' queues, each once: their scheduled set, dead set and outcome
        // bitmap are passed per queue, not per job (a batch is mostly one queue), and the
        // jobs go grouped by queue, so no job carries its queue's index. `sent[i]` is the
        // index in `finished` of the i-th job sent. Encoded once, outside the retry closure.
        let groups = group_by_queue(finished.iter().map(|(j, _)| j))?;
        let sent = sent_order(&groups);
        let group_keys: Vec<[String; 3]> = groups
            .iter()
            .map(|(q, _)| [keys::scheduled(q), keys::dead(q), keys::outcomes(q)])
            .collect();
        let group_sizes: Vec<usize> = groups.iter().map(|(_, m)| m.len()).collect();
        let queue_keys: Vec<(String, String)> = queues
            .iter()
            .map(|q| (keys::queue(q), keys::scheduled(q)))
            .collect();
        let now_ms = now_ms();
        // Per job sent: json, status (a retry's due time in its place), lease member, and
        // the outcome offset `#id`.
        // Built per group and per job without `format!` (its general path cost the dispatcher
        // more than the rest of these arguments together, counted with callgrind).
        let args: Vec<(String, Cow<'static, str>, String, String)> = groups
            .iter()
            .flat_map(|(q, members)| {
                let prefix = keys::lease_prefix(q);
                members.iter().map(move |&i| (i, prefix.clone()))
            })
            .map(|(i, mut member)| {
                let (j, _) = &finished[i];
                let status = match j.status {
                    JobStatus::Done => Cow::Borrowed("done"),
                    // Not finished: waiting for its retry (see `Broker::finish_many`).
                    JobStatus::New | JobStatus::Active => {
                        Cow::Owned(j.run_at_ms.min(MAX_DUE_MS).to_string())
                    }
                    // A final error: indexed in the dead set.
                    JobStatus::Error => Cow::Borrowed("error"),
                };
                let id = j.id.to_string();
                member.push_str(&id);
                let mut offset = String::with_capacity(id.len() + 1);
                offset.push('#');
                offset.push_str(&id);
                (codec::to_json(j), status, member, offset)
            })
            .collect();
        // A finish alone is safe to retry (a second run finds the job finished). A take is
        // not: if its reply is lost the jobs are active under leases that expire, and lease
        // recovery queues them again.
        let (op, retry) = if max == 0 {
            ("finish jobs", true)
        } else {
            ("finish and take jobs", false)
        };
        let r = &self.config.retention;
        // The EVALSHA, encoded once (a retry sends the same bytes).
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.scripts.finish_take.get_hash())
            .arg(1 + 2 * queue_keys.len() + 3 * group_keys.len())
            .arg(keys::LEASES);
        for (queue, _) in &queue_keys {
            cmd.arg(queue);
        }
        for (_, sched) in &queue_keys {
            cmd.arg(sched);
        }
        for g in &group_keys {
            cmd.arg(&g[0]).arg(&g[1]).arg(&g[2]);
        }
        cmd.arg(queues.len())
            .arg(max)
            .arg(deadline)
            .arg(if restore { "1" } else { "0" })
            .arg(now_ms)
            .arg(r.finished_ttl.as_secs())
            .arg(r.dead_max)
            .arg(r.dead_age.as_millis() as u64)
            .arg(groups.len());
        for size in &group_sizes {
            cmd.arg(*size);
        }
        for ((json, status, member, offset), &i) in args.iter().zip(&sent) {
            let (job, attempt) = &finished[i];
            cmd.arg(json)
                .arg(status.as_ref())
                .arg(*attempt)
                .arg(member)
                .arg(offset);
            // The submit's token and store stay in the hash; they are written only when the
            // hash is restored, so they travel only then.
            if restore {
                cmd.arg(job.token.as_str()).arg(job.store.as_str());
            }
        }
        let packed = cmd.get_packed_command();
        let meanwhile = std::cell::RefCell::new(meanwhile);
        let (codes, taken, next_due): (Vec<i64>, Vec<redis::Value>, u64) =
            self.run(op, retry, |con| {
                eval_overlapped(con, &self.scripts.finish_take, &packed, &mut || {
                    (meanwhile.borrow_mut())()
                })
            })?;
        let transitions = in_given_order(codes, &sent, -2)
            .into_iter()
            .map(transition)
            .collect();
        let mut out = Vec::new();
        for chunk in taken.chunks(4) {
            let [head, json, token, store] = chunk else {
                break;
            };
            // '<queue index> <id> <attempt>': the id comes from the queue list (untrusted),
            // so it is whatever lies between the first and the last space.
            // Bytes, not a string: a planted id need not be UTF-8. Only an id in its
            // canonical form counts (the script leased `c:t:<raw>`, so `007` is not 7).
            let head: Vec<u8> = redis::from_redis_value(head).unwrap_or_default();
            let (qi, rest) = split_at_byte(&head, b' ', false);
            let (raw_id, attempt) = split_at_byte(rest, b' ', true);
            let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<i64>().ok();
            let qi = num(qi).and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
            let attempt = num(attempt).unwrap_or(0);
            let id = num(raw_id)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| n.to_string().as_bytes() == raw_id)
                .unwrap_or(0);
            let json: Vec<u8> = redis::from_redis_value(json).unwrap_or_default();
            let Some(queue) = qi.checked_sub(1).and_then(|i| queues.get(i)) else {
                continue;
            };
            if id == 0 {
                log::warn!("queue {queue}: dropped an entry that is not a job id");
                continue;
            }
            if attempt == 0 {
                continue; // finished already
            }
            let job = if attempt < 0 {
                Err(String::new())
            } else {
                // The key is spelled out only for an error (most takes have none).
                codec::from_json(&json)
                    .map_err(|e| format!("job hash {}: {e}", keys::job(queue, id)))
                    .and_then(|job| super::own_identity(job, queue, id, || keys::job(queue, id)))
                    .map(|mut job| {
                        job.token = redis::from_redis_value(token).unwrap_or_default();
                        job.store = redis::from_redis_value(store).unwrap_or_default();
                        job
                    })
            };
            out.push(Taken {
                queue: queue.clone(),
                id,
                job,
                attempt: attempt.max(0) as u32,
            });
        }
        Ok((transitions, out, (next_due > 0).then_some(next_due)))
    }
}

/// Sends `packed` (an `EVALSHA` of `script`), runs `meanwhile`, then reads the reply: the
/// caller's work overlaps the server's. A server that does not know the script (restarted,
/// or its scripts flushed) answers NOSCRIPT without running anything: the script is loaded
/// and the call sent again, without the overlap.
fn eval_overlapped<T: redis::FromRedisValue>(
    con: &mut Connection,
    script: &redis::Script,
    packed: &[u8],
    meanwhile: &mut dyn FnMut(),
) -> RedisResult<T> {
    use redis::ConnectionLike;
    con.send_packed_command(packed)?;
    meanwhile();
    let reply = loop {
        match con.recv_response()? {
            // Out-of-band messages (RESP3 only) are not the reply.
            redis::Value::Push { .. } => continue,
            v => break v,
        }
    };
    match reply.extract_error() {
        Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
            script.prepare_invoke().load(con)?;
            redis::from_owned_redis_value(con.req_packed_command(packed)?.extract_error()?)
        }
        reply => redis::from_owned_redis_value(reply?),
    }
}

/// `b` split around the first (or, with `last`, the last) `sep`; all of `b` and nothing when
/// there is none.
fn split_at_byte(b: &[u8], sep: u8, last: bool) -> (&[u8], &[u8]) {
    let at = if last {
        b.iter().rposition(|&c| c == sep)
    } else {
        b.iter().position(|&c| c == sep)
    };
    match at {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

/// The order the jobs of `groups` go to a script in: `sent[k]` is the index (in the batch as
/// given) of the k-th job sent.
fn sent_order(groups: &[(QueueName, Vec<usize>)]) -> Vec<usize> {
    groups.iter().flat_map(|(_, m)| m.iter().copied()).collect()
}

/// A script's answers, one per job in the order sent, put back in the order given (`none`
/// for a job the script did not answer).
fn in_given_order<T: Copy>(answers: Vec<T>, sent: &[usize], none: T) -> Vec<T> {
    let mut out = vec![none; sent.len()];
    for (answer, &i) in answers.into_iter().zip(sent) {
        out[i] = answer;
    }
    out
}

/// The largest due time (ms) a scheduled set takes as it is: a score is a double, exact for
/// integers up to 2^53 (year 287,396); a later time is sent as this one.
const MAX_DUE_MS: u64 = (1 << 53) - 1;

/// The jobs' queues, each once, in order of first appearance, with the indexes of their
/// jobs in order: the scripts take a batch grouped by queue. A job's names are compared
/// with the groups' as they are; only a new queue's are checked (and copied).
fn group_by_queue<'a>(
    jobs: impl Iterator<Item = &'a Job>,
) -> Result<Vec<(QueueName, Vec<usize>)>, BrokerError> {
    let mut groups: Vec<(QueueName, Vec<usize>)> = Vec::new();
    for (i, j) in jobs.enumerate() {
        match groups
            .iter_mut()
            .find(|(q, _)| q.circle() == j.circle && q.topic() == j.topic)
        {
            Some((_, members)) => members.push(i),
            None => groups.push((super::queue_of(j)?, vec![i])),
        }
    }
    Ok(groups)
}

/// One engine's published counters: its name and (counter, value) pairs.
pub type EngineStats = (String, Vec<(String, u64)>);

/// Redis behind a pool of blocking connections.
pub struct RedisBroker {
    config: RedisConfig,
    /// `config.url` with its credentials redacted: the only form errors and logs carry.
    shown_url: String,
    client: redis::Client,
    idle: Mutex<Vec<Connection>>,
    scripts: Scripts,
    /// Where queue discovery's `SCAN` goes on next time (0: a fresh pass).
    scan_cursor: Mutex<u64>,
}

/// Keys one `SCAN` call of queue discovery examines.
const DISCOVER_COUNT: usize = 1000;

/// Whether an error means the connection (not the command) failed, so a retry may work.
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

impl RedisBroker {
    /// A broker for `config.url`. Does not connect yet (the first command does).
    pub fn new(config: RedisConfig) -> Result<RedisBroker, BrokerError> {
        let shown_url = crate::redact::redact_url(&config.url);
        let client = redis::Client::open(config.url.as_str()).map_err(|e| {
            BrokerError::Config(format!(
                "redis URL {shown_url:?}: {}",
                crate::redact::redact_in(&e.to_string(), &config.url)
            ))
        })?;
        Ok(RedisBroker {
            config,
            shown_url,
            client,
            idle: Mutex::new(Vec::new()),
            scripts: Scripts::load(),
            scan_cursor: Mutex::new(0),
        })
    }

    fn connect(&self) -> RedisResult<Connection> {
        let con = self
            .client
            .get_connection_with_timeout(self.config.connect_timeout)?;
        con.set_read_timeout(Some(self.config.io_timeout))?;
        con.set_write_timeout(Some(self.config.io_timeout))?;
        Ok(con)
    }

    fn checkout(&self) -> RedisResult<Connection> {
        if let Some(c) = self.idle.lock().pop() {
            return Ok(c);
        }
        self.connect()
    }

    fn checkin(&self, con: Connection) {
        let mut idle = self.idle.lock();
        if idle.len() < self.config.max_idle {
            idle.push(con);
        }
    }

    /// Runs `f` on a pooled connection, retrying connection failures with backoff for up
    /// to `retry_for` (only for operations that are safe to repeat).
    pub fn run<T>(
        &self,
        op: &'static str,
        retry: bool,
        f: impl Fn(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, BrokerError> {
        let deadline = Instant::now() + self.config.retry_for;
        let mut delay = Duration::from_millis(20);
        loop {
            let res = self.checkout().and_then(|mut con| {
                let r = f(&mut con);
                match &r {
                    Err(e) if is_connection_error(e) => {} // drop the broken connection
                    _ => self.checkin(con),
                }
                r
            });
            match res {
                Ok(v) => return Ok(v),
                Err(e) if retry && is_connection_error(&e) && Instant::now() + delay < deadline => {
                    log::debug!("redis {op}: {e}; retrying in {delay:?}");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(source) => {
                    return Err(BrokerError::Redis {
                        op,
                        url: self.shown_url.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// Runs a blocking command that waits up to `wait` on the server: the socket read
    /// timeout is raised for it so the client never gives up before the server answers.
    fn run_blocking<T>(
        &self,
        op: &'static str,
        wait: Duration,
        f: impl Fn(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, BrokerError> {
        let io = self.config.io_timeout;
        self.run(op, false, |con| {
            con.set_read_timeout(Some(wait + io))?;
            let r = f(con);
            con.set_read_timeout(Some(io))?;
            r
        })
    }

    /// Every published stats hash: (engine name, counters). Reads the engine registry and
    /// the hashes in one pipelined round trip (never a keyspace scan: a big queue means a
    /// million job hashes), and drops the names whose hash expired (their engine stopped
    /// publishing).
    pub fn read_stats(&self) -> Result<Vec<EngineStats>, BrokerError> {
        let mut names: Vec<String> = self.run("list engines", true, |con| {
            redis::cmd("SMEMBERS").arg(keys::ENGINES).query(con)
        })?;
        names.sort();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let hashes: Vec<Vec<(String, u64)>> = self.run("read stats", true, |con| {
            let mut p = redis::pipe();
            for name in &names {
                p.cmd("HGETALL")
                    .arg(format!("{}{name}", keys::STATS_PREFIX));
            }
            p.query(con)
        })?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (name, fields) in names.into_iter().zip(hashes) {
            if fields.is_empty() {
                gone.push(name);
            } else {
                out.push((name, fields));
            }
        }
        if !gone.is_empty() {
            // An engine that comes back re-adds itself with its next publish.
            let _ = self.run("forget engines", true, |con| {
                redis::cmd("SREM")
                    .arg(keys::ENGINES)
                    .arg(&gone)
                    .query::<i64>(con)
            });
        }
        Ok(out)
    }

    /// `PING`: whether the server answers (used by the demo to choose Redis or embedded).
    pub fn ping(&self) -> Result<(), BrokerError> {
        self.run("ping", false, |con| redis::cmd("PING").query::<String>(con))
            .map(|_| ())
    }
}

/// The engine's end of the cancel channel: a thread that holds a subscribed connection
/// (reconnecting with backoff) and forwards cancels. Its messages are a wake-up only: the
/// cancel itself is already recorded in the job hash, so one missed while reconnecting costs
/// a late stop of the run, never a wrong record.
struct RedisCancelFeed {
    rx: std::sync::mpsc::Receiver<JobRef>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RedisCancelFeed {
    fn start(client: redis::Client, url: String) -> RedisCancelFeed {
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = std::sync::Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("herojobs-cancel-sub".into())
            .spawn(move || {
                let mut delay = Duration::from_millis(50);
                while !stop2.load(std::sync::atomic::Ordering::Acquire) {
                    let res = (|| -> RedisResult<()> {
                        let mut con = client.get_connection_with_timeout(Duration::from_secs(1))?;
                        let mut ps = con.as_pubsub();
                        ps.subscribe(keys::CANCEL_CHANNEL)?;
                        ps.set_read_timeout(Some(Duration::from_millis(200)))?;
                        loop {
                            if stop2.load(std::sync::atomic::Ordering::Acquire) {
                                return Ok(());
                            }
                            match ps.get_message() {
                                Ok(msg) => {
                                    let payload: String = msg.get_payload().unwrap_or_default();
                                    if let Some(m) = keys::parse_lease_member(&payload) {
                                        if tx.send(m).is_err() {
                                            return Ok(());
                                        }
                                    }
                                }
                                Err(e) if e.is_timeout() => continue,
                                Err(e) => return Err(e),
                            }
                        }
                    })();
                    if let Err(e) = res {
                        log::debug!(
                            "cancel channel at {}: {e}; reconnecting",
                            crate::redact::redact_url(&url)
                        );
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start the cancel listener: {e}");
        }
        RedisCancelFeed { rx, stop }
    }
}

impl Drop for RedisCancelFeed {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl super::CancelFeed for RedisCancelFeed {
    fn next(&mut self, timeout: Duration) -> Result<Option<JobRef>, BrokerError> {
        match self.rx.recv_timeout(timeout) {
            Ok(m) => Ok(Some(m)),
            Err(_) => Ok(None),
        }
    }
}

fn transition(code: i64) -> Transition {
    match code {
        1 => Transition::Applied,
        0 => Transition::AlreadyFinished,
        -2 => Transition::Missing,
        _ => Transition::Fenced,
    }
}

/// A random-enough value for the epoch key (no RNG dependency: hash of time and address).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.finish()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RedisBroker {
    /// One `ENSURE` call; its codes in the order of `jobs` (6: to be written back, only
    /// when not `full`). Jobs go grouped by queue, each queue's keys once.
    fn ensure_call(&self, jobs: &[(Job, bool)], full: bool) -> Result<Vec<i64>, BrokerError> {
        let groups = group_by_queue(jobs.iter().map(|(j, _)| j))?;
        let sent = sent_order(&groups);
        let group_keys: Vec<[String; 3]> = groups
            .iter()
            .map(|(q, _)| [keys::queue(q), keys::scheduled(q), keys::outcomes(q)])
            .collect();
        // OurDB's copy goes back as new; encoded once, outside the retry closure.
        let jsons: Vec<String> = if full {
            sent.iter()
                .map(|&i| {
                    let mut j = jobs[i].0.clone();
                    j.status = JobStatus::New;
                    codec::to_json(&j)
                })
                .collect()
        } else {
            Vec::new()
        };
        let codes: Vec<i64> = self.run("recover jobs", true, |con| {
            let mut inv = self.scripts.ensure.prepare_invoke();
            inv.key(keys::REGISTRY).key(keys::LEASES);
            for g in &group_keys {
                inv.key(&g[0]).key(&g[1]).key(&g[2]);
            }
            inv.arg(if full { "1" } else { "0" }).arg(groups.len());
            for (_, members) in &groups {
                inv.arg(members.len());
            }
            for (k, &i) in sent.iter().enumerate() {
                let (j, requeue) = &jobs[i];
                inv.arg(j.id)
                    .arg(j.status.as_str())
                    .arg(j.attempts)
                    .arg(if *requeue { "1" } else { "0" })
                    .arg(&j.token)
                    .arg(j.run_at_ms.min(MAX_DUE_MS));
                if full {
                    inv.arg(&jsons[k]).arg(&j.store);
                }
            }
            inv.invoke(con)
        })?;
        Ok(in_given_order(codes, &sent, 0))
    }

    /// One `ENQUEUE` call for jobs of one submitting store (the script takes the store's
    /// identity once, not per job).
    fn enqueue_one_store(&self, jobs: &[Job]) -> Result<Vec<usize>, BrokerError> {
        let store = jobs.first().map(|j| j.store.as_str()).unwrap_or_default();
        // Jobs go grouped by queue (the script walks one queue at a time and needs no queue
        // index per job), each queue's in the order given: FIFO holds within a queue.
        // `sent[i]` is the index in `jobs` of the i-th job sent.
        let groups = group_by_queue(jobs.iter())?;
        let now = now_ms();
        let mut keys_ = Vec::with_capacity(3 + groups.len() + jobs.len());
        let mut args = Vec::with_capacity(2 + groups.len() + 4 * jobs.len());
        let sent = sent_order(&groups);
        keys_.push(keys::REGISTRY.to_string());
        keys_.push(keys::SUBMITTED.to_string());
        keys_.push(keys::SIGNAL.to_string());
        args.push(store.to_string());
        args.push(groups.len().to_string());
        keys_.extend(groups.iter().map(|(q, _)| keys::queue(q)));
        for (q, members) in &groups {
            args.push(members.len().to_string());
            for &i in members {
                let j = &jobs[i];
                keys_.push(keys::job(q, j.id));
                args.push(j.id.to_string());
                args.push(codec::to_json(j));
                args.push(j.token.clone());
                // Only a time still ahead goes to the scheduled set (the same clock as
                // before: this process's).
                args.push(if j.run_at_ms > now {
                    j.run_at_ms.min(MAX_DUE_MS).to_string()
                } else {
                    "0".to_string()
                });
            }
        }
        // Safe to retry: a job already stored with its own token is skipped.
        let conflicts: Vec<i64> = self.run("enqueue", true, |con| {
            let mut inv = self.scripts.enqueue.prepare_invoke();
            for k in &keys_ {
                inv.key(k);
            }
            for a in &args {
                inv.arg(a);
            }
            inv.invoke(con)
        })?;
        let mut out: Vec<usize> = conflicts
            .into_iter()
            .filter_map(|i| sent.get(usize::try_from(i).ok()?.checked_sub(1)?).copied())
            .collect();
        out.sort_unstable();
        Ok(out)
    }
}

impl Broker for RedisBroker {
    fn enqueue(&self, jobs: &[Job]) -> Result<Vec<usize>, BrokerError> {
        // A batch comes from one store (a client's submit, an engine's recovery); jobs of
        // several stores go in one call per run of the same store.
        let mut conflicts = Vec::new();
        let mut start = 0;
        while start < jobs.len() {
            let store = &jobs[start].store;
            let len = jobs[start..]
                .iter()
                .take_while(|j| &j.store == store)
                .count();
            let run = &jobs[start..start + len];
            conflicts.extend(self.enqueue_one_store(run)?.into_iter().map(|i| i + start));
            start += len;
        }
        Ok(conflicts)
    }

    fn cancel(&self, job: &Job) -> Result<super::Cancel, BrokerError> {
        let q = super::queue_of(job)?;
        let json = codec::to_json(job);
        let code: i64 = self.run("cancel job", true, |con| {
            self.scripts
                .cancel
                .key(keys::job(&q, job.id))
                .key(keys::queue(&q))
                .key(keys::scheduled(&q))
                .key(keys::LEASES)
                .key(keys::done(&q, job.id))
                .arg(&json)
                .arg(job.id)
                .arg(keys::lease_member(&q, job.id))
                .arg(keys::CANCEL_CHANNEL)
                .arg(self.config.retention.finished_ttl.as_secs())
                .invoke(con)
        })?;
        Ok(match code {
            1 => super::Cancel::Waiting,
            2 => super::Cancel::Running,
            0 => super::Cancel::AlreadyFinished,
            _ => super::Cancel::Missing,
        })
    }

    fn retry_failed(&self, job: &Job) -> Result<Transition, BrokerError> {
        let q = super::queue_of(job)?;
        let json = codec::to_json(job);
        let code: i64 = self.run("retry job", true, |con| {
            self.scripts
                .retry
                .key(keys::job(&q, job.id))
                .key(keys::queue(&q))
                .key(keys::dead(&q))
                .key(keys::outcomes(&q))
                .key(keys::REGISTRY)
                .key(keys::SIGNAL)
                .key(keys::done(&q, job.id))
                .arg(&json)
                .arg(job.id)
                .invoke(con)
        })?;
        Ok(match code {
            1 => Transition::Applied,
            0 => Transition::AlreadyFinished,
            _ => Transition::Missing,
        })
    }

    fn dead(
        &self,
        q: &QueueName,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(u32, u64)>, BrokerError> {
        let key = keys::dead(q);
        let raw: Vec<(String, f64)> = self.run("list dead jobs", true, |con| {
            redis::cmd("ZRANGE")
                .arg(&key)
                .arg(offset)
                .arg(offset + limit.max(1) - 1)
                .arg("REV")
                .arg("WITHSCORES")
                .query(con)
        })?;
        Ok(raw
            .into_iter()
            .filter_map(|(id, at)| Some((id.parse().ok()?, at as u64)))
            .collect())
    }

    fn purge_dead(&self, q: &QueueName) -> Result<u64, BrokerError> {
        let key = keys::dead(q);
        let (n, _): (u64, i64) = self.run("purge dead jobs", true, |con| {
            redis::pipe()
                .atomic()
                .cmd("ZCARD")
                .arg(&key)
                .cmd("DEL")
                .arg(&key)
                .query(con)
        })?;
        Ok(n)
    }

    fn scheduled(&self, q: &QueueName, limit: usize) -> Result<Vec<(u32, u64)>, BrokerError> {
        let key = keys::scheduled(q);
        let raw: Vec<(String, f64)> = self.run("list scheduled jobs", true, |con| {
            redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(limit.max(1) - 1)
                .arg("WITHSCORES")
                .query(con)
        })?;
        Ok(raw
            .into_iter()
            .filter_map(|(id, at)| Some((id.parse().ok()?, at as u64)))
            .collect())
    }

    fn set_paused(&self, q: &QueueName, paused: bool) -> Result<(), BrokerError> {
        let key = keys::queue(q);
        self.run("pause queue", true, |con| {
            redis::cmd(if paused { "SADD" } else { "SREM" })
                .arg(keys::PAUSED)
                .arg(&key)
                .query::<i64>(con)
        })?;
        Ok(())
    }

    fn paused(&self) -> Result<Vec<QueueName>, BrokerError> {
        let members: Vec<String> = self.run("list paused queues", true, |con| {
            redis::cmd("SMEMBERS").arg(keys::PAUSED).query(con)
        })?;
        Ok(members
            .iter()
            .filter_map(|m| keys::parse_queue(m))
            .collect())
    }

    fn set_progress(&self, jobs: &[(JobRef, String)]) -> Result<(), BrokerError> {
        self.run("publish progress", true, |con| {
            let mut p = redis::pipe();
            for (r, text) in jobs {
                p.cmd("HSET")
                    .arg(keys::job(r.queue(), r.id()))
                    .arg("progress")
                    .arg(text)
                    .ignore();
            }
            p.query::<()>(con)
        })
    }

    fn submitted(&self) -> Result<Vec<(QueueName, u64)>, BrokerError> {
        let raw: Vec<(String, u64)> = self.run("read submitted counts", true, |con| {
            redis::cmd("HGETALL").arg(keys::SUBMITTED).query(con)
        })?;
        Ok(raw
            .into_iter()
            .filter_map(|(k, n)| Some((keys::parse_queue(&k)?, n)))
            .collect())
    }

    fn lifecycle_counts(&self, q: &QueueName) -> Result<(u64, u64), BrokerError> {
        self.run("count dead and scheduled jobs", true, |con| {
            redis::pipe()
                .cmd("ZCARD")
                .arg(keys::dead(q))
                .cmd("ZCARD")
                .arg(keys::scheduled(q))
                .query(con)
        })
    }

    fn cancel_feed(&self) -> Result<Box<dyn super::CancelFeed>, BrokerError> {
        Ok(Box::new(RedisCancelFeed::start(
            self.client.clone(),
            self.config.url.clone(),
        )))
    }

    fn claim_types(&self, types: &[String]) -> Result<(), BrokerError> {
        if types.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        self.run("claim params types", true, |con| {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(keys::TYPES);
            for t in types {
                cmd.arg(now).arg(t);
            }
            cmd.query::<i64>(con)
        })?;
        Ok(())
    }

    fn type_claimed(&self, t: &str, within: Duration) -> Result<bool, BrokerError> {
        let at: Option<f64> = self.run("read params type claims", true, |con| {
            redis::cmd("ZSCORE").arg(keys::TYPES).arg(t).query(con)
        })?;
        let since = now_ms().saturating_sub(within.as_millis() as u64) as f64;
        Ok(at.is_some_and(|at| at >= since))
    }

    fn reserve_ids(
        &self,
        q: &QueueName,
        floor: u64,
        count: u64,
    ) -> Result<(u64, u64), BrokerError> {
        let key = keys::ids(q);
        // Safe to retry: a lost reply reserves twice, which only leaves a gap.
        let (start, end): (u64, u64) = self.run("reserve ids", true, |con| {
            self.scripts
                .reserve
                .key(&key)
                .arg(floor.max(1))
                .arg(count)
                .arg(crate::store::LOSS_MARGIN)
                .invoke(con)
        })?;
        Ok((start, end))
    }

    fn ids_issued(&self, q: &QueueName) -> Result<Option<u64>, BrokerError> {
        let key = keys::ids(q);
        let raw: Option<Vec<u8>> = self.run("read the id counter", true, |con| {
            redis::cmd("GET").arg(&key).query(con)
        })?;
        // Redis content is untrusted: anything but a decimal number counts as no counter.
        Ok(raw.and_then(|b| std::str::from_utf8(&b).ok()?.parse::<u64>().ok()))
    }

    fn get(&self, q: &QueueName, id: u32) -> Result<Option<Job>, BrokerError> {
        let key = keys::job(q, id);
        #[allow(clippy::type_complexity)]
        let (raw, token, store, progress): (
            Option<Vec<u8>>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = self.run("get job", true, |con| {
            redis::cmd("HMGET")
                .arg(&key)
                .arg("job")
                .arg("token")
                .arg("store")
                .arg("progress")
                .query(con)
        })?;
        match raw {
            None => Ok(None),
            Some(bytes) => codec::from_json(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|job| super::own_identity(job, q, id, || key.clone()))
                .map(|mut job| {
                    job.token = token.unwrap_or_default();
                    job.store = store.unwrap_or_default();
                    job.progress = progress.unwrap_or_default();
                    Some(job)
                })
                .map_err(|reason| BrokerError::BadJob { key, reason }),
        }
    }

    fn queues(&self) -> Result<Vec<QueueName>, BrokerError> {
        let members: Vec<String> = self.run("list queues", true, |con| {
            redis::cmd("SMEMBERS").arg(keys::REGISTRY).query(con)
        })?;
        let mut out: Vec<QueueName> = members
            .iter()
            .filter_map(|m| keys::parse_queue(m))
            .collect();
        out.sort();
        Ok(out)
    }

    fn discover_queues(&self, max_keys: usize) -> Result<Vec<QueueName>, BrokerError> {
        let mut cursor = *self.scan_cursor.lock();
        let mut found: Vec<String> = Vec::new();
        let mut examined = 0;
        loop {
            // `TYPE list`: job hashes and other keys under the prefix are not queues.
            let (next, batch): (u64, Vec<String>) = self.run("discover queues", true, |con| {
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}*", keys::QUEUE_PREFIX))
                    .arg("COUNT")
                    .arg(DISCOVER_COUNT)
                    .arg("TYPE")
                    .arg("list")
                    .query(con)
            })?;
            found.extend(batch);
            cursor = next;
            examined += DISCOVER_COUNT;
            if cursor == 0 || examined >= max_keys {
                break;
            }
        }
        *self.scan_cursor.lock() = cursor;
        // Untrusted names: only keys that parse as name-fixed queues are registered.
        let queues: Vec<(String, QueueName)> = found
            .into_iter()
            .filter_map(|k| keys::parse_queue(&k).map(|q| (k, q)))
            .collect();
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let added: Vec<i64> = self.run("register discovered queues", true, |con| {
            let mut p = redis::pipe();
            for (k, _) in &queues {
                p.cmd("SADD").arg(keys::REGISTRY).arg(k);
            }
            p.query(con)
        })?;
        Ok(queues
            .into_iter()
            .zip(added)
            .filter(|(_, n)| *n > 0)
            .map(|((_, q), _)| q)
            .collect())
    }

    fn peek(&self, q: &QueueName) -> Result<Option<u32>, BrokerError> {
        let key = keys::queue(q);
        let raw: Option<String> = self.run("peek queue", true, |con| {
            redis::cmd("LINDEX").arg(&key).arg(-1).query(con)
        })?;
        Ok(raw.and_then(|r| r.parse().ok()))
    }

    fn queue_len(&self, q: &QueueName) -> Result<u64, BrokerError> {
        let key = keys::queue(q);
        self.run("llen", true, |con| redis::cmd("LLEN").arg(&key).query(con))
    }

    fn queue_ids(&self, q: &QueueName) -> Result<Vec<u32>, BrokerError> {
        let key = keys::queue(q);
        let raw: Vec<String> = self.run("lrange", true, |con| {
            redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query(con)
        })?;
        Ok(raw.iter().rev().filter_map(|s| s.parse().ok()).collect())
    }

    fn empty(&self, q: &QueueName) -> Result<u64, BrokerError> {
        let key = keys::queue(q);
        let prefix = keys::job_prefix(q);
        self.run("empty queue", true, |con| {
            self.scripts.empty.key(&key).arg(&prefix).invoke(con)
        })
    }

    fn delete(&self, q: &QueueName, id: u32) -> Result<bool, BrokerError> {
        let n: i64 = self.run("delete job", true, |con| {
            self.scripts
                .delete
                .key(keys::job(q, id))
                .key(keys::queue(q))
                .key(keys::done(q, id))
                .key(keys::LEASES)
                .arg(id)
                .arg(keys::lease_member(q, id))
                .invoke(con)
        })?;
        Ok(n > 0)
    }

    fn start(&self, job: &Job, attempt: u32, lease: Duration) -> Result<Transition, BrokerError> {
        let q = super::queue_of(job)?;
        let json = codec::to_json(job);
        let deadline = now_ms() + lease.as_millis() as u64;
        let code: i64 = self.run("start job", true, |con| {
            self.scripts
                .start
                .key(keys::job(&q, job.id))
                .key(keys::LEASES)
                .arg(&json)
                .arg(attempt)
                .arg(deadline)
                .arg(keys::lease_member(&q, job.id))
                .arg(&job.token)
                .arg(&job.store)
                .invoke(con)
        })?;
        Ok(transition(code))
    }

    fn wait_done(&self, q: &QueueName, id: u32, timeout: Duration) -> Result<Wake, BrokerError> {
        let hash = keys::job(q, id);
        // Register as a waiter, then look: a finish either happened before (we see it) or
        // after (it sees the registration and signals).
        let status: Option<String> = self.run("watch job", true, |con| {
            self.scripts.watch.key(&hash).invoke(con)
        })?;
        if matches!(status.as_deref(), Some("done") | Some("error")) {
            return Ok(Wake::Signalled);
        }
        let key = keys::done(q, id);
        let secs = timeout.as_secs_f64().max(0.01);
        // Rotate the one-element list onto itself: non-destructive, so every waiter sees it.
        let got: Option<Vec<u8>> = self.run_blocking("wait", timeout, |con| {
            redis::cmd("BLMOVE")
                .arg(&key)
                .arg(&key)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(secs)
                .query(con)
        })?;
        // The element is the finished job's JSON (an older finisher pushed "1": then the
        // caller reads the job).
        Ok(match got {
            None => Wake::TimedOut,
            Some(raw) => match codec::from_json(&raw) {
                Ok(job) if job.status.is_finished() => Wake::Finished(Box::new(job)),
                _ => Wake::Signalled,
            },
        })
    }

    fn finish_and_take(
        &self,
        finished: &[(Job, u32)],
        queues: &[QueueName],
        max: usize,
        lease: Duration,
    ) -> Result<super::TakeResult, BrokerError> {
        self.finish_and_take_overlapped(finished, queues, max, lease, &mut || {})
    }

    fn finish_and_take_overlapped(
        &self,
        finished: &[(Job, u32)],
        queues: &[QueueName],
        max: usize,
        lease: Duration,
        meanwhile: &mut dyn FnMut(),
    ) -> Result<super::TakeResult, BrokerError> {
        if finished.is_empty() && (queues.is_empty() || max == 0) {
            meanwhile();
            return Ok((Vec::new(), Vec::new(), None));
        }
        self.finish_take(finished, false, queues, max, lease, meanwhile)
    }

    fn overlaps(&self) -> bool {
        true
    }

    fn wait_for_jobs(&self, _queues: &[QueueName], timeout: Duration) -> Result<(), BrokerError> {
        // Every enqueue pushes the wake-up list, so a submit between the caller's empty take
        // and this wait is not missed: the token is already there.
        let secs = timeout.as_secs_f64().max(0.01);
        let _: Option<(String, String)> = self.run_blocking("wait for jobs", timeout, |con| {
            redis::cmd("BLPOP").arg(keys::SIGNAL).arg(secs).query(con)
        })?;
        Ok(())
    }

    fn finish_many(
        &self,
        jobs: &[(Job, u32)],
        restore: bool,
    ) -> Result<Vec<Transition>, BrokerError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .finish_take(jobs, restore, &[], 0, Duration::ZERO, &mut || {})?
            .0)
    }

    fn release(&self, job: &Job, attempt: u32, to_back: bool) -> Result<Transition, BrokerError> {
        let q = super::queue_of(job)?;
        let mut j = job.clone();
        j.status = JobStatus::New;
        // Handed back without a verdict: this start does not count against the limit.
        j.released = j.released.saturating_add(1);
        let code: i64 = self.run("release job", true, |con| {
            self.scripts
                .release
                .key(keys::job(&q, j.id))
                .key(keys::queue(&q))
                .key(keys::LEASES)
                .key(keys::REGISTRY)
                .arg(codec::to_json(&j))
                .arg(attempt)
                .arg(keys::lease_member(&q, j.id))
                .arg(j.id)
                .arg(if to_back { "1" } else { "0" })
                .invoke(con)
        })?;
        Ok(transition(code))
    }

    fn renew(&self, running: &[JobRef], lease: Duration) -> Result<(), BrokerError> {
        if running.is_empty() {
            return Ok(());
        }
        let until = now_ms() + lease.as_millis() as u64;
        self.run("renew leases", true, |con| {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(keys::LEASES);
            for r in running {
                cmd.arg(until).arg(keys::lease_member(r.queue(), r.id()));
            }
            cmd.query::<i64>(con)
        })?;
        Ok(())
    }

    fn reclaim_expired(&self, limit: usize) -> Result<Vec<JobRef>, BrokerError> {
        let members: Vec<String> = self.run("reclaim leases", true, |con| {
            self.scripts
                .reclaim
                .key(keys::LEASES)
                .arg(now_ms())
                .arg(limit)
                .invoke(con)
        })?;
        Ok(members
            .iter()
            .filter_map(|m| keys::parse_lease_member(m))
            .collect())
    }

    fn known(&self, q: &QueueName, ids: &[u32]) -> Result<Vec<bool>, BrokerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.run("check jobs", true, |con| {
            let mut p = redis::pipe();
            for id in ids {
                p.cmd("HEXISTS").arg(keys::job(q, *id)).arg("job");
            }
            p.query::<Vec<bool>>(con)
        })
    }

    fn epoch(&self) -> Result<String, BrokerError> {
        // Whoever finds the key missing creates it; a data loss removes it again.
        let fresh = format!("{}-{}-{}", std::process::id(), now_ms(), rand_u64());
        self.run("epoch", true, |con| {
            redis::cmd("SET")
                .arg(keys::EPOCH)
                .arg(&fresh)
                .arg("NX")
                .arg("GET")
                .query::<Option<String>>(con)
        })
        .map(|old| old.unwrap_or(fresh.clone()))
    }

    fn ensure_queued(&self, job: &Job, requeue: bool) -> Result<Ensure, BrokerError> {
        let mut out = self.ensure_queued_many(&[(job.clone(), requeue)])?;
        Ok(out.pop().unwrap_or(Ensure::Fine))
    }

    fn ensure_queued_many(&self, jobs: &[(Job, bool)]) -> Result<Vec<Ensure>, BrokerError> {
        let mut out = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(500) {
            // Without the jobs' JSON first (Redis holds nearly all of them); the few it
            // must write back go again, whole.
            let mut codes = self.ensure_call(chunk, false)?;
            let missing: Vec<usize> = (0..codes.len()).filter(|&i| codes[i] == 6).collect();
            if !missing.is_empty() {
                let again: Vec<(Job, bool)> = missing.iter().map(|&i| chunk[i].clone()).collect();
                for (k, code) in self.ensure_call(&again, true)?.into_iter().enumerate() {
                    codes[missing[k]] = code;
                }
            }
            out.extend(codes.into_iter().map(|c| match c {
                1 => Ensure::Requeued,
                2 => Ensure::Suspect,
                3 => Ensure::Conflict,
                4 => Ensure::FinishedElsewhere(JobStatus::Done),
                5 => Ensure::FinishedElsewhere(JobStatus::Error),
                _ => Ensure::Fine,
            }));
        }
        Ok(out)
    }

    fn queue_page(&self, q: &QueueName, start: u64, count: u64) -> Result<Vec<u32>, BrokerError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        // LPUSH in, RPOP out: the next to run is the last element, so position `start` from
        // the right is index -(start + 1).
        let key = keys::queue(q);
        let first = -(start as i64) - (count as i64);
        let last = -(start as i64) - 1;
        let raw: Vec<String> = self.run("queue page", true, |con| {
            redis::cmd("LRANGE")
                .arg(&key)
                .arg(first)
                .arg(last)
                .query(con)
        })?;
        Ok(raw.iter().rev().filter_map(|s| s.parse().ok()).collect())
    }

    fn running_ids(&self, q: &QueueName) -> Result<Vec<u32>, BrokerError> {
        let members: Vec<String> = self.run("running jobs", true, |con| {
            redis::cmd("ZRANGE")
                .arg(keys::LEASES)
                .arg(0)
                .arg(-1)
                .query(con)
        })?;
        let mut ids: Vec<u32> = members
            .iter()
            .filter_map(|m| keys::parse_lease_member(m))
            .filter(|r| r.queue() == q)
            .map(|r| r.id())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn read_stats(&self) -> Result<Vec<EngineStats>, BrokerError> {
        RedisBroker::read_stats(self)
    }

    fn ping(&self) -> Result<(), BrokerError> {
        RedisBroker::ping(self)
    }

    fn url(&self) -> Option<&str> {
        Some(&self.shown_url)
    }

    fn prune_queue(&self, q: &QueueName) -> Result<bool, BrokerError> {
        let removed: i64 = self.run("prune queue", true, |con| {
            self.scripts
                .prune
                .key(keys::REGISTRY)
                .key(keys::queue(q))
                .key(keys::scheduled(q))
                .key(keys::LEASES)
                .arg(keys::lease_prefix(q))
                .invoke(con)
        })?;
        Ok(removed > 0)
    }

    fn forget_circle(&self, circle: &str) -> Result<u64, BrokerError> {
        let queue_prefix = format!("{}{circle}:", keys::QUEUE_PREFIX);
        // Drained queues no longer exist as keys: their registry entries are found there.
        for set in [keys::REGISTRY, keys::PAUSED] {
            let members: Vec<String> = self.run("list queues", true, |con| {
                redis::cmd("SMEMBERS").arg(set).query(con)
            })?;
            let gone: Vec<&String> = members
                .iter()
                .filter(|m| m.starts_with(&queue_prefix))
                .collect();
            if !gone.is_empty() {
                self.run("forget queues", true, |con| {
                    redis::cmd("SREM").arg(set).arg(&gone).query::<i64>(con)
                })?;
            }
        }
        let counted: Vec<String> = self.run("read submitted counts", true, |con| {
            redis::cmd("HKEYS").arg(keys::SUBMITTED).query(con)
        })?;
        let gone: Vec<&String> = counted
            .iter()
            .filter(|m| m.starts_with(&queue_prefix))
            .collect();
        if !gone.is_empty() {
            self.run("forget submitted counts", true, |con| {
                redis::cmd("HDEL")
                    .arg(keys::SUBMITTED)
                    .arg(&gone)
                    .query::<i64>(con)
            })?;
        }
        let mut removed = 0;
        for pattern in keys::circle_patterns(circle) {
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = self.run("scan keys", true, |con| {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(DISCOVER_COUNT)
                        .query(con)
                })?;
                if !batch.is_empty() {
                    removed += self.run("remove keys", true, |con| {
                        redis::cmd("UNLINK").arg(&batch).query::<u64>(con)
                    })?;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(removed)
    }

    fn publish_stats(
        &self,
        name: &str,
        fields: &[(&str, u64)],
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let key = format!("{}{name}", keys::STATS_PREFIX);
        self.run("publish stats", true, |con| {
            let mut p = redis::pipe();
            p.atomic();
            // Replaced whole: a field that is gone (a database no longer blocked) goes too.
            p.cmd("DEL").arg(&key).ignore();
            p.cmd("HSET").arg(&key);
            for (k, v) in fields {
                p.arg(*k).arg(*v);
            }
            p.ignore();
            p.cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl.as_millis() as u64)
                .ignore();
            p.cmd("SADD").arg(keys::ENGINES).arg(name).ignore();
            p.query::<()>(con)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_common::{base_dir, tjob, RedisServer};
    use crate::Client;

    /// The engine's one call per batch: finished jobs recorded and the next jobs taken, with the
    /// leases, statuses and verdicts the contract needs, straight against Redis.
    /// The overlapped call runs the caller's work once, with the request out, and answers
    /// as the plain call does; a server that lost its scripts (SCRIPT FLUSH, as a restart
    /// does) answers NOSCRIPT without running anything, and the call loads the script and
    /// sends again — each job taken once, the caller's work still done once.
    #[test]
    fn the_overlapped_take_runs_the_callers_work_once_and_survives_lost_scripts() {
        let redis = RedisServer::start();
        let (_d, base) = base_dir();
        let client = Client::connect(&redis.url(), &base).unwrap();
        let broker = RedisBroker::new(RedisConfig::new(&redis.url())).unwrap();
        let q = QueueName::new("c", "ov").unwrap();
        let ids: Vec<u32> = (0..4)
            .map(|n| {
                client
                    .submit(tjob("c", "ov", &format!("ok {n}")))
                    .unwrap()
                    .id()
            })
            .collect();
        let lease = Duration::from_secs(30);
        let mut con = redis.conn();
        for (round, want) in [(0, &ids[..2]), (1, &ids[2..])] {
            if round == 1 {
                let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut con).unwrap();
            }
            let mut runs = 0;
            let (_, taken, _) = broker
                .finish_and_take_overlapped(&[], &[], 0, lease, &mut || runs += 1)
                .unwrap();
            assert!(taken.is_empty());
            assert_eq!(runs, 1, "nothing to send: the work still runs, once");
            let mut runs = 0;
            let (_, taken, _) = broker
                .finish_and_take_overlapped(&[], std::slice::from_ref(&q), 2, lease, &mut || {
                    runs += 1
                })
                .unwrap();
            assert_eq!(runs, 1, "round {round}");
            assert_eq!(taken.iter().map(|t| t.id).collect::<Vec<_>>(), want);
        }
        let left: u64 = redis::cmd("LLEN")
            .arg(keys::queue(&q))
            .query(&mut con)
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn finish_and_take_records_and_takes_in_one_step() {
        let redis = RedisServer::start();
        let (_d, base) = base_dir();
        let client = Client::connect(&redis.url(), &base).unwrap();
        let broker = RedisBroker::new(RedisConfig::new(&redis.url())).unwrap();
        let q = QueueName::new("c", "ft").unwrap();
        let ids: Vec<u32> = (0..5)
            .map(|n| {
                client
                    .submit(tjob("c", "ft", &format!("ok {n}")))
                    .unwrap()
                    .id()
            })
            .collect();
        let lease = Duration::from_secs(30);
        let mut con = redis.conn();
        let leases = |con: &mut redis::Connection| -> Vec<String> {
            redis::cmd("ZRANGE")
                .arg("herojobs-leases")
                .arg(0)
                .arg(-1)
                .query(con)
                .unwrap()
        };

        // Nothing finished yet: a plain take, FIFO, each active under a lease at attempt 1.
        let (t, first, _) = broker
            .finish_and_take(&[], std::slice::from_ref(&q), 3, lease)
            .unwrap();
        assert!(t.is_empty());
        assert_eq!(first.iter().map(|t| t.id).collect::<Vec<_>>(), ids[..3]);
        for t in &first {
            assert_eq!(t.attempt, 1);
            assert_eq!(t.job.as_ref().unwrap().status, JobStatus::Active);
        }
        assert_eq!(leases(&mut con).len(), 3);

        // Two finish and their slots are refilled in the same call: the queue holds only two.
        let done: Vec<(Job, u32)> = first[..2]
            .iter()
            .map(|t| {
                let mut j = t.job.clone().unwrap();
                j.status = JobStatus::Done;
                j.result = format!("r{}", j.id);
                (j, t.attempt)
            })
            .collect();
        let (t, second, _) = broker
            .finish_and_take(&done, std::slice::from_ref(&q), 5, lease)
            .unwrap();
        assert_eq!(t, vec![Transition::Applied, Transition::Applied]);
        assert_eq!(second.iter().map(|t| t.id).collect::<Vec<_>>(), ids[3..]);
        let mut held = leases(&mut con);
        held.sort();
        let mut want: Vec<String> = ids[2..].iter().map(|id| format!("c:ft:{id}")).collect();
        want.sort();
        assert_eq!(
            held, want,
            "leases of the finished jobs go, the taken ones come"
        );
        let status: String = redis::cmd("HGET")
            .arg(format!("herojobs:c:ft:{}", ids[0]))
            .arg("status")
            .query(&mut con)
            .unwrap();
        assert_eq!(status, "done");

        // A retry of the same finish (its reply lost) is applied, not "someone else won"; a
        // different record loses; a stale attempt is fenced; nothing is taken without queues.
        let retry = broker.finish_many(&done[..1], false).unwrap();
        assert_eq!(retry, vec![Transition::Applied]);
        let mut other = done[0].0.clone();
        other.status = JobStatus::Error;
        other.error = "late".into();
        assert_eq!(
            broker.finish_many(&[(other, 1)], false).unwrap(),
            vec![Transition::AlreadyFinished]
        );
        let mut stale = first[2].job.clone().unwrap();
        stale.status = JobStatus::Done;
        assert_eq!(
            broker.finish_many(&[(stale.clone(), 7)], false).unwrap(),
            vec![Transition::Fenced]
        );
        assert_eq!(
            client.get(&q.job(ids[0])).unwrap().result,
            format!("r{}", ids[0])
        );

        // Redis forgets everything: finishing reports Missing and writes nothing.
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
        let (t, none, _) = broker
            .finish_and_take(&[(stale, 1)], std::slice::from_ref(&q), 5, lease)
            .unwrap();
        assert_eq!(t, vec![Transition::Missing]);
        assert!(none.is_empty());
        let exists: bool = redis::cmd("EXISTS")
            .arg(format!("herojobs:c:ft:{}", ids[2]))
            .query(&mut con)
            .unwrap();
        assert!(!exists, "a missing job is not written back without restore");
    }

    /// Queue entries planted in Redis that are not a job id as the script leases it (`007`
    /// for job 7, an id with a space, bytes that are not UTF-8) and a hash whose attempt is
    /// not a number are dropped from the take — the script does not stop half-way — and the
    /// real jobs around them are taken.
    #[test]
    fn planted_queue_entries_are_dropped_and_the_take_goes_on() {
        let redis = RedisServer::start();
        let (_d, base) = base_dir();
        let client = Client::connect(&redis.url(), &base).unwrap();
        let broker = RedisBroker::new(RedisConfig::new(&redis.url())).unwrap();
        let q = QueueName::new("c", "planted").unwrap();
        let first = client.submit(tjob("c", "planted", "ok a")).unwrap().id();
        let mut con = redis.conn();
        let _: () = redis::cmd("HSET")
            .arg("herojobs:c:planted:900")
            .arg("job")
            .arg("{}")
            .arg("attempt")
            .arg("many")
            .query(&mut con)
            .unwrap();
        let planted: Vec<Vec<u8>> = vec![
            format!("00{first}").into_bytes(),
            b"1 2".to_vec(),
            vec![0xff, 0xfe],
            b"900".to_vec(),
        ];
        for p in &planted {
            let _: () = redis::cmd("LPUSH")
                .arg("heroqueue:c:planted")
                .arg(p)
                .query(&mut con)
                .unwrap();
        }
        let last = client.submit(tjob("c", "planted", "ok b")).unwrap().id();
        let (_, taken, _) = broker
            .finish_and_take(&[], std::slice::from_ref(&q), 10, Duration::from_secs(30))
            .unwrap();
        let ok: Vec<u32> = taken
            .iter()
            .filter(|t| t.job.is_ok())
            .map(|t| t.id)
            .collect();
        assert_eq!(ok, vec![first, last]);
        let len: i64 = redis::cmd("LLEN")
            .arg("heroqueue:c:planted")
            .query(&mut con)
            .unwrap();
        assert_eq!(len, 0, "every entry was taken off the queue");
    }

    /// The scripts take jobs grouped by queue; a batch that mixes queues gets its answers
    /// (conflicts, verdicts) in its own order, and each queue keeps its own FIFO order.
    #[test]
    fn a_batch_mixing_queues_is_answered_in_its_own_order() {
        let redis = RedisServer::start();
        let broker = RedisBroker::new(RedisConfig::new(&redis.url())).unwrap();
        let mut con = redis.conn();
        let (a, b) = (
            QueueName::new("c", "a").unwrap(),
            QueueName::new("c", "b").unwrap(),
        );
        // Another job already holds c/b 2 (another token): the submit must not take it over.
        let _: () = redis::cmd("HSET")
            .arg("herojobs:c:b:2")
            .arg("job")
            .arg("{}")
            .arg("token")
            .arg("theirs")
            .query(&mut con)
            .unwrap();
        let job = |t: &str, id: u32, delay: bool| {
            let mut j = tjob("c", t, &format!("ok {t}{id}"));
            j.id = id;
            j.token = format!("tok{t}{id}");
            j.store = "here".into();
            if delay {
                j.run_at_ms = now_ms() + 3_600_000;
            }
            j
        };
        let batch = vec![
            job("a", 1, false),
            job("b", 1, false),
            job("a", 2, false),
            job("b", 2, false),
            job("a", 3, true),
            job("b", 3, false),
        ];
        assert_eq!(broker.enqueue(&batch).unwrap(), vec![3], "c/b 2, sent 5th");
        // Sent again (its reply lost): the same answer, nothing queued twice.
        assert_eq!(broker.enqueue(&batch).unwrap(), vec![3]);
        let list = |con: &mut redis::Connection, k: &str| -> Vec<String> {
            redis::cmd("LRANGE")
                .arg(k)
                .arg(0)
                .arg(-1)
                .query(con)
                .unwrap()
        };
        assert_eq!(list(&mut con, "heroqueue:c:a"), vec!["2", "1"]);
        assert_eq!(list(&mut con, "heroqueue:c:b"), vec!["3", "1"]);
        let delayed: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys::scheduled(&a))
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .unwrap();
        assert_eq!(delayed, vec!["3"]);
        let mut registered = broker.queues().unwrap();
        registered.sort_by_key(|q| q.to_string());
        assert_eq!(registered, vec![a.clone(), b.clone()]);
        let mut submitted = broker.submitted().unwrap();
        submitted.sort_by_key(|(q, _)| q.to_string());
        assert_eq!(submitted, vec![(a.clone(), 3), (b.clone(), 2)]);

        // Finish a mix: c/a 1 done, c/b 1 done by a stale attempt (fenced), c/a 2 done.
        let (_, taken, _) = broker
            .finish_and_take(&[], &[a.clone(), b.clone()], 4, Duration::from_secs(30))
            .unwrap();
        assert_eq!(taken.len(), 4);
        let done = |q: &QueueName, id: u32, attempt: u32| {
            let t = taken.iter().find(|t| &t.queue == q && t.id == id).unwrap();
            let mut j = t.job.clone().unwrap();
            j.status = JobStatus::Done;
            j.result = format!("r{id}");
            (j, attempt)
        };
        let verdicts = broker
            .finish_many(&[done(&a, 1, 1), done(&b, 1, 9), done(&a, 2, 1)], false)
            .unwrap();
        assert_eq!(
            verdicts,
            vec![Transition::Applied, Transition::Fenced, Transition::Applied]
        );
    }
}
