-- Takes a queue that has nothing to do out of the registry: no waiting id, no delayed or
-- retry-waiting job, no running job. Checked and done in one atomic step, so a submit
-- (which registers the queue in the same script as its push) is never lost: either it ran
-- before (the queue is not empty, nothing happens) or after (it registers the queue again).
-- KEYS: registry, queue, scheduled set, leases. ARGV: lease member prefix (`circle:topic:`).
-- Returns 1 when the queue left the registry, 0 otherwise.
if redis.call('LLEN', KEYS[2]) > 0 or redis.call('ZCARD', KEYS[3]) > 0 then return 0 end
local prefix = ARGV[1]
for _, m in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  if string.sub(m, 1, #prefix) == prefix then return 0 end
end
return redis.call('SREM', KEYS[1], KEYS[2])
