-- dead-letters-3.lua: lists dead letters, newest first, with their stored job and last error.
--
-- KEYS[1]  dead       zset  id -> time it was dead-lettered
-- KEYS[2]  jobs       hash  id -> '<priority>;<record>'
-- KEYS[3]  errors     hash  id -> last error (JSON)
-- ARGV[1]  offset     dead letters to skip
-- ARGV[2]  limit      dead letters to return at most
-- Returns  4 values per dead letter: id, time it was dead-lettered, stored value, error JSON
local ids = redis.call('ZREVRANGE', KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1, 'WITHSCORES')
local out = {}
if #ids == 0 then return out end
local names = {}
for i = 1, #ids, 2 do names[#names + 1] = ids[i] end
local values = redis.call('HMGET', KEYS[2], unpack(names))
local errors = redis.call('HMGET', KEYS[3], unpack(names))
for i = 1, #names do
  out[#out + 1] = names[i]
  out[#out + 1] = ids[i * 2]
  out[#out + 1] = values[i] or ''
  out[#out + 1] = errors[i] or ''
end
return out
