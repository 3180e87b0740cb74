-- A node claims an offered attempt: offered -> running, and its task active -> running, or active ->
-- preparing when the job's preparation task must succeed on the node first and has not yet (job field
-- `prep` is "wait"; the job's `<job hash key>:prepstate` hash holds each node's preparation state).
-- An instance of a multi-instance task (field `gang`: its primary attempt) moves the task when it is
-- the first of its gang to be claimed; the task then shows the primary's node.
-- KEYS: 1 attempt, 2 offers, 3 leases. ARGV: 1 node id, 2 now (ISO), 3 lease expiry (ms), 4 new etag.
-- Returns {"ok", task hash key, task, job and attempt fields (flat lists, as claimed)} or {"refused", reason}.
local attempt = KEYS[1]
local a = redis.call('HMGET', attempt, 'state', 'node_id', 'task', 'gang', 'job', 'node')
if a[1] ~= 'offered' then return {'refused', 'attempt is ' .. tostring(a[1])} end
if a[2] ~= ARGV[1] then return {'refused', 'attempt belongs to another node'} end
local task, job = a[3], a[5]
local primary = a[4] or attempt
local t = redis.call('HMGET', task, 'attempt', 'state', 'stt', 'retries')
if t[1] ~= primary then return {'refused', 'task moved on'} end
local now, current = ARGV[2], t[2]
if current == 'active' then
  local next_state = 'running'
  if redis.call('HGET', job, 'prep') == 'wait' and redis.call('HGET', job .. ':prepstate', ARGV[1]) ~= 'success' then
    next_state = 'preparing'
  end
  local node_id = a[4] and redis.call('HGET', primary, 'node_id') or a[2]
  redis.call('HSET', task, 'pstate', 'active', 'pstt', t[3], 'state', next_state, 'stt', now, 'start', now,
    'node', node_id, 'modified', now, 'etag', ARGV[4])
  if tonumber(t[4] or '0') > 0 then redis.call('HSET', task, 'last_retry', now) end
  redis.call('HINCRBY', job, 'n_active', -1)
  redis.call('HINCRBY', job, 'n_running', 1)
elseif not a[4] or (current ~= 'running' and current ~= 'preparing') then
  return {'refused', 'task moved on'}
end
redis.call('HINCRBY', a[6], 'total_run', 1)
redis.call('HSET', attempt, 'state', 'running', 'started', now)
redis.call('ZREM', KEYS[2], attempt)
redis.call('ZADD', KEYS[3], ARGV[3], attempt)
return {'ok', task, redis.call('HGETALL', task), redis.call('HGETALL', job), redis.call('HGETALL', attempt)}
