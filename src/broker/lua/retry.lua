-- KEYS: hash, queue, dead set, outcome bitmap, registry, wake-up list, done list. ARGV: new
-- json, id. Returns 1 queued again, 0 not failed (nothing changed), -2 missing. The done
-- list of the failed run goes, so waiters wait for the new run.
if redis.call('HEXISTS', KEYS[1], 'job') == 0 then return -2 end
if redis.call('HGET', KEYS[1], 'status') ~= 'error' then return 0 end
redis.call('DEL', KEYS[7])
redis.call('HSET', KEYS[1], 'job', ARGV[1], 'status', 'new')
redis.call('PERSIST', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('BITFIELD', KEYS[4], 'SET', 'u2', '#' .. ARGV[2], 0)
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[5], KEYS[2])
redis.call('LPUSH', KEYS[6], '1')
redis.call('LTRIM', KEYS[6], 0, 63)
return 1
