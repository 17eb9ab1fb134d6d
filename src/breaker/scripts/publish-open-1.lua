-- publish-open-1.lua: marks a circuit open for the whole fleet and tells every subscribed
-- instance, in one atomic step (no instance can read the key without the message, or the
-- message without the key).
--
-- KEYS[1]  state key   {<namespace>:breaker:<key>}:state
-- ARGV[1]  channel     {<namespace>:breaker:<key>}:events
-- ARGV[2]  message     JSON {"state":"open","halfOpenIn":<ms>,"origin":"<instance id>"}
-- ARGV[3]  open for    milliseconds until the circuit admits trial calls (integer >= 1), the key's PX
-- ARGV[4]  origin      id of the publishing instance, stored as the key's value
-- Returns  the number of connections that received the message (PUBLISH's reply)
--
-- A key that would outlive the new deadline is kept: like the breakers themselves, the fleet
-- keeps the later of two half-open deadlines. PTTL is -2 for a missing key, -1 for a key
-- without expiry; both are replaced.
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[3])
end
return redis.call('PUBLISH', ARGV[1], ARGV[2])
