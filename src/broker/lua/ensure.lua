-- KEYS: registry, leases, then per job: hash, queue, scheduled set, outcome bitmap. ARGV per
-- job: json (OurDB's copy, status new), id, lease member, OurDB status, attempts, requeue
-- flag, submit token ('' for a job recorded before tokens existed: not checked),
-- submitting store, due time (ms; a job due later goes back to the scheduled set).
-- Returns per job 0 fine, 1 requeued, 2 suspect, 3 conflict (the hash holds a different
-- job: another store's, submitted under this id after Redis lost its data), 4 / 5 finished
-- done / error elsewhere (its hash expired, its outcome bit says so: never queued again).
local out = {}
local n = (#KEYS - 2) / 4
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, n do
  local h = KEYS[4 * i - 1]
  local q = KEYS[4 * i]
  local sched = KEYS[4 * i + 1]
  local bits = KEYS[4 * i + 2]
  local a = 9 * (i - 1)
  local due = tonumber(ARGV[a + 9])
  local json, id, member, status, attempts = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local requeue = ARGV[a + 6] == '1'
  local tok = ARGV[a + 7]
  local r = 0
  -- One look at the hash (a job submitted with a token, or one a take made active, answers
  -- it; only a hash with neither needs a second look for `job`) and, only for a job Redis
  -- does not hold, one at its outcome bits: a start-up pass runs this for every unfinished
  -- job, beside the engine's takes.
  local cur = redis.call('HMGET', h, 'token', 'status')
  local held = cur[1] ~= false or cur[2] ~= false or redis.call('HEXISTS', h, 'job') == 1
  local outcome = 0
  if not held then
    outcome = redis.call('BITFIELD', bits, 'GET', 'u2', '#' .. id)[1]
  end
  if not held and outcome == 1 then
    r = 4
  elseif not held and outcome == 3 then
    r = 5
  elseif not held then
    if status == 'active' and not requeue then
      if not redis.call('ZSCORE', KEYS[2], member) then r = 2 end
    else
      redis.call('HSET', h, 'job', json, 'status', 'new', 'attempt', attempts, 'token', tok, 'store', ARGV[a + 8])
      if due > now_ms then
        redis.call('ZADD', sched, due, id)
      else
        redis.call('LPUSH', q, id)
      end
      redis.call('SADD', KEYS[1], q)
      r = 1
    end
  elseif tok ~= '' and cur[1] ~= tok then
    r = 3
  elseif cur[2] == 'active' and not redis.call('ZSCORE', KEYS[2], member) then
    if requeue then
      redis.call('HSET', h, 'status', 'new')
      redis.call('LPUSH', q, id)
      redis.call('SADD', KEYS[1], q)
      r = 1
    else
      r = 2
    end
  end
  out[i] = r
end
return out
