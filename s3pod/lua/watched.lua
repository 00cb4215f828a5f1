-- Queue the files a spool watcher found, each once: a file's job is pushed only if its
-- "queued" marker could be set, in the same step, so a rescan, a restart or a rename storm
-- never pushes a file twice and a watcher killed between the two writes loses nothing.
--
-- KEYS[1]        <prefix>:queue                list: pending jobs
-- KEYS[1+i]      <prefix>:watched:<job id>     string: file i was queued (its job id derives from its identity)
-- ARGV[1]        seconds a "queued" marker lives
-- ARGV[1+i]      job i, serialised (i = 1..n)
--
-- Returns the indexes (1..n) of the jobs pushed now; the others were queued before.
local pushed = {}
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('LPUSH', KEYS[1], ARGV[i])
    pushed[#pushed + 1] = i - 1
  end
end
return pushed
