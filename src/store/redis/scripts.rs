//! Lua scripts: each makes a read-then-write on ONE key a single atomic
//! round trip. One key per script keeps them valid on Redis Cluster, where
//! a script may only touch keys of one slot.
//!
//! `Script` sends `EVALSHA` and falls back to loading the script once after
//! `NOSCRIPT` (a restarted Redis has forgotten it), so steady-state calls
//! carry only the hash.

use redis::Script;

pub(super) struct Scripts {
    pub(super) touch: Script,
    pub(super) index_add: Script,
    pub(super) active_add: Script,
    pub(super) count: Script,
    pub(super) hit: Script,
    pub(super) forgive: Script,
    pub(super) replace_field: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            touch: Script::new(TOUCH),
            index_add: Script::new(INDEX_ADD),
            active_add: Script::new(ACTIVE_ADD),
            count: Script::new(COUNT),
            hit: Script::new(HIT),
            forgive: Script::new(FORGIVE),
            replace_field: Script::new(REPLACE_FIELD),
        }
    }
}

/// Slide a session's idle deadline if it is due, and optionally return
/// the record, in one step: `last_seen` and the idle TTL are written only
/// when the stored `last_seen` is at least the refresh gap older than now,
/// so of many nodes serving one session only the first to find it due
/// writes; the others get the stored `last_seen` back and wait a gap from
/// it. A session past its `absolute_expiry` is never slid (the gateway
/// refuses it anyway), and a missing one is never created.
///
/// The JSON is read and edited as text instead of through `cjson`, which
/// would turn integers into doubles and re-order fields; `SessionRecord`
/// is written by serde, so `"last_seen":<digits>` and
/// `"absolute_expiry":<digits>` each occur once as keys, before any
/// free-form field (string values cannot contain an unescaped quote).
///
/// `KEYS[1]` session key; `ARGV[1]` now (unix s); `ARGV[2]` idle (ms);
/// `ARGV[3]` refresh gap (s); `ARGV[4]` `1` to return the record.
/// Returns `{code, last_seen, record or nil}`: code 1 written (last_seen
/// is now), 2 not due (the stored last_seen), 0 gone, -1 no `last_seen`
/// field (corrupt).
const TOUCH: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return {0, 0, false} end
local seen = string.match(v, '"last_seen"%s*:%s*(%d+)')
if not seen then return {-1, 0, false} end
local now = tonumber(ARGV[1])
local age = now - tonumber(seen)
if age < 0 then age = 0 end
local abs = string.match(v, '"absolute_expiry"%s*:%s*(%d+)')
if age < tonumber(ARGV[3]) or (abs and tonumber(abs) <= now) then
  return {2, tonumber(seen), ARGV[4] == '1' and v}
end
local nv = string.gsub(v, '"last_seen"%s*:%s*%d+', '"last_seen":' .. ARGV[1], 1)
redis.call('SET', KEYS[1], nv, 'PX', ARGV[2])
return {1, now, ARGV[4] == '1' and nv}
"#;

/// Add a session to its user's index, a sorted set scored by the unix
/// second after which the entry is useless (the session's absolute expiry,
/// or its idle deadline if later). Entries past that are dropped and the
/// whole index expires with its last entry, so users who never come back
/// leave nothing behind.
///
/// `KEYS[1]` index key; `ARGV[1]` session key; `ARGV[2]` keep-until (unix s);
/// `ARGV[3]` now (unix s).
const INDEX_ADD: &str = r#"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('EXPIREAT', KEYS[1], math.floor(tonumber(last[2])) + 1)
end
return 1
"#;

/// Record a session's idle deadline in the active set, dropping entries
/// whose deadline passed on the way, so the set stays as large as the
/// number of live sessions even if nobody ever counts them.
///
/// `KEYS[1]` active set; `ARGV[1]` now (unix ms); `ARGV[2]` deadline (unix ms);
/// `ARGV[3]` session key.
const ACTIVE_ADD: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
return 1
"#;

/// Count live sessions: drop entries of the active set whose idle deadline
/// passed (a key with `PX` is gone at its deadline), then count the rest.
///
/// `KEYS[1]` active set; `ARGV[1]` now (unix ms).
const COUNT: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
"#;

/// One hit on a fixed-window counter: the window starts with the first hit
/// (the TTL is set only when the key has none) and the reply says how long
/// it has left.
///
/// `KEYS[1]` counter key; `ARGV[1]` window (ms). Returns {count, ms left}.
const HIT: &str = r#"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"#;

/// Take back one hit of a counter that still has some, keeping its window
/// (a missing or expired counter is left alone, never created).
///
/// `KEYS[1]` counter key. Returns the count left, or -1 when there was none.
const FORGIVE: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return -1 end
if tonumber(v) <= 0 then return 0 end
return redis.call('DECR', KEYS[1])
"#;

/// Compare-and-set one field of a hash: write it only if it holds what the
/// caller read (or, asked for absence, does not exist).
///
/// `KEYS[1]` hash; `ARGV[1]` field; `ARGV[2]` 1 when a value is expected,
/// 0 when absence is; `ARGV[3]` the expected value; `ARGV[4]` the new one.
/// Returns 1 when written, 0 when the field held something else.
const REPLACE_FIELD: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if cur ~= ARGV[3] then return 0 end
elseif cur then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
return 1
"#;
