-- Delete a task that holds no attempt: its record, its place in the job's indexes and in the dependents sets
-- of the names it waits for, and its share of the counts.
-- KEYS: 1 task, 2 job, 3 job task index, 4 job queue, 5 task lifetime deadlines, 6 job dependents prefix.
-- ARGV: 1 task index member, then the dependency names the task waits for.
-- Returns {"ok"} | {"missing"} | {"busy"} (an attempt holds it: stop that first).
local task, job = KEYS[1], KEYS[2]
local state = redis.call('HGET', task, 'state')
if not state then return {'missing'} end
if redis.call('HEXISTS', task, 'attempt') == 1 then return {'busy'} end
if state == 'active' then
  redis.call('HINCRBY', job, 'n_active', -1)
elseif state == 'completed' then
  redis.call('HINCRBY', job, 'n_completed', -1)
  if redis.call('HGET', task, 'result') == 'success' then
    redis.call('HINCRBY', job, 'n_succeeded', -1)
  else
    redis.call('HINCRBY', job, 'n_failed', -1)
  end
end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], task)
redis.call('ZREM', KEYS[5], task)
for i = 2, #ARGV do redis.call('SREM', KEYS[6] .. ARGV[i], ARGV[1]) end
redis.call('DEL', task)
return {'ok'}
