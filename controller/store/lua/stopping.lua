-- Ask a node to stop a running attempt before its task is queued again: the attempt becomes
-- "stopping" and keeps its slots and its lease; the node's next heartbeat tells the agent to stop it,
-- and the first heartbeat that no longer lists it (or its lease running out) ends it with stop_attempt.
-- KEYS: 1 attempt.
-- Returns {"stopping"} or {"noop", attempt state} when the attempt is not running.
local astate = redis.call('HGET', KEYS[1], 'state')
if astate ~= 'running' then return {'noop', astate or ''} end
redis.call('HSET', KEYS[1], 'state', 'stopping')
return {'stopping'}
