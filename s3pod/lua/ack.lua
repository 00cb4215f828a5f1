-- Acknowledge jobs that are done (uploaded and verified, local file handled): one or many.
--
-- KEYS[1]        <prefix>:processing:<worker>  list: the jobs this worker holds (a few per job thread)
-- KEYS[i+1]      <prefix>:upload:<job id>      string: the multipart upload an earlier run of job i left recorded, if any
-- ARGV[i]        job i exactly as it was claimed
--
-- Returns, for each job, held + 2 × recorded. held is 1 if the job was in the processing
-- list, 0 if not: a reaper took this worker for dead and put the job back, so another copy
-- of it runs or waits. recorded says an upload record exists, which the caller then
-- aborts; telling it here spares every other job a round trip. The job's stored marker is
-- left to expire (see s3pod/settlement.py): a copy of the job run later (put back by a
-- reaper, or pushed twice) finds its file deleted and the marker says its object is
-- stored. The queue is never searched: with a long backlog that is a scan of millions of
-- entries inside Redis. Several jobs go in one call to save round trips; each is settled
-- exactly as it would be alone.
local found = {}
for i = 1, #ARGV do
  found[i] = redis.call('LREM', KEYS[1], 1, ARGV[i]) + 2 * redis.call('EXISTS', KEYS[i + 1])
end
return found
