-- publish-closed-1.lua: marks a circuit closed for the whole fleet and tells every subscribed
-- instance, in one atomic step.
--
-- KEYS[1]  state key   {<namespace>:breaker:<key>}:state
-- ARGV[1]  channel     {<namespace>:breaker:<key>}:events
-- ARGV[2]  message     JSON {"state":"closed","origin":"<instance id>"}
-- Returns  the number of connections that received the message (PUBLISH's reply)
redis.call('DEL', KEYS[1])
return redis.call('PUBLISH', ARGV[1], ARGV[2])
