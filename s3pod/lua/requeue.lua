-- Put every job a worker holds back at the taking end of the queue, unless its heartbeat
-- is still fresh.
--
-- KEYS[1]  <prefix>:workers                 zset: worker id -> last heartbeat (Redis server clock)
-- KEYS[2]  <prefix>:processing:<worker>     list: the jobs that worker holds, newest claim at the left
-- KEYS[3]  <prefix>:queue                   list: pending jobs, taken from the right
-- ARGV[1]  the worker id
-- ARGV[2]  heartbeat timeout in seconds; a negative value requeues whatever the heartbeat
--          says (a worker putting back its own jobs as it stops: it then leaves the set)
-- ARGV[3]  seconds of silence after which a reaped worker with nothing left is forgotten
--
-- The heartbeat is checked here, in the same atomic step as the move, so a worker that
-- beat since the caller looked is left alone. A reaped worker stays in the set (it is
-- reaped again, at no cost, while its list is empty) until it has been silent for ARGV[3]:
-- a worker paused past the timeout that claims a job before its next beat is still found.
-- Moving newest-first onto the right end leaves the oldest claim rightmost: jobs are
-- taken again in their first order.
-- Returns the number of jobs moved, or -1 if the worker's heartbeat is fresh.
local timeout = tonumber(ARGV[2])
local beat = redis.call('ZSCORE', KEYS[1], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if timeout >= 0 and beat and now - tonumber(beat) < timeout then
  return -1
end
local moved = 0
while redis.call('LMOVE', KEYS[2], KEYS[3], 'LEFT', 'RIGHT') do
  moved = moved + 1
end
if timeout < 0 or (moved == 0 and (not beat or now - tonumber(beat) >= tonumber(ARGV[3]))) then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return moved
