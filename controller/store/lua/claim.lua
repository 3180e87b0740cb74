-- A node claims an offered attempt: offered -> running, and its task active -> running, or active ->
-- preparing when the job's preparation task must succeed on the node first and has not yet (job field
-- `prep` is "wait"; the job's `<job hash key>:prepstate` hash holds each node's preparation state).
-- An instance of a multi-instance task (field `gang`: its primary attempt) moves the task when it is
-- the first of its gang to be claimed; the task then shows the primary's node.
-- KEYS: 1 attempt, 2 offers, 3 leases. ARGV: 1 node id, 2 now (ISO), 3 lease expiry (ms), 4 new etag.
-- Returns {"ok", task hash key, task, job and attempt fields (flat lists, as claimed)} or {"refused", reason}.
local attempt = KEYS[1]
local astate = redis.call('HGET', attempt, 'state')
if astate ~= 'offered' then return {'refused', 'attempt is ' .. tostring(astate)} end
if redis.call('HGET', attempt, 'node_id') ~= ARGV[1] then return {'refused', 'attempt belongs to another node'} end
local task = redis.call('HGET', attempt, 'task')
local primary = redis.call('HGET', attempt, 'gang') or attempt
if redis.call('HGET', task, 'attempt') ~= primary then return {'refused', 'task moved on'} end
local now, job = ARGV[2], redis.call('HGET', attempt, 'job')
local current = redis.call('HGET', task, 'state')
local in_gang = redis.call('HEXISTS', attempt, 'gang') == 1
if current == 'active' then
  local next_state = 'running'
  if redis.call('HGET', job, 'prep') == 'wait' and redis.call('HGET', job .. ':prepstate', ARGV[1]) ~= 'success' then
    next_state = 'preparing'
  end
  redis.call('HSET', task, 'pstate', 'active', 'pstt', redis.call('HGET', task, 'stt'), 'state', next_state,
    'stt', now, 'start', now, 'node', redis.call('HGET', primary, 'node_id'), 'modified', now, 'etag', ARGV[4])
  if tonumber(redis.call('HGET', task, 'retries') or '0') > 0 then redis.call('HSET', task, 'last_retry', now) end
  redis.call('HINCRBY', job, 'n_active', -1)
  redis.call('HINCRBY', job, 'n_running', 1)
elseif not in_gang or (current ~= 'running' and current ~= 'preparing') then
  return {'refused', 'task moved on'}
end
redis.call('HINCRBY', redis.call('HGET', attempt, 'node'), 'total_run', 1)
redis.call('HSET', attempt, 'state', 'running', 'started', now)
redis.call('ZREM', KEYS[2], attempt)
redis.call('ZADD', KEYS[3], ARGV[3], attempt)
return {'ok', task, redis.call('HGETALL', task), redis.call('HGETALL', job), redis.call('HGETALL', attempt)}
