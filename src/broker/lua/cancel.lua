-- KEYS: hash, queue, scheduled set, leases, done list. ARGV: cancelled json, id, lease
-- member, cancel channel, finished TTL (s). Returns 1 cancelled while waiting, 2 cancelled
-- while running (engines told), 0 already finished, -2 missing.
if redis.call('HEXISTS', KEYS[1], 'job') == 0 then return -2 end
local cur = redis.call('HMGET', KEYS[1], 'status', 'waiting')
if cur[1] == 'done' or cur[1] == 'error' then return 0 end
redis.call('LREM', KEYS[2], 0, ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[3])
redis.call('HSET', KEYS[1], 'job', ARGV[1], 'status', 'error')
local ttl = tonumber(ARGV[5])
if cur[2] then
  redis.call('LPUSH', KEYS[5], ARGV[1])
  redis.call('EXPIRE', KEYS[5], (ttl > 0 and ttl < 600) and ttl or 600)
end
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
if cur[1] == 'active' then
  redis.call('PUBLISH', ARGV[4], ARGV[3])
  return 2
end
return 1
