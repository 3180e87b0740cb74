-- Remove a node that left its pool once nothing of it runs any more; remember it so it cannot rejoin.
-- KEYS: 1 node, 2 pool node index, 3 node attempts, 4 removed-node set. ARGV: 1 node id.
-- Returns {"ok"} | {"busy", live attempts}.
local live = redis.call('SCARD', KEYS[3])
if live > 0 then return {'busy', live} end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return {'ok'}
