-- Change an entity's fields if one of its fields holds one of the expected values, and its ETag is the one
-- expected (when one is).
-- KEYS: 1 entity hash. ARGV: 1 field to check, 2 expected values (comma-separated, "*" for any existing
-- entity), 3 the ETag expected ('' for any), then field/value pairs.
-- Returns {"ok"} | {"missing"} | {"state", current value} | {"etag", current ETag}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if ARGV[2] ~= '*' and not string.find(',' .. ARGV[2] .. ',', ',' .. current .. ',', 1, true) then
  return {'state', current}
end
if ARGV[3] ~= '' then
  local etag = redis.call('HGET', KEYS[1], 'etag') or ''
  if etag ~= ARGV[3] then return {'etag', etag} end
end
local pairs_ = {}
for i = 4, #ARGV do pairs_[#pairs_ + 1] = ARGV[i] end
if #pairs_ > 0 then redis.call('HSET', KEYS[1], unpack(pairs_)) end
return {'ok'}
