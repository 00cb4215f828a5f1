-- Send one dead job back to the queue (``s3po dead retry``).
--
-- KEYS[1]  <prefix>:dead   list: dead entries, newest first
-- KEYS[2]  <prefix>:queue  list: pending jobs; producers push on the left
-- ARGV[1]  the dead entry, exactly as stored
-- ARGV[2]  the job to queue again (its attempt count reset)
--
-- Moves the job only if the entry is still there, so two admins retrying at once queue it
-- once. Returns 1 if the job was queued, 0 if the entry was gone.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
