-- Reactivate a failed task: back to active with retryCount 0 and its last outcome cleared; it joins the
-- queue unless it still waits for a dependency. The dependency names it blocked are open again: their
-- dependents, and tasks added from now on, wait for its next completion.
-- KEYS: 1 task, 2 job, 3 job queue, 4 pool job set, 5 job dependency states. ARGV: 1 now (ISO), 2 etag.
-- Returns {"ok"} | {"missing"} | {"job", job state} | {"state", task state} | {"succeeded"}.
local task, job = KEYS[1], KEYS[2]
local state = redis.call('HGET', task, 'state')
if not state then return {'missing'} end
local jstate = redis.call('HGET', job, 'state')
if jstate == 'completed' or jstate == 'terminating' or jstate == 'deleting' then return {'job', jstate} end
if state ~= 'completed' then return {'state', state} end
if redis.call('HGET', task, 'result') == 'success' then return {'succeeded'} end
local now = ARGV[1]
redis.call('HDEL', task, 'exit', 'result', 'failure', 'end', 'last_retry')
redis.call('HSET', task, 'pstate', state, 'pstt', redis.call('HGET', task, 'stt'), 'state', 'active', 'stt', now,
  'retries', 0, 'modified', now, 'etag', ARGV[2])
redis.call('HINCRBY', job, 'n_completed', -1)
redis.call('HINCRBY', job, 'n_failed', -1)
redis.call('HINCRBY', job, 'n_active', 1)
local own = redis.call('HMGET', task, 'key', 'num')
for _, name in ipairs({own[1], own[2] and ('#' .. own[2]) or nil}) do
  if redis.call('HGET', KEYS[5], name) == 'blocked' then redis.call('HDEL', KEYS[5], name) end
end
if tonumber(redis.call('HGET', task, 'waiting') or '0') > 0 then return {'ok'} end
redis.call('ZADD', KEYS[3], redis.call('HGET', task, 'seq'), task)
if jstate == 'active' then
  redis.call('ZADD', KEYS[4], 'NX', redis.call('HGET', job, 'order'), redis.call('HGET', job, 'key'))
end
return {'ok'}
