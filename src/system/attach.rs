//! Attach mode's process faults (SPEC §2.2): finding the GitSpy processes of a system the
//! harness did not start, and signalling them only when they are still exactly what was found.
//!
//! A [`ProcessMatcher`] names an executable *file name* (`gitspy`) and an environment entry the
//! process was started with (`GITSPY_CHAOS_TARGET=staging-1`); both must match exactly. [`find`]
//! lists candidates with sysinfo and confirms each from `/proc`; it never returns the harness
//! itself. [`signal`] re-reads `/proc/<pid>` right before `kill(2)` and refuses ([`Refusal`])
//! when the process is gone, was replaced (pid reused: the start time differs), no longer matches,
//! or is the harness.
//!
//! Attach-mode faults are **kill** (SIGKILL) and **stop** (SIGTERM, SIGKILL after the grace
//! period) only: the harness cannot re-exec a process it did not start, so bringing it back is the
//! operator's supervisor's job (systemd, a Docker restart policy, compose). `start` and `restart`
//! are refused by [`check_action`] with [`Refusal::CannotStart`].
//!
//! Linux only (`/proc`). Reading another user's environment needs root or the same user.
//! The re-check and the `kill(2)` are two system calls: a pid freed and reused in between is not
//! excluded, but Linux hands out pids in increasing order, so that needs the pid space to wrap
//! around within microseconds.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

use crate::scenario::model::{ProcessAction, ProcessMatcher};

/// How often the exit waits look at `/proc/<pid>`.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// A process [`find`] matched, as it was when found. `(pid, start_time)` identifies it: a pid
/// reused by a later process has a different start time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedProc {
    /// The process id.
    pub pid: u32,
    /// Start time in clock ticks after boot (`/proc/<pid>/stat` field 22): finer than seconds,
    /// so a pid reused within the same second is still told apart.
    pub start_time: u64,
    /// The executable's path (`/proc/<pid>/exe`).
    pub exe: PathBuf,
}

/// Why [`signal`] sent nothing. Every variant means the process was left untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The process exists but is no longer what the matcher describes.
    #[error("refusing to signal pid {pid}: it does not match executable `{executable}` with `{env_marker}` ({why})")]
    NotMatched {
        /// The process id.
        pid: u32,
        /// The matcher's executable file name.
        executable: String,
        /// The matcher's `NAME=value`.
        env_marker: String,
        /// What differs.
        why: String,
    },
    /// The pid now belongs to a process started at another time: the matched one is gone and
    /// its pid was reused (or it was restarted under the same pid namespace slot).
    #[error("refusing to signal pid {pid}: it was restarted or reused (start time {now}, recorded {recorded})")]
    Restarted {
        /// The process id.
        pid: u32,
        /// The start time recorded when it was matched.
        recorded: u64,
        /// The start time of whatever has this pid now.
        now: u64,
    },
    /// No live process has this pid any more (a zombie counts as gone).
    #[error("refusing to signal pid {pid}: the process is gone")]
    Gone {
        /// The process id.
        pid: u32,
    },
    /// The pid is the harness's own.
    #[error("refusing to signal pid {pid}: it is the harness itself")]
    IsSelf {
        /// The process id.
        pid: u32,
    },
    /// A fault that needs to (re)start a process the harness did not start.
    #[error("`{action}` is not possible in attach mode: the harness cannot start a process it did not start; use kill or stop and let the system's supervisor (systemd, a Docker restart policy, compose) bring it back")]
    CannotStart {
        /// `start` or `restart`.
        action: &'static str,
    },
}

