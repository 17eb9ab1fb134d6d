-- add-5.lua: adds a batch of jobs atomically: each is stored and put in the waiting set (or the
-- delayed set), unless its custom id is taken (the job exists, or the id was added within the
-- dedupe window). Auto ids come from one counter; FIFO within a priority comes from another
-- (score = priority * 2^32 + counter, as in BullMQ). Wakes idle workers (one PUBLISH) when the
-- waiting set was empty, or when a delayed job became the earliest one.
--
-- KEYS[1]  wait       {<prefix>:<name>}:wait     zset  id -> priority * 2^32 + seq
-- KEYS[2]  delayed    {<prefix>:<name>}:delayed  zset  id -> due time (server ms)
-- KEYS[3]  jobs       {<prefix>:<name>}:jobs     hash  id -> '<priority>;<record>'
-- KEYS[4]  meta       {<prefix>:<name>}:meta     hash  counters (id, seq, ...)
-- KEYS[5]  dedupe     {<prefix>:<name>}:dedupe   zset  custom id -> end of its dedupe window
-- ARGV[1]  channel    the queue's wake-up channel
-- ARGV[2]  window     dedupe window in ms (0: only while the job exists)
-- ARGV[3..]  per job, 4 values: custom id ('' for an auto id), stored value, priority, delay ms
-- Returns  per job, 2 values: its id, and 1 when added or 0 when the id was taken
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = (#ARGV - 2) / 4
local window = tonumber(ARGV[2])

local autos = 0
for i = 0, n - 1 do
  if ARGV[3 + i * 4] == '' then autos = autos + 1 end
end
local nextId = 0
if autos > 0 then nextId = redis.call('HINCRBY', KEYS[4], 'id', autos) - autos end
local seq = redis.call('HINCRBY', KEYS[4], 'seq', n) - n
local waitWasEmpty = redis.call('ZCARD', KEYS[1]) == 0

local stored, waiting, delayed, windows, out = {}, {}, {}, {}, {}
local seen = {}
local pruned = false
for i = 0, n - 1 do
  local base = 3 + i * 4
  local id = ARGV[base]
  local fresh = true
  if id == '' then
    nextId = nextId + 1
    id = string.format('%d', nextId)
  else
    if not pruned then
      redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
      pruned = true
    end
    if seen[id] or redis.call('HEXISTS', KEYS[3], id) == 1 or redis.call('ZSCORE', KEYS[5], id) then
      fresh = false
    elseif window > 0 then
      windows[#windows + 1] = now + window
      windows[#windows + 1] = id
    end
  end
  if fresh then
    seen[id] = true
    stored[#stored + 1] = id
    stored[#stored + 1] = ARGV[base + 1]
    local delay = tonumber(ARGV[base + 3])
    if delay > 0 then
      delayed[#delayed + 1] = now + delay
      delayed[#delayed + 1] = id
    else
      seq = seq + 1
      waiting[#waiting + 1] = string.format('%.0f', tonumber(ARGV[base + 2]) * 4294967296 + seq % 4294967296)
      waiting[#waiting + 1] = id
    end
  end
  out[#out + 1] = id
  out[#out + 1] = fresh and 1 or 0
end

if #stored > 0 then redis.call('HSET', KEYS[3], unpack(stored)) end
if #windows > 0 then redis.call('ZADD', KEYS[5], unpack(windows)) end
local wake = false
if #waiting > 0 then
  redis.call('ZADD', KEYS[1], unpack(waiting))
  wake = waitWasEmpty
end
if #delayed > 0 then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local earliest = delayed[1]
  for i = 3, #delayed, 2 do
    if delayed[i] < earliest then earliest = delayed[i] end
  end
  if #first == 0 or earliest < tonumber(first[2]) then wake = true end
  redis.call('ZADD', KEYS[2], unpack(delayed))
end
if wake then redis.call('PUBLISH', ARGV[1], '1') end
return out
