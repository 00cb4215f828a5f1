-- Dead-letter a job: out of processing, onto the dead list with its error.
--
-- KEYS[1]  <prefix>:processing:<worker>  list: the jobs this worker holds (a handful)
-- KEYS[2]  <prefix>:dead                 list: dead entries {job, error, attempts, failed_at, worker}, newest first
-- ARGV[1]  the job exactly as it was claimed
-- ARGV[2]  the dead entry (JSON)
-- ARGV[3]  how many of the newest dead entries to look through for this one
--
-- The entry is recorded even if the job was not in the processing list (a settle step
-- never drops a job), but only once: when a first call's reply was lost (Redis went away)
-- and the call is repeated, the entry is already among the newest ones. Only those are
-- searched (LPOS ... MAXLEN), so a long dead list costs nothing here.
-- Returns 1 if the entry was pushed, 0 if it was there already.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  if redis.call('LPOS', KEYS[2], ARGV[2], 'MAXLEN', tonumber(ARGV[3])) then
    return 0
  end
end
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
