-- Terminate or start deleting a job: stop its live attempts and take it off the schedule.
-- KEYS: 1 job, 2 job attempts, 3 leases, 4 offers, 5 pool job set.
-- ARGV: 1 target ("completed" | "deleting"), 2 now (ISO), 3 etag, 4 terminate reason, 5 failureInfo JSON.
-- Returns {"ok"} | {"nojob"} | {"state", current state}.
local job = KEYS[1]
local state = redis.call('HGET', job, 'state')
if not state then return {'nojob'} end
if state == 'deleting' then return {'state', state} end
if state == 'completed' and ARGV[1] == 'completed' then return {'state', state} end
local now = ARGV[2]
for _, attempt in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local task = redis.call('HGET', attempt, 'task')
  redis.call('HINCRBY', redis.call('HGET', attempt, 'node'), 'used', -tonumber(redis.call('HGET', attempt, 'slots')))
  redis.call('SREM', redis.call('HGET', attempt, 'node_attempts'), attempt)
  redis.call('ZREM', KEYS[3], attempt)
  redis.call('ZREM', KEYS[4], attempt)
  redis.call('HSET', attempt, 'state', 'done')
  redis.call('EXPIRE', attempt, 86400)
  redis.call('HDEL', task, 'attempt')
  if redis.call('HGET', task, 'state') == 'running' then
    redis.call('HSET', task, 'pstate', 'running', 'pstt', redis.call('HGET', task, 'stt'), 'state', 'completed',
      'stt', now, 'end', now, 'result', 'failure', 'failure', ARGV[5], 'modified', now, 'etag', ARGV[3])
    redis.call('HINCRBY', job, 'n_running', -1)
    redis.call('HINCRBY', job, 'n_completed', 1)
    redis.call('HINCRBY', job, 'n_failed', 1)
  end
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[5], redis.call('HGET', job, 'key'))
redis.call('HSET', job, 'pstate', state, 'pstt', redis.call('HGET', job, 'stt'), 'state', ARGV[1], 'stt', now,
  'modified', now, 'etag', ARGV[3])
if ARGV[1] == 'completed' then redis.call('HSET', job, 'end', now, 'reason', ARGV[4]) end
return {'ok'}
