-- Take an attempt away from its node and decide its task's fate.
-- KEYS: 1 attempt, 2 leases, 3 offers.
-- ARGV: 1 only-if attempt states (comma-separated, of "running", "stopping", "offered"; or "any"),
--       2 action: "requeue" (queue the task again, requeueCount + 1 if it was running),
--                 "release" (queue the task again, nothing counted),
--                 "fail" (a running task completes as failed with ARGV[5]; an offered one is released),
--       3 now (ISO), 4 etag, 5 failureInfo JSON (for "fail").
-- Any instance of a multi-instance task ends every instance of it, and the task's fate is decided once.
-- Returns {"ok", previous attempt state, task outcome ("queued" | "failed" | "")} or {"noop"}.
local attempt = KEYS[1]
local astate = redis.call('HGET', attempt, 'state')
if not astate or astate == 'done' then return {'noop'} end
if ARGV[1] ~= 'any' and not string.find(',' .. ARGV[1] .. ',', ',' .. astate .. ',', 1, true) then return {'noop'} end

local function release(member)
  if redis.call('HGET', member, 'state') == 'done' or redis.call('EXISTS', member) == 0 then return end
  redis.call('HINCRBY', redis.call('HGET', member, 'node'), 'used', -tonumber(redis.call('HGET', member, 'slots')))
  redis.call('SREM', redis.call('HGET', member, 'node_attempts'), member)
  redis.call('SREM', redis.call('HGET', member, 'job_attempts'), member)
  redis.call('ZREM', KEYS[2], member)
  redis.call('ZREM', KEYS[3], member)
  redis.call('HSET', member, 'state', 'done')
  redis.call('EXPIRE', member, 86400)
end

local task, job = redis.call('HGET', attempt, 'task'), redis.call('HGET', attempt, 'job')
local primary = redis.call('HGET', attempt, 'gang') or attempt
release(attempt)
if redis.call('HGET', task, 'attempt') ~= primary then return {'ok', astate, ''} end
for member in string.gmatch(redis.call('HGET', task, 'gang') or '', '[^,]+') do release(member) end
redis.call('HDEL', task, 'attempt', 'gang')
local now, action = ARGV[3], ARGV[2]
local tstate = redis.call('HGET', task, 'state')
local running = tstate == 'running' or tstate == 'preparing'
if running and action == 'fail' then
  redis.call('HSET', task, 'pstate', tstate, 'pstt', redis.call('HGET', task, 'stt'), 'state', 'completed',
    'stt', now, 'end', now, 'result', 'failure', 'failure', ARGV[5], 'modified', now, 'etag', ARGV[4])
  redis.call('HINCRBY', job, 'n_running', -1)
  redis.call('HINCRBY', job, 'n_completed', 1)
  redis.call('HINCRBY', job, 'n_failed', 1)
  return {'ok', astate, 'failed'}
end
if running then
  redis.call('HSET', task, 'pstate', tstate, 'pstt', redis.call('HGET', task, 'stt'), 'state', 'active',
    'stt', now, 'modified', now, 'etag', ARGV[4])
  redis.call('HINCRBY', job, 'n_running', -1)
  redis.call('HINCRBY', job, 'n_active', 1)
  if action == 'requeue' then
    redis.call('HINCRBY', task, 'requeues', 1)
    redis.call('HSET', task, 'last_requeue', now)
  end
end
local jstate = redis.call('HGET', job, 'state')
if jstate ~= 'completed' and jstate ~= 'terminating' and jstate ~= 'deleting' then
  redis.call('ZADD', redis.call('HGET', attempt, 'queue'), redis.call('HGET', task, 'seq'), task)
end
if jstate == 'active' then
  redis.call('ZADD', redis.call('HGET', attempt, 'pool_jobs'), 'NX', redis.call('HGET', job, 'order'),
    redis.call('HGET', job, 'key'))
end
return {'ok', astate, 'queued'}
