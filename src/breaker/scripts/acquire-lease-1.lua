-- acquire-lease-1.lua: takes the fleet-wide half-open probe lease. Re-entrant: the holder asking
-- again (a second trial slot on the same instance) keeps the lease and renews its lifetime.
--
-- KEYS[1]  lease key   {<namespace>:breaker:<key>}:lease
-- ARGV[1]  token       id of the asking instance
-- ARGV[2]  lease ttl   milliseconds the lease lives unless released (it outlives a crashed holder
--                      by no more than this)
-- Returns  1 when the asking instance holds the lease now, 0 when another instance does
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
