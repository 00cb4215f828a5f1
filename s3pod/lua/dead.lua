-- Dead-letter a job: out of processing, onto the dead list with its error.
--
-- KEYS[1]  <prefix>:processing:<worker>  list: the jobs this worker holds
-- KEYS[2]  <prefix>:queue                list: pending jobs (a reaper may have put it back there)
-- KEYS[3]  <prefix>:dead                 list: dead entries {job, error, attempts, failed_at, worker}, newest first
-- ARGV[1]  the job exactly as it was claimed
-- ARGV[2]  the dead entry (JSON)
--
-- The entry is recorded even if the job was in neither list (a settle step never drops a
-- job), but only once: when a first call's reply was lost (Redis went away) and the call
-- is repeated, the entry is already there.
-- Returns 1 if the entry was pushed, 0 if it was there already.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  redis.call('LREM', KEYS[2], -1, ARGV[1])
  if redis.call('LPOS', KEYS[3], ARGV[2]) then
    return 0
  end
end
redis.call('LPUSH', KEYS[3], ARGV[2])
return 1
