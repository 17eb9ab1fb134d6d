-- stats-6.lua: one consistent snapshot of a queue's gauges and counters.
--
-- KEYS[1]  wait       zset
-- KEYS[2]  active     zset
-- KEYS[3]  delayed    zset
-- KEYS[4]  dead       zset
-- KEYS[5]  done       zset  retained completed jobs
-- KEYS[6]  meta       hash  counters: completed, failed, stalled, throughput ring t0..t59
-- Returns  { waiting, active, delayed, dead letters, retained completed, completed total,
--            dead-lettered total, stalled total, completions in the last 60 s }
local t = redis.call('TIME')
local sec = tonumber(t[1])
local fields = { 'completed', 'failed', 'stalled' }
for i = 0, 59 do fields[#fields + 1] = 't' .. i end
local meta = redis.call('HMGET', KEYS[6], unpack(fields))
local recent = 0
for i = 4, #meta do
  if meta[i] then
    local s, c = string.match(meta[i], '^(%d+):(%d+)$')
    if tonumber(s) > sec - 60 then recent = recent + tonumber(c) end
  end
end
return {
  redis.call('ZCARD', KEYS[1]),
  redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[4]),
  redis.call('ZCARD', KEYS[5]),
  tonumber(meta[1] or '0'),
  tonumber(meta[2] or '0'),
  tonumber(meta[3] or '0'),
  recent,
}
