-- purge-3.lua: deletes up to `limit` dead letters (oldest first) with their jobs and errors.
-- The client calls it until it returns less than `limit`, so one call never blocks Redis long.
--
-- KEYS[1]  dead       zset  id -> time it was dead-lettered
-- KEYS[2]  jobs       hash  id -> '<priority>;<record>'
-- KEYS[3]  errors     hash  id -> last error (JSON)
-- ARGV[1]  limit      dead letters to delete at most
-- Returns  the number deleted
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #ids == 0 then return 0 end
redis.call('HDEL', KEYS[2], unpack(ids))
redis.call('HDEL', KEYS[3], unpack(ids))
redis.call('ZREM', KEYS[1], unpack(ids))
return #ids
