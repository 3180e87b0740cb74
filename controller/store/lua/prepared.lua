-- A job's preparation task succeeded on a node: the job's tasks there that waited in "preparing" run.
-- KEYS: 1 node attempts, 2 job. ARGV: 1 now (ISO), 2 etag. Returns how many tasks moved to running.
local moved = 0
for _, attempt in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('HGET', attempt, 'job') == KEYS[2] and redis.call('HGET', attempt, 'state') == 'running' then
    local task = redis.call('HGET', attempt, 'task')
    local primary = redis.call('HGET', attempt, 'gang') or attempt
    if redis.call('HGET', task, 'state') == 'preparing' and redis.call('HGET', task, 'attempt') == primary then
      redis.call('HSET', task, 'pstate', 'preparing', 'pstt', redis.call('HGET', task, 'stt'), 'state', 'running',
        'stt', ARGV[1], 'modified', ARGV[1], 'etag', ARGV[2])
      moved = moved + 1
    end
  end
end
return moved
