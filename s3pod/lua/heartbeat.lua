-- Record that a worker is alive.
--
-- KEYS[1]  <prefix>:workers  zset: worker id -> time of its last heartbeat (Redis server clock)
-- ARGV[1]  the worker id
-- ARGV[2]  heartbeat timeout in seconds
--
-- Returns 0 if the worker was not known (its first heartbeat), 1 if its last beat was
-- fresh, 2 if its last beat was older than the timeout: a reaper may have taken it for
-- dead and put its jobs back while it was still running (paused, or cut off from Redis).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local last = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[1])
if not last then
  return 0
end
if now - tonumber(last) >= tonumber(ARGV[2]) then
  return 2
end
return 1
