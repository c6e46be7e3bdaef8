-- KEYS: queue. ARGV: job hash prefix.
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[1] .. id, ARGV[1] .. id .. ':done')
end
redis.call('DEL', KEYS[1])
return #ids
