-- fail-9.lua: records failed attempts. A job with attempts left goes back to waiting (or to the
-- delayed set for its backoff) with its failure count raised; a job out of attempts goes to the
-- dead-letter set with its error. Each job's lease token is checked first: a worker that lost the
-- lease cannot fail a job another worker may be running. Dead letters are retained by count and age.
--
-- KEYS[1]  wait       zset  id -> priority * 2^32 + seq
-- KEYS[2]  active     zset  id -> lease deadline
-- KEYS[3]  delayed    zset  id -> due time
-- KEYS[4]  jobs       hash  id -> '<priority>;<record>'
-- KEYS[5]  lease      hash  id -> lease token
-- KEYS[6]  tries      hash  id -> '<failures>,<stalls>'
-- KEYS[7]  dead       zset  id -> time it was dead-lettered
-- KEYS[8]  errors     hash  id -> the dead letter's last error (JSON)
-- KEYS[9]  meta       hash  counters: seq, failed
-- ARGV[1]  channel    the queue's wake-up channel
-- ARGV[2]  keep       dead letters to retain at most
-- ARGV[3]  keep ms    retain dead letters for at most this long
-- ARGV[4..]  per job, 4 values: id, lease token, retry in ms (-1: dead-letter), error JSON
-- Returns  per job: 1 when recorded, 0 when the lease was not the caller's
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local wake = false
local deadAdded = false
for i = 4, #ARGV, 4 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[5], id) ~= ARGV[i + 1] then
    out[#out + 1] = 0
  else
    out[#out + 1] = 1
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[5], id)
    local retryIn = tonumber(ARGV[i + 2])
    if retryIn < 0 then
      redis.call('HDEL', KEYS[6], id)
      redis.call('ZADD', KEYS[7], now, id)
      redis.call('HSET', KEYS[8], id, ARGV[i + 3])
      redis.call('HINCRBY', KEYS[9], 'failed', 1)
      deadAdded = true
    else
      local f, s = 0, 0
      local tries = redis.call('HGET', KEYS[6], id)
      if tries then f, s = string.match(tries, '^(%d+),(%d+)$') end
      redis.call('HSET', KEYS[6], id, (tonumber(f) + 1) .. ',' .. s)
      if retryIn > 0 then
        redis.call('ZADD', KEYS[3], now + retryIn, id)
        -- a worker may be sleeping until a later delayed job
        wake = true
      else
        local value = redis.call('HGET', KEYS[4], id) or ''
        local prio = tonumber(string.match(value, '^(%d+);')) or 0
        local seq = redis.call('HINCRBY', KEYS[9], 'seq', 1)
        if redis.call('ZCARD', KEYS[1]) == 0 then wake = true end
        redis.call('ZADD', KEYS[1], string.format('%.0f', prio * 4294967296 + seq % 4294967296), id)
      end
    end
  end
end
if deadAdded then
  local keep = tonumber(ARGV[2])
  local drop = redis.call('ZCARD', KEYS[7]) - keep
  local ids
  if drop > 0 then
    ids = redis.call('ZRANGE', KEYS[7], 0, math.min(drop, 1000) - 1)
  else
    ids = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', '(' .. (now - tonumber(ARGV[3])), 'LIMIT', 0, 1000)
  end
  if #ids > 0 then
    redis.call('HDEL', KEYS[4], unpack(ids))
    redis.call('HDEL', KEYS[8], unpack(ids))
    redis.call('ZREM', KEYS[7], unpack(ids))
  end
end
if wake then redis.call('PUBLISH', ARGV[1], '1') end
return out
