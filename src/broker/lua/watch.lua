-- KEYS: hash. Registers a waiter and returns the job's status. Registers even when the
-- broker lost the job (a hash without `job` reads everywhere as "no copy"): recovery then
-- restores the job into this hash, keeping the registration, and its finish signals us.
redis.call('HSET', KEYS[1], 'waiting', '1')
return redis.call('HGET', KEYS[1], 'status') or 'new'
