"""The shared limits engine: the semantics of ``MemoryLimits`` with every counter in one Redis, for several gateway
processes or instances.

- **Atomic calls.** ``admit`` is one Lua script (key and team together, all or nothing), ``settle`` one more,
  ``release`` and ``usage`` one each; ``EVALSHA``, reloaded after a Redis restart or ``SCRIPT FLUSH``.
- **Time.** Processes share no monotonic clock, so windows and deadlines use the injected clock's ``wall()``
  (integer microseconds, passed to the scripts). Instances need synchronized clocks (NTP); a skew of *s* seconds
  moves an instance's rpm window and reservation deadlines by *s*. The tpm windows are the wall clock's minutes.
- **Money.** Lua numbers are doubles, so USD is stored as integer nanodollars (1e-9 USD), exact up to 2**53
  nanodollars (about $9M) per amount: reservations are rounded up, settled and seeded costs half up, budgets
  down. Callers get ``Decimal`` back.
- **Expiry.** Each scope keeps its open request ids in a ZSET by deadline and each request a record of what it
  holds in every scope; the scripts of a scope give back expired reservations (tokens, budget, lease) before
  deciding, then keep the record one more TTL so that a late settle still counts its cost once. Redis key TTLs
  (relative, generous) only collect garbage; they never decide. An open record has no TTL: the request that
  never settles stays until one of its scopes is used again.
- **Seeding.** A scope's budget state for a period carries a ``seeded`` marker. When admission finds a budgeted
  scope unseeded (a flushed or new Redis, a new period, a budget set mid-period) it counts nothing and says so;
  the store loads the spend from ``spend_loader`` (the request log), seeds it unless another instance already
  has, and admits again. Requests in flight when Redis loses its data are forgotten (their settles return False).

Keys (``prefix`` default ``gg:limits:``): ``s:{kind}:{id}:h`` (tpm window, requests, tokens, in flight),
``:hits`` (rpm ZSET), ``:open`` (open request ids by deadline), ``:b`` (budget period: spend, reserved, capped,
seeded); ``r:{request_id}`` (a request's parts). Budget keys of ``day``/``week``/``month`` expire some time after
their period ends; ``total`` ones never. One Redis is assumed (not Redis Cluster: the scripts derive keys), with
``maxmemory-policy noeviction`` or a ``volatile-*`` policy: evicted limits state would be forgotten usage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from gophergate.limits.memory import DEFAULT_RESERVATION_TTL, SpendLoader
from gophergate.limits.once import once
from gophergate.limits.periods import ALWAYS, NEVER, as_datetime, period_bounds
from gophergate.limits.types import (
    Admitted,
    Clock,
    LimitName,
    LimitsStore,
    LimitsUnavailable,
    Period,
    RateHeaders,
    Refused,
    Scope,
    ScopeKind,
    SystemClock,
    Usage,
)

log = logging.getLogger("gophergate.limits")

_US = 1_000_000  # microseconds per second
_WINDOW_US = 60 * _US
_NANO = Decimal("1e9")
_ZERO = Decimal(0)
_MAX_NANOS = 2**53  # integers a double holds exactly
_SEED_ATTEMPTS = 4
_T = TypeVar("_T")
_UNREACHABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError, OSError)

# Shared by every script. Numbers are written with fmt(): Lua's tostring() keeps 14 digits only.
_LIB = """
local W = 60000000  -- the rpm and tpm window, in microseconds
local RETRY = 1000000  -- microseconds, as MemoryLimits.PARALLEL_RETRY
local function fmt(v)
  if v == 0 then return '0' end
  return string.format('%.0f', v)
end
local function num(v, default)
  if v then return tonumber(v) end
  return default
end
-- A budget state that lost keys (eviction) must not go below zero: that would hand out money never budgeted.
local function less(total, part)
  return math.max(0, total - tonumber(part))
end
local function opt(v)
  if v == '' then return nil end
  return tonumber(v)
end

