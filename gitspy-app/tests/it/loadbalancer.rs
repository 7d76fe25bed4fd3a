//! The shipped load-balancer configuration (`docker/haproxy/gitspy.cfg`) run by the host's real
//! HAProxy in front of two real `gitspy serve` with admin addresses — no Docker: the service
//! names and ports of the compose file are rewritten to this test's loopback ports, nothing else.
//! Its public side passes only `POST /webhooks`, its admin side serves the reads, and a SIGKILLed
//! server costs no webhook (refused connections are retried on the other one).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::*;

struct Haproxy(Child);
impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy_bin() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("haproxy is not installed: `apt-get install -y haproxy`"))
}

/// `docker/haproxy/gitspy.cfg` with compose's names and ports replaced by loopback ones.
fn config(public: u16, admin: u16, servers: [(&str, &str); 2]) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/haproxy/gitspy.cfg"),
    )
    .expect("docker/haproxy/gitspy.cfg");
    let mut out = String::new();
    for line in shipped.lines() {
        let t = line.trim_start();
        let line = if t == "bind :8080" {
            format!("    bind 127.0.0.1:{public}")
        } else if t == "bind :8081" {
            format!("    bind 127.0.0.1:{admin}")
        } else if t.starts_with("default-server ") {
            // No Docker DNS here: the servers are addresses.
            line.replace(" resolvers docker init-addr last,libc,none", "")
        } else if let Some(rest) = t.strip_prefix("server ") {
            let (name, target) = rest.split_once(' ').expect("server NAME HOST:PORT");
            let i = if name == "server1" { 0 } else { 1 };
            let (public_addr, admin_addr) = servers[i];
            let admin_port = admin_addr.rsplit(':').next().unwrap();
            match target {
                t if t.ends_with(":3000") => {
                    // The health check goes to that server's own admin port.
                    format!("    server {name} {public_addr} port {admin_port}")
                }
                t if t.ends_with(":3001") => format!("    server {name} {admin_addr}"),
                other => panic!("unexpected server target `{other}` in gitspy.cfg"),
            }
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn the_shipped_haproxy_config_exposes_only_webhooks_and_survives_a_server_kill() {
    let redis = Redis::start();
    let sys = Sys::new();
    let admin = [("GITSPY_ADMIN_ADDR", "127.0.0.1:0".to_string())];
    let mut s1 = sys.serve_as(&redis, &admin, "serve1");
    let s2 = sys.serve_as(&redis, &admin, "serve2");
    let _worker = sys.worker(&redis, &[], "worker");
    let (public, admin_port) = (free_port(), free_port());
    let cfg = config(
        public,
        admin_port,
        [
            (&s1.addr, s1.admin.as_deref().unwrap()),
            (&s2.addr, s2.admin.as_deref().unwrap()),
        ],
    );
    let cfg_path = sys.dir.path().join("haproxy.cfg");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let check = Command::new(haproxy_bin())
        .args(["-c", "-q", "-f"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c:\n{}\n{cfg}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _lb = Haproxy(
        Command::new(haproxy_bin())
            .args(["-db", "-f"])
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lb = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    wait_for(
        Duration::from_secs(20),
        "the load balancer's admin side to answer /readyz",
        || reqwest::blocking_get_status(&lb(admin_port, "/readyz")) == Some(200),
    );

    // Public side: nothing but POST /webhooks.
    for path in [
        "/healthz",
        "/readyz",
        "/metrics/prom",
        "/deliveries",
        "/boards/o/r",
        "/webhooks",
    ] {
        assert_eq!(
            reqwest::blocking_get_status(&lb(public, path)),
            Some(404),
            "GET {path} on the public side"
        );
    }
    let (st, _) = post_json(
        &lb(public, "/deliveries/lookup"),
        serde_json::json!({"ids": ["x"]}),
    );
    assert_eq!(st, 404, "POST /deliveries/lookup on the public side");

    let client = reqwest::client();
    let send = |ids: &[String]| {
        let url = lb(public, "/webhooks");
        for id in ids {
            let p = Post::signed("issues", id, fixture("issues/opened.json"));
            let r = reqwest::block_on(post_async(&client, &url, &p));
            assert_eq!(r.status, 202, "{id}: {}", r.body);
        }
    };
    let before: Vec<String> = (0..10).map(|_| id("lb")).collect();
    send(&before);
    // Round robin: both servers took webhooks.
    for s in [&s1, &s2] {
        let (_, text) = get_text(&s.admin_url("/metrics/prom"));
        let n = sample(&text, "gitspy_events_received_total{event_type=\"issues\"}");
        assert!(
            n.is_some_and(|n| n >= 1.0),
            "{} received none:\n{text}",
            s.addr
        );
    }

    // server1 dies; every webhook still gets a 202 (a refused connection is retried on server2).
    s1.kill9();
    let after: Vec<String> = (0..20).map(|_| id("lb-after")).collect();
    send(&after);

    // Admin side: the reads, through the one server left.
    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    wait_for(Duration::from_secs(30), "30 deliveries processed", || {
        let (_, v) = post_json(
            &lb(admin_port, "/deliveries/lookup"),
            serde_json::json!({ "ids": all }),
        );
        v["deliveries"]
            .as_array()
            .is_some_and(|a| a.len() == all.len() && a.iter().all(|d| d["state"] == "processed"))
    });
}
