-- Create an entity unless one with the same key exists.
-- KEYS[1] entity hash, KEYS[2] lexical index; ARGV[1] index member, ARGV[2..] field/value pairs.
-- Returns {"ok"} or {"exists", original id}.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists', redis.call('HGET', KEYS[1], 'id')}
end
local pairs_ = {}
for i = 2, #ARGV do pairs_[#pairs_ + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(pairs_))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return {'ok'}
