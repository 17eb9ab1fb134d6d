-- delete-entries-2.lua: deletes entries (delete and deleteMany) with their fill leases, so that a fill in
-- flight anywhere can no longer install the value it is loading, then tells the other instances.
-- Variadic: numkeys is 2 per key (the 2 in the name is the minimum).
--
-- KEYS     per key, in order: value key {<ns>}:v:<key>, lease key {<ns>}:l:<key>
-- ARGV[1]  channel           the namespace's bus channel, or '' for no bus
-- ARGV[2]  message           what to publish there (keys only)
-- Returns  the number of entries that existed
local existed = 0
for k = 1, #KEYS, 2 do
  existed = existed + redis.call('DEL', KEYS[k])
  redis.call('DEL', KEYS[k + 1])
end
if ARGV[1] ~= '' then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return existed
