-- fetch-9.lua: one worker round trip: acknowledges the jobs the worker finished, then leases it up
-- to `max` more. Acknowledging checks each job's lease token, so a worker that lost a lease (the
-- job was recovered as stalled and may run elsewhere) cannot complete it. Finished jobs are kept
-- for retention (bounded by count and age) or deleted. Due delayed jobs are promoted to waiting
-- first; the per-queue rate limit (a fixed window shared by every worker) caps what is leased.
--
-- KEYS[1]  wait       zset  id -> priority * 2^32 + seq
-- KEYS[2]  active     zset  id -> lease deadline (server ms)
-- KEYS[3]  delayed    zset  id -> due time (server ms)
-- KEYS[4]  jobs       hash  id -> '<priority>;<record>'
-- KEYS[5]  lease      hash  id -> lease token
-- KEYS[6]  tries      hash  id -> '<failures>,<stalls>' (absent while both are 0)
-- KEYS[7]  done       zset  id -> completion time (retained completed jobs)
-- KEYS[8]  meta       hash  counters: seq, completed, throughput ring t0..t59
-- KEYS[9]  rate       string  jobs leased in the current rate window (expires with the window)
-- ARGV[1]  token      lease token of the jobs leased now
-- ARGV[2]  max        jobs to lease at most (0: acknowledge only)
-- ARGV[3]  lock       lease duration in ms
-- ARGV[4]  rate max   jobs per rate window, 0 for no limit
-- ARGV[5]  rate ms    the rate window
-- ARGV[6]  keep       completed jobs to retain at most (0: delete at once)
-- ARGV[7]  keep ms    retain completed jobs for at most this long
-- ARGV[8..]  pairs: id, lease token of each job to acknowledge
-- Returns  { leased, next delayed in ms (-1: none), ms until the rate window reopens when it is
--          full (0: not full), refused acks }
--          where leased holds 5 values a job: id, stored value, wait score, failures, stalls
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function trim(zset, keep, oldest)
  local drop = redis.call('ZCARD', zset) - keep
  local ids
  if drop > 0 then
    ids = redis.call('ZRANGE', zset, 0, math.min(drop, 1000) - 1)
  else
    ids = redis.call('ZRANGEBYSCORE', zset, '-inf', '(' .. oldest, 'LIMIT', 0, 1000)
  end
  if #ids > 0 then
    redis.call('HDEL', KEYS[4], unpack(ids))
    redis.call('ZREM', zset, unpack(ids))
  end
end

-- 1. acknowledge
local refused = {}
if #ARGV > 7 then
  local ids = {}
  for i = 8, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
  local owners = redis.call('HMGET', KEYS[5], unpack(ids))
  local ok = {}
  for i = 1, #ids do
    if owners[i] == ARGV[6 + i * 2 + 1] then ok[#ok + 1] = ids[i] else refused[#refused + 1] = ids[i] end
  end
  if #ok > 0 then
    redis.call('ZREM', KEYS[2], unpack(ok))
    redis.call('HDEL', KEYS[5], unpack(ok))
    redis.call('HDEL', KEYS[6], unpack(ok))
    local keep = tonumber(ARGV[6])
    if keep > 0 then
      local z = {}
      for i = 1, #ok do
        z[#z + 1] = now
        z[#z + 1] = ok[i]
      end
      redis.call('ZADD', KEYS[7], unpack(z))
      trim(KEYS[7], keep, now - tonumber(ARGV[7]))
    else
      redis.call('HDEL', KEYS[4], unpack(ok))
    end
    -- totals, and a ring of per-second counts for throughput
    redis.call('HINCRBY', KEYS[8], 'completed', #ok)
    local sec = math.floor(now / 1000)
    local slot = 't' .. (sec % 60)
    local cur = redis.call('HGET', KEYS[8], slot)
    local count = #ok
    if cur then
      local s, c = string.match(cur, '^(%d+):(%d+)$')
      if tonumber(s) == sec then count = count + tonumber(c) end
    end
    redis.call('HSET', KEYS[8], slot, sec .. ':' .. count)
  end
end

-- 2. promote due delayed jobs, and tell when the next one is due
local nextDelay = -1
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if #first > 0 and tonumber(first[2]) <= now then
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)
  local values = redis.call('HMGET', KEYS[4], unpack(due))
  local seq = redis.call('HINCRBY', KEYS[8], 'seq', #due) - #due
  local z = {}
  for i = 1, #due do
    if values[i] then
      seq = seq + 1
      local prio = tonumber(string.match(values[i], '^(%d+);')) or 0
      z[#z + 1] = string.format('%.0f', prio * 4294967296 + seq % 4294967296)
      z[#z + 1] = due[i]
    end
  end
  if #z > 0 then redis.call('ZADD', KEYS[1], unpack(z)) end
  redis.call('ZREM', KEYS[3], unpack(due))
  first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
end
if #first > 0 then nextDelay = math.max(0, tonumber(first[2]) - now) end

-- 3. rate limit
local max = tonumber(ARGV[2])
local rateMax = tonumber(ARGV[4])
local limited = 0
if max > 0 and rateMax > 0 then
  local used = tonumber(redis.call('GET', KEYS[9]) or '0')
  if used >= rateMax then
    limited = redis.call('PTTL', KEYS[9])
    if limited <= 0 then
      -- a window without expiry cannot happen through this script; repair it
      redis.call('PEXPIRE', KEYS[9], ARGV[5])
      limited = tonumber(ARGV[5])
    end
    max = 0
  elseif rateMax - used < max then
    max = rateMax - used
  end
end

-- 4. lease
local leased = {}
if max > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], max)
  if #popped > 0 then
    local ids, z, l = {}, {}, {}
    local deadline = now + tonumber(ARGV[3])
    for i = 1, #popped, 2 do
      ids[#ids + 1] = popped[i]
      z[#z + 1] = deadline
      z[#z + 1] = popped[i]
      l[#l + 1] = popped[i]
      l[#l + 1] = ARGV[1]
    end
    local values = redis.call('HMGET', KEYS[4], unpack(ids))
    local tries = redis.call('HMGET', KEYS[6], unpack(ids))
    local gone = {}
    for i = 1, #ids do
      if values[i] then
        local f, s = 0, 0
        if tries[i] then f, s = string.match(tries[i], '^(%d+),(%d+)$') end
        leased[#leased + 1] = ids[i]
        leased[#leased + 1] = values[i]
        leased[#leased + 1] = popped[i * 2]
        leased[#leased + 1] = f
        leased[#leased + 1] = s
      else
        gone[#gone + 1] = ids[i]
      end
    end
    redis.call('ZADD', KEYS[2], unpack(z))
    redis.call('HSET', KEYS[5], unpack(l))
    if #gone > 0 then
      -- ids whose job was deleted meanwhile: nothing to run
      redis.call('ZREM', KEYS[2], unpack(gone))
      redis.call('HDEL', KEYS[5], unpack(gone))
    end
    if rateMax > 0 then
      local used = redis.call('INCRBY', KEYS[9], #ids)
      if used == #ids then redis.call('PEXPIRE', KEYS[9], ARGV[5]) end
      -- the window is full: tell the worker when it reopens
      if used >= rateMax then limited = math.max(1, redis.call('PTTL', KEYS[9])) end
    end
  end
end
return { leased, nextDelay, limited, refused }
