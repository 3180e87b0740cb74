-- Complete a task that holds no attempt (queued, or waiting for a retry) as failed: terminate, lifetime end.
-- KEYS: 1 task, 2 job, 3 job queue. ARGV: 1 now (ISO), 2 etag, 3 failureInfo JSON.
-- Returns {"ok"} | {"missing"} | {"state", task state} | {"busy"} (an attempt holds it: stop that first).
local task, job = KEYS[1], KEYS[2]
local state = redis.call('HGET', task, 'state')
if not state then return {'missing'} end
if state ~= 'active' then return {'state', state} end
if redis.call('HEXISTS', task, 'attempt') == 1 then return {'busy'} end
redis.call('ZREM', KEYS[3], task)
local now = ARGV[1]
redis.call('HSET', task, 'pstate', state, 'pstt', redis.call('HGET', task, 'stt'), 'state', 'completed',
  'stt', now, 'end', now, 'result', 'failure', 'failure', ARGV[3], 'modified', now, 'etag', ARGV[2])
redis.call('HINCRBY', job, 'n_active', -1)
redis.call('HINCRBY', job, 'n_completed', 1)
redis.call('HINCRBY', job, 'n_failed', 1)
return {'ok'}
