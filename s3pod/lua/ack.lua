-- Acknowledge a job that is done (uploaded and verified, local file handled).
--
-- KEYS[1]  <prefix>:processing:<worker>  list: the jobs this worker holds
-- KEYS[2]  <prefix>:queue                list: pending jobs, taken from the right
-- ARGV[1]  the job exactly as it was claimed
--
-- A reaper that took this worker for dead may have put the job back on the queue; it is
-- done now, so that copy goes too (otherwise its file, deleted by now, would be looked
-- for again and the job dead-lettered for nothing).
-- Returns 1 if the job was in the processing list, 2 if it was found on the queue, 0 if
-- it was nowhere (another worker holds it, or Redis lost it).
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  return 1
end
if redis.call('LREM', KEYS[2], -1, ARGV[1]) == 1 then
  return 2
end
return 0
