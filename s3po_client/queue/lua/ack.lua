-- Acknowledge a job that is done (uploaded and verified, local file handled).
--
-- KEYS[1]  <prefix>:processing:<worker>  list: the jobs this worker holds (a handful)
-- KEYS[2]  <prefix>:stored:<job id>      string: the job's stored marker (set only for a job whose file was deleted)
-- KEYS[3]  <prefix>:upload:<job id>      string: the multipart upload an earlier run left recorded, if any
-- ARGV[1]  the job exactly as it was claimed
--
-- Returns held + 2 × recorded. held is 1 if the job was in the processing list (its stored
-- marker is then dropped in the same step), 0 if not: a reaper took this worker for dead
-- and put the job back, so another copy of it runs or waits, and the marker stays to tell
-- that copy its object is stored rather than letting it fail on a file that is gone.
-- recorded says an upload record exists, which the caller then aborts; telling it here
-- spares every other job a round trip. The queue is never searched: with a long backlog
-- that is a scan of millions of entries inside Redis.
local held = redis.call('LREM', KEYS[1], 1, ARGV[1])
if held == 1 then
  redis.call('DEL', KEYS[2])
end
return held + 2 * redis.call('EXISTS', KEYS[3])
