-- Tollgate's ledger in Redis: one script, called once per mutation, so each is one
-- atomic round trip. The same rules as ledger/pools.py, line for line; every integer
-- stays below 2^53 so Lua's doubles hold it exactly.
--
-- KEYS[1] record hash, KEYS[2] deadlines zset, KEYS[3] records zset; then for each
-- pool its counters hash and its sliding-bucket hash. All keys share the org's hash
-- tag, so the script touches one slot and runs unchanged on Redis Cluster.
--
-- ARGV[1] action: reserve | commit | release | expire | extend | snapshot | prune | import
-- ARGV[2] now in ms, or "" for the server's own clock (TIME), so skewed pods agree
-- ARGV[3] not after: the last ms (on this clock) at which the caller still waits for
-- the answer, or "". A call that reaches Redis later (it sat in a socket buffer while
-- Redis was stalled, say) changes nothing: its caller was already told it failed.
-- ARGV[4] number of pools; ARGV[5..] one spec per pool (below), then the action's
-- own arguments.

local BUCKETS = 60

local function fmt(x) return string.format('%.0f', x) end

-- floor(a / b) exactly, for non-negative integers below 2^53.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end

local function drained(elapsed, cap, duration)
  if elapsed <= 0 or cap <= 0 then return 0 end
  local chunk = idiv(9007199254740992, cap)
  if chunk < 1 then chunk = 1 end
  local full = idiv(elapsed, chunk)
  local rest = elapsed - full * chunk
  return full * idiv(chunk * cap, duration) + idiv(rest * cap, duration)
end

