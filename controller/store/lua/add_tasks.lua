-- Add tasks to a job that accepts them.
-- KEYS: 1 job, 2 job task index, 3 job queue, 4 pool job set, 5 sequence counter, 6 task lifetime deadlines,
--       7 job dependency states, 8 job dependents prefix.
-- ARGV: 1 expected pool key, 2 job order score, 3 lifetime deadline (ms),
--       then triples (task hash key, index member, JSON object of fields).
-- A task's `_deps` field (comma-separated dependency names) is not stored: each name not yet satisfied
-- (not completed yet, or blocked by a parent that failed) makes the task wait (`waiting` counts them,
-- and the task joins that name's dependents set). Only a task that waits for nothing joins the queue.
-- Returns {"nojob"} | {"state", job state} | {"retry"} | {"ok", result per task: "" added or the existing id}.
local job = KEYS[1]
local state = redis.call('HGET', job, 'state')
if not state then return {'nojob'} end
if state == 'completed' or state == 'terminating' or state == 'deleting' then return {'state', state} end
if redis.call('HGET', job, 'pool') ~= ARGV[1] then return {'retry'} end
local results, added = {}, 0
for i = 4, #ARGV, 3 do
  local task_key, member = ARGV[i], ARGV[i + 1]
  if redis.call('EXISTS', task_key) == 1 then
    results[#results + 1] = redis.call('HGET', task_key, 'id')
  else
    local fields = cjson.decode(ARGV[i + 2])
    local deps = fields['_deps'] or ''
    fields['_deps'] = nil
    local seq = redis.call('INCR', KEYS[5])
    local flat = {'seq', seq}
    for name, value in pairs(fields) do flat[#flat + 1] = name; flat[#flat + 1] = value end
    local waiting = 0
    for name in string.gmatch(deps, '[^,]+') do
      if redis.call('HGET', KEYS[7], name) ~= 'satisfied' then
        redis.call('SADD', KEYS[8] .. name, member)
        waiting = waiting + 1
      end
    end
    flat[#flat + 1] = 'waiting'; flat[#flat + 1] = waiting
    redis.call('HSET', task_key, unpack(flat))
    redis.call('ZADD', KEYS[2], 0, member)
    if waiting == 0 then redis.call('ZADD', KEYS[3], seq, task_key) end
    redis.call('ZADD', KEYS[6], ARGV[3], task_key)
    results[#results + 1] = ''
    added = added + 1
  end
end
if added > 0 then
  redis.call('HINCRBY', job, 'n_active', added)
  if state == 'active' then redis.call('ZADD', KEYS[4], 'NX', ARGV[2], redis.call('HGET', job, 'key')) end
end
return {'ok', unpack(results)}
