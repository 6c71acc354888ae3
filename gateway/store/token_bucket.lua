-- One throttle decision, atomically, on the Redis server (gateway/store/redis.py).
--
-- KEYS[1]  the bucket: a hash {tokens, stamp}; missing means full
-- ARGV[1]  capacity (the burst), tokens
-- ARGV[2]  refill rate, tokens per second
-- returns  {allowed 1|0, whole tokens left, ms until full, ms until the next token (0 if allowed)}
--
-- Time is the Redis server's own clock (TIME), so gateways whose clocks disagree
-- still share one exact limit. Calling TIME before a write is allowed because Redis
-- 5+ replicates a script by its effects, not by re-running it (the only mode in 7).
-- A clock that steps back (failover to a replica) adds no tokens; it never removes any.
-- The key expires once the bucket would be full again, which is the same as missing,
-- so idle buckets vanish on their own.

local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2]) / 1000000 -- tokens per microsecond
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil or stamp == nil then
  tokens = capacity
elseif now > stamp then
  tokens = math.min(capacity, tokens + (now - stamp) * rate)
end

-- 1e-9: 6 s at 10/minute is 0.9999999999999999 tokens in floating point.
if tokens >= 1 - 1e-9 then
  tokens = math.max(0, tokens - 1)
  local full_ms = math.ceil((capacity - tokens) / rate / 1000)
  -- Formatted by hand: Lua would write numbers with 14 digits, and a microsecond
  -- clock has 16.
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'stamp', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[1], full_ms + 1000)
  return {1, math.floor(tokens + 1e-9), full_ms, 0}
end
-- Refused: nothing written; the next call refills from the same stamp.
return {0, 0, math.ceil((capacity - tokens) / rate / 1000), math.ceil((1 - tokens) / rate / 1000)}