local function now_ms()
  if ARGV[2] ~= '' then return tonumber(ARGV[2]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + idiv(tonumber(t[2]), 1000)
end

-- A pool spec, one argument of space-separated fields (pool ids hold no spaces): id,
-- policy (hard|soft|warn), cap, usable cap for this request's priority, max_calls,
-- max_tokens, max_open, window kind (none|fixed|sliding|token_bucket), then the window's
-- numbers: fixed windows get three consecutive window starts around the caller's clock
-- (the zone arithmetic is done by the caller), sliding windows their bucket width, token
-- buckets their duration. One argument per pool rather than twelve: the client's cost of
-- sending a call grows with its argument count.
local function read_specs(n, base)
  local specs = {}
  for i = 1, n do
    local f = {}
    for field in string.gmatch(ARGV[base + i - 1], '%S+') do f[#f + 1] = field end
    specs[i] = {
      id = f[1], policy = f[2], cap = tonumber(f[3]), usable = tonumber(f[4]),
      max_calls = tonumber(f[5]), max_tokens = tonumber(f[6]), max_open = tonumber(f[7]),
      kind = f[8], w1 = tonumber(f[9]), w2 = tonumber(f[10]), w3 = tonumber(f[11]), w4 = tonumber(f[12]),
    }
  end
  return specs, base + n
end

local FIELDS = {'mark', 'spent', 'calls', 'tokens', 'held', 'hcalls', 'htokens'}

local function load(pkey, bkey, spec)
  local v = redis.call('HMGET', pkey, unpack(FIELDS))
  local s = {pkey = pkey, bkey = bkey, buckets = {}, dropped = {}}
  for i, f in ipairs(FIELDS) do s[f] = tonumber(v[i]) or 0 end
  if spec.kind == 'sliding' then
    local raw = redis.call('HGETALL', bkey)
    for i = 1, #raw, 2 do
      local idx, part = string.match(raw[i], '^(%d+):(%a)$')
      idx = tonumber(idx)
      s.buckets[idx] = s.buckets[idx] or {s = 0, c = 0, t = 0}
      s.buckets[idx][part] = tonumber(raw[i + 1])
    end
  end
  return s
end

local function roll(s, spec, now)
  if spec.kind == 'fixed' then
    local start
    if now >= spec.w3 and now < spec.w4 then start = spec.w3
    elseif now >= spec.w2 and now < spec.w3 then start = spec.w2
    elseif now >= spec.w1 and now < spec.w2 then start = spec.w1
    else return redis.error_reply('TOLLGATE_SKEW clock outside the windows the caller computed') end
    if start > s.mark then s.spent, s.calls, s.tokens, s.mark = 0, 0, 0, start end
  elseif spec.kind == 'sliding' then
    local idx = idiv(now, spec.w1)
    if idx > s.mark then
      s.mark = idx
      for b, v in pairs(s.buckets) do
        if b <= idx - BUCKETS then
          s.spent, s.calls, s.tokens = s.spent - v.s, s.calls - v.c, s.tokens - v.t
          s.buckets[b] = nil
          table.insert(s.dropped, b)
        end
      end
    end
  end
  return nil
end

local function spent_now(s, spec, now)
  if spec.kind == 'token_bucket' then
    local d = s.spent - drained(now - s.mark, spec.cap, spec.w1)
    if d < 0 then return 0 end
    return d
  end
  return s.spent
end

local function charge(s, spec, cost, tokens, now)
  if spec.kind == 'token_bucket' then
    s.spent = spent_now(s, spec, now) + cost
    s.mark = now
    return
  end
  s.spent, s.calls, s.tokens = s.spent + cost, s.calls + 1, s.tokens + tokens
  if spec.kind == 'sliding' then
    local b = s.buckets[s.mark] or {s = 0, c = 0, t = 0}
    b.s, b.c, b.t = b.s + cost, b.c + 1, b.t + tokens
    s.buckets[s.mark] = b
  end
end

-- Take back a charge made at ``ended``: from the counters of the window it fell in, if that
-- window is still the one they hold (a fixed window's current one, a sliding bucket not yet
-- slid out); a token bucket's debt drops by it, never below zero.
local function uncharge(s, spec, cost, tokens, ended, now)
  if spec.kind == 'token_bucket' then
    local d = spent_now(s, spec, now) - cost
    if d < 0 then d = 0 end
    s.spent, s.mark = d, now
    return
  end
  if spec.kind == 'fixed' then
    if ended < s.mark then return end
  elseif spec.kind == 'sliding' then
    local idx = idiv(ended, spec.w1)
    local b = s.buckets[idx]
    if not b then return end
    b.s, b.c, b.t = b.s - cost, b.c - 1, b.t - tokens
  end
  s.spent, s.calls, s.tokens = s.spent - cost, s.calls - 1, s.tokens - tokens
end

local function save(s)
  redis.call('HSET', s.pkey, 'mark', fmt(s.mark), 'spent', fmt(s.spent), 'calls', fmt(s.calls),
    'tokens', fmt(s.tokens), 'held', fmt(s.held), 'hcalls', fmt(s.hcalls), 'htokens', fmt(s.htokens))
  for _, b in ipairs(s.dropped) do
    redis.call('HDEL', s.bkey, b .. ':s', b .. ':c', b .. ':t')
  end
  for b, v in pairs(s.buckets) do
    redis.call('HSET', s.bkey, b .. ':s', fmt(v.s), b .. ':c', fmt(v.c), b .. ':t', fmt(v.t))
  end
end

-- What the caller needs to rebuild the pool's snapshot: its counters, the oldest
-- sliding bucket and the spend at ``now``.
local function state_reply(s, spec, now)
  local oldest = -1
  for b, _ in pairs(s.buckets) do if oldest < 0 or b < oldest then oldest = b end end
  return {s.mark, s.spent, s.calls, s.tokens, s.held, s.hcalls, s.htokens, oldest, spent_now(s, spec, now)}
end

local RECORD = {'pools', 'amount', 'tokens', 'created', 'expires', 'state', 'charged', 'used', 'ended',
                'model', 'task', 'fp', 'cfp', 'parent', 'attempt'}

local function record_reply(key)
  return redis.call('HMGET', key, unpack(RECORD))
end

local action = ARGV[1]
local now = now_ms()
if ARGV[3] ~= '' and now > tonumber(ARGV[3]) then return {'late', now} end
local n = tonumber(ARGV[4])
local specs, next_arg = read_specs(n, 5)

local function pools()
  local out = {}
  for i = 1, n do
    out[i] = load(KEYS[2 + 2 * i], KEYS[3 + 2 * i], specs[i])
    local err = roll(out[i], specs[i], now)
    if err then return nil, err end
  end
  return out
end

local function states(ps)
  local out = {}
  for i = 1, n do out[i] = state_reply(ps[i], specs[i], now) end
  return out
end

if action == 'snapshot' then
  local ps, err = pools()
  if err then return err end
  return {'ok', now, states(ps)}
end

-- prune: delete records that ended over ``retention`` ms ago. Their charges are
-- folded into each pool's ``arch_*`` counters first, so an audit of a pool without
-- a window (spent forever) still adds up. KEYS[1] is the records zset.
if action == 'prune' then
  local retention, batch, org_prefix = tonumber(ARGV[next_arg]), tonumber(ARGV[next_arg + 1]), ARGV[next_arg + 2]
  local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', fmt(now - retention), 'LIMIT', 0, batch)
  local pruned = 0
  for _, id in ipairs(old) do
    local key = org_prefix .. 'r:' .. id
    local r = redis.call('HMGET', key, 'state', 'pools', 'charged', 'used')
    if r[1] and r[1] ~= 'open' then
      if r[1] == 'committed' or r[1] == 'expired' then
        for pool in string.gmatch(r[2], '[^\n]+') do
          local pkey = org_prefix .. 'p:' .. pool
          redis.call('HINCRBY', pkey, 'arch_spent', r[3])
          redis.call('HINCRBY', pkey, 'arch_calls', 1)
          redis.call('HINCRBY', pkey, 'arch_tokens', r[4])
        end
      end
      redis.call('DEL', key)
      redis.call('ZREM', KEYS[1], id)
      pruned = pruned + 1
    elseif not r[1] then
      redis.call('ZREM', KEYS[1], id)
    end
  end
  return {'ok', now, pruned}
end

local rkey = KEYS[1]
local deadlines = KEYS[2]

-- import: a reservation that a sidecar admitted and ended on its own while Redis
-- was unreachable (fail-open). The money is already spent, so there is no
-- admission: the record is written as ended and its charge lands in every pool,
-- once (a second import of the same id changes nothing).
if action == 'import' then
  local rid, amount, tokens, created, charged, used = ARGV[next_arg], ARGV[next_arg + 1], ARGV[next_arg + 2],
    ARGV[next_arg + 3], tonumber(ARGV[next_arg + 4]), tonumber(ARGV[next_arg + 5])
  local state, model, task, fp, cfp, pool_ids = ARGV[next_arg + 6], ARGV[next_arg + 7], ARGV[next_arg + 8],
    ARGV[next_arg + 9], ARGV[next_arg + 10], ARGV[next_arg + 11]
  local parent, attempt = ARGV[next_arg + 12], ARGV[next_arg + 13]
  if redis.call('EXISTS', rkey) == 1 then return {'replay', now} end
  local ps, err = pools()
  if err then return err end
  for i = 1, n do
    if state ~= 'released' then charge(ps[i], specs[i], charged, used, now) end
    save(ps[i])
  end
  redis.call('HSET', rkey, 'pools', pool_ids, 'amount', amount, 'tokens', tokens, 'created', created,
    'expires', created, 'state', state, 'charged', fmt(charged), 'used', fmt(used), 'ended', fmt(now),
    'model', model, 'task', task, 'fp', fp, 'cfp', cfp, 'parent', parent, 'attempt', attempt)
  redis.call('ZADD', KEYS[3], fmt(now), rid)
  return {'ok', now}
end

if action == 'reserve' then
  local rid, amount, tokens, ttl = ARGV[next_arg], tonumber(ARGV[next_arg + 1]), tonumber(ARGV[next_arg + 2]),
    tonumber(ARGV[next_arg + 3])
  local model, task, fp, pool_ids = ARGV[next_arg + 4], ARGV[next_arg + 5], ARGV[next_arg + 6], ARGV[next_arg + 7]
  local parent, attempt = ARGV[next_arg + 8], ARGV[next_arg + 9]
  local records = KEYS[3]
  if redis.call('EXISTS', rkey) == 1 then
    if redis.call('HGET', rkey, 'fp') ~= fp then return {'conflict'} end
    local ps, err = pools()
    if err then return err end
    return {'replay', now, record_reply(rkey), states(ps)}
  end
  local ps, err = pools()
  if err then return err end
  for i = 1, n do
    local s, spec = ps[i], specs[i]
    if spec.policy ~= 'warn' then
      local used = spent_now(s, spec, now) + s.held
      if used + amount > spec.usable then
        return {'refused', i, 'cost', amount, spec.usable - used, state_reply(s, spec, now), now}
      end
      if spec.max_calls > 0 and s.calls + s.hcalls + 1 > spec.max_calls then
        return {'refused', i, 'calls', 1, spec.max_calls - s.calls - s.hcalls, state_reply(s, spec, now), now}
      end
      if spec.max_tokens > 0 and s.tokens + s.htokens + tokens > spec.max_tokens then
        return {'refused', i, 'tokens', tokens, spec.max_tokens - s.tokens - s.htokens, state_reply(s, spec, now),
                now}
      end
      if spec.max_open > 0 and s.hcalls + 1 > spec.max_open then
        return {'refused', i, 'open', 1, spec.max_open - s.hcalls, state_reply(s, spec, now), now}
      end
    end
  end
  for i = 1, n do
    local s = ps[i]
    s.held, s.hcalls, s.htokens = s.held + amount, s.hcalls + 1, s.htokens + tokens
    save(s)
  end
  local expires = now + ttl
  redis.call('HSET', rkey, 'pools', pool_ids, 'amount', fmt(amount), 'tokens', fmt(tokens), 'created', fmt(now),
    'expires', fmt(expires), 'state', 'open', 'charged', '0', 'used', '0', 'ended', '0', 'model', model,
    'task', task, 'fp', fp, 'cfp', '', 'parent', parent, 'attempt', attempt)
  redis.call('ZADD', deadlines, fmt(expires), rid)
  redis.call('ZADD', records, fmt(now), rid)
  return {'ok', now, record_reply(rkey), states(ps)}
end

-- commit | release | expire | extend: the reservation's own pools, checked against
-- what the caller passed so a spec can never be applied to the wrong pool.
if redis.call('EXISTS', rkey) == 0 then return {'missing'} end
local rid, pool_ids = ARGV[next_arg], ARGV[next_arg + 1]
local rec = redis.call('HMGET', rkey, 'pools', 'amount', 'tokens', 'expires', 'state', 'charged', 'cfp')
if rec[1] ~= pool_ids then return {'pools_changed', rec[1]} end
local amount, tokens, expires, state = tonumber(rec[2]), tonumber(rec[3]), tonumber(rec[4]), rec[5]

-- amend: an expired reservation whose outcome was learned after its expiry (a reserve the
-- sidecar gave up on and undoes, or a fail-open reservation its caller ended while the store
-- was out of reach): the expiry's charge comes off the pools, and the record takes the
-- outcome its caller was told. Anything but an expired record is left as it is.
if action == 'amend' then
  if state ~= 'expired' then return {'noop', now} end
  local new_state, charged, used, cfp = ARGV[next_arg + 3], tonumber(ARGV[next_arg + 4]),
    tonumber(ARGV[next_arg + 5]), ARGV[next_arg + 6]
  local old = redis.call('HMGET', rkey, 'charged', 'used', 'ended')
  local ps, err = pools()
  if err then return err end
  for i = 1, n do
    uncharge(ps[i], specs[i], tonumber(old[1]), tonumber(old[2]), tonumber(old[3]), now)
    if new_state == 'committed' then charge(ps[i], specs[i], charged, used, now) end
    save(ps[i])
  end
  if new_state ~= 'committed' then charged, used = 0, 0 end
  redis.call('HSET', rkey, 'state', new_state, 'charged', fmt(charged), 'used', fmt(used), 'ended', fmt(now),
    'cfp', cfp)
  redis.call('ZADD', KEYS[3], fmt(now), rid)
  return {'ok', now, record_reply(rkey), states(ps)}
end

local function finish(new_state, charged, used, cfp)
  local ps, err = pools()
  if err then return nil, err end
  for i = 1, n do
    local s = ps[i]
    s.held, s.hcalls, s.htokens = s.held - amount, s.hcalls - 1, s.htokens - tokens
    if new_state == 'committed' or new_state == 'expired' then charge(s, specs[i], charged, used, now) end
    save(s)
  end
  redis.call('HSET', rkey, 'state', new_state, 'charged', fmt(charged), 'used', fmt(used), 'ended', fmt(now),
    'cfp', cfp)
  redis.call('ZREM', deadlines, rid)
  -- Re-scored by its end, so retention counts from when it ended.
  redis.call('ZADD', KEYS[3], fmt(now), rid)
  return states(ps)
end

local expiry_policy = ARGV[next_arg + 2]
local function expire()
  if expiry_policy == 'charge' then return finish('expired', amount, tokens, '') end
  return finish('expired', 0, 0, '')
end

if state == 'open' and now >= expires then
  local st, err = expire()
  if err then return err end
  if action == 'expire' then return {'ok', now, record_reply(rkey), st} end
  return {'ended', now, record_reply(rkey)}
end

if action == 'expire' then return {'noop', now} end

if state ~= 'open' then
  if action == 'commit' and state == 'committed' then
    if rec[7] ~= ARGV[next_arg + 5] then return {'conflict'} end
    local ps, err = pools()
    if err then return err end
    return {'replay', now, record_reply(rkey), states(ps)}
  end
  if action == 'release' and state == 'released' then
    local ps, err = pools()
    if err then return err end
    return {'replay', now, record_reply(rkey), states(ps)}
  end
  return {'ended', now, record_reply(rkey)}
end

if action == 'extend' then
  local new_expires = now + tonumber(ARGV[next_arg + 3])
  redis.call('HSET', rkey, 'expires', fmt(new_expires))
  redis.call('ZADD', deadlines, fmt(new_expires), rid)
  return {'ok', now, record_reply(rkey), {}}
end

local st, err
if action == 'commit' then
  st, err = finish('committed', tonumber(ARGV[next_arg + 3]), tonumber(ARGV[next_arg + 4]), ARGV[next_arg + 5])
else
  st, err = finish('released', 0, 0, '')
end
if err then return err end
return {'ok', now, record_reply(rkey), st}
