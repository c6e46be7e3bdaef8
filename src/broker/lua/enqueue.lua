-- KEYS: registry, the submitted-jobs counter hash (field: queue key), the wake-up list, then
-- each distinct queue (nq of them), then one hash per job, in the order the jobs are sent.
-- ARGV: the submitting store's identity (one per call: the broker splits a batch from
-- several stores), nq, then per queue in the KEYS order: its job count, then per job: id,
-- json, submit token, due time (ms; '0' for now: the broker sends a time only when it is
-- in the future, and such a job waits in the queue's scheduled set instead of the list).
-- A job hash with only `job`, `token` and `store` (no `status`/`attempt` fields) is a new
-- job at attempt 0. A hash that already holds a job is left alone: with the same token it is
-- this submit retried (its reply was lost), with another token (or none: another client's
-- job) it is a different job under the same id, reported so the submit is not
-- acknowledged. A hash with no `job` (only a waiter's registration) is filled in. Per queue
-- one LPUSH (chunked: Lua's unpack has a stack limit), one HINCRBY, and one SADD only when
-- the push found the list empty: a queue with waiting ids is registered already (whoever
-- pushed into the empty list registered it, and prune takes out only empty queues; the
-- engine's discovery puts back a queue someone else took out). Returns the 1-based indexes
-- (in the order sent) of the jobs that met a different job.
-- Per job this runs for every submit, and each redis.call costs more than the command (its
-- arguments become Redis objects, the command is looked up and checked): as few calls and
-- arguments as it can, no number parsed per job, the scheduled set's key derived from the
-- queue key only for a delayed job, and counts go to Redis as strings made with '%d' (a Lua
-- number argument is formatted with '%.14g').
local store = ARGV[1]
local nq = tonumber(ARGV[2])
local conflicts = {}
local a, k = 3, 3 + nq
for qi = 1, nq do
  local q = KEYS[3 + qi]
  local count = tonumber(ARGV[a])
  a = a + 1
  local ids, fresh, delayed = {}, 0, false
  for _ = 1, count do
    k = k + 1
    local h, id, tok, due = KEYS[k], ARGV[a], ARGV[a + 2], ARGV[a + 3]
    if redis.call('HEXISTS', h, 'job') == 0 then
      redis.call('HSET', h, 'job', ARGV[a + 1], 'token', tok, 'store', store)
      fresh = fresh + 1
      if due == '0' then
        ids[#ids + 1] = id
      else
        -- {{...}}: filled in from broker/keys.rs when the script is loaded.
        redis.call('ZADD', '{{SCHEDULED_PREFIX}}' .. string.sub(q, {{QUEUE_PREFIX_LEN}} + 1), due, id)
        delayed = true
      end
    elseif redis.call('HGET', h, 'token') ~= tok then
      conflicts[#conflicts + 1] = k - 3 - nq
    end
    a = a + 4
  end
  local registered = false
  for s = 1, #ids, 1000 do
    local last = math.min(s + 999, #ids)
    -- The list's length after the push equals what was pushed: it was empty before.
    if redis.call('LPUSH', q, unpack(ids, s, last)) == last - s + 1 and s == 1 then
      redis.call('SADD', KEYS[1], q)
      registered = true
    end
  end
  if delayed and not registered then redis.call('SADD', KEYS[1], q) end
  if fresh > 0 then redis.call('HINCRBY', KEYS[2], q, string.format('%d', fresh)) end
end
-- The wake-up list only needs to be non-empty: trimmed to one entry when it passes 64, so
-- one push in 64 pays for the trim.
if redis.call('LPUSH', KEYS[3], '1') > 64 then
  redis.call('LTRIM', KEYS[3], '0', '0')
end
return conflicts
