-- Put every job a worker holds back at the taking end of the queue, and forget the worker,
-- unless its heartbeat is still fresh.
--
-- KEYS[1]  <prefix>:workers                 zset: worker id -> last heartbeat (Redis server clock)
-- KEYS[2]  <prefix>:processing:<worker>     list: the jobs that worker holds, newest claim at the left
-- KEYS[3]  <prefix>:queue                   list: pending jobs, taken from the right
-- ARGV[1]  the worker id
-- ARGV[2]  heartbeat timeout in seconds; a negative value requeues whatever the heartbeat
--          says (a worker putting back its own jobs as it stops)
--
-- The heartbeat is checked here, in the same atomic step as the move, so a worker that
-- beat since the caller looked is left alone. Moving newest-first onto the right end
-- leaves the oldest claim rightmost: jobs are taken again in their first order.
-- Returns the number of jobs moved, or -1 if the worker's heartbeat is fresh.
local timeout = tonumber(ARGV[2])
if timeout >= 0 then
  local beat = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if beat then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    if now - tonumber(beat) < timeout then
      return -1
    end
  end
end
local moved = 0
while redis.call('LMOVE', KEYS[2], KEYS[3], 'LEFT', 'RIGHT') do
  moved = moved + 1
end
redis.call('ZREM', KEYS[1], ARGV[1])
return moved
