-- KEYS: registry, leases, then per queue of the jobs (ng of them): its queue, scheduled set
-- and outcome bitmap.
-- ARGV: full flag ('1': each job carries its JSON and store), ng, then per queue (in the
-- KEYS order) how many jobs it has, then per job, grouped by queue in that order: id, OurDB
-- status, attempts, requeue flag, submit token ('' for a job recorded before tokens
-- existed: not checked), due time (ms; a job due later goes back to the scheduled set),
-- and only with the full flag: json (OurDB's copy, status new), submitting store.
-- Returns per job, in the order sent: 0 fine, 1 requeued, 2 suspect, 3 conflict (the hash
-- holds a different job: another store's, submitted under this id after Redis lost its
-- data), 4 / 5 finished done / error elsewhere (its hash expired, its outcome bit says so:
-- never queued again), 6 (only without the full flag) to be written back: send it again
-- with its JSON. A start-up pass runs this for every unfinished job, beside the engine's
-- takes, and Redis holds nearly all of them: the JSON travels only for the few it lacks.
-- Job hash keys and lease members are derived from the queue keys (`heroqueue:c:t` ->
-- `herojobs:c:t:<id>`, `c:t:<id>`; the prefixes are filled in from broker/keys.rs at load).
local out = {}
local full = ARGV[1] == '1'
local stride = full and 8 or 6
local ng = tonumber(ARGV[2])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local i = 0
local a = 2 + ng
for gi = 1, ng do
  local q, sched, bits = KEYS[3 * gi], KEYS[3 * gi + 1], KEYS[3 * gi + 2]
  local member_prefix = string.sub(q, {{QUEUE_PREFIX_LEN}} + 1) .. ':'
  local prefix = '{{JOB_PREFIX}}' .. member_prefix
  for _ = 1, tonumber(ARGV[2 + gi]) do
    i = i + 1
    local id, status, attempts = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
    local requeue = ARGV[a + 4] == '1'
    local tok = ARGV[a + 5]
    local h = prefix .. id
    local r = 0
    -- One look at the hash (a job submitted with a token, or one a take made active,
    -- answers it; only a hash with neither needs a second look for `job`) and, only for a
    -- job Redis does not hold, one at its outcome bits.
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
        if not redis.call('ZSCORE', KEYS[2], member_prefix .. id) then r = 2 end
      elseif not full then
        r = 6
      else
        redis.call('HSET', h, 'job', ARGV[a + 7], 'status', 'new', 'attempt', attempts, 'token', tok, 'store', ARGV[a + 8])
        if tonumber(ARGV[a + 6]) > now_ms then
          redis.call('ZADD', sched, ARGV[a + 6], id)
        else
          redis.call('LPUSH', q, id)
        end
        redis.call('SADD', KEYS[1], q)
        r = 1
      end
    elseif tok ~= '' and cur[1] ~= tok then
      r = 3
    elseif cur[2] == 'active' and not redis.call('ZSCORE', KEYS[2], member_prefix .. id) then
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
    a = a + stride
  end
end
return out
