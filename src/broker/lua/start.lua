-- KEYS: hash, leases. ARGV: json, attempt, lease deadline (ms), lease member, token, store.
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'done' or st == 'error' then return 0 end
redis.call('HSET', KEYS[1], 'job', ARGV[1], 'status', 'active', 'attempt', ARGV[2], 'token', ARGV[5], 'store', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
