-- retry-6.lua: moves one dead letter back to waiting with a fresh budget of attempts and stalls,
-- and wakes idle workers.
--
-- KEYS[1]  wait       zset  id -> priority * 2^32 + seq
-- KEYS[2]  dead       zset  id -> time it was dead-lettered
-- KEYS[3]  jobs       hash  id -> '<priority>;<record>'
-- KEYS[4]  errors     hash  id -> last error (JSON)
-- KEYS[5]  tries      hash  id -> '<failures>,<stalls>'
-- KEYS[6]  meta       hash  counters: seq
-- ARGV[1]  id         the dead letter's id
-- ARGV[2]  channel    the queue's wake-up channel
-- Returns  1 when moved, 0 when no dead letter has that id
local id = ARGV[1]
if not redis.call('ZSCORE', KEYS[2], id) then return 0 end
redis.call('ZREM', KEYS[2], id)
redis.call('HDEL', KEYS[4], id)
redis.call('HDEL', KEYS[5], id)
local value = redis.call('HGET', KEYS[3], id)
if not value then return 0 end
local prio = tonumber(string.match(value, '^(%d+);')) or 0
local seq = redis.call('HINCRBY', KEYS[6], 'seq', 1)
redis.call('ZADD', KEYS[1], string.format('%.0f', prio * 4294967296 + seq % 4294967296), id)
redis.call('PUBLISH', ARGV[2], '1')
return 1
