-- Terminate or start deleting a job: stop its live attempts and take it off the schedule.
-- A job that ends with a release task to run (field `release`, and a preparation that ran on some node)
-- joins the set of jobs waiting for their releases (KEYS[6]) and, when terminated, becomes
-- "terminating" instead of "completed"; the reconciler completes it (or, when it is being deleted,
-- deletes it) once every release ran.
-- KEYS: 1 job, 2 job attempts, 3 leases, 4 offers, 5 pool job set, 6 terminating jobs.
-- ARGV: 1 target ("completed" | "deleting"), 2 now (ISO), 3 etag, 4 terminate reason, 5 failureInfo JSON.
-- Returns {"ok"} | {"ok", "releasing"} (releases run first) | {"nojob"} | {"state", current state}.
local job = KEYS[1]
local state = redis.call('HGET', job, 'state')
if not state then return {'nojob'} end
if state == 'deleting' then return {'state', state} end
if (state == 'completed' or state == 'terminating') and ARGV[1] == 'completed' then return {'state', state} end
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
  local tstate = redis.call('HGET', task, 'state')
  if tstate == 'running' or tstate == 'preparing' then
    redis.call('HSET', task, 'pstate', tstate, 'pstt', redis.call('HGET', task, 'stt'), 'state', 'completed',
      'stt', now, 'end', now, 'result', 'failure', 'failure', ARGV[5], 'modified', now, 'etag', ARGV[3])
    redis.call('HINCRBY', job, 'n_running', -1)
    redis.call('HINCRBY', job, 'n_completed', 1)
    redis.call('HINCRBY', job, 'n_failed', 1)
  end
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[5], redis.call('HGET', job, 'key'))
local target = ARGV[1]
local releases = redis.call('HGET', job, 'release') == '1' and redis.call('HLEN', job .. ':prepstate') > 0
  and state ~= 'completed'
if releases then redis.call('SADD', KEYS[6], redis.call('HGET', job, 'key')) end
if target == 'completed' and releases then target = 'terminating' end
redis.call('HSET', job, 'pstate', state, 'pstt', redis.call('HGET', job, 'stt'), 'state', target, 'stt', now,
  'modified', now, 'etag', ARGV[3])
if target ~= 'deleting' then redis.call('HSET', job, 'reason', ARGV[4]) end
if target == 'completed' then redis.call('HSET', job, 'end', now) end
if releases then return {'ok', 'releasing'} end
return {'ok'}
