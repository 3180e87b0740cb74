-- The head of a job's queue with what placement reads, in one round trip; changes nothing.
-- KEYS: 1 job hash, 2 job queue. ARGV: 1 how many queued tasks, 2 how many job fields follow,
-- then the job's field names, then the field names read from each queued task.
-- Returns {the job's field values, the queued task keys in order, per task its field values}.
local count, job_fields = tonumber(ARGV[1]), tonumber(ARGV[2])
local job_names, task_names = {}, {}
for i = 3, 2 + job_fields do job_names[#job_names + 1] = ARGV[i] end
for i = 3 + job_fields, #ARGV do task_names[#task_names + 1] = ARGV[i] end
local queued = {}
if count > 0 then queued = redis.call('ZRANGE', KEYS[2], 0, count - 1) end
local rows = {}
for i, task in ipairs(queued) do rows[i] = redis.call('HMGET', task, unpack(task_names)) end
return {redis.call('HMGET', KEYS[1], unpack(job_names)), queued, rows}
