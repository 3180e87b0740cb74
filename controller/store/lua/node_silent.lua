-- Mark a node `unknown` if it has been silent since before a cut-off.
-- KEYS: 1 node. ARGV: 1 cut-off (ms), 2 now (ISO), 3 etag. Returns 1 when the state changed.
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'idle' and state ~= 'running' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'seen') or '0') >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'unknown', 'stt', ARGV[2], 'etag', ARGV[3])
return 1
