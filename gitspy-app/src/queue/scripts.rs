//! The Lua scripts that make multi-key steps atomic. `redis::Script` sends `EVALSHA` and falls back
//! to loading the script on `NOSCRIPT` (a restarted Redis has an empty script cache).

use std::sync::LazyLock;

use redis::Script;

/// The atomic enqueue, for a batch of deliveries in one script call (the group commit, see
/// `queue::group`). Per delivery, in order: a state that exists and is not `failed` means the
/// delivery is known — nothing is written; otherwise state `received`, attempts reset and the
/// stream entry, never one without the other. A second copy of an id later in the same batch sees
/// the first one's `received` and is a duplicate. The whole batch is one atomic step.
/// KEYS: stream, then per delivery state, attempts. ARGV: state-ttl-ms, dedupe (1/0), then per
/// delivery: id, event, action, repository, received-at-ms, body.
/// Returns `{flag_1, value_1, flag_2, value_2, …}`: flag 1 with the stream id when queued, 0 with
/// the existing state for a duplicate.
pub static ENQUEUE_BATCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {}
local n = (#KEYS - 1) / 2
for i = 1, n do
  local state_key = KEYS[2 * i]
  local a = 2 + (i - 1) * 6
  local s = redis.call('GET', state_key)
  if s and s ~= 'failed' and ARGV[2] == '1' then
    out[#out + 1] = 0
    out[#out + 1] = s
  else
    redis.call('SET', state_key, 'received', 'PX', ARGV[1])
    redis.call('DEL', KEYS[2 * i + 1])
    local id = redis.call('XADD', KEYS[1], '*', 'id', ARGV[a + 1], 'event', ARGV[a + 2],
      'action', ARGV[a + 3], 'repository', ARGV[a + 4], 'received_at', ARGV[a + 5],
      'body', ARGV[a + 6])
    out[#out + 1] = 1
    out[#out + 1] = id
  end
end
return out
"#,
    )
});

/// KEYS: state. ARGV: new state, ttl-ms used only when the key has no TTL (or is gone).
pub static SET_STATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"#,
    )
});

/// KEYS: lock. ARGV: token, ttl-ms. Extends the lock only while we still own it.
pub static RENEW_LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ':' then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#,
    )
});

/// KEYS: lock. ARGV: token. Deletes the lock only while we still own it.
pub static RELEASE_LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ':' then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

/// KEYS: state, stream, lock. ARGV: group, entry id, token, state-ttl-ms.
/// `processed`, then `XACK` + `XDEL`, then release the lock if we still own it — one step.
pub static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then ttl = ARGV[4] end
redis.call('SET', KEYS[1], 'processed', 'PX', ttl)
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
local v = redis.call('GET', KEYS[3])
if v and string.sub(v, 1, string.len(ARGV[3]) + 1) == ARGV[3] .. ':' then
  redis.call('DEL', KEYS[3])
end
return 1
"#,
    )
});

/// KEYS: state, stream, lock, dead stream, error. ARGV: group, entry id, token, state-ttl-ms,
/// delivery, event, attempts, last error, dead-at-ms, action, repository, received-at-ms, body.
/// Dead-letters a delivery atomically: `XADD` to the dead stream, state `failed`, `XACK` + `XDEL`,
/// release the lock.
pub static DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('XADD', KEYS[4], '*', 'id', ARGV[5], 'event', ARGV[6], 'attempts', ARGV[7],
  'error', ARGV[8], 'dead_at', ARGV[9], 'entry', ARGV[2], 'action', ARGV[10],
  'repository', ARGV[11], 'received_at', ARGV[12], 'body', ARGV[13])
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then ttl = ARGV[4] end
redis.call('SET', KEYS[1], 'failed', 'PX', ttl)
redis.call('SET', KEYS[5], ARGV[8], 'PX', ttl)
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
local v = redis.call('GET', KEYS[3])
if v and string.sub(v, 1, string.len(ARGV[3]) + 1) == ARGV[3] .. ':' then
  redis.call('DEL', KEYS[3])
end
return 1
"#,
    )
});

/// KEYS: lock. ARGV: token, value (`<token>:<acquired-ms>`), ttl-ms.
/// `SET NX PX`; a lock we already own (an earlier try of ours that could not release it) is ours again.
pub static ACQUIRE_LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return 1
end
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ':' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"#,
    )
});
