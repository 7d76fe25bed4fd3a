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

/// The worker's first step for a batch, one script call: per delivery, [`ACQUIRE_LOCK`] (a lock
/// we already own is ours again), then, when the lock is ours, the delivery's state.
/// KEYS: per delivery lock, state. ARGV: token, lock value (`<token>:<acquired-ms>`), lock-ttl-ms
/// (`0` only for the `lock-without-ttl` sabotage: no `PX`, no renewal).
/// Returns `{locked_1, state_1, …}`: locked 1 or 0; state the value or `''` when absent.
pub static CLAIM_BATCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {}
local prefix = ARGV[1] .. ':'
for i = 1, #KEYS / 2 do
  local lock = KEYS[2 * i - 1]
  local ok
  if ARGV[3] == '0' then
    ok = redis.call('SET', lock, ARGV[2], 'NX')
  else
    ok = redis.call('SET', lock, ARGV[2], 'NX', 'PX', ARGV[3])
  end
  if not ok then
    local v = redis.call('GET', lock)
    if v and string.sub(v, 1, string.len(prefix)) == prefix then
      if ARGV[3] ~= '0' then redis.call('PEXPIRE', lock, ARGV[3]) end
      ok = true
    end
  end
  if ok then
    out[#out + 1] = 1
    out[#out + 1] = redis.call('GET', KEYS[2 * i]) or ''
  else
    out[#out + 1] = 0
    out[#out + 1] = ''
  end
end
return out
"#,
    )
});

/// The worker's second step for a batch, one script call: per delivery either `p` — state
/// `processing` (keeping the key's TTL, as [`SET_STATE`]) — or `d` — already processed: `XACK` +
/// `XDEL` the entry and release our lock.
/// KEYS: stream, then per delivery state, lock. ARGV: group, token, state-ttl-ms, then per
/// delivery kind (`p`/`d`), entry id.
pub static START_BATCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local prefix = ARGV[2] .. ':'
for i = 1, (#KEYS - 1) / 2 do
  local state = KEYS[2 * i]
  local lock = KEYS[2 * i + 1]
  local kind = ARGV[2 + 2 * i]
  local entry = ARGV[3 + 2 * i]
  if kind == 'p' then
    local ttl = redis.call('PTTL', state)
    if ttl <= 0 then ttl = ARGV[3] end
    redis.call('SET', state, 'processing', 'PX', ttl)
  else
    redis.call('XACK', KEYS[1], ARGV[1], entry)
    redis.call('XDEL', KEYS[1], entry)
    local v = redis.call('GET', lock)
    if v and string.sub(v, 1, string.len(prefix)) == prefix then
      redis.call('DEL', lock)
    end
  end
end
return 1
"#,
    )
});

/// [`FINISH`] for a batch, one script call: per delivery `processed`, `XACK` + `XDEL`, release
/// our lock.
/// KEYS: stream, then per delivery state, lock. ARGV: group, token, state-ttl-ms, then per
/// delivery the entry id.
pub static FINISH_BATCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local prefix = ARGV[2] .. ':'
for i = 1, (#KEYS - 1) / 2 do
  local state = KEYS[2 * i]
  local lock = KEYS[2 * i + 1]
  local entry = ARGV[3 + i]
  local ttl = redis.call('PTTL', state)
  if ttl <= 0 then ttl = ARGV[3] end
  redis.call('SET', state, 'processed', 'PX', ttl)
  redis.call('XACK', KEYS[1], ARGV[1], entry)
  redis.call('XDEL', KEYS[1], entry)
  local v = redis.call('GET', lock)
  if v and string.sub(v, 1, string.len(prefix)) == prefix then
    redis.call('DEL', lock)
  end
end
return 1
"#,
    )
});
