-- compare-and-set-map-1.lua: stores a new shard map if the stored one has the expected version,
-- and tells every subscribed router, in one atomic step (no router can read the new map without
-- the message being sent, or get the message before the map is readable).
--
-- KEYS[1]  map hash    {<namespace>:shard-map:<name>}:map, fields `version` and `map`
-- ARGV[1]  expected    the version the writer based its change on, or '' for "nothing stored yet"
-- ARGV[2]  version     the new map's version (a decimal integer)
-- ARGV[3]  map         the new map, JSON
-- ARGV[4]  channel     {<namespace>:shard-map:<name>}:events (with the connection's keyPrefix)
-- Returns  1 when stored (and published), 0 when the stored version was not the expected one
local current = redis.call('HGET', KEYS[1], 'version')
if current == false then
  current = ''
end
if current ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'map', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[2])
return 1
