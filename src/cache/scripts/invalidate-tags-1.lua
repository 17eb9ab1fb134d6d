-- invalidate-tags-1.lua: invalidates every entry carrying one of the tags, in O(1) per tag, by
-- bumping the tag's version: entries remember the versions current when they were written and are
-- read as missing once one has moved (read-entries-1.lua, get-or-lease-2.lua), and a fill that took its lease
-- before the bump is refused (fill-2.lua). Variadic: numkeys is the number of tags.
--
-- KEYS[1..n]  tag keys       {<ns>}:t:<tag>
-- ARGV[1]     channel        the namespace's bus channel, or '' for no bus
-- ARGV[2]     message        what to publish there (tags only)
-- ARGV[3]     lifetime       ms to keep a version created here (no entry carries the tag yet, but a
--                            fill in flight may: at least the fill lease ttl)
-- Returns     the number of tags invalidated
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCR', KEYS[i])
  else
    redis.call('SET', KEYS[i], '1', 'PX', ARGV[3])
  end
end
if ARGV[1] ~= '' then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return #KEYS