/// What can go wrong signalling an attached process.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Nothing was sent: the process is not (any more) the matched one.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The matcher is malformed.
    #[error("invalid process matcher: {0}")]
    BadMatcher(String),
    /// `kill(2)` failed for another reason than the process being gone (e.g. EPERM).
    #[error("sending {sig} to pid {pid} failed: {errno}")]
    Signal {
        /// The process id.
        pid: u32,
        /// The signal.
        sig: Signal,
        /// What `kill(2)` said.
        errno: Errno,
    },
    /// The process was signalled but still ran at the deadline.
    #[error("pid {pid} still runs {waited:?} after {sig}")]
    StillRunning {
        /// The process id.
        pid: u32,
        /// The last signal sent.
        sig: Signal,
        /// How long the wait lasted.
        waited: Duration,
    },
    /// `/proc/<pid>` could not be read (other than the process being gone).
    #[error("reading /proc/{pid}: {source}")]
    Proc {
        /// The process id.
        pid: u32,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Whether `action` can be done in attach mode: kill and stop can, start and restart are
/// refused with [`Refusal::CannotStart`]. Scenario validation should call this before a run.
pub fn check_action(action: ProcessAction) -> Result<(), Refusal> {
    match action {
        ProcessAction::Kill | ProcessAction::Stop | ProcessAction::Freeze | ProcessAction::Thaw => {
            Ok(())
        }
        ProcessAction::Start | ProcessAction::Restart => Err(Refusal::CannotStart {
            action: action.as_str(),
        }),
    }
}

/// Checks the matcher's shape: a bare file name, and `NAME=value` with a non-empty name.
pub fn validate(m: &ProcessMatcher) -> Result<(), AttachError> {
    if m.executable.is_empty() || m.executable.contains('/') {
        return Err(AttachError::BadMatcher(format!(
            "executable `{}` must be a file name without `/`, e.g. `gitspy`",
            m.executable
        )));
    }
    match m.env_marker.split_once('=') {
        Some((name, _)) if !name.is_empty() => Ok(()),
        _ => Err(AttachError::BadMatcher(format!(
            "env_marker `{}` must be `NAME=value`, e.g. `GITSPY_CHAOS_TARGET=staging-1`",
            m.env_marker
        ))),
    }
}

/// The live processes matching `m` exactly (executable file name, and an environment entry equal
/// to `m.env_marker`), sorted by pid, never including the harness itself. Candidates come from
/// sysinfo and are confirmed from `/proc`; processes that exit meanwhile are skipped. Blocking
/// (it scans `/proc`): call it from `spawn_blocking` on a busy runtime.
pub fn find(m: &ProcessMatcher) -> anyhow::Result<Vec<MatchedProc>> {
    validate(m)?;
    let mut sys = System::new().context("sysinfo cannot list processes")?;
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing()
            .without_tasks()
            .with_exe(UpdateKind::Always),
    );
    let me = std::process::id();
    let mut found = Vec::new();
    for (pid, process) in sys.processes() {
        let pid = pid.as_u32();
        // Threads are listed as tasks on Linux; only thread-group leaders are processes.
        if pid == me || process.thread_kind().is_some() {
            continue;
        }
        let exe_matches = process
            .exe()
            .and_then(|p| p.file_name())
            .is_some_and(|name| name == OsStr::new(&m.executable));
        if !exe_matches {
            continue;
        }
        // Confirm from /proc with the same check `signal` makes.
        let Some(snap) = snapshot(pid).with_context(|| format!("inspecting pid {pid}"))? else {
            continue;
        };
        if mismatch(pid, &snap.exe, m)?.is_none() {
            found.push(snap);
        }
    }
    found.sort_by_key(|p| p.pid);
    Ok(found)
}

/// What has `pid` now, whatever it is (matched or not), or `None` when no live process has it
/// (absent or a zombie).
pub fn snapshot(pid: u32) -> Result<Option<MatchedProc>, AttachError> {
    let Some((state, start_time)) = stat(pid)? else {
        return Ok(None);
    };
    if is_dead(state) {
        return Ok(None);
    }
    let exe = match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => exe,
        Err(e) if gone(&e) => return Ok(None),
        Err(source) => return Err(AttachError::Proc { pid, source }),
    };
    Ok(Some(MatchedProc {
        pid,
        start_time,
        exe,
    }))
}

/// Sends `sig` to `p` if, right now, it is still the same process (same pid and start time), it
/// still matches `m` exactly, and it is not the harness; otherwise sends nothing and says why.
pub fn signal(p: &MatchedProc, m: &ProcessMatcher, sig: Signal) -> Result<(), AttachError> {
    validate(m)?;
    let pid = p.pid;
    if pid == std::process::id() {
        return Err(Refusal::IsSelf { pid }.into());
    }
    // kill(2) with 0 or a negative pid signals process groups: never let one through.
    let Ok(raw) = i32::try_from(pid) else {
        return Err(Refusal::Gone { pid }.into());
    };
    if raw <= 0 {
        return Err(Refusal::Gone { pid }.into());
    }
    let Some(now) = snapshot(pid)? else {
        return Err(Refusal::Gone { pid }.into());
    };
    if now.start_time != p.start_time {
        return Err(Refusal::Restarted {
            pid,
            recorded: p.start_time,
            now: now.start_time,
        }
        .into());
    }
    if let Some(why) = mismatch(pid, &now.exe, m)? {
        return Err(Refusal::NotMatched {
            pid,
            executable: m.executable.clone(),
            env_marker: m.env_marker.clone(),
            why,
        }
        .into());
    }
    match nix::sys::signal::kill(Pid::from_raw(raw), sig) {
        Ok(()) => Ok(()),
        Err(Errno::ESRCH) => Err(Refusal::Gone { pid }.into()),
        Err(errno) => Err(AttachError::Signal { pid, sig, errno }),
    }
}

/// SIGKILL (a crash) after the re-check of [`signal`]; returns once the process has exited, or
/// [`AttachError::StillRunning`] after `deadline`.
pub async fn kill(
    p: &MatchedProc,
    m: &ProcessMatcher,
    deadline: Duration,
) -> Result<(), AttachError> {
    signal(p, m, Signal::SIGKILL)?;
    wait_exit(p, Signal::SIGKILL, deadline).await
}

