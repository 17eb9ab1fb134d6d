-- extend-2.lua: renews leases: each job whose lease token is still the caller's gets a new
-- deadline, now + lock. Run in the background by every worker for its running jobs, and by
-- heartbeat().
--
-- KEYS[1]  active     zset  id -> lease deadline (server ms)
-- KEYS[2]  lease      hash  id -> lease token
-- ARGV[1]  lock       lease duration in ms
-- ARGV[2..]  pairs: id, lease token
-- Returns  the ids whose lease was lost (recovered as stalled, or released)
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local ids = {}
for i = 2, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
local owners = redis.call('HMGET', KEYS[2], unpack(ids))
local z, lost = {}, {}
for i = 1, #ids do
  if owners[i] == ARGV[i * 2 + 1] then
    z[#z + 1] = deadline
    z[#z + 1] = ids[i]
  else
    lost[#lost + 1] = ids[i]
  end
end
if #z > 0 then redis.call('ZADD', KEYS[1], 'XX', unpack(z)) end
return lost
