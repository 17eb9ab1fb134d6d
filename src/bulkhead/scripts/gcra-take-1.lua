-- gcra-take-1.lua: takes `cost` tokens from a key's rate-limit bucket if it holds them (GCRA),
-- storing the key's new theoretical arrival time (TAT), in one atomic step. This is
-- src/bulkhead/internal/gcra.ts line for line; see there for the arithmetic.
--
-- KEYS[1]  TAT key     {<namespace>:rl:<key>}, value '<ms>:<units>': TAT = ms + units/scale ms
-- ARGV[1]  interval    units of 1/scale ms between two tokens (integer >= 1)
-- ARGV[2]  scale       units per millisecond (integer >= 1)
-- ARGV[3]  burst       tokens a full bucket holds (integer >= 1)
-- ARGV[4]  cost        tokens this call takes (integer, 0 <= cost <= burst)
-- ARGV[5]  now         '' to read the time from the server (TIME), which every instance shares
--                      whatever its own clock says; or the caller's time in integer ms
-- ARGV[6]  keep        extra milliseconds the key outlives its TAT (0 with server time; with
--                      caller time the server's clock decides expiry, so keep it longer than
--                      the clocks may disagree)
-- Returns  {allowed (1 or 0), retryAfter ms, remaining tokens, resetAfter ms}
--
-- The key expires at its TAT (plus `keep`): a missing key is a full bucket, so idle keys cost
-- no memory. A call with cost 0 only reads.
local interval = tonumber(ARGV[1])
local scale = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local now
if ARGV[5] == '' then
  -- TIME is non-deterministic: before Redis 7 a script must switch to effects replication to
  -- write after reading it (Redis 7 always replicates effects; the call is then a no-op).
  if redis.replicate_commands then
    redis.replicate_commands()
  end
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
else
  now = tonumber(ARGV[5])
end

local tolerance = burst * interval
local ahead = 0
local stored = redis.call('GET', KEYS[1])
if stored then
  local ms, units = string.match(stored, '^(%d+):(%d+)$')
  if ms then
    ms = tonumber(ms)
    units = tonumber(units)
    if ms >= now then
      ahead = math.min(tolerance, (ms - now) * scale + units)
    end
  end
end

local nextAhead = ahead + cost * interval
if nextAhead > tolerance then
  return {
    0,
    math.ceil((nextAhead - tolerance) / scale),
    math.floor((tolerance - ahead) / interval),
    math.ceil(ahead / scale),
  }
end
if cost > 0 then
  local tatMs = now + math.floor(nextAhead / scale)
  local tatUnits = nextAhead % scale
  redis.call(
    'SET',
    KEYS[1],
    string.format('%.0f:%.0f', tatMs, tatUnits),
    'PX',
    math.ceil(nextAhead / scale) + tonumber(ARGV[6])
  )
end
return {
  1,
  0,
  math.floor((tolerance - nextAhead) / interval),
  math.ceil(nextAhead / scale),
}
