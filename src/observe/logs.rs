//! Errors and warnings of the managed processes' full logs, overall and per fault window.
//!
//! Pure: reads a log's text, the run's start (unix ms), its end and its fault log, and gives the
//! report model's [`LogSummary`]. It understands the two formats it is given: GitSpy's
//! (`2026-11-29T22:22:20.577935Z  WARN target: message`, tracing's default) and Redis's
//! (`31996:M 29 Nov 2026 22:22:19.146 # message`, `#` being Redis's warning level; Redis writes
//! local time, taken here as UTC like the harness's machines). A line `thread '…' panicked` is an
//! error. Lines without a timestamp take the last one seen before them.

use crate::report::{FaultLogCount, FaultWindow, LogSummary};

/// A line is in a fault's window up to this long after the fault healed: what a process logs
/// while it reconnects belongs to the fault.
pub const AFTER_HEAL_MS: u64 = 5_000;
/// At most this many example lines per process.
const EXAMPLES: usize = 5;
/// Example lines are cut to this many characters.
const EXAMPLE_CHARS: usize = 300;

/// A log line's severity, as the process itself wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Other,
}

/// The timestamp (unix ms) and level of one line, when the line says them.
pub fn classify(line: &str) -> (Option<u64>, Level) {
    if line.contains("panicked at") && line.starts_with("thread '") {
        return (None, Level::Error);
    }
    if let Some(r) = gitspy_line(line) {
        return r;
    }
    if let Some(r) = redis_line(line) {
        return r;
    }
    (None, Level::Other)
}

/// `2026-11-29T22:22:20.577935Z  WARN gitspy::…`.
fn gitspy_line(line: &str) -> Option<(Option<u64>, Level)> {
    let (ts, rest) = line.split_once(' ')?;
    if !ts.ends_with('Z') || !ts.contains('T') {
        return None;
    }
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    let level = match rest.split_whitespace().next() {
        Some("ERROR") => Level::Error,
        Some("WARN") => Level::Warning,
        _ => Level::Other,
    };
    Some((unix_ms(t), level))
}

/// `31996:M 29 Nov 2026 22:22:19.146 # message` (level `.` `-` `*` `#`).
fn redis_line(line: &str) -> Option<(Option<u64>, Level)> {
    let (pid_role, rest) = line.split_once(' ')?;
    let (pid, role) = pid_role.split_once(':')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || role.len() != 1 {
        return None;
    }
    // `29 Nov 2026 22:22:19.146` is 24 characters, then the level.
    let stamp = rest.get(..24)?;
    let level = rest.get(25..26)?;
    let fmt = time::macros::format_description!(
        "[day] [month repr:short] [year] [hour]:[minute]:[second].[subsecond digits:3]"
    );
    let t = time::PrimitiveDateTime::parse(stamp, &fmt)
        .ok()?
        .assume_utc();
    let level = if level == "#" {
        Level::Warning
    } else {
        Level::Other
    };
    Some((unix_ms(t), level))
}

