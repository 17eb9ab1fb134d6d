-- release-3.lua: gives leases back without waiting for them to expire (a worker closing past its
-- deadline, or a fetch whose reply came too late): each job whose lease token is the caller's
-- returns to waiting at its old position (its old score), and idle workers are woken. Not a stall.
--
-- KEYS[1]  wait       zset  id -> priority * 2^32 + seq
-- KEYS[2]  active     zset  id -> lease deadline
-- KEYS[3]  lease      hash  id -> lease token
-- ARGV[1]  channel    the queue's wake-up channel
-- ARGV[2..]  per job, 3 values: id, lease token, wait score
-- Returns  the number of leases released
local released = 0
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[3], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZADD', KEYS[1], ARGV[i + 2], id)
    released = released + 1
  end
end
if released > 0 then redis.call('PUBLISH', ARGV[1], '1') end
return released