-- An open reservation past its deadline gives back its tokens, budget and lease in every scope it holds; the
-- record stays one more TTL, zeroed, so that a late settle still counts the cost once.
local function expire(rkey, rid, now, ttl, rec_gc)
  local head = redis.call('HMGET', rkey, 'dl', 'x', 'l', 'n')
  if not head[1] or head[2] == '1' or tonumber(head[1]) > now then return end
  local leased = head[3] == '1'
  for i = 1, tonumber(head[4]) do
    local part = redis.call('HMGET', rkey, 'b'..i, 't'..i, 'w'..i, 'c'..i, 'k'..i, 'p'..i)
    local bkey, hkey = part[1]..':b', part[1]..':h'
    local b = redis.call('HMGET', bkey, 'p', 'res', 'cap')
    if b[1] == part[6] then
      redis.call('HSET', bkey, 'res', fmt(less(num(b[2], 0), part[4])), 'cap', fmt(less(num(b[3], 0), part[5])))
    end
    local h = redis.call('HMGET', hkey, 'w', 'tok', 'inf')
    if h[1] == part[3] then
      redis.call('HSET', hkey, 'tok', fmt(num(h[2], 0) - tonumber(part[2])))
    end
    if leased and num(h[3], 0) > 0 then
      redis.call('HSET', hkey, 'inf', fmt(tonumber(h[3]) - 1))
    end
    redis.call('ZREM', part[1]..':open', rid)
    redis.call('HSET', rkey, 't'..i, '0', 'c'..i, '0', 'k'..i, '0')
  end
  redis.call('HSET', rkey, 'x', '1', 'l', '0', 'dl', fmt(tonumber(head[1]) + ttl))
  redis.call('PEXPIRE', rkey, rec_gc)
end

local function purge(base, prefix, now, ttl, rec_gc)
  local okey = base..':open'
  for _, rid in ipairs(redis.call('ZRANGEBYSCORE', okey, '-inf', fmt(now))) do
    expire(prefix..'r:'..rid, rid, now, ttl, rec_gc)
    redis.call('ZREM', okey, rid)
  end
end
"""

# KEYS: the request's record, then per scope: :h :hits :open :b.
# ARGV: rid now window tokens cost n, then the store's constants prefix ttl seeded0 scope_gc rec_gc hits_gc, then
#   per scope: base rpm tpm max_parallel budget marker period_end budget_gc ('' = none).
# Returns one string of comma-separated fields (one bulk string parses far cheaper than a list of twelve): 'dup',
#   'seed,i...' (counting nothing), or 'ok|refused,limit,scope,retry_after,resets_at,6 header numbers,budget_remaining'.
_ADMIT = (
    _LIB
    + """
local rkey, rid = KEYS[1], ARGV[1]
local now, window, tokens, cost, n = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6])
local prefix, ttl, seeded0 = ARGV[7], tonumber(ARGV[8]), ARGV[9]
local scope_gc, rec_gc, hits_gc = ARGV[10], ARGV[11], ARGV[12]
local wtag = fmt(window)

local head = redis.call('HMGET', rkey, 'dl', 'x')
if head[1] then
  if head[2] == '1' and tonumber(head[1]) <= now then redis.call('DEL', rkey) else return 'dup' end
end

local S = {}
for i = 1, n do
  local a, k = 12 + (i - 1) * 8, 1 + (i - 1) * 4
  S[i] = {base = ARGV[a + 1], rpm = opt(ARGV[a + 2]), tpm = opt(ARGV[a + 3]), par = opt(ARGV[a + 4]),
          budget = opt(ARGV[a + 5]), marker = ARGV[a + 6], pend = opt(ARGV[a + 7]), bgc = ARGV[a + 8],
          h = KEYS[k + 1], hits = KEYS[k + 2], open = KEYS[k + 3], b = KEYS[k + 4]}
end
-- A scope's :h keeps 'nx', the earliest deadline its :open may hold ('-': none open; absent: unknown), so that
-- expired reservations are looked for only once one can exist; and 'gx', until when the TTLs of :h and :hits
-- need no refresh. Both only save work: a lost :h means a purge and a refresh.
local function read_h(s)
  local h = redis.call('HMGET', s.h, 'w', 'req', 'tok', 'inf', 'nx', 'gx')
  if h[1] == wtag then s.req, s.tok = num(h[2], 0), num(h[3], 0) else s.req, s.tok = 0, 0 end
  s.inf, s.nx, s.gx = num(h[4], 0), h[5], num(h[6], 0)
end
local purged = false
for i = 1, n do
  local s = S[i]
  read_h(s)
  if not s.nx or (s.nx ~= '-' and tonumber(s.nx) <= now) then
    purge(s.base, prefix, now, ttl, rec_gc)
    local first = redis.call('ZRANGE', s.open, 0, 0, 'WITHSCORES')
    s.nx = first[2] or '-'
    purged = true
  end
end
if purged then  -- an expired reservation gave back what it held, maybe in another of these scopes too
  for i = 1, n do
    local nx = S[i].nx
    read_h(S[i])
    S[i].nx = nx
  end
end

