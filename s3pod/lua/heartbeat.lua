-- Record that a worker is alive.
--
-- KEYS[1]  <prefix>:workers  zset: worker id -> time of its last heartbeat (Redis server clock)
-- ARGV[1]  the worker id
--
-- Returns 1 if the worker was known, 0 if not (its first heartbeat, or a reaper took it
-- for dead and put its jobs back while it was still running).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[1])
if known then
  return 1
end
return 0
