-- KEYS: the queue's id counter. ARGV: floor (the reserving store's next id), count,
-- margin. Returns {start, end}: ids start..end-1 are the caller's alone. The counter holds
-- the highest id reserved; it only grows (count 0 raises it to floor - 1 and reserves
-- nothing: a store re-asserting its high-water mark).
-- A missing counter while the caller already has ids (floor > 1) means Redis lost its data:
-- other stores may be in the middle of blocks above this one's floor, and they have not
-- re-asserted yet. The counter then restarts `margin` ids above the floor, past any block
-- another store can be using, so no id is handed out twice while the fleet catches up.
local raw = redis.call('GET', KEYS[1])
local floor = tonumber(ARGV[1])
local cur = tonumber(raw or '0') or 0
if not raw and floor > 1 then cur = floor - 1 + tonumber(ARGV[3]) end
local start = math.max(cur + 1, floor)
local stop = start + tonumber(ARGV[2])
if stop - 1 > 4294967295 then
  return redis.error_reply('id space of this circle/topic exhausted')
end
if not raw or stop - 1 > cur then redis.call('SET', KEYS[1], math.max(stop - 1, cur)) end
return {start, stop}
