-- Claim several pending jobs at once: oldest first, into this worker's processing list.
--
-- KEYS[1]  <prefix>:queue                list: pending jobs; producers push on the left, workers take from the right
-- KEYS[2]  <prefix>:processing:<worker>  list: the jobs this worker holds, newest claim at the left
-- ARGV[1]  the most jobs to move
-- ARGV[2]  how many takers share the queue here (the worker's job threads): each takes at most its share
--
-- Each job moves with LMOVE, the step BLMOVE does, so a job is always in exactly one of
-- the two lists; a reply lost on the way leaves the jobs in the processing list, where the
-- worker's sweep (or a reaper) puts them back. Taking at most LLEN / ARGV[2] (rounded up)
-- keeps a short queue spread over the threads instead of one thread holding all of it.
-- Returns the jobs moved, oldest first (empty when the queue is: the caller then blocks
-- on BLMOVE).
local most = tonumber(ARGV[1])
local share = math.ceil(redis.call('LLEN', KEYS[1]) / tonumber(ARGV[2]))
if share < most then
  most = share
end
local moved = {}
for i = 1, most do
  local job = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not job then
    break
  end
  moved[i] = job
end
return moved
