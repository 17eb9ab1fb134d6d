-- publish-1.lua: publishes a bus message from the Redis node that owns the namespace's slot, the
-- node every write script publishes from: on a Cluster, messages from one node reach a subscriber
-- in the order they were sent, so this one is ordered with the namespace's other messages.
--
-- KEYS[1]  any key of the namespace   {<ns>}:bus (never read or written; it routes the call)
-- ARGV[1]  channel                    the namespace's bus channel
-- ARGV[2]  message                    what to publish there
-- Returns  the number of subscribers that received it
return redis.call('PUBLISH', ARGV[1], ARGV[2])
