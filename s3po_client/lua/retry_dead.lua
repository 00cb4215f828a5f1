-- Send dead jobs back to the queue, one chunk of the dead list's tail at a time (``s3po dead retry``).
--
-- KEYS[1]  <prefix>:dead   list: dead entries, newest first (s3pod pushes on the left)
-- KEYS[2]  <prefix>:queue  list: pending jobs; producers push on the left
-- ARGV     pairs, oldest entry first: the entry the tail should hold, exactly as stored;
--          then the job to queue again in its place (its attempt count reset), or "" to keep it
--
-- Each entry is taken off the tail: a job to retry goes to the queue, an entry kept goes to
-- the head. Once the caller has taken every entry that was there when it began, the kept ones
-- are back in their order, and each retried job left the dead list in the same step that
-- queued it: a crash between chunks loses nothing and queues nothing twice. O(1) per entry,
-- so a list of any length takes one linear pass, and Redis is held one chunk at a time.
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
    redis.call('LPUSH', KEYS[1], entry)
  else
    redis.call('LPUSH', KEYS[2], ARGV[i + 1])
  end
  taken = taken + 1
end
return taken
