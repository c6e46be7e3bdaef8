-- KEYS: hash, queue, done, leases. ARGV: id, lease member.
local existed = redis.call('DEL', KEYS[1])
redis.call('LREM', KEYS[2], 0, ARGV[1])
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[2])
return existed
