-- The claiming node reports an attempt's end: the task completes or goes back to the queue.
-- KEYS: 1 attempt, 2 leases, 3 job dependency states, 4 job dependents prefix, 5 job task prefix,
--       6 terminating jobs (a job that completes by onAllTasksComplete with releases to run terminates),
--       7 offers.
-- ARGV: 1 node id, 2 mode ("completed" | "retry"), 3 result ("success" | "failure" | ""), 4 now (ISO),
--       5 job etag, 6 dependency action of a completed task ("satisfy" | "block"),
--       then task field/value pairs (an empty value deletes the field).
-- A completed task settles its dependency names (its key and, for an integer id, `#n`): with "satisfy"
-- each waiting dependent counts one wait less and joins the queue at zero; with "block" the name is
-- marked blocked and its dependents keep waiting for it, so that a reactivated parent that later
-- succeeds still releases them.
-- Returns {"ok", "job-completed" | "job-terminating" | "", queued} or {"refused", reason}, where queued
-- is "1" when a task joined a queue (the retry, or a dependent released), else "0".
local attempt = KEYS[1]

local function settle(name, action, queue)
  if action ~= 'satisfy' then
    redis.call('HSET', KEYS[3], name, 'blocked')
    return 0
  end
  local queued = 0
  redis.call('HSET', KEYS[3], name, 'satisfied')
  local dependents = KEYS[4] .. name
  for _, member in ipairs(redis.call('SMEMBERS', dependents)) do
    local child = KEYS[5] .. member
    if redis.call('EXISTS', child) == 0 then
      -- the dependent was deleted meanwhile
    elseif redis.call('HINCRBY', child, 'waiting', -1) <= 0 then
      local c = redis.call('HMGET', child, 'state', 'seq')
      if c[1] == 'active' then
        redis.call('ZADD', queue, c[2], child)
        queued = queued + 1
      end
    end
  end
  redis.call('DEL', dependents)
  return queued
end

local a = redis.call('HMGET', attempt, 'state', 'node_id', 'task', 'job', 'node', 'slots', 'node_attempts',
  'job_attempts', 'queue', 'pool_jobs')
if a[1] ~= 'running' then return {'refused', 'attempt is not running'} end
if a[2] ~= ARGV[1] then return {'refused', 'attempt belongs to another node'} end
local task, job, node, queue, pool_jobs = a[3], a[4], a[5], a[9], a[10]
local t = redis.call('HMGET', task, 'state', 'attempt', 'stt', 'gang', 'seq', 'num')
local tstate = t[1]
if t[2] ~= attempt or (tstate ~= 'running' and tstate ~= 'preparing') then
  return {'refused', 'task moved on'}
end
redis.call('HINCRBY', node, 'used', -tonumber(a[6]))
redis.call('SREM', a[7], attempt)
redis.call('SREM', a[8], attempt)
redis.call('ZREM', KEYS[2], attempt)
redis.call('HSET', attempt, 'state', 'done')
redis.call('EXPIRE', attempt, 86400)
for member in string.gmatch(t[4] or '', '[^,]+') do
  -- The other instances of a multi-instance task end with its primary: their nodes are told to stop them.
  if member ~= attempt and redis.call('HGET', member, 'state') ~= 'done' and redis.call('EXISTS', member) == 1 then
    local m = redis.call('HMGET', member, 'node', 'slots', 'node_attempts', 'job_attempts')
    redis.call('HINCRBY', m[1], 'used', -tonumber(m[2]))
    redis.call('SREM', m[3], member)
    redis.call('SREM', m[4], member)
    redis.call('ZREM', KEYS[2], member)
    redis.call('ZREM', KEYS[7], member)
    redis.call('HSET', member, 'state', 'done', 'ended', ARGV[4])
    redis.call('EXPIRE', member, 86400)
  end
end
redis.call('HDEL', task, 'attempt', 'gang')
redis.call('HSET', task, 'pstate', tstate, 'pstt', t[3])
for i = 7, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', task, ARGV[i]) else redis.call('HSET', task, ARGV[i], ARGV[i + 1]) end
end
local function requeue_job()
  -- An active job with queued work is in its pool's set of jobs to place.
  local j = redis.call('HMGET', job, 'state', 'order', 'key')
  if j[1] == 'active' then redis.call('ZADD', pool_jobs, 'NX', j[2], j[3]) end
end
redis.call('HINCRBY', job, 'n_running', -1)
if ARGV[2] == 'retry' then
  redis.call('HINCRBY', job, 'n_active', 1)
  redis.call('ZADD', queue, t[5], task)
  requeue_job()
  return {'ok', '', '1'}
end
redis.call('HINCRBY', job, 'n_completed', 1)
local released = settle(string.sub(task, #KEYS[5] + 1), ARGV[6], queue)
if t[6] then released = released + settle('#' .. t[6], ARGV[6], queue) end
local queued = released > 0 and '1' or '0'
if released > 0 then requeue_job() end
if ARGV[3] == 'success' then
  redis.call('HINCRBY', job, 'n_succeeded', 1)
  redis.call('HINCRBY', node, 'total_ok', 1)
else
  redis.call('HINCRBY', job, 'n_failed', 1)
end
local j = redis.call('HMGET', job, 'n_active', 'n_running', 'on_all_complete', 'state', 'release', 'stt', 'key')
local idle = tonumber(j[1]) == 0 and tonumber(j[2]) == 0
if idle and j[3] == 'terminatejob' and j[4] == 'active' then
  local now = ARGV[4]
  if j[5] == '1' and redis.call('HLEN', job .. ':prepstate') > 0 then
    redis.call('HSET', job, 'pstate', 'active', 'pstt', j[6], 'state', 'terminating',
      'stt', now, 'reason', 'AllTasksComplete', 'modified', now, 'etag', ARGV[5])
    redis.call('SADD', KEYS[6], j[7])
    return {'ok', 'job-terminating', queued}
  end
  redis.call('HSET', job, 'pstate', 'active', 'pstt', j[6], 'state', 'completed',
    'stt', now, 'end', now, 'reason', 'AllTasksComplete', 'modified', now, 'etag', ARGV[5])
  return {'ok', 'job-completed', queued}
end
return {'ok', '', queued}
