//! Every Redis key herojobs uses is built here and nowhere else (the Lua scripts get their
//! prefixes from here too). Circle and topic come as a [`QueueName`], so they are name-fixed
//! (they contain no `:`).

use crate::names::{JobRef, QueueName};

/// The set of all queue keys (the registry the dispatcher reads instead of `KEYS`/`SCAN`).
pub const REGISTRY: &str = "heroqueues";
/// Prefix of queue keys.
pub const QUEUE_PREFIX: &str = "heroqueue:";
/// Sorted set of running attempts (member `circle:topic:id`, score: lease deadline in ms).
pub const LEASES: &str = "herojobs-leases";
/// Wake-up list: every enqueue pushes a token (trimmed to 64); idle dispatchers block on it.
pub const SIGNAL: &str = "herojobs-signal";
/// Changes when Redis loses its data (see `Broker::epoch`).
pub const EPOCH: &str = "herojobs-epoch";
/// Sorted set of params types some engine of the fleet can run (member: type, score: when
/// an engine last claimed it, ms): an engine without a processor for a job's type hands the
/// job back while another engine claims the type.
pub const TYPES: &str = "herojobs-types";
/// Hash of jobs ever submitted per queue (field: queue key), for metrics.
pub const SUBMITTED: &str = "herojobs-submitted";
/// Set of paused queue keys: engines do not take from them (jobs still queue up).
pub const PAUSED: &str = "herojobs-paused";
/// Pub/sub channel on which cancels of running jobs reach every engine (`circle:topic:id`).
pub const CANCEL_CHANNEL: &str = "herojobs-cancel";
/// Prefix of the hash where each engine publishes its counters.
pub const STATS_PREFIX: &str = "herojobs-stats:";
/// Set of the names of engines that publish counters (readers look their hashes up here
/// instead of scanning the keyspace, which holds a hash per job; a name whose hash expired
/// is removed by the reader).
pub const ENGINES: &str = "herojobs-engines";

/// Prefix of the per-queue id counters (`herojobs-ids:<circle>:<topic>`: the highest id
/// reserved for that circle/topic by any store of the fleet).
pub const IDS_PREFIX: &str = "herojobs-ids:";
/// Prefix of job hashes (`herojobs:<circle>:<topic>:<id>`). The Lua scripts get it from
/// here (see `broker::lua`), never spelled out.
pub const JOB_PREFIX: &str = "herojobs:";

/// `herojobs-ids:<circle>:<topic>`: the fleet's id counter of one circle/topic.
pub fn ids(q: &QueueName) -> String {
    format!("{IDS_PREFIX}{}:{}", q.circle(), q.topic())
}

/// Prefix of the scheduled sets (the submit script derives a queue's from its queue key).
pub const SCHEDULED_PREFIX: &str = "herojobs-scheduled:";

/// `herojobs-scheduled:<circle>:<topic>`: sorted set of delayed jobs and jobs waiting for
/// their retry (member: id, score: due time in unix ms); promoted into the queue by takes.
pub fn scheduled(q: &QueueName) -> String {
    format!("{SCHEDULED_PREFIX}{}:{}", q.circle(), q.topic())
}

/// `herojobs-dead:<circle>:<topic>`: sorted set of jobs that ended in error after their
/// last attempt (member: id, score: when, unix ms), capped by count and age.
pub fn dead(q: &QueueName) -> String {
    format!("herojobs-dead:{}:{}", q.circle(), q.topic())
}

/// `herojobs-outcomes:<circle>:<topic>`: two bits per id (`BITFIELD u2 #id`): 1 done,
/// 3 error. Outlives the job hashes' TTL, so a store that learns late can tell that a job
/// it still has as new finished elsewhere instead of queueing it again (1 MB per 4M ids).
pub fn outcomes(q: &QueueName) -> String {
    format!("herojobs-outcomes:{}:{}", q.circle(), q.topic())
}

