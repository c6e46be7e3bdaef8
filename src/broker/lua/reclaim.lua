-- KEYS: leases. ARGV: now (ms), limit. Removes and returns expired members.
local m = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, x in ipairs(m) do redis.call('ZREM', KEYS[1], x) end
return m
