-- get-or-lease-2.lua: reads one entry and, unless it is fresh, takes the key's fill lease (SET NX PX
-- with the caller's token, as in Facebook's memcache leases): the one instance holding it loads
-- the value; the others wait for it. Re-entrant for the holder, which renews its lifetime.
--
-- KEYS[1]  value key         {<ns>}:v:<key>
-- KEYS[2]  lease key         {<ns>}:l:<key>
-- ARGV[1]  token             the asking fill's random token
-- ARGV[2]  lease ttl         milliseconds the lease lives unless released
-- ARGV[3]  tag key prefix    {<ns>}:t:
-- ARGV[4]  fresh after       an entry whose expiresAt (field e, client clock ms) is above this is fresh:
--                            `now` normally, the entry's own expiresAt for an early refresh
-- ARGV[5..]  tags            the tags the fill will write, whose current versions are returned
-- Returns  {1, payload}                        a fresh, valid entry exists
--          {2, payload or nil, {versions...}}  the lease is the caller's; payload is a stale valid
--                                              entry (for grace), versions those of ARGV[5..]
--          {3, payload or nil, pttl}           another fill holds the lease for pttl more ms
local h = redis.pcall('HMGET', KEYS[1], 'd', 't', 'e')
if h.err then
  -- Another program's key of another type: treated as missing (the fill's write replaces it).
  h = { false, false, false }
end
local d = h[1]
if d and h[2] then
  local tags = cjson.decode(h[2])
  for j = 1, #tags do
    local current = tonumber(redis.call('GET', ARGV[3] .. tags[j][1]) or '0')
    if current ~= tags[j][2] then
      d = false
      break
    end
  end
end
if d and tonumber(h[3] or '0') > tonumber(ARGV[4]) then
  return { 1, d }
end
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
elseif holder or not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return { 3, d, redis.call('PTTL', KEYS[2]) }
end
local versions = {}
for i = 5, #ARGV do
  versions[#versions + 1] = tonumber(redis.call('GET', ARGV[3] .. ARGV[i]) or '0')
end
return { 2, d, versions }
