-- fill-2.lua: installs the value a fill loaded, only if the fill still holds the key's lease and
-- no tag it carries was invalidated since the lease was taken; then gives the lease back and tells
-- the other instances. This is the stale-set guard: a set, delete or clear that ran while the
-- loader was running deleted the lease, so the fill's (older) value is never installed.
--
-- KEYS[1]  value key         {<ns>}:v:<key>
-- KEYS[2]  lease key         {<ns>}:l:<key>
-- ARGV[1]  token             the fill's lease token
-- ARGV[2]  payload           the serialized envelope
-- ARGV[3]  lifetime          milliseconds the entry is kept (its ttl plus grace, plus slack)
-- ARGV[4]  expires at        client clock ms after which the entry is stale (field e)
-- ARGV[5]  tag key prefix    {<ns>}:t:
-- ARGV[6]  channel           the namespace's bus channel, or '' for no bus
-- ARGV[7]  message           what to publish there (keys only, never values)
-- ARGV[8..]  tag, version    pairs: each tag of the entry and its version when the lease was taken
-- Returns  1 when written; 0 when the lease is not the fill's any more; -1 when a tag was invalidated
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
local px = tonumber(ARGV[3])
local tags = {}
for i = 8, #ARGV, 2 do
  local key = ARGV[5] .. ARGV[i]
  local current = redis.call('GET', key)
  local version = tonumber(current or '0')
  if version ~= tonumber(ARGV[i + 1]) then
    redis.call('DEL', KEYS[2])
    return -1
  end
  -- A tag's version key outlives every entry carrying it, so that an expired-and-recreated
  -- version can never make an old entry valid again.
  if not current then
    redis.call('SET', key, '0', 'PX', px)
  elseif redis.call('PTTL', key) >= 0 and redis.call('PTTL', key) < px then
    redis.call('PEXPIRE', key, px)
  end
  tags[#tags + 1] = { ARGV[i], version }
end
redis.call('DEL', KEYS[1])
if #tags > 0 then
  redis.call('HSET', KEYS[1], 'd', ARGV[2], 'e', ARGV[4], 't', cjson.encode(tags))
else
  redis.call('HSET', KEYS[1], 'd', ARGV[2], 'e', ARGV[4])
end
redis.call('PEXPIRE', KEYS[1], px)
redis.call('DEL', KEYS[2])
if ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
return 1
