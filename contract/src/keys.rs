//! GitSpy's Redis layout. Per-delivery keys are patterns with one `{id}` placeholder, filled by
//! [`fill`]; the harness reads them as data ([`crate::RedisLayout`]) so another layout can be
//! probed.

/// The stream every accepted delivery is appended to.
pub const STREAM: &str = "gitspy:events";
/// Dead-lettered deliveries (attempts exhausted).
pub const DEAD_STREAM: &str = "gitspy:events:dead";
/// The consumer group all workers share.
pub const GROUP: &str = "gitspy-workers";
/// Placeholder for the delivery id in the key patterns below.
pub const ID: &str = "{id}";
/// `received|processing|processed|failed` for a delivery; carries the state TTL.
pub const STATE: &str = "events:{id}:state";
/// The per-delivery processing lock: `<token>:<acquired-ms>`, `SET NX PX <lock-ttl>`.
pub const LOCK: &str = "events:{id}:lock";
/// Explicit attempt counter (not the stream's delivery count).
pub const ATTEMPTS: &str = "events:{id}:attempts";
/// The last processing error of a delivery.
pub const ERROR: &str = "events:{id}:error";

/// The key of `delivery` in `pattern` (`events:{id}:state` → `events:<delivery>:state`).
pub fn fill(pattern: &str, delivery: &str) -> String {
    pattern.replacen(ID, delivery, 1)
}

/// The delivery id a key of `pattern` carries, if the key has that shape.
pub fn id_of<'a>(pattern: &str, key: &'a str) -> Option<&'a str> {
    let (before, after) = pattern.split_once(ID)?;
    let id = key.strip_prefix(before)?.strip_suffix(after)?;
    (!id.is_empty()).then_some(id)
}

/// A Redis `SCAN MATCH` glob for the keys of `pattern` whose id starts with `id_prefix`
/// (every id when `None`); the prefix and the fixed parts are escaped.
pub fn scan_glob(pattern: &str, id_prefix: Option<&str>) -> String {
    let (before, after) = pattern.split_once(ID).unwrap_or((pattern, ""));
    format!(
        "{}{}*{}",
        glob_escape(before),
        glob_escape(id_prefix.unwrap_or("")),
        glob_escape(after)
    )
}

/// Escapes the glob metacharacters of Redis `MATCH` patterns.
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_id_of_and_globs_agree() {
        assert_eq!(fill(STATE, "abc"), "events:abc:state");
        assert_eq!(id_of(LOCK, "events:run:7:lock"), Some("run:7"));
        assert_eq!(id_of(LOCK, "events:x:state"), None);
        assert_eq!(id_of(LOCK, "events::lock"), None);
        assert_eq!(scan_glob(STATE, None), "events:*:state");
        assert_eq!(scan_glob(LOCK, Some("r[1]*")), "events:r\\[1\\]\\**:lock");
        assert_eq!(scan_glob("q/{id}", Some("a")), "q/a*");
    }
}
