-- release-lease-1.lua: gives back a fill lease the caller holds (compare-and-delete), after a
-- loader failed or returned nothing to cache, and wakes the instances waiting for that key.
--
-- KEYS[1]  lease key         {<ns>}:l:<key>
-- ARGV[1]  token             the fill's lease token
-- ARGV[2]  channel           the namespace's bus channel, or '' for no bus
-- ARGV[3]  message           what to publish there (a wake-up for the key)
-- Returns  1 when the lease was the caller's and is released, 0 otherwise
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return 1
