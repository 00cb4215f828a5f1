-- Take one chunk of the dead list's tail: jobs to retry go to the queue, the others aside (``s3po dead retry``).
--
-- KEYS[1]  <prefix>:dead       list: dead entries, newest first (s3pod pushes on the left)
-- KEYS[2]  <prefix>:queue      list: pending jobs; producers push on the left
-- KEYS[3]  <prefix>:dead:kept  list: entries this retry keeps, newest first, until they go
--                              back to the dead list's tail (lua/restore_dead.lua)
-- ARGV     pairs, oldest entry first: the entry the tail should hold, exactly as stored;
--          then the job to queue again in its place (its attempt count reset), or "" to keep it
--
-- O(1) per entry, so a dead list of any length is retried in one linear pass, with Redis
-- held one chunk at a time. Each job leaves the dead list in the step that queues it, and an
-- entry kept is always in one of the two lists: a crash between chunks loses nothing and
-- queues nothing twice.
--
-- Stops at the first entry the tail does not hold (another admin took it): that entry is left
-- in place. Returns the number of entries taken.
local taken = 0
for i = 1, #ARGV, 2 do
  local entry = redis.call('RPOP', KEYS[1])
  if entry ~= ARGV[i] then
    if entry then
      redis.call('RPUSH', KEYS[1], entry)
    end
    return taken
  end
  if ARGV[i + 1] == '' then
    redis.call('LPUSH', KEYS[3], entry)
  else
    redis.call('LPUSH', KEYS[2], ARGV[i + 1])
  end
  taken = taken + 1
end
return taken
