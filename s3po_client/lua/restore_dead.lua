-- Put the entries ``s3po dead retry`` kept back at the dead list's tail, in their order.
--
-- KEYS[1]  <prefix>:dead:kept  list: entries kept, newest first
-- KEYS[2]  <prefix>:dead       list: dead entries, newest first; every entry in it now is
--                              newer than the kept ones (those were taken off its tail)
-- ARGV[1]  the most entries to move in this call (Redis is held one chunk at a time)
--
-- Moves the newest kept entry first, each to the tail: the oldest ends last, where it was.
-- Returns the number moved (fewer than ARGV[1]: none is left).
local moved = 0
for _ = 1, tonumber(ARGV[1]) do
  if not redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') then
    break
  end
  moved = moved + 1
end
return moved
