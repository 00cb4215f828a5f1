-- Put one job this worker holds back at the taking end of the queue.
--
-- KEYS[1]  <prefix>:processing:<worker>  list: the jobs this worker holds
-- KEYS[2]  <prefix>:queue                list: pending jobs, taken from the right
-- ARGV[1]  the job exactly as it was claimed
--
-- Used for a job claimed after a stop was asked for, and for a job that sits in the
-- processing list although no thread holds it (a BLMOVE whose reply was lost when Redis
-- went away). Returns 1 if the job was moved, 0 if it was not in the processing list.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