local unseeded = {'seed'}
for i = 1, n do
  local s = S[i]
  local b = redis.call('HMGET', s.b, 'p', 'spend', 'res', 'cap', 'seeded')
  s.new_period = b[1] ~= s.marker
  if b[1] == s.marker then
    s.spend, s.res, s.cap, s.seeded = num(b[2], 0), num(b[3], 0), num(b[4], 0), b[5]
  else
    s.spend, s.res, s.cap, s.seeded = 0, 0, 0, seeded0
  end
  if s.budget and s.seeded ~= '1' then table.insert(unseeded, tostring(i)) end
  if s.rpm then
    redis.call('ZREMRANGEBYSCORE', s.hits, '-inf', fmt(now - W))
    s.count = redis.call('ZCARD', s.hits)
  end
end
if #unseeded > 1 then return table.concat(unseeded, ',') end

local function answer(status, limit, who, wait, reset)
  local rq, tk, least = nil, nil, nil
  for i = 1, n do
    local s = S[i]
    if s.rpm then
      local reset_r = 0
      if status == 'ok' then
        reset_r = W  -- the newest admission is this one, made now
      elseif s.count > 0 then
        local last = redis.call('ZRANGE', s.hits, -1, -1, 'WITHSCORES')
        reset_r = tonumber(last[2]) + W - now
      end
      local left = math.max(0, s.rpm - s.count)
      if not rq or left < rq[1] or (left == rq[1] and s.rpm < rq[2]) then rq = {left, s.rpm, reset_r} end
    end
    if s.tpm then
      local left = math.max(0, s.tpm - s.tok)
      if not tk or left < tk[1] or (left == tk[1] and s.tpm < tk[2]) then
        tk = {left, s.tpm, (window + 1) * W - now}
      end
    end
    if s.budget then
      local left = math.max(0, s.budget - s.spend - s.res)
      if not least or left < least then least = left end
    end
  end
  local out = {status, limit, tostring(who), wait and fmt(wait) or '', reset and fmt(reset) or ''}
  for _, t in ipairs({rq or false, tk or false}) do
    if t then
      for _, j in ipairs({2, 1, 3}) do table.insert(out, fmt(t[j])) end  -- limit, remaining, reset
    else
      for _ = 1, 3 do table.insert(out, '') end
    end
  end
  table.insert(out, least and fmt(least) or '')
  return table.concat(out, ',')
end

for i = 1, n do
  local s = S[i]
  if s.rpm and s.count >= s.rpm then
    local wait = nil
    if s.rpm > 0 then
      local e = redis.call('ZRANGE', s.hits, s.count - s.rpm, s.count - s.rpm, 'WITHSCORES')
      wait = tonumber(e[2]) + W - now
    end
    return answer('refused', 'requests', i, wait, nil)
  end
end
for i = 1, n do
  local s = S[i]
  if s.tpm and s.tok >= s.tpm then
    local wait = nil
    if s.tpm > 0 then wait = (window + 1) * W - now end
    return answer('refused', 'tokens', i, wait, nil)
  end
end
for i = 1, n do
  local s = S[i]
  if s.par and s.inf >= s.par then
    local wait = nil
    if s.par > 0 then wait = RETRY end
    return answer('refused', 'parallel', i, wait, nil)
  end
end
for i = 1, n do
  local s = S[i]
  if s.budget then
    local left = s.budget - s.spend - s.res
    if left <= 0 or s.cap > 0 then
      local wait = s.pend and (s.pend - now) or nil
      if left > 0 then wait = RETRY end  -- money left, all held by a capped reservation in flight
      return answer('refused', 'budget', i, wait, s.pend)
    end
  end
end

local deadline = fmt(now + ttl)
local record = {'dl', deadline, 'x', '0', 'l', '1', 'n', tostring(n)}
for i = 1, n do
  local s = S[i]
  local refresh = s.gx <= now
  if s.rpm then
    redis.call('ZADD', s.hits, fmt(now), fmt(now)..' '..rid)
    if refresh or s.count == 0 then redis.call('PEXPIRE', s.hits, hits_gc) end
    s.count = s.count + 1
  end
  local held = tokens
  if s.tpm then held = math.min(tokens, s.tpm - s.tok) end
  s.req, s.tok, s.inf = s.req + 1, s.tok + held, s.inf + 1
  local reserve, capped = cost, 0
  if s.budget then
    local left = s.budget - s.spend - s.res
    if cost > left then reserve, capped, s.cap = left, 1, s.cap + 1 end
  end
  s.res = s.res + reserve
  if s.nx == '-' then s.nx = deadline end  -- deadlines only grow (one TTL): an earlier one stays the earliest
  local h = {'w', wtag, 'req', fmt(s.req), 'tok', fmt(s.tok), 'inf', fmt(s.inf), 'nx', s.nx}
  if refresh then
    table.insert(h, 'gx')
    table.insert(h, fmt(now + tonumber(scope_gc) * 500))  -- half the TTL, in microseconds
  end
  redis.call('HSET', s.h, unpack(h))
  if refresh then redis.call('PEXPIRE', s.h, scope_gc) end
  redis.call('HSET', s.b, 'p', s.marker, 'spend', fmt(s.spend), 'res', fmt(s.res), 'cap', fmt(s.cap),
    'seeded', s.seeded)
  if s.new_period then  -- the budget key's TTL is set when its period starts (and by _SEED)
    if s.pend then redis.call('PEXPIRE', s.b, s.bgc) else redis.call('PERSIST', s.b) end
  end
  redis.call('ZADD', s.open, deadline, rid)
  local parts = {'b'..i, s.base, 't'..i, fmt(held), 'w'..i, wtag, 'c'..i, fmt(reserve), 'k'..i, tostring(capped),
                 'p'..i, s.marker}
  for _, v in ipairs(parts) do table.insert(record, v) end