fn unix_ms(t: time::OffsetDateTime) -> Option<u64> {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Summarises `text`: counts overall, outside every fault window and per fault window.
/// `t0_unix_ms` is the run's start; `faults` its fault log (times relative to the start);
/// `end_ms` the run's length (the end of a fault never undone).
pub fn summarize(text: &str, t0_unix_ms: u64, end_ms: u64, faults: &[FaultWindow]) -> LogSummary {
    let mut s = LogSummary::default();
    let mut per_fault = vec![(0u64, 0u64); faults.len()];
    let mut last_t: Option<u64> = None;
    let mut warning_examples = Vec::new();
    for line in text.lines() {
        s.lines += 1;
        let (t, level) = classify(line);
        if t.is_some() {
            last_t = t;
        }
        if level == Level::Other {
            continue;
        }
        let rel = last_t.map(|t| t.saturating_sub(t0_unix_ms));
        let mut in_any = false;
        for (i, f) in faults.iter().enumerate() {
            let until = f.end_ms.map_or(end_ms, |e| e.saturating_add(AFTER_HEAL_MS));
            if rel.is_some_and(|r| r >= f.start_ms && r <= until) {
                in_any = true;
                match level {
                    Level::Error => per_fault[i].0 += 1,
                    _ => per_fault[i].1 += 1,
                }
            }
        }
        let example: String = line.chars().take(EXAMPLE_CHARS).collect();
        match level {
            Level::Error => {
                s.errors += 1;
                s.outside_errors += u64::from(!in_any);
                if s.examples.len() < EXAMPLES {
                    s.examples.push(example);
                }
            }
            _ => {
                s.warnings += 1;
                s.outside_warnings += u64::from(!in_any);
                if warning_examples.len() < EXAMPLES {
                    warning_examples.push(example);
                }
            }
        }
    }
    if s.examples.is_empty() {
        s.examples = warning_examples;
    }
    s.per_fault = per_fault
        .into_iter()
        .enumerate()
        .filter(|(_, (e, w))| e + w > 0)
        .map(|(i, (errors, warnings))| FaultLogCount {
            fault: i as u32,
            errors,
            warnings,
        })
        .collect();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(start: u64, end: Option<u64>) -> FaultWindow {
        FaultWindow {
            kind: "redis stop".into(),
            target: "redis".into(),
            requested_ms: None,
            start_ms: start,
            end_ms: end,
            outcome: Default::default(),
            crash: false,
            trigger: None,
            hit: None,
            note: String::new(),
        }
    }

    #[test]
    fn levels_and_times_of_both_formats() {
        let (t, l) =
            classify("2026-11-29T22:22:20.577935Z  WARN gitspy::http::webhooks: redis unreachable");
        assert_eq!(l, Level::Warning);
        assert_eq!(t, Some(1_795_990_940_577));
        assert_eq!(
            classify("2026-11-29T22:22:20.5Z ERROR gitspy::worker: boom").1,
            Level::Error
        );
        assert_eq!(
            classify("2026-11-29T22:22:20.5Z  INFO gitspy::worker: fine").1,
            Level::Other
        );
        let (t, l) =
            classify("31996:M 29 Nov 2026 22:22:20.577 # Redis is now ready to exit, bye bye...");
        assert_eq!((t, l), (Some(1_795_990_940_577), Level::Warning));
        assert_eq!(
            classify("31996:M 29 Nov 2026 22:22:20.577 * Ready to accept connections").1,
            Level::Other
        );
        assert_eq!(
            classify("thread 'main' panicked at src/main.rs:3:5:").1,
            Level::Error
        );
        assert_eq!(classify("listening on http://127.0.0.1:1").1, Level::Other);
    }

    #[test]
    fn counts_go_to_the_fault_windows_they_fall_in() {
        let t0 = 1_795_990_940_000; // 22:22:20.000
        let log = "listening on http://127.0.0.1:1\n\
            2026-11-29T22:22:20.500Z  WARN a: before any fault\n\
            2026-11-29T22:22:22.000Z  WARN a: redis unreachable\n\
            2026-11-29T22:22:23.000Z ERROR a: lost connection\n\
            thread 'tokio' panicked at x.rs:1:1:\n\
            2026-11-29T22:22:29.000Z  WARN a: reconnected late\n\
            2026-11-29T22:22:40.000Z ERROR a: during the kill's window\n";
        // Redis down from 1.5 s to 3.5 s (window to 8.5 s); a worker kill at 19 s, never healed.
        let faults = [fault(1_500, Some(3_500)), fault(19_000, None)];
        let s = summarize(log, t0, 30_000, &faults);
        assert_eq!(s.lines, 7);
        assert_eq!((s.errors, s.warnings), (3, 3));
        assert_eq!((s.outside_errors, s.outside_warnings), (0, 2));
        assert_eq!(
            s.per_fault,
            [
                FaultLogCount {
                    fault: 0,
                    errors: 2,
                    warnings: 1
                },
                FaultLogCount {
                    fault: 1,
                    errors: 1,
                    warnings: 0
                },
            ]
        );
        assert_eq!(s.examples.len(), 3);
        assert!(s.examples[0].contains("lost connection"));
    }
}
