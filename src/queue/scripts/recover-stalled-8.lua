-- recover-stalled-8.lua: finds jobs whose lease expired (their worker died, lost its connection,
-- or blocked its event loop past lockDuration) and returns each to waiting, at most `max stalls`
-- times per job; a job that stalls once more is dead-lettered. One pass suffices: a lease is a
-- deadline in the active set, renewed by its worker, so an expired one is never a live lease.
--
-- KEYS[1]  wait       zset  id -> priority * 2^32 + seq
-- KEYS[2]  active     zset  id -> lease deadline (server ms)
-- KEYS[3]  jobs       hash  id -> '<priority>;<record>'
-- KEYS[4]  lease      hash  id -> lease token
-- KEYS[5]  tries      hash  id -> '<failures>,<stalls>'
-- KEYS[6]  dead       zset  id -> time it was dead-lettered
-- KEYS[7]  errors     hash  id -> the dead letter's last error (JSON)
-- KEYS[8]  meta       hash  counters: seq, failed, stalled
-- ARGV[1]  max stalls times a job may return to waiting after a lost lease
-- ARGV[2]  limit      jobs to recover at most in this call
-- ARGV[3]  channel    the queue's wake-up channel
-- ARGV[4]  keep       dead letters to retain at most
-- ARGV[5]  keep ms    retain dead letters for at most this long
-- ARGV[6]  error      the dead letter's error (JSON) for a job out of stalls
-- Returns  { requeued ids, dead-lettered ids }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[2]))
local requeued, dead = {}, {}
if #ids == 0 then return { requeued, dead } end
local maxStalls = tonumber(ARGV[1])
local wake = redis.call('ZCARD', KEYS[1]) == 0
for i = 1, #ids do
  local id = ids[i]
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[4], id)
  local value = redis.call('HGET', KEYS[3], id)
  if value then
    local f, s = 0, 0
    local tries = redis.call('HGET', KEYS[5], id)
    if tries then f, s = string.match(tries, '^(%d+),(%d+)$') end
    s = tonumber(s) + 1
    if s > maxStalls then
      redis.call('HDEL', KEYS[5], id)
      redis.call('ZADD', KEYS[6], now, id)
      redis.call('HSET', KEYS[7], id, ARGV[6])
      redis.call('HINCRBY', KEYS[8], 'failed', 1)
      dead[#dead + 1] = id
    else
      redis.call('HSET', KEYS[5], id, f .. ',' .. s)
      local prio = tonumber(string.match(value, '^(%d+);')) or 0
      local seq = redis.call('HINCRBY', KEYS[8], 'seq', 1)
      redis.call('ZADD', KEYS[1], string.format('%.0f', prio * 4294967296 + seq % 4294967296), id)
      requeued[#requeued + 1] = id
    end
  end
end
redis.call('HINCRBY', KEYS[8], 'stalled', #ids)
if #dead > 0 then
  local drop = redis.call('ZCARD', KEYS[6]) - tonumber(ARGV[4])
  local old
  if drop > 0 then
    old = redis.call('ZRANGE', KEYS[6], 0, math.min(drop, 1000) - 1)
  else
    old = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', '(' .. (now - tonumber(ARGV[5])), 'LIMIT', 0, 1000)
  end
  if #old > 0 then
    redis.call('HDEL', KEYS[3], unpack(old))
    redis.call('HDEL', KEYS[7], unpack(old))
    redis.call('ZREM', KEYS[6], unpack(old))
  end
end
if wake and #requeued > 0 then redis.call('PUBLISH', ARGV[3], '1') end
return { requeued, dead }
