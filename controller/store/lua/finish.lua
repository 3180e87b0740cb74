-- The claiming node reports an attempt's end: the task completes or goes back to the queue.
-- KEYS: 1 attempt, 2 leases, 3 job dependency states, 4 job dependents prefix, 5 job task prefix,
--       6 terminating jobs (a job that completes by onAllTasksComplete with releases to run terminates),
--       7 offers.
-- ARGV: 1 node id, 2 mode ("completed" | "retry"), 3 result ("success" | "failure" | ""), 4 now (ISO),
--       5 job etag, 6 dependency action of a completed task ("satisfy" | "block"),
--       then task field/value pairs (an empty value deletes the field).
-- A completed task settles its dependency names (its key and, for an integer id, `#n`): with "satisfy"
-- each waiting dependent counts one wait less and joins the queue at zero; with "block" they are blocked.
-- Returns {"ok", "job-completed" | "job-terminating" | "", queued} or {"refused", reason}, where queued
-- is "1" when a task joined a queue (the retry, or a dependent released), else "0".
local attempt = KEYS[1]

local function settle(name, action, queue, pool_jobs, job)
  local queued = 0
  redis.call('HSET', KEYS[3], name, action == 'satisfy' and 'satisfied' or 'blocked')
  local dependents = KEYS[4] .. name
  for _, member in ipairs(redis.call('SMEMBERS', dependents)) do
    local child = KEYS[5] .. member
    if redis.call('EXISTS', child) == 0 then
      -- the dependent was deleted meanwhile
    elseif action ~= 'satisfy' then
      redis.call('HSET', child, 'blocked', '1')
    elseif redis.call('HINCRBY', child, 'waiting', -1) <= 0 and redis.call('HGET', child, 'blocked') ~= '1'
        and redis.call('HGET', child, 'state') == 'active' then
      redis.call('ZADD', queue, redis.call('HGET', child, 'seq'), child)
      queued = queued + 1
      if redis.call('HGET', job, 'state') == 'active' then
        redis.call('ZADD', pool_jobs, 'NX', redis.call('HGET', job, 'order'), redis.call('HGET', job, 'key'))
      end
    end
  end
  redis.call('DEL', dependents)
  return queued
end

if redis.call('HGET', attempt, 'state') ~= 'running' then return {'refused', 'attempt is not running'} end
if redis.call('HGET', attempt, 'node_id') ~= ARGV[1] then return {'refused', 'attempt belongs to another node'} end
local task = redis.call('HGET', attempt, 'task')
local tstate = redis.call('HGET', task, 'state')
if redis.call('HGET', task, 'attempt') ~= attempt or (tstate ~= 'running' and tstate ~= 'preparing') then
  return {'refused', 'task moved on'}
end
local job, node = redis.call('HGET', attempt, 'job'), redis.call('HGET', attempt, 'node')
redis.call('HINCRBY', node, 'used', -tonumber(redis.call('HGET', attempt, 'slots')))
redis.call('SREM', redis.call('HGET', attempt, 'node_attempts'), attempt)
redis.call('SREM', redis.call('HGET', attempt, 'job_attempts'), attempt)
redis.call('ZREM', KEYS[2], attempt)
redis.call('HSET', attempt, 'state', 'done')
redis.call('EXPIRE', attempt, 86400)
for member in string.gmatch(redis.call('HGET', task, 'gang') or '', '[^,]+') do
  -- The other instances of a multi-instance task end with its primary: their nodes are told to stop them.
  if member ~= attempt and redis.call('HGET', member, 'state') ~= 'done' and redis.call('EXISTS', member) == 1 then
    redis.call('HINCRBY', redis.call('HGET', member, 'node'), 'used', -tonumber(redis.call('HGET', member, 'slots')))
    redis.call('SREM', redis.call('HGET', member, 'node_attempts'), member)
    redis.call('SREM', redis.call('HGET', member, 'job_attempts'), member)
    redis.call('ZREM', KEYS[2], member)
    redis.call('ZREM', KEYS[7], member)
    redis.call('HSET', member, 'state', 'done', 'ended', ARGV[4])
    redis.call('EXPIRE', member, 86400)
  end
end
redis.call('HDEL', task, 'attempt', 'gang')
redis.call('HSET', task, 'pstate', redis.call('HGET', task, 'state'), 'pstt', redis.call('HGET', task, 'stt'))
for i = 7, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', task, ARGV[i]) else redis.call('HSET', task, ARGV[i], ARGV[i + 1]) end
end
redis.call('HINCRBY', job, 'n_running', -1)
if ARGV[2] == 'retry' then
  redis.call('HINCRBY', job, 'n_active', 1)
  redis.call('ZADD', redis.call('HGET', attempt, 'queue'), redis.call('HGET', task, 'seq'), task)
  if redis.call('HGET', job, 'state') == 'active' then
    redis.call('ZADD', redis.call('HGET', attempt, 'pool_jobs'), 'NX', redis.call('HGET', job, 'order'),
      redis.call('HGET', job, 'key'))
  end
  return {'ok', '', '1'}
end
redis.call('HINCRBY', job, 'n_completed', 1)
local queue, pool_jobs = redis.call('HGET', attempt, 'queue'), redis.call('HGET', attempt, 'pool_jobs')
local released = settle(string.sub(task, #KEYS[5] + 1), ARGV[6], queue, pool_jobs, job)
local number = redis.call('HGET', task, 'num')
if number then released = released + settle('#' .. number, ARGV[6], queue, pool_jobs, job) end
local queued = released > 0 and '1' or '0'
if ARGV[3] == 'success' then
  redis.call('HINCRBY', job, 'n_succeeded', 1)
  redis.call('HINCRBY', node, 'total_ok', 1)
else
  redis.call('HINCRBY', job, 'n_failed', 1)
end
local idle = tonumber(redis.call('HGET', job, 'n_active')) == 0 and tonumber(redis.call('HGET', job, 'n_running')) == 0
if idle and redis.call('HGET', job, 'on_all_complete') == 'terminatejob' and redis.call('HGET', job, 'state') == 'active' then
  local now = ARGV[4]
  if redis.call('HGET', job, 'release') == '1' and redis.call('HLEN', job .. ':prepstate') > 0 then
    redis.call('HSET', job, 'pstate', 'active', 'pstt', redis.call('HGET', job, 'stt'), 'state', 'terminating',
      'stt', now, 'reason', 'AllTasksComplete', 'modified', now, 'etag', ARGV[5])
    redis.call('SADD', KEYS[6], redis.call('HGET', job, 'key'))
    return {'ok', 'job-terminating', queued}
  end
  redis.call('HSET', job, 'pstate', 'active', 'pstt', redis.call('HGET', job, 'stt'), 'state', 'completed',
    'stt', now, 'end', now, 'reason', 'AllTasksComplete', 'modified', now, 'etag', ARGV[5])
  return {'ok', 'job-completed', queued}
end
return {'ok', '', queued}
