-- The engine's one round trip per cycle: record finished jobs, then take new ones — the
-- slots the finished jobs held are reused in the same atomic step, so jobs taken and not yet
-- recorded never exceed the workers and a busy engine pays one round trip per batch, not two.
-- With no queues it only finishes (the client's `finish_many`); with nothing finished it
-- only takes. An id is never out of its queue without being active under a lease.
--
-- KEYS: leases, then the nq queue keys (in the order to try them), then their nq
-- scheduled sets, then per queue of the finished jobs (ng of them): its scheduled set, dead
-- set and outcome bitmap.
-- ARGV: nq, max to take, lease deadline (ms), restore flag, now (ms), finished TTL (s, 0:
-- keep), dead-set cap (count), dead-set age (ms), ng, then per queue of the finished jobs
-- (in the KEYS order) how many of them it has, then per finished job, grouped by queue in
-- that order: json, status ('done', 'error': a final error, indexed in the dead set, or the
-- due time in ms of a job waiting for its retry), attempt, lease member (`circle:topic:id`:
-- the job hash's key is derived from it, and its done list's from that), '#' .. id (the
-- outcome bit's offset as BITFIELD takes it), and only with the restore flag: token, store
-- (written only when the hash is restored: otherwise the submit's fields stay).
-- Returns {codes, taken, next_due}. codes, per finished job in the order sent: 1 applied
-- (also when the job already holds exactly this record: a retried call whose reply was
-- lost), 0 already finished (first finisher wins), -1 fenced (another attempt owns it), -2
-- missing (the hash lacks `job`: Redis lost it; written back only when restoring). taken:
-- flat (head, json, token, store) quadruples, head '<queue index> <id> <attempt>' (one
-- reply element where three were: the client parses each element at a cost); json '' with
-- attempt -1 when the id has no hash, attempt 0 when the job had already finished
-- (skipped). next_due:
-- the earliest due time (ms) left in the scheduled sets of the queues taken from, 0 if
-- none, so an idle dispatcher wakes for it.
-- A retry puts the job back as new, into its scheduled set at its due time, and keeps its
-- lease-free slot; 'done'/'error' mark the job finished: its outcome bit is set (so a store
-- that learns late can tell it finished after the hash expired), the hash expires after the
-- finished TTL, and a final error joins the dead set (capped by count and age).
-- Before taking from a queue, its jobs that are due are moved from its scheduled set to the
-- head of the list, earliest first: promotion rides on the take, no poller per queue.
-- Finishing pushes the job's JSON onto its done list only when a waiter registered (field
-- `waiting`, set before the waiter reads the status, so no wake-up is lost): waiters get the
-- result with the wake-up, without another read. Leases are removed in one ZREM and
-- added in one ZADD (chunked: Lua's unpack has a stack limit). Job hash keys are derived from
-- lease members and queue keys (`c:t:<id>`, `heroqueue:c:t` -> `herojobs:c:t:<id>`; the
-- prefixes are filled in from broker/keys.rs at load), which is fine on a single Redis (not
-- a cluster). Each redis.call and each argument costs Redis more than the work it stands for
-- (Redis objects, Lua strings, a command lookup): per finished job five arguments, no key.
local nq = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local restore = ARGV[4] == '1'
local stride = restore and 7 or 5
local now_ms = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
-- Numbers go to Redis as strings: a Lua number argument is formatted with '%.14g', which
-- costs more than the command it is passed to.
local ttl_s = ARGV[6]
local done_ttl_s = string.format('%d', (ttl > 0 and ttl < 600) and ttl or 600)
local dead_cap = tonumber(ARGV[7])
local dead_age = tonumber(ARGV[8])
local ng = tonumber(ARGV[9])
local codes = {}
local gone = {}
-- Outcome bits per bitmap, set by one BITFIELD each after the loop (chunked).
local outcome_ops = {}
local i = 0
local a = 9 + ng
for gi = 1, ng do
  local g = 1 + 2 * nq + 3 * (gi - 1)
  local sched, dead, bits = KEYS[g + 1], KEYS[g + 2], KEYS[g + 3]
  for _ = 1, tonumber(ARGV[9 + gi]) do
    i = i + 1
    local json, status, att, member = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
    local h = '{{JOB_PREFIX}}' .. member
    local cur = redis.call('HMGET', h, 'status', 'attempt', 'waiting')
    if not cur[1] and not restore and redis.call('HEXISTS', h, 'job') == 0 then
      codes[i] = -2
    elseif cur[1] == 'done' or cur[1] == 'error' then
      -- Finished with exactly this record: a retry whose first reply was lost, so applied.
      if redis.call('HGET', h, 'job') == json then codes[i] = 1 else codes[i] = 0 end
    elseif cur[2] and cur[2] ~= att then
      codes[i] = -1
    else
      local final = status == 'done' or status == 'error'
      if not cur[1] and restore then redis.call('HSET', h, 'token', ARGV[a + 6], 'store', ARGV[a + 7]) end
      gone[#gone + 1] = member
      -- The take wrote `attempt`; it is written again only into a restored hash.
      local st = final and status or 'new'
      if cur[2] then
        redis.call('HSET', h, 'job', json, 'status', st)
      else
        redis.call('HSET', h, 'job', json, 'status', st, 'attempt', att)
      end
      if not final then
        redis.call('ZADD', sched, status, string.sub(ARGV[a + 5], 2))
      else
        local ops = outcome_ops[bits]
        if not ops then ops = {}; outcome_ops[bits] = ops end
        ops[#ops + 1] = 'SET'; ops[#ops + 1] = 'u2'; ops[#ops + 1] = ARGV[a + 5]
        ops[#ops + 1] = status == 'done' and '1' or '3'
        if cur[3] then
          local d = h .. ':done'
          redis.call('LPUSH', d, json)
          redis.call('EXPIRE', d, done_ttl_s)
        end
        if ttl > 0 then redis.call('EXPIRE', h, ttl_s) end
        if status == 'error' then
          redis.call('ZADD', dead, ARGV[5], string.sub(ARGV[a + 5], 2))
          if redis.call('ZCARD', dead) > dead_cap then
            redis.call('ZREMRANGEBYRANK', dead, 0, -(dead_cap + 1))
          end
          redis.call('ZREMRANGEBYSCORE', dead, '-inf', now_ms - dead_age)
        end
      end
      codes[i] = 1
    end
    a = a + stride
  end
end
for bits, ops in pairs(outcome_ops) do
  for s = 1, #ops, 1000 do
    redis.call('BITFIELD', bits, unpack(ops, s, math.min(s + 999, #ops)))
  end
end
for s = 1, #gone, 1000 do
  redis.call('ZREM', KEYS[1], unpack(gone, s, math.min(s + 999, #gone)))
end
local out = {}
local leases = {}
local taken = 0
local next_due = 0
for qi = 2, 1 + nq do
  local sched = KEYS[qi + nq]
  -- One look at the earliest scheduled job; the range read and the moves only when one is
  -- due (most takes find the set empty, and pay one call per queue for scheduling).
  local first = redis.call('ZRANGE', sched, 0, 0, 'WITHSCORES')
  if first[2] and taken < max and tonumber(first[2]) <= now_ms then
    local due = redis.call('ZRANGEBYSCORE', sched, '-inf', now_ms, 'LIMIT', 0, 1000)
    if #due > 0 then
      redis.call('ZREM', sched, unpack(due))
      -- Earliest due first: RPUSH puts its arguments at the head one after the other, so
      -- they go in latest first.
      local rev = {}
      for j = #due, 1, -1 do rev[#rev + 1] = due[j] end
      redis.call('RPUSH', KEYS[qi], unpack(rev))
    end
    first = redis.call('ZRANGE', sched, 0, 0, 'WITHSCORES')
  end
  if first[2] then
    local t = tonumber(first[2])
    if next_due == 0 or t < next_due then next_due = t end
  end
  if taken < max then
    local ids = redis.call('RPOP', KEYS[qi], max - taken)
    if ids then
      -- {{...}}: filled in from broker/keys.rs when the script is loaded.
      local member = string.sub(KEYS[qi], {{QUEUE_PREFIX_LEN}} + 1) .. ':'
      local qs = string.format('%d', qi - 1) .. ' '
      local prefix = '{{JOB_PREFIX}}' .. member
      for _, id in ipairs(ids) do
        taken = taken + 1
        local h = prefix .. id
        local f = redis.call('HMGET', h, 'job', 'status', 'attempt', 'token', 'store')
        -- An attempt that is not a number (planted) counts as no hash: the id is dropped
        -- and reported, as a script error here would keep what this call did so far.
        local prior = tonumber(f[3] or '0')
        if prior and not (prior >= 0 and prior < 4294967295) then prior = nil end
        if not f[1] or not prior then
          out[#out + 1] = qs .. id .. ' -1'; out[#out + 1] = ''
          out[#out + 1] = ''; out[#out + 1] = ''
        elseif f[2] == 'done' or f[2] == 'error' then
          out[#out + 1] = qs .. id .. ' 0'; out[#out + 1] = ''
          out[#out + 1] = ''; out[#out + 1] = ''
        else
          local att = prior + 1
          -- Our own JSON has exactly `"status":"new"` (quotes inside strings are escaped, so
          -- this cannot match inside a value): patch it in place with a plain find, far
          -- cheaper than a decode/encode (or a pattern gsub). JSON formatted otherwise
          -- (another client, a retry) goes via cjson.
          local json = f[1]
          local a, b = string.find(json, '"status":"new"', 1, true)
          if a then
            json = string.sub(json, 1, a - 1) .. '"status":"active"' .. string.sub(json, b + 1)
          else
            local ok, j = pcall(cjson.decode, f[1])
            if ok and type(j) == 'table' then
              j['status'] = 'active'; j['time_start'] = math.floor(now_ms / 1000); j['attempts'] = att
              -- Protected too: a planted value (1e400 decodes to inf) must not stop the
              -- script half-way; the JSON then goes as it was.
              local encoded, text = pcall(cjson.encode, j)
              if encoded then json = text end
            end
          end
          local atts = string.format('%d', att)
          redis.call('HSET', h, 'job', json, 'status', 'active', 'attempt', atts)
          leases[#leases + 1] = ARGV[3]; leases[#leases + 1] = member .. id
          out[#out + 1] = qs .. id .. ' ' .. atts; out[#out + 1] = json
          out[#out + 1] = f[4] or ''; out[#out + 1] = f[5] or ''
        end
      end
    end
  end
end
for s = 1, #leases, 1000 do
  redis.call('ZADD', KEYS[1], unpack(leases, s, math.min(s + 999, #leases)))
end
return {codes, out, next_due}