end
-- No TTL on an open record or on :open: a reservation must be given back by expire(), never lost to the garbage
-- collector (a total budget would stay reserved for ever). Both go at settle or expiry.
redis.call('HSET', rkey, unpack(record))
return answer('ok', '', 0, nil, nil)
"""
)

# KEYS: the record. ARGV: rid now window tokens cost, then the constants ttl scope_gc rec_gc. Returns 1 when
# settled, else 0.
_SETTLE = (
    _LIB
    + """
local rkey, rid = KEYS[1], ARGV[1]
local now, window, tokens, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl, scope_gc, rec_gc = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local wtag = fmt(window)

-- The record's head and its first two parts (a key and its team) in one read.
local F = {'dl', 'x', 'l', 'n', 'b1', 't1', 'w1', 'c1', 'k1', 'p1', 'b2', 't2', 'w2', 'c2', 'k2', 'p2'}
local head = redis.call('HMGET', rkey, unpack(F))
if not head[1] then return 0 end
if head[2] ~= '1' and tonumber(head[1]) <= now then  -- it expired just now: give back what it held first
  expire(rkey, rid, now, ttl, rec_gc)
  head = redis.call('HMGET', rkey, unpack(F))
end
if tonumber(head[1]) <= now then
  redis.call('DEL', rkey)  -- expired, and the late-settle TTL is over too
  return 0
end
local leased = head[3] == '1'
for i = 1, tonumber(head[4]) do
  local part
  if i <= 2 then
    local o = 4 + (i - 1) * 6
    part = {head[o + 1], head[o + 2], head[o + 3], head[o + 4], head[o + 5], head[o + 6]}
  else
    part = redis.call('HMGET', rkey, 'b'..i, 't'..i, 'w'..i, 'c'..i, 'k'..i, 'p'..i)
  end
  local bkey, hkey = part[1]..':b', part[1]..':h'
  local b = redis.call('HMGET', bkey, 'p', 'spend', 'res', 'cap')
  if b[1] == part[6] then  -- the cost belongs to the period the request was admitted in
    redis.call('HSET', bkey, 'spend', fmt(num(b[2], 0) + cost), 'res', fmt(less(num(b[3], 0), part[4])),
      'cap', fmt(less(num(b[4], 0), part[5])))
  end
  local h = redis.call('HMGET', hkey, 'w', 'req', 'tok', 'inf')
  local req, tok = num(h[2], 0), num(h[3], 0)
  if h[1] ~= wtag then req, tok = 0, 0 end
  local held = tonumber(part[2])
  if part[3] == wtag or tokens > held then  -- a turned window only takes the excess over the reservation
    tok = tok + tokens - held
  end
  local inf = num(h[4], 0)
  if leased and inf > 0 then inf = inf - 1 end
  redis.call('HSET', hkey, 'w', wtag, 'req', fmt(req), 'tok', fmt(tok), 'inf', fmt(inf))
  if not h[1] then redis.call('PEXPIRE', hkey, scope_gc) end  -- made anew here; admissions refresh it
  redis.call('ZREM', part[1]..':open', rid)
end
redis.call('DEL', rkey)
return 1
"""
)

# KEYS: the record. Ends the lease once; the reservations stay.
_RELEASE = (
    _LIB
    + """
local rkey = KEYS[1]
local head = redis.call('HMGET', rkey, 'x', 'l', 'n')
if not head[1] or head[1] == '1' or head[2] ~= '1' then return 0 end
for i = 1, tonumber(head[3]) do
  local hkey = redis.call('HGET', rkey, 'b'..i)..':h'
  local inf = num(redis.call('HGET', hkey, 'inf'), 0)
  if inf > 0 then redis.call('HSET', hkey, 'inf', fmt(inf - 1)) end
end
redis.call('HSET', rkey, 'l', '0')
return 1
"""
)

# KEYS: :h :hits :b of one scope. ARGV: base prefix now ttl window rpm? marker rec_gc.
# Returns {requests, tokens, in_flight, spend, reserved}.
_USAGE = (
    _LIB
    + """
