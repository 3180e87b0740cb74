-- Read hashes together with the hash each one names in a field, in one round trip; changes nothing.
-- KEYS: the hashes. ARGV: 1 the field that names the linked hash.
-- Returns, per key, {its fields, the linked hash's fields} as flat lists (empty when absent).
local out = {}
for i, key in ipairs(KEYS) do
  local linked = redis.call('HGET', key, ARGV[1])
  local linked_fields = {}
  if linked then linked_fields = redis.call('HGETALL', linked) end
  out[i] = {redis.call('HGETALL', key), linked_fields}
end
return out
