-- read-state-1.lua: reads whether the fleet holds a circuit open, and for how long still, in
-- one round trip (a GET and a PTTL sent apart could straddle the key's expiry).
--
-- KEYS[1]  state key   {<namespace>:breaker:<key>}:state
-- Returns  nil when the circuit is not open, else { origin, pttl }: the id of the instance
--          that opened it and the milliseconds left until it admits trial calls
local origin = redis.call('GET', KEYS[1])
if not origin then
  return false
end
return { origin, redis.call('PTTL', KEYS[1]) }
