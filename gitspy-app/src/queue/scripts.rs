//! The Lua scripts that make multi-key steps atomic. `redis::Script` sends `EVALSHA` and falls back
//! to loading the script on `NOSCRIPT` (a restarted Redis has an empty script cache).

use std::sync::LazyLock;

use redis::Script;

/// KEYS: state, attempts, stream. ARGV: state-ttl-ms, delivery, event, action, repository,
/// received-at-ms, body, dedupe (1/0).
/// Returns `{1, <stream id>}` when queued, `{0, <existing state>}` for a duplicate.
/// A state that exists and is not `failed` means the delivery is known: nothing is written.
pub static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local s = redis.call('GET', KEYS[1])
if s and s ~= 'failed' and ARGV[8] == '1' then
  return {0, s}
end
redis.call('SET', KEYS[1], 'received', 'PX', ARGV[1])
redis.call('DEL', KEYS[2])
local id = redis.call('XADD', KEYS[3], '*', 'id', ARGV[2], 'event', ARGV[3], 'action', ARGV[4],
  'repository', ARGV[5], 'received_at', ARGV[6], 'body', ARGV[7])
return {1, id}
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

/// KEYS: state, stream, lock. ARGV: group, entry id, token, state-ttl-ms.
/// [`FINISH`] without its `XDEL`: used only while the `after-ack` failpoint is armed, so the
/// window between the acknowledgement and the delete exists.
pub static FINISH_ACK_ONLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then ttl = ARGV[4] end
redis.call('SET', KEYS[1], 'processed', 'PX', ttl)
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
local v = redis.call('GET', KEYS[3])
if v and string.sub(v, 1, string.len(ARGV[3]) + 1) == ARGV[3] .. ':' then
  redis.call('DEL', KEYS[3])
end
return 1
"#,
    )
});

/// SABOTAGE `lock-without-ttl` only: [`ACQUIRE_LOCK`] with its `PX` forgotten, so the lock of a
/// worker that dies is never freed.
pub static SABOTAGE_ACQUIRE_LOCK_WITHOUT_TTL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SET', KEYS[1], ARGV[2], 'NX') then
  return 1
end
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ':' then
  return 1
end
return 0
"#,
    )
});
