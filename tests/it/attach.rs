//! Attach mode against real processes: `sleep` (and friends) started by the test with an
//! environment marker unique to the test, found by [`attach::find`], signalled by
//! [`attach::signal`] — and every refusal, each checked to have left the process running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gitspy_chaos::scenario::model::ProcessMatcher;
use gitspy_chaos::system::attach::{self, AttachError, MatchedProc, Refusal};
use nix::sys::signal::Signal;

const MARKER_NAME: &str = "GITSPY_CHAOS_TARGET";

/// Children killed and reaped when the test ends, however it ends.
#[derive(Default)]
struct Kids(Vec<Child>);

impl Kids {
    /// Starts `program args…` with `env` (if any) and keeps it for cleanup; returns its pid.
    fn spawn(
        &mut self,
        program: impl AsRef<Path>,
        args: &[&str],
        env: Option<(&str, &str)>,
    ) -> u32 {
        let mut cmd = Command::new(program.as_ref());
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        self.0.push(child);
        pid
    }

    fn child(&mut self, pid: u32) -> &mut Child {
        self.0.iter_mut().find(|c| c.id() == pid).unwrap()
    }

    /// Whether the child is still running (not exited, not a zombie: reaps it if it exited).
    fn running(&mut self, pid: u32) -> bool {
        self.child(pid).try_wait().unwrap().is_none()
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A marker value no other test (or other run of this one) uses.
fn marker(test: &str) -> String {
    format!("t-{}-{test}", std::process::id())
}

fn matcher(exe: &str, value: &str) -> ProcessMatcher {
    ProcessMatcher {
        executable: exe.into(),
        env_marker: format!("{MARKER_NAME}={value}"),
    }
}

fn sleep_bin() -> PathBuf {
    for p in ["/usr/bin/sleep", "/bin/sleep"] {
        if Path::new(p).is_file() {
            return p.into();
        }
    }
    panic!("no sleep binary");
}

fn pids(found: &[MatchedProc]) -> Vec<u32> {
    found.iter().map(|p| p.pid).collect()
}

/// Polls `find` until it returns `want` pids (children may still be exec'ing), with a deadline.
fn find_until(m: &ProcessMatcher, want: &[u32]) -> Vec<MatchedProc> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = attach::find(m).unwrap();
        if pids(&found) == want || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls until the child has exited (and is reaped), with a deadline.
fn wait_child_exit(kids: &mut Kids, pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !kids.running(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn find_returns_exactly_the_marked_processes_with_that_executable() {
    let value = marker("find");
    let mut kids = Kids::default();
    let a = kids.spawn(sleep_bin(), &["60"], Some((MARKER_NAME, &value)));
    let b = kids.spawn(sleep_bin(), &["60"], Some((MARKER_NAME, &value)));
    // Not matched: no marker, another value, a value with our value as a prefix, a marked
    // process with another executable, a marked copy of sleep under another file name.
    kids.spawn(sleep_bin(), &["60"], None);
    kids.spawn(sleep_bin(), &["60"], Some((MARKER_NAME, "other")));
    kids.spawn(
        sleep_bin(),
        &["60"],
        Some((MARKER_NAME, &format!("{value}-x"))),
    );
    kids.spawn("/bin/cat", &[], Some((MARKER_NAME, &value)));
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("sleepy");
    std::fs::copy(sleep_bin(), &renamed).unwrap();
    kids.spawn(&renamed, &["60"], Some((MARKER_NAME, &value)));
    // Matched: a copy named `sleep` elsewhere (the file name counts, not the directory).
    let other_dir = tempfile::tempdir().unwrap();
    let copy = other_dir.path().join("sleep");
    std::fs::copy(sleep_bin(), &copy).unwrap();
    let c = kids.spawn(&copy, &["60"], Some((MARKER_NAME, &value)));

    let mut want = vec![a, b, c];
    want.sort();
    let found = find_until(&matcher("sleep", &value), &want);
    assert_eq!(pids(&found), want);
    let by_pid = |pid| found.iter().find(|p| p.pid == pid).unwrap();
    assert_eq!(by_pid(c).exe, copy);
    assert_eq!(by_pid(a).exe.file_name().unwrap(), "sleep");
    assert!(found.iter().all(|p| p.start_time > 0));
    // And the marked cat is found by its own name.
    assert_eq!(attach::find(&matcher("cat", &value)).unwrap().len(), 1);
}

#[test]
fn find_never_returns_the_harness_itself() {
    // A matcher that describes this very test process: its executable name and an environment
    // entry it really has.
    let me = std::env::current_exe().unwrap();
    let environ = std::fs::read("/proc/self/environ").unwrap();
    let entry = environ
        .split(|b| *b == 0)
        .find(|e| e.contains(&b'=') && !e.starts_with(b"="))
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .unwrap();
    let m = ProcessMatcher {
        executable: me.file_name().unwrap().to_string_lossy().into_owned(),
        env_marker: entry,
    };
    // A child that matches too (a copy of sleep under our file name, inheriting our
    // environment) shows the matcher does describe us: only the child is returned.
    let dir = tempfile::tempdir().unwrap();
    let twin = dir.path().join(me.file_name().unwrap());
    std::fs::copy(sleep_bin(), &twin).unwrap();
    let mut kids = Kids::default();
    let child = kids.spawn(&twin, &["60"], None);
    let found = find_until(&m, &[child]);
    // Other test processes of this binary running at the same time may match as well (nextest
    // runs each test in its own process); this one never does.
    assert!(pids(&found).contains(&child), "{:?}", pids(&found));
    assert!(
        !pids(&found).contains(&std::process::id()),
        "{:?}",
        pids(&found)
    );

    // And signalling ourselves is refused, even with our exact identity.
    let myself = attach::snapshot(std::process::id()).unwrap().unwrap();
    let err = attach::signal(&myself, &m, Signal::SIGKILL).unwrap_err();
    assert!(
        matches!(err, AttachError::Refused(Refusal::IsSelf { pid }) if pid == std::process::id()),
        "{err}"
    );
    assert!(err.to_string().contains("the harness itself"), "{err}");
}

#[test]
fn signal_kills_a_matched_process() {
    let value = marker("kill");
    let mut kids = Kids::default();
    let pid = kids.spawn(sleep_bin(), &["60"], Some((MARKER_NAME, &value)));
    let bystander = kids.spawn(sleep_bin(), &["60"], None);
    let m = matcher("sleep", &value);
    let found = find_until(&m, &[pid]);
    assert_eq!(pids(&found), vec![pid]);

    attach::signal(&found[0], &m, Signal::SIGKILL).unwrap();
    assert!(
        wait_child_exit(&mut kids, pid),
        "pid {pid} survived SIGKILL"
    );
    let status = kids.child(pid).wait().unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(kids.running(bystander));
}

#[tokio::test]
async fn kill_helper_returns_once_the_process_is_gone() {
    let value = marker("killhelper");
    let mut kids = Kids::default();
    let pid = kids.spawn(sleep_bin(), &["60"], Some((MARKER_NAME, &value)));
    let m = matcher("sleep", &value);
    let found = find_until(&m, &[pid]);
    // The child becomes a zombie (we have not reaped it): the helper counts that as exited.
    attach::kill(&found[0], &m, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(!attach::is_alive(&found[0]).unwrap());
    assert!(!kids.running(pid));
}

#[tokio::test]
async fn stop_escalates_to_sigkill_when_sigterm_is_ignored() {
    let value = marker("stop");
    let mut kids = Kids::default();
    // sh ignores TERM, and an ignored signal stays ignored across exec: a `sleep` deaf to TERM.
    let deaf = kids.spawn(
        "/bin/sh",
        &["-c", "trap '' TERM; exec sleep 60"],
        Some((MARKER_NAME, &value)),
    );
    let polite = kids.spawn(sleep_bin(), &["60"], Some((MARKER_NAME, &value)));
    let m = matcher("sleep", &value);
    let mut want = vec![deaf, polite];
    want.sort();
    let found = find_until(&m, &want);
    assert_eq!(pids(&found), want);
    let get = |pid| found.iter().find(|p| p.pid == pid).unwrap();

    attach::stop(
        get(polite),
        &m,
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let status = kids.child(polite).wait().unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(libc::SIGTERM));

    attach::stop(
        get(deaf),
        &m,
        Duration::from_millis(300),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let status = kids.child(deaf).wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

#[test]
fn refuses_a_process_that_has_exited() {
    let value = marker("gone");
    let mut kids = Kids::default();
    let pid = kids.spawn(sleep_bin(), &["60"], Some((MARKER_NAME, &value)));
    let m = matcher("sleep", &value);
    let found = find_until(&m, &[pid]);
    kids.child(pid).kill().unwrap();
    // Still a zombie until reaped: refused as gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while attach::is_alive(&found[0]).unwrap() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = attach::signal(&found[0], &m, Signal::SIGKILL).unwrap_err();
    assert!(
        matches!(err, AttachError::Refused(Refusal::Gone { pid: p }) if p == pid),
        "{err}"
    );
    // Reaped: the pid does not exist at all.
    kids.child(pid).wait().unwrap();
    let err = attach::signal(&found[0], &m, Signal::SIGKILL).unwrap_err();
    assert!(
        matches!(err, AttachError::Refused(Refusal::Gone { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("is gone"), "{err}");
}

#[test]
fn refuses_a_process_whose_start_time_differs() {
    let value = marker("restarted");
    let mut kids = Kids::default();
    let pid = kids.spawn(sleep_bin(), &["60"], Some((MARKER_NAME, &value)));
    let m = matcher("sleep", &value);
    let found = find_until(&m, &[pid]);
    let mut recorded = found[0].clone();
    recorded.start_time -= 1;
    let err = attach::signal(&recorded, &m, Signal::SIGKILL).unwrap_err();
    assert!(
        matches!(
            err,
            AttachError::Refused(Refusal::Restarted { pid: p, recorded: r, now })
                if p == pid && r == recorded.start_time && now == found[0].start_time
        ),
        "{err}"
    );
    assert!(err.to_string().contains("restarted or reused"), "{err}");
    assert!(kids.running(pid), "a refused signal was sent anyway");
}

#[test]
fn refuses_a_process_that_does_not_carry_the_marker() {
    let value = marker("notmatched");
    let mut kids = Kids::default();
    let unmarked = kids.spawn(sleep_bin(), &["60"], None);
    let other = kids.spawn(sleep_bin(), &["60"], Some((MARKER_NAME, "someone-else")));
    let cat = kids.spawn("/bin/cat", &[], Some((MARKER_NAME, &value)));
    let m = matcher("sleep", &value);
    for pid in [unmarked, other, cat] {
        let recorded = attach::snapshot(pid).unwrap().unwrap();
        let err = attach::signal(&recorded, &m, Signal::SIGKILL).unwrap_err();
        assert!(
            matches!(&err, AttachError::Refused(Refusal::NotMatched { pid: p, .. }) if *p == pid),
            "{err}"
        );
        assert!(err.to_string().contains("does not match"), "{err}");
    }
    let why = |pid| match attach::signal(
        &attach::snapshot(pid).unwrap().unwrap(),
        &m,
        Signal::SIGKILL,
    ) {
        Err(AttachError::Refused(Refusal::NotMatched { why, .. })) => why,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        why(unmarked),
        format!("its environment has no {MARKER_NAME}")
    );
    assert_eq!(
        why(other),
        format!("its environment has {MARKER_NAME}=someone-else")
    );
    assert!(why(cat).starts_with("its executable is "), "{}", why(cat));
    for pid in [unmarked, other, cat] {
        assert!(kids.running(pid), "a refused signal was sent to {pid}");
    }
}

#[test]
fn refuses_malformed_matchers_and_start_faults() {
    let bad = ProcessMatcher {
        executable: "/usr/bin/sleep".into(),
        env_marker: format!("{MARKER_NAME}=x"),
    };
    assert!(attach::find(&bad).is_err());
    let err =
        attach::check_action(gitspy_chaos::scenario::model::ProcessAction::Restart).unwrap_err();
    assert!(
        err.to_string()
            .contains("`restart` is not possible in attach mode"),
        "{err}"
    );
}