/// `herojobs:<circle>:<topic>:<id>`: the job hash (field `job` holds the JSON).
pub fn job(q: &QueueName, id: u32) -> String {
    format!("{JOB_PREFIX}{}:{}:{id}", q.circle(), q.topic())
}

/// Prefix of job hashes of a queue (`herojobs:<circle>:<topic>:`), for scripts that add ids.
pub fn job_prefix(q: &QueueName) -> String {
    format!("{JOB_PREFIX}{}:{}:", q.circle(), q.topic())
}

/// `herojobs:<circle>:<topic>:<id>:done`: a one-element list, the finished job's JSON, pushed
/// when the job finishes if someone waits for it (it expires after 10 minutes); waiters block
/// on it, rotating it so every waiter sees it.
pub fn done(q: &QueueName, id: u32) -> String {
    format!("{JOB_PREFIX}{}:{}:{id}:done", q.circle(), q.topic())
}

/// `heroqueue:<circle>:<topic>`: the list of waiting job ids (LPUSH in, RPOP out: FIFO).
pub fn queue(q: &QueueName) -> String {
    format!("{QUEUE_PREFIX}{}:{}", q.circle(), q.topic())
}

/// The queue of a queue key. Redis content is untrusted: names that are not already
/// name-fixed (`../x`, `A B`, ...) are refused, so a planted registry entry can never
/// become a path or address another circle's keys.
pub fn parse_queue(key: &str) -> Option<QueueName> {
    let rest = key.strip_prefix(QUEUE_PREFIX)?;
    let (c, t) = rest.split_once(':')?;
    QueueName::from_fixed(c, t)
}

/// `SCAN MATCH` patterns of every key of one circle (job hashes and done lists, queues, id
/// counters, outcome bitmaps, dead and scheduled sets), for forgetting a circle. A fixed
/// name holds no glob character (`*?[]\\`), so the patterns match only that circle.
pub fn circle_patterns(circle: &str) -> Vec<String> {
    vec![
        format!("{JOB_PREFIX}{circle}:*"),
        format!("{QUEUE_PREFIX}{circle}:*"),
        format!("{IDS_PREFIX}{circle}:*"),
        format!("herojobs-outcomes:{circle}:*"),
        format!("herojobs-dead:{circle}:*"),
        format!("herojobs-scheduled:{circle}:*"),
    ]
}

/// Member of the lease set for one job.
pub fn lease_member(q: &QueueName, id: u32) -> String {
    let mut m = lease_prefix(q);
    m.push_str(&id.to_string());
    m
}

/// What every lease member of a queue's jobs starts with (`circle:topic:`).
pub fn lease_prefix(q: &QueueName) -> String {
    format!("{}:{}:", q.circle(), q.topic())
}

/// Parses a lease member (refusing names that are not name-fixed, like [`parse_queue`]).
pub fn parse_lease_member(m: &str) -> Option<JobRef> {
    let mut parts = m.splitn(3, ':');
    let c = parts.next()?;
    let t = parts.next()?;
    let id = parts.next()?.parse().ok().filter(|id| *id > 0)?;
    Some(QueueName::from_fixed(c, t)?.job(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract() {
        let q = QueueName::new("c", "t").unwrap();
        assert_eq!(job(&q, 5), "herojobs:c:t:5");
        assert_eq!(queue(&q), "heroqueue:c:t");
        assert_eq!(parse_queue("heroqueue:c:t"), Some(q.clone()));
        assert_eq!(parse_queue("heroqueue:c"), None);
        assert_eq!(parse_queue("heroqueue:../../x:t"), None);
        assert_eq!(parse_queue("heroqueue:..:t"), None);
        assert_eq!(parse_queue("heroqueue:c:T x"), None);
        assert_eq!(parse_lease_member("../a:t:1"), None);
        assert_eq!(parse_lease_member("a:t:0"), None);
        assert_eq!(parse_lease_member(&lease_member(&q, 9)), Some(q.job(9)));
    }
}
