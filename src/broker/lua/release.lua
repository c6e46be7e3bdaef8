-- KEYS: hash, queue, leases, registry. ARGV: json (status new), attempt, member, id, to-back
-- flag ('1': LPUSH, the back of the FIFO; else RPUSH, the head).
local cur = redis.call('HMGET', KEYS[1], 'status', 'attempt')
if cur[1] == 'done' or cur[1] == 'error' then return 0 end
if cur[2] and cur[2] ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[1], 'job', ARGV[1], 'status', 'new', 'attempt', ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[3])
if ARGV[5] == '1' then redis.call('LPUSH', KEYS[2], ARGV[4]) else redis.call('RPUSH', KEYS[2], ARGV[4]) end
redis.call('SADD', KEYS[4], KEYS[2])
return 1
