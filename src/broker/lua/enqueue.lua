-- KEYS: registry, then one hash per job, then each distinct queue, then each queue's
-- scheduled set in the same order, then the submitted-jobs counter hash (field: queue key),
-- then the wake-up list.
-- ARGV: job count, now (ms), the submitting store's identity (one per call: the broker
-- splits a batch from several stores), then per job: id, json, index of its queue (1-based
-- among the queues), submit token, due time (ms; '0' for now; a job due later waits in the
-- scheduled set instead of the list).
-- A job hash with only `job` and `token` (no `status`/`attempt` fields) is a new job at
-- attempt 0. A hash that already holds a job is left alone: with the same token it is this
-- submit retried (its reply was lost), with another token (or none: another client's job)
-- it is a different job under the same id, reported so the submit is not acknowledged. A
-- hash with no `job` (only a waiter's registration) is filled in. Per queue one LPUSH
-- (chunked: Lua's unpack has a stack limit) and one SADD. Returns the 1-based indexes of
-- the jobs that met a different job.
-- Per job this runs for every submit, so it does as little Lua as it can: queue indexes
-- stay strings (table keys; converted once per queue), the due time is parsed only when it
-- is not '0', and numbers go to Redis as strings made with '%d' (a Lua number argument is
-- formatted with '%.14g', which costs more than the command).
local function token_of(h)
  return redis.call('HGET', h, 'token')
end
local n = tonumber(ARGV[1])
local now_ms = tonumber(ARGV[2])
local store = ARGV[3]
local nq = (#KEYS - 3 - n) / 2
local pending = {}
local conflicts = {}
local submitted = {}
for i = 1, n do
  local a = 4 + 5 * (i - 1)
  local id, json, qi, tok, due = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local h = KEYS[1 + i]
  if redis.call('HEXISTS', h, 'job') == 0 then
    redis.call('HSET', h, 'job', json, 'token', tok, 'store', store)
    submitted[qi] = (submitted[qi] or 0) + 1
    if due ~= '0' and tonumber(due) > now_ms then
      redis.call('ZADD', KEYS[1 + n + nq + tonumber(qi)], due, id)
      redis.call('SADD', KEYS[1], KEYS[1 + n + tonumber(qi)])
    else
      local list = pending[qi]
      if not list then list = {}; pending[qi] = list end
      list[#list + 1] = id
    end
  elseif token_of(h) ~= tok then
    conflicts[#conflicts + 1] = i
  end
end
for qi, ids in pairs(pending) do
  local q = KEYS[1 + n + tonumber(qi)]
  for s = 1, #ids, 1000 do
    redis.call('LPUSH', q, unpack(ids, s, math.min(s + 999, #ids)))
  end
  redis.call('SADD', KEYS[1], q)
end
for qi, k in pairs(submitted) do
  redis.call('HINCRBY', KEYS[#KEYS - 1], KEYS[1 + n + tonumber(qi)], string.format('%d', k))
end
-- The wake-up list only needs to be non-empty: trimmed to one entry when it passes 64, so
-- one push in 64 pays for the trim.
if redis.call('LPUSH', KEYS[#KEYS], '1') > 64 then
  redis.call('LTRIM', KEYS[#KEYS], '0', '0')
end
return conflicts
