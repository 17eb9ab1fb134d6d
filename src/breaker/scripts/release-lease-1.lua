-- release-lease-1.lua: gives the half-open probe lease back, only if the caller holds it (a
-- lease that expired and was taken by another instance must not be deleted by its old holder).
--
-- KEYS[1]  lease key   {<namespace>:breaker:<key>}:lease
-- ARGV[1]  token       id of the releasing instance
-- Returns  1 when the lease was released, 0 when the caller did not hold it
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
