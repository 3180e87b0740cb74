-- Give every running lease at least until a floor: a new scheduler leader must not requeue work
-- whose heartbeats it simply has not seen yet (the previous leader may have died long ago).
-- KEYS: 1 leases. ARGV: 1 floor (ms). Returns how many leases were extended.
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for _, member in ipairs(items) do redis.call('ZADD', KEYS[1], ARGV[1], member) end
return #items
