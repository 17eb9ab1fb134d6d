-- set-entries-2.lua: writes entries (set and setMany), taking away each key's fill lease so that a fill
-- in flight anywhere can no longer install its older value, then tells the other instances.
-- Variadic: numkeys is 2 per entry (the 2 in the name is the minimum).
--
-- KEYS     per entry, in order: value key {<ns>}:v:<key>, lease key {<ns>}:l:<key>
-- ARGV[1]  tag key prefix    {<ns>}:t:
-- ARGV[2]  channel           the namespace's bus channel, or '' for no bus
-- ARGV[3]  message           what to publish there (keys only, never values)
-- ARGV[4..]  per entry, in order: payload, lifetime ms, expiresAt (client clock ms), tag count n,
--            then n tags
-- Returns  the number of entries written
local prefix = ARGV[1]
local a = 4
local written = 0
for k = 1, #KEYS, 2 do
  local payload, px, expires, n = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  local tags = {}
  for i = a, a + n - 1 do
    local key = prefix .. ARGV[i]
    local current = redis.call('GET', key)
    if not current then
      redis.call('SET', key, '0', 'PX', px)
    elseif redis.call('PTTL', key) >= 0 and redis.call('PTTL', key) < px then
      redis.call('PEXPIRE', key, px)
    end
    tags[#tags + 1] = { ARGV[i], tonumber(current or '0') }
  end
  a = a + n
  redis.call('DEL', KEYS[k])
  if n > 0 then
    redis.call('HSET', KEYS[k], 'd', payload, 'e', expires, 't', cjson.encode(tags))
  else
    redis.call('HSET', KEYS[k], 'd', payload, 'e', expires)
  end
  redis.call('PEXPIRE', KEYS[k], px)
  redis.call('DEL', KEYS[k + 1])
  written = written + 1
end
if ARGV[2] ~= '' then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return written
