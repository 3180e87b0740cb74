-- A node reports in: register it on first contact, follow its readiness, renew its attempts' leases,
-- and hand it any pending command.
-- KEYS: 1 node, 2 pool node index, 3 leases, 4 removed-node set, 5 the node's attempts.
-- ARGV: 1 node id, 2 pool key, 3 pool id, 4 now (ISO), 5 now (ms), 6 lease expiry (ms), 7 slots,
--       8 file server URL, 9 ip, 10 agent version, 11 boot time (ISO), 12 etag,
--       13 readiness state ("idle" when ready, else starting | waitingforstarttask | starttaskfailed),
--       14 start task info (JSON or ""), 15 container runtime, 16 applied pool config version,
--       17 "1" when a claim of the node was unanswered as it built the heartbeat (its list may lack
--       attempts it just claimed, so no stop is confirmed), then the attempt hash keys it runs.
-- Returns {command ("" | "reboot" | "leave"), n, the n attempt keys it should no longer run...,
--          then the keys of its stopping attempts it no longer runs (their stop is confirmed)}.
local node = KEYS[1]
local now, ready = ARGV[4], ARGV[13]
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then
  local all = {'leave', #ARGV - 17}
  for i = 18, #ARGV do all[#all + 1] = ARGV[i] end
  return all
end
local starting = {starting = true, waitingforstarttask = true, starttaskfailed = true, unknown = true}
if redis.call('EXISTS', node) == 0 then
  redis.call('HSET', node, 'id', ARGV[1], 'state', ready, 'stt', now, 'alloc', now, 'used', 0,
    'total_run', 0, 'total_ok', 0, 'scheduling', 'enabled', 'etag', ARGV[12])
else
  local state = redis.call('HGET', node, 'state')
  local rebooted = state == 'rebooting' and redis.call('HGET', node, 'boot') ~= ARGV[11]
  local follows = rebooted or (ready ~= 'idle' and state ~= ready and (state == 'idle' or starting[state]))
    or (ready == 'idle' and starting[state])
  if follows then redis.call('HSET', node, 'state', ready, 'stt', now, 'etag', ARGV[12]) end
end
redis.call('HSET', node, 'pool', ARGV[2], 'pool_id', ARGV[3], 'seen', ARGV[5], 'slots', ARGV[7],
  'file_url', ARGV[8], 'ip', ARGV[9], 'version', ARGV[10], 'boot', ARGV[11], 'start_task', ARGV[14],
  'runtime', ARGV[15], 'config_version', ARGV[16])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
local command = redis.call('HGET', node, 'command') or ''
if command == 'reboot' then redis.call('HDEL', node, 'command') end
local result = {command, 0}
local listed = {}
for i = 18, #ARGV do
  local attempt = ARGV[i]
  listed[attempt] = true
  local astate = redis.call('HGET', attempt, 'state')
  local mine = redis.call('HGET', attempt, 'node_id') == ARGV[1]
  if astate == 'running' and mine then
    redis.call('ZADD', KEYS[3], 'XX', ARGV[6], attempt)
  elseif not (astate == 'offered' and mine) then
    result[#result + 1] = attempt
  end
end
result[2] = #result - 2
if ARGV[17] == '1' then return result end
for _, attempt in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  if not listed[attempt] and redis.call('HGET', attempt, 'state') == 'stopping' then
    result[#result + 1] = attempt
  end
end
return result