local base, prefix = ARGV[1], ARGV[2]
local now, ttl, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local rpm, marker, rec_gc = ARGV[6], ARGV[7], ARGV[8]
purge(base, prefix, now, ttl, rec_gc)
local h = redis.call('HMGET', KEYS[1], 'w', 'req', 'tok', 'inf')
local req, tok = 0, 0
if h[1] == fmt(window) then req, tok = num(h[2], 0), num(h[3], 0) end
if rpm == '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now - W))
  req = redis.call('ZCARD', KEYS[2])
end
local b = redis.call('HMGET', KEYS[3], 'p', 'spend', 'res')
local spend, res = 0, 0
if b[1] == marker then spend, res = num(b[2], 0), num(b[3], 0) end
return {fmt(req), fmt(tok), fmt(num(h[4], 0)), fmt(spend), fmt(res)}
"""
)

# KEYS: :b of one scope. ARGV: marker amount force budget_gc ('' for total). Starts the period if it is new, then
# sets the spend and the seeded marker when ``force`` or not yet seeded (another instance may have won).
_SEED = (
    _LIB
    + """
local bkey, marker, amount, force, bgc = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local b = redis.call('HMGET', bkey, 'p', 'seeded')
local seeded = b[2]
if b[1] ~= marker then
  redis.call('HSET', bkey, 'p', marker, 'spend', '0', 'res', '0', 'cap', '0', 'seeded', '0')
  seeded = '0'
end
if bgc == '' then redis.call('PERSIST', bkey) else redis.call('PEXPIRE', bkey, bgc) end
if force == '1' or seeded ~= '1' then
  redis.call('HSET', bkey, 'spend', amount, 'seeded', '1')
  return 1
