-- Offer a multi-instance task to several nodes at once, all or nothing: one attempt per instance, the
-- first (on the first node) its primary. A node takes one slot of each instance it runs.
-- KEYS: 1 job, 2 job queue, 3 job attempts, 4 pool job set, 5 offers, 6 task.
-- ARGV: 1 now (ms), then quadruples (node id, node hash key, node attempts key, attempt id),
--       then the attempt key prefix as the last argument.
-- Returns the attempt ids placed (all of them, or none).
local job, task = KEYS[1], KEYS[6]
if redis.call('HGET', job, 'state') ~= 'active' then return {} end
if not redis.call('ZSCORE', KEYS[2], task) or redis.call('HGET', task, 'state') ~= 'active' then return {} end
local prefix = ARGV[#ARGV]
local members = {}
for i = 2, #ARGV - 1, 4 do
  local node = ARGV[i + 1]
  local nstate = redis.call('HGET', node, 'state')
  if (nstate ~= 'idle' and nstate ~= 'running') or redis.call('HGET', node, 'scheduling') == 'disabled' then
    return {}
  end
  if tonumber(redis.call('HGET', node, 'slots')) - tonumber(redis.call('HGET', node, 'used')) < 1 then return {} end
  members[#members + 1] = {id = ARGV[i], node = node, node_attempts = ARGV[i + 2], attempt = ARGV[i + 3]}
end
local primary = prefix .. members[1].attempt
local ids, keys = {}, {}
for index, member in ipairs(members) do
  local attempt_key = prefix .. member.attempt
  redis.call('HSET', attempt_key, 'id', member.attempt, 'state', 'offered', 'task', task, 'job', job,
    'queue', KEYS[2], 'pool_jobs', KEYS[4], 'job_attempts', KEYS[3], 'node', member.node, 'node_id', member.id,
    'node_attempts', member.node_attempts, 'slots', 1, 'offered', ARGV[1], 'gang', primary, 'subtask', index - 1)
  redis.call('SADD', member.node_attempts, attempt_key)
  redis.call('SADD', KEYS[3], attempt_key)
  redis.call('ZADD', KEYS[5], ARGV[1], attempt_key)
  redis.call('HINCRBY', member.node, 'used', 1)
  ids[#ids + 1] = member.attempt
  keys[#keys + 1] = attempt_key
end
redis.call('ZREM', KEYS[2], task)
redis.call('HSET', task, 'attempt', primary, 'gang', table.concat(keys, ','), 'subtasks', table.concat(keys, ','),
  'coordinated', 0)
redis.call('HDEL', task, 'gang_failed')
return ids