/// SIGTERM (a graceful stop) after the re-check of [`signal`]; if the process still runs after
/// `grace`, SIGKILL (re-checked again) and wait up to `kill_deadline`. Returns once it has exited.
pub async fn stop(
    p: &MatchedProc,
    m: &ProcessMatcher,
    grace: Duration,
    kill_deadline: Duration,
) -> Result<(), AttachError> {
    signal(p, m, Signal::SIGTERM)?;
    match wait_exit(p, Signal::SIGTERM, grace).await {
        Err(AttachError::StillRunning { .. }) => match signal(p, m, Signal::SIGKILL) {
            // It exited between the wait's last look and the re-check.
            Err(AttachError::Refused(Refusal::Gone { .. } | Refusal::Restarted { .. })) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => wait_exit(p, Signal::SIGKILL, kill_deadline).await,
        },
        other => other,
    }
}

/// Whether the process `p` identifies is still alive (its pid exists, is not a zombie, and has
/// the recorded start time).
pub fn is_alive(p: &MatchedProc) -> Result<bool, AttachError> {
    Ok(match stat(p.pid)? {
        Some((state, start)) => !is_dead(state) && start == p.start_time,
        None => false,
    })
}

/// Polls `/proc` until `p` has exited (or its pid was reused), or `deadline` passes.
pub async fn wait_exit(
    p: &MatchedProc,
    sig: Signal,
    deadline: Duration,
) -> Result<(), AttachError> {
    let started = Instant::now();
    loop {
        if !is_alive(p)? {
            return Ok(());
        }
        if started.elapsed() >= deadline {
            return Err(AttachError::StillRunning {
                pid: p.pid,
                sig,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
}

/// The value of environment variable `name` that process `pid` was started with, `None` when it
/// has none or its environment cannot be read (gone, another user's).
pub fn env_value(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|v| OsStr::from_bytes(v).to_string_lossy().into_owned())
}

/// Why the process with this exe and pid does not match `m`, or `None` when it does.
fn mismatch(
    pid: u32,
    exe: &std::path::Path,
    m: &ProcessMatcher,
) -> Result<Option<String>, AttachError> {
    let name = exe.file_name().unwrap_or_default();
    if name != OsStr::new(&m.executable) {
        return Ok(Some(format!("its executable is {}", exe.display())));
    }
    let environ = match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(bytes) => bytes,
        // Gone between two reads: a later check reports it.
        Err(e) if gone(&e) => return Ok(Some("it exited while being inspected".into())),
        Err(source) => return Err(AttachError::Proc { pid, source }),
    };
    let marker = m.env_marker.as_bytes();
    if environ.split(|b| *b == 0).any(|entry| entry == marker) {
        return Ok(None);
    }
    let name = m.env_marker.split_once('=').map_or("", |(n, _)| n);
    let prefix = format!("{name}=");
    let why = match environ
        .split(|b| *b == 0)
        .find(|entry| entry.starts_with(prefix.as_bytes()))
    {
        Some(entry) => format!(
            "its environment has {}",
            OsStr::from_bytes(entry).to_string_lossy()
        ),
        None => format!("its environment has no {name}"),
    };
    Ok(Some(why))
}

/// `(state, start time in ticks)` from `/proc/<pid>/stat`, `None` when there is no such pid.
fn stat(pid: u32) -> Result<Option<(char, u64)>, AttachError> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(t) => t,
        Err(e) if gone(&e) => return Ok(None),
        Err(source) => return Err(AttachError::Proc { pid, source }),
    };
    parse_stat(&text)
        .map(Some)
        .ok_or_else(|| AttachError::Proc {
            pid,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unparsable stat line `{}`", text.trim_end()),
            ),
        })
}

/// Parses `pid (comm) state ppid … starttime …`: the command name may hold spaces and
/// parentheses, so fields are counted from the last `)`. `starttime` is field 22.
fn parse_stat(text: &str) -> Option<(char, u64)> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 is the state; field 22 is 19 further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Zombie or dead: exited, waiting to be reaped.
fn is_dead(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// The I/O errors that mean the process went away under our feet.
fn gone(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::NotFound) || e.raw_os_error() == Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (we) ird (name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("12 (x) Z 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn matchers_must_be_a_file_name_and_name_equals_value() {
        let m = |exe: &str, env: &str| ProcessMatcher {
            executable: exe.into(),
            env_marker: env.into(),
        };
        assert!(validate(&m("gitspy", "GITSPY_CHAOS_TARGET=a")).is_ok());
        assert!(validate(&m("gitspy", "EMPTY=")).is_ok());
        for bad in [
            m("/usr/bin/gitspy", "A=b"),
            m("", "A=b"),
            m("gitspy", "A"),
            m("gitspy", "=b"),
        ] {
            assert!(
                matches!(validate(&bad), Err(AttachError::BadMatcher(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_kill_and_stop_are_possible_in_attach_mode() {
        assert_eq!(check_action(ProcessAction::Kill), Ok(()));
        assert_eq!(check_action(ProcessAction::Stop), Ok(()));
        for action in [ProcessAction::Start, ProcessAction::Restart] {
            let err = check_action(action).unwrap_err();
            assert_eq!(
                err,
                Refusal::CannotStart {
                    action: action.as_str()
                }
            );
            assert!(err.to_string().contains("supervisor"), "{err}");
        }
    }
}
