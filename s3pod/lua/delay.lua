-- Schedule a failed job's next attempt: out of processing, into the delayed set.
--
-- KEYS[1]  <prefix>:processing:<worker>  list: the jobs this worker holds (a handful)
-- KEYS[2]  <prefix>:delayed              zset: jobs waiting for their next attempt, scored by due time
-- ARGV[1]  the job exactly as it was claimed
-- ARGV[2]  the job for its next attempt (attempt count raised)
-- ARGV[3]  seconds to wait
--
-- The due time uses the Redis server's clock, so daemons on hosts whose clocks differ
-- agree on it. The job is scheduled even if it was not in the processing list (a reaper
-- put it back meanwhile): a settle step never drops a job, and a duplicate is harmless
-- where a loss is not. Running it twice is harmless too: ZADD of the same member only
-- moves its score.
-- Returns the due time (Unix seconds, as a string with microseconds).
local t = redis.call('TIME')
local due = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[3])
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('ZADD', KEYS[2], due, ARGV[2])
return string.format('%.6f', due)
