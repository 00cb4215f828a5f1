-- Move the delayed jobs that are due onto the queue, behind the jobs already pending.
--
-- KEYS[1]  <prefix>:delayed  zset: jobs waiting for their next attempt, scored by due time
-- KEYS[2]  <prefix>:queue    list: pending jobs; producers push on the left, workers take from the right
-- ARGV[1]  the most jobs to move in one call (keeps each call short)
--
-- "Due" is judged by the Redis server's clock, the one delay.lua scored them with. A retry
-- joins the queue like a new job (LPUSH), so after an outage the retries that come due
-- together do not push every fresh job back; jobs due together keep their order (earliest
-- due is taken first). Returns the number of jobs moved.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, job in ipairs(due) do
  redis.call('ZREM', KEYS[1], job)
  redis.call('LPUSH', KEYS[2], job)
end
return #due
