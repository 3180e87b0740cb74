-- Add tasks to a job that accepts them.
-- KEYS: 1 job, 2 job task index, 3 job queue, 4 pool job set, 5 sequence counter, 6 task lifetime deadlines.
-- ARGV: 1 expected pool key, 2 job order score, 3 lifetime deadline (ms),
--       then triples (task hash key, index member, JSON object of fields).
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
    local seq = redis.call('INCR', KEYS[5])
    local flat = {'seq', seq}
    for name, value in pairs(fields) do flat[#flat + 1] = name; flat[#flat + 1] = value end
    redis.call('HSET', task_key, unpack(flat))
    redis.call('ZADD', KEYS[2], 0, member)
    redis.call('ZADD', KEYS[3], seq, task_key)
    redis.call('ZADD', KEYS[6], ARGV[3], task_key)
    results[#results + 1] = ''
    added = added + 1
  end
end
if added > 0 then
  redis.call('HINCRBY', job, 'n_active', added)
  redis.call('ZADD', KEYS[4], 'NX', ARGV[2], redis.call('HGET', job, 'key'))
end
return {'ok', unpack(results)}