end
return 0
"""
)


# Batched calls: each ARGV is one call's keys and arguments joined by _SEP ("nkeys key... arg..."); the script runs
# the single-call body once per ARGV, in order, and answers a list. One EVALSHA then carries a whole turn's calls.
_SEP = "\x1f"
_DISPATCH = r"""
local function split(s)
  local out, i = {}, 1
  while true do
    local j = string.find(s, '\31', i, true)
    if not j then out[#out + 1] = string.sub(s, i); return out end
    out[#out + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end
local out = {}
for r = 1, #ARGV do
  local f = split(ARGV[r])
  local nk = tonumber(f[1])
  local keys, argv = {}, {}
  for j = 1, nk do keys[j] = f[1 + j] end
  for j = nk + 2, #f do argv[#argv + 1] = f[j] end
  out[r] = one(keys, argv)
end
return out
"""
_BATCH_MAX = 64  # calls per script run: Redis runs one script at a time, so a batch must stay short


def _batched(script: str) -> str:
    """The batched form of a single-call script (``_LIB`` + body)."""
    return _LIB + "local function one(KEYS, ARGV)\n" + script[len(_LIB) :] + "\nend\n" + _DISPATCH


class _Batcher:
    """Calls of one script made in the same turn of the event loop go to Redis as one batched script run (each
    call still decided on its own, in order), so under load one round trip, and redis-py's per-command work, serve
    a whole turn's admissions or settles. A call is its keys and arguments already packed (see ``_DISPATCH``).
    ``call`` answers a future (an unreachable Redis fails it with ``LimitsUnavailable``); ``send`` wants no answer,
    and a batch of those that fails is reported to ``dropped`` (the error, how many calls)."""

    def __init__(self, dropped: Callable[[Exception, int], None]) -> None:
        self._queues: dict[Any, list[tuple[str, asyncio.Future[Any] | None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._dropped = dropped

    def call(self, script: Any, packed: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(script).append((packed, future))
        return future

    def send(self, script: Any, packed: str) -> None:
        self._queue(script).append((packed, None))

    def _queue(self, script: Any) -> list[tuple[str, asyncio.Future[Any] | None]]:
        queue = self._queues.get(script)
        if queue is None:
            queue = self._queues[script] = []
            asyncio.get_running_loop().call_soon(self._flush, script)
        return queue

    async def drain(self) -> None:
        """Wait until the calls queued so far have been answered (or have failed)."""
        while self._queues or self._tasks:
            if self._tasks:
                await asyncio.wait(list(self._tasks))
            else:
                await asyncio.sleep(0)  # the flush is scheduled

    def _flush(self, script: Any) -> None:
        batch = self._queues.pop(script)
        loop = asyncio.get_running_loop()
        for start in range(0, len(batch), _BATCH_MAX):
            task = loop.create_task(self._send(script, batch[start : start + _BATCH_MAX]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, script: Any, batch: list[tuple[str, asyncio.Future[Any] | None]]) -> None:
        try:
            results = await script(keys=[], args=[packed for packed, _ in batch])
        except Exception as exc:
            failure = LimitsUnavailable(f"redis: {exc}") if isinstance(exc, _UNREACHABLE) else exc
            unanswered = 0
            for _, future in batch:
                if future is None:
                    unanswered += 1
                else:
                    _answer(future, failure)
            if unanswered:
                self._dropped(failure, unanswered)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future is not None:
                _answer(future, result)


def _answer(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():  # its request was cancelled meanwhile
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def connect(url: str, *, timeout: float = 0.5, max_connections: int = 1024) -> Redis:
    """A client fit for limits: short timeouts and no retries (an unreachable Redis costs a request at most
    ``timeout``, then ``GOPHERGATE_LIMITS_ON_REDIS_ERROR`` decides), and a pool as large as the requests a worker
    answers at once."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
        health_check_interval=30,
    )


class RedisLimits:
    """The Redis ``LimitsStore``. ``client`` is a ``redis.asyncio.Redis``; give it short socket timeouts, a small
    retry policy (redis-py's default retries three times with backoff, seconds per failed call) and a pool as large
    as the admissions in flight (a full pool raises): a call that cannot reach Redis raises ``LimitsUnavailable``.
    The other arguments are ``MemoryLimits``'s; ``prefix`` namespaces the keys. Scope ids and request ids are used
    in key names as given."""

    def __init__(
        self,
        client: Redis,
        *,
        clock: Clock | None = None,
        timezone: str = "UTC",
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
        spend_loader: SpendLoader | None = None,
        prefix: str = "gg:limits:",
    ) -> None:
        self._client = client
        self._clock: Clock = clock or SystemClock()
        self._tz = ZoneInfo(timezone)
        self._ttl_us = round(reservation_ttl * _US)
        self._loader = spend_loader
        self._prefix = prefix
        self._scope_gc_ms = round((2 * reservation_ttl + 120) * 1000)
        self._rec_gc_ms = round((reservation_ttl + 120) * 1000)  # an expired record, kept for a late settle
        self._hits_gc_ms = 2 * _WINDOW_US // 1000
        self._bounds: dict[Period, tuple[float, float]] = {}
        self._seeding: dict[tuple[tuple[str, str], str], asyncio.Future[None]] = {}
        self._batcher = _Batcher(self._dropped)
        self.settle_failures = 0
        # Told when a settle sent without waiting could not reach Redis (FailoverLimits sets it); else it is logged.
        self.on_unreachable: Callable[[LimitsUnavailable, int], None] | None = None
        # The arguments every call of a script repeats, packed once.
        self._admit_consts = _SEP.join(
            [
                prefix,
                str(self._ttl_us),
                "0" if spend_loader is not None else "1",
                str(self._scope_gc_ms),
                str(self._rec_gc_ms),
                str(self._hits_gc_ms),
            ]
        )
        self._settle_consts = _SEP.join([str(self._ttl_us), str(self._scope_gc_ms), str(self._rec_gc_ms)])
        self._scope_parts: dict[int, tuple[Scope, float, float, str, str]] = {}
        self._admit_many = client.register_script(_batched(_ADMIT))
        self._settle_many = client.register_script(_batched(_SETTLE))
        self._release_many = client.register_script(_batched(_RELEASE))
        self._usage = client.register_script(_USAGE)
        self._seed_script = client.register_script(_SEED)

    # -- the LimitsStore interface --------------------------------------------------------------------------

    async def admit(
        self, request_id: str, key: Scope, team: Scope | None, *, tokens: int, cost: Decimal
    ) -> Admitted | Refused:
        scopes = (key,) if team is None else (key, team)
        reserve = _nanos(cost, ROUND_CEILING)
        head = f"{1 + 4 * len(scopes)}{_SEP}{self._prefix}r:{request_id}"
        for _ in range(_SEED_ATTEMPTS):
            now = self._now()
            parts = [self._scope_part(scope, now) for scope in scopes]
            packed = _SEP.join(
                [
                    head,
                    *(p[3] for p in parts),
                    request_id,
                    str(now),
                    str(now // _WINDOW_US),
                    str(tokens),
                    str(reserve),
                    str(len(scopes)),
                    self._admit_consts,
                    *(p[4] for p in parts),
                ]
            )
            reply = _text(await self._batcher.call(self._admit_many, packed)).split(",")
            status = reply[0]
            if status == "dup":
                raise ValueError(f"request id {request_id!r} is already admitted")
            if status == "seed":
                for index in reply[1:]:
                    await self._seed(scopes[int(index) - 1])
                continue
            return _decide(reply, scopes)
        raise LimitsUnavailable("the budget state kept losing its seed (is Redis being flushed?)")

    async def settle(self, request_id: str, *, tokens: int, cost: Decimal) -> bool:
        return bool(await self._batcher.call(self._settle_many, self._settle_packed(request_id, tokens, cost)))

    def settle_nowait(self, request_id: str, *, tokens: int, cost: Decimal) -> None:
        self._batcher.send(self._settle_many, self._settle_packed(request_id, tokens, cost))

    async def drain(self) -> None:
        await self._batcher.drain()

    def _settle_packed(self, request_id: str, tokens: int, cost: Decimal) -> str:
        now = self._now()
        return _SEP.join(
            [
                f"1{_SEP}{self._prefix}r:{request_id}",
                request_id,
                str(now),
                str(now // _WINDOW_US),
                str(tokens),
                str(_nanos(cost, ROUND_HALF_UP)),
                self._settle_consts,
            ]
        )

    def _dropped(self, exc: Exception, count: int) -> None:
        self.settle_failures += count
        if isinstance(exc, LimitsUnavailable) and self.on_unreachable is not None:
            self.on_unreachable(exc, count)
        else:
            log.warning("%d settle(s) of request limits failed; their reservations expire on their own: %s", count, exc)

    async def release(self, request_id: str) -> None:
        await self._batcher.call(self._release_many, f"1{_SEP}{self._prefix}r:{request_id}")

    async def usage(self, scope: Scope) -> Usage:
        now = self._now()
        if scope.limits.budget_usd is not None and self._loader is not None:
            if (scope.ref, self._period(scope, now)[0]) not in self._seeding:  # not from inside a load
                await self._seed(scope)  # a flushed Redis shows the ledger's spend, not zero
                now = self._now()
        base = self._base(scope)
        marker = self._period(scope, now)[0]
        start, end = self._bounds_at(scope.limits.budget_period, now / _US)
        rpm = "1" if scope.limits.rpm is not None else "0"
        args = [base, self._prefix, now, self._ttl_us, now // _WINDOW_US, rpm, marker, self._rec_gc_ms]
        reply = await self._call(self._usage, [f"{base}:h", f"{base}:hits", f"{base}:b"], args)
        requests, tokens, in_flight, spend_n, reserved_n = (int(_text(v)) for v in reply)
        spend, reserved = _usd(spend_n), _usd(reserved_n)
        budget = scope.limits.budget_usd
        return Usage(
            requests=requests,
            tokens=tokens,
            in_flight=in_flight,
            spend=spend,
            reserved=reserved,
            remaining=None if budget is None else _usd(_nanos(budget, ROUND_FLOOR) - spend_n - reserved_n),
            period_start=as_datetime(start),
            resets_at=as_datetime(end),
        )

    async def rebuild_spend(self, scope: Scope, period_start: datetime | None, amount: Decimal) -> None:
        """Set (not add) the settled spend of the scope's current period and mark it seeded; a ``period_start``
        that is not the current period's start changes nothing (for ``total`` any value applies)."""
        now = self._now()
        start = self._bounds_at(scope.limits.budget_period, now / _US)[0]
        if scope.limits.budget_period != "total" and (period_start is None or period_start.timestamp() != start):
            return
        await self._write_seed(scope, now, amount, force=True)

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- helpers --------------------------------------------------------------------------------------------

    async def _seed(self, scope: Scope) -> None:
        """Load the scope's spend for its current period from the ledger and seed it unless already seeded;
        concurrent admissions in this process wait for the one load. Without a loader the spend starts at zero."""
        now = self._now()
        marker = self._period(scope, now)[0]

        async def load() -> None:
            # An admission that read "unseeded" may answer after another one (or instance) has seeded.
            seen = await self._guard(self._client.hmget(f"{self._base(scope)}:b", ["p", "seeded"]))
            if [_text(v) if v is not None else None for v in seen] == [marker, "1"]:
                return
            start = self._bounds_at(scope.limits.budget_period, now / _US)[0]
            amount = _ZERO if self._loader is None else await self._loader(scope, as_datetime(start))
            await self._write_seed(scope, now, amount, force=False)

        await once(self._seeding, (scope.ref, marker), load)

    async def _write_seed(self, scope: Scope, now: int, amount: Decimal, *, force: bool) -> None:
        marker, _, budget_gc = self._period(scope, now)
        args = [marker, _nanos(amount, ROUND_HALF_UP), "1" if force else "0", budget_gc]
        await self._call(self._seed_script, [f"{self._base(scope)}:b"], args)

    async def _call(self, script: Callable[..., Awaitable[Any]], keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._guard(script(keys=keys, args=args))

    @staticmethod
    async def _guard(call: Awaitable[_T]) -> _T:
        """Await a Redis call; an unreachable Redis raises ``LimitsUnavailable``, never a redis-py error."""
        try:
            return await call
        except _UNREACHABLE as exc:
            raise LimitsUnavailable(f"redis: {exc}") from exc

    def _now(self) -> int:
        return round(self._clock.wall() * _US)

    def _scope_part(self, scope: Scope, now: int) -> tuple[Scope, float, float, str, str]:
        """A scope's keys and arguments for ``_ADMIT``, packed, kept while the scope (its limits) and its budget
        period stay the same: (scope, period start, period end, keys, args)."""
        part = self._scope_parts.get(id(scope))
        wall = now / _US
        if part is not None and part[0] is scope and part[1] <= wall < part[2]:
            return part
        start, end = self._bounds_at(scope.limits.budget_period, wall)
        marker, period_end, budget_gc = self._period(scope, now)
        base = self._base(scope)
        limits = scope.limits
        budget = "" if limits.budget_usd is None else str(_nanos(limits.budget_usd, ROUND_FLOOR))
        keys = _SEP.join([f"{base}:h", f"{base}:hits", f"{base}:open", f"{base}:b"])
        args = _SEP.join(
            [
                base,
                str(_opt(limits.rpm)),
                str(_opt(limits.tpm)),
                str(_opt(limits.max_parallel)),
                budget,
                marker,
                period_end,
                budget_gc,
            ]
        )
        if len(self._scope_parts) >= 4096:
            self._scope_parts.clear()
        part = self._scope_parts[id(scope)] = (scope, start, end, keys, args)
        return part

    def _base(self, scope: Scope) -> str:
        return f"{self._prefix}s:{scope.kind}:{scope.id}"

    def _record(self, request_id: str) -> str:
        return f"{self._prefix}r:{request_id}"

    def _bounds_at(self, kind: Period, wall: float) -> tuple[float, float]:
        bounds = self._bounds.get(kind)
        if bounds is None or not bounds[0] <= wall < bounds[1]:
            bounds = self._bounds[kind] = period_bounds(kind, wall, self._tz)
        return bounds

    def _period(self, scope: Scope, now: int) -> tuple[str, str, str]:
        """The scope's budget period marker, its end (µs, '' for never) and the budget key's TTL (ms, '')."""
        kind = scope.limits.budget_period
        start, end = self._bounds_at(kind, now / _US)
        if start == ALWAYS or end == NEVER:
            return f"{kind}:", "", ""
        end_us = round(end * _US)
        # Kept after the period's end long enough for late settles to find it and be ignored.
        gc_ms = (end_us - now) // 1000 + 2 * self._ttl_us // 1000 + 3_600_000
        return f"{kind}:{round(start * _US)}", str(end_us), str(max(gc_ms, 1))


def _decide(reply: list[str], scopes: tuple[Scope, ...]) -> Admitted | Refused:
    """The admission's answer from the fields of ``_ADMIT``'s reply."""
    status, limit, who, wait, reset, lr, rr, rsr, lt, rt, rst, least = reply
    headers = RateHeaders(
        int(lr) if lr else None,
        int(rr) if rr else None,
        int(rsr) / _US if rsr else None,
        int(lt) if lt else None,
        int(rt) if rt else None,
        int(rst) / _US if rst else None,
    )
    remaining = _usd(int(least)) if least else None
    if status == "ok":
        return Admitted(headers, remaining)
    whose: ScopeKind = scopes[int(who) - 1].kind
    name: LimitName = _LIMIT_NAMES[limit]
    resets_at = None if reset == "" else as_datetime(int(reset) / _US)
    return Refused(name, whose, _seconds(wait), resets_at, headers, remaining)


_LIMIT_NAMES: dict[str, LimitName] = {
    "requests": "requests",
    "tokens": "tokens",
    "parallel": "parallel",
    "budget": "budget",
}


def _nanos(usd: Decimal, rounding: str) -> int:
    nanos = int((usd * _NANO).to_integral_value(rounding=rounding))
    if abs(nanos) > _MAX_NANOS:
        raise ValueError(f"{usd} USD is beyond the exact range of the Redis limits engine (about $9M)")
    return nanos


def _usd(nanos: int) -> Decimal:
    value = Decimal(nanos).scaleb(-9).normalize()
    return value if value.as_tuple().exponent <= 0 else value.quantize(Decimal(1))  # type: ignore[operator]


def _opt(value: int | None) -> str | int:
    return "" if value is None else value


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: str) -> int | None:
    return None if value == "" else int(value)


def _seconds(value: str) -> float | None:
    return None if value == "" else int(value) / _US


if TYPE_CHECKING:
    _conforms: type[LimitsStore] = RedisLimits
