-- Offer queued tasks of one job to one node: the scheduler's compare-and-set.
-- KEYS: 1 node, 2 node attempts, 3 offers, 4 job, 5 job queue, 6 job attempts, 7 pool job set.
-- ARGV: 1 now (ms), 2 node id, then triples (task hash key, attempt hash key, attempt id).
-- A triple is placed only if the node is schedulable with enough free slots, the job is
-- active and the task is still queued. Returns the attempt ids placed.
local node, job = KEYS[1], KEYS[4]
local nstate = redis.call('HGET', node, 'state')
if nstate ~= 'idle' and nstate ~= 'running' then return {} end
if redis.call('HGET', node, 'scheduling') == 'disabled' then return {} end
if redis.call('HGET', job, 'state') ~= 'active' then return {} end
local free = tonumber(redis.call('HGET', node, 'slots')) - tonumber(redis.call('HGET', node, 'used'))
local placed = {}
for i = 3, #ARGV, 3 do
  local task_key, attempt_key, attempt_id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local slots = tonumber(redis.call('HGET', task_key, 'slots') or '1')
  local fits = slots <= free
  if redis.call('HGET', task_key, 'exclusive') == '1' then
    -- A task that runs alone (a runExclusive job manager) takes every slot of an otherwise idle node.
    slots = tonumber(redis.call('HGET', node, 'slots'))
    fits = free == slots
  end
  local queued = redis.call('ZSCORE', KEYS[5], task_key)
  if queued and fits and redis.call('HGET', task_key, 'state') == 'active' then
    redis.call('ZREM', KEYS[5], task_key)
    redis.call('HSET', task_key, 'attempt', attempt_key)
    redis.call('HSET', attempt_key, 'id', attempt_id, 'state', 'offered', 'task', task_key, 'job', job,
      'queue', KEYS[5], 'pool_jobs', KEYS[7], 'job_attempts', KEYS[6], 'node', node, 'node_id', ARGV[2],
      'node_attempts', KEYS[2], 'slots', slots, 'offered', ARGV[1])
    redis.call('SADD', KEYS[2], attempt_key)
    redis.call('SADD', KEYS[6], attempt_key)
    redis.call('ZADD', KEYS[3], ARGV[1], attempt_key)
    redis.call('HINCRBY', node, 'used', slots)
    free = free - slots
    placed[#placed + 1] = attempt_id
  end
end
if redis.call('ZCARD', KEYS[5]) == 0 then redis.call('ZREM', KEYS[7], redis.call('HGET', job, 'key')) end
return placed
