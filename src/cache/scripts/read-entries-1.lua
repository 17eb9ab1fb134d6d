-- read-entries-1.lua: reads the entries of a batch of keys in one round trip, treating an entry a tag
-- invalidation has made invalid as missing. Variadic: numkeys is the batch size (the 1 in the
-- name is the minimum). An entry is a hash {d: payload, e: expiresAt, t: tags}; t, when present,
-- is the JSON array [[tag, version], ...] of the tag versions current when it was written, and it
-- is valid while every one of them is still current. Freshness (e) is judged by the client.
--
-- KEYS[1..n]  value keys        {<ns>}:v:<key>   (one namespace: one hash tag, so one slot)
-- ARGV[1]     tag key prefix    {<ns>}:t:        tag keys are built here from it; they share the
--                                                 hash tag of KEYS, so the script stays single-slot
-- Returns     an array of n items: the payload (field d), or nil for a missing or tag-invalidated
--             entry, or for a key some other program stored with another type (pcall: one foreign
--             key must not fail the whole batch)
local prefix = ARGV[1]
local out = {}
for i = 1, #KEYS do
  local h = redis.pcall('HMGET', KEYS[i], 'd', 't')
  local d = false
  if not h.err then d = h[1] end
  if d and h[2] then
    local tags = cjson.decode(h[2])
    for j = 1, #tags do
      local current = tonumber(redis.call('GET', prefix .. tags[j][1]) or '0')
      if current ~= tags[j][2] then
        d = false
        break
      end
    end
  end
  out[i] = d
end
return out
