-- Acknowledge jobs that are done (uploaded and verified, local file handled): one or many.
--
-- KEYS[1]        <prefix>:processing:<worker>  list: the jobs this worker holds (a few per job thread)
-- KEYS[2i]       <prefix>:upload:<job id>      string: the multipart upload an earlier run of job i left recorded, if any
-- KEYS[2i+1]     <prefix>:stored:<job id>      string: job i's stored marker (set before its file was deleted), if any
-- ARGV[i]        job i exactly as it was claimed (i = 1..n)
-- ARGV[n+1]      seconds a held job's stored marker lives on after this ack
--
-- Returns, for each job, held + 2 × recorded. held is 1 if the job was in the processing
-- list, 0 if not: a reaper took this worker for dead and put the job back, so another copy
-- of it runs or waits. recorded says an upload record exists, which the caller then
-- aborts; telling it here spares every other job a round trip. The job's stored marker is
-- left to expire (see s3pod/settlement.py): a copy of the job run later (pushed twice)
-- finds its file deleted and the marker says its object is stored. Once the job is
-- acknowledged here its marker's TTL is cut to ARGV[n+1] (duplicates come within minutes),
-- so a busy queue does not keep a marker per job for days; a job no longer held keeps its
-- marker whole for the copy a reaper put back. The queue is never searched: with a long backlog that is a scan of millions of
-- entries inside Redis. Several jobs go in one call to save round trips; each is settled
-- exactly as it would be alone.
local n = #ARGV - 1
local after_ack_s = tonumber(ARGV[n + 1])
local found = {}
for i = 1, n do
  local held = redis.call('LREM', KEYS[1], 1, ARGV[i])
  if held == 1 then
    local ttl = redis.call('TTL', KEYS[2 * i + 1])
    if ttl > after_ack_s then
      redis.call('EXPIRE', KEYS[2 * i + 1], after_ack_s)
    end
  end
  found[i] = held + 2 * redis.call('EXISTS', KEYS[2 * i])
end
return found
