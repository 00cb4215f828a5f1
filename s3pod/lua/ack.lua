-- Acknowledge jobs that are done (uploaded and verified, local file handled): one or many.
--
-- KEYS[1]        <prefix>:processing:<worker>  list: the jobs this worker holds (a few per job thread)
-- KEYS[2i]       <prefix>:stored:<job id>      string: job i's stored marker (set only for a job whose file was deleted)
-- KEYS[2i+1]     <prefix>:upload:<job id>      string: the multipart upload an earlier run of job i left recorded, if any
-- ARGV[i]        job i exactly as it was claimed
--
-- Returns, for each job, held + 2 × recorded. held is 1 if the job was in the processing
-- list (its stored marker is then dropped in the same step), 0 if not: a reaper took this
-- worker for dead and put the job back, so another copy of it runs or waits, and the
-- marker stays to tell that copy its object is stored rather than letting it fail on a
-- file that is gone. recorded says an upload record exists, which the caller then aborts;
-- telling it here spares every other job a round trip. The queue is never searched: with a
-- long backlog that is a scan of millions of entries inside Redis. Several jobs go in one
-- call to save round trips; each is settled exactly as it would be alone.
local found = {}
for i = 1, #ARGV do
  local held = redis.call('LREM', KEYS[1], 1, ARGV[i])
  if held == 1 then
    redis.call('DEL', KEYS[2 * i])
  end
  found[i] = held + 2 * redis.call('EXISTS', KEYS[2 * i + 1])
end
return found
