//! `GITSPY_ADMIN_ADDR`: the public address serves only `POST /webhooks` (every read API, the
//! metrics and the health endpoints are 404 there), the admin address serves them (and no
//! `/webhooks`); without it one address serves everything. Real server, Redis, worker, HTTP.

use std::time::Duration;

use crate::util::*;

const READ_PATHS: [&str; 6] = [
    "/healthz",
    "/readyz",
    "/metrics/prom",
    "/boards/octo-org/board",
    "/deliveries",
    "/deliveries/some-id",
];

#[test]
fn public_address_serves_only_webhooks_and_the_admin_address_the_rest() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[("GITSPY_ADMIN_ADDR", "127.0.0.1:0".into())]);
    let admin = server.admin.clone().expect("an admin address");
    assert_ne!(admin, server.addr, "two different addresses");

    // Public: every read path, the metrics and health are 404; so is the lookup.
    for path in READ_PATHS {
        assert_eq!(
            reqwest::blocking_get_status(&server.url(path)),
            Some(404),
            "public {path}"
        );
    }
    let (st, _) = post_json(
        &server.url("/deliveries/lookup"),
        serde_json::json!({"ids": ["x"]}),
    );
    assert_eq!(st, 404, "public /deliveries/lookup");

    // Public: webhooks are accepted.
    let _worker = sys.worker(&redis, &[], "worker");
    let ids: Vec<String> = (0..3).map(|_| id("admin")).collect();
    for id in &ids {
        let r = post(
            &server,
            &Post::signed("issues", id, fixture("issues/opened.json")),
        );
        assert_eq!(r.status, 202, "{}", r.body);
    }

    // Admin: health, readiness, metrics, lookups and the board are served there.
    assert_eq!(
        reqwest::blocking_get_status(&server.admin_url("/healthz")),
        Some(200)
    );
    assert_eq!(
        reqwest::blocking_get_status(&server.admin_url("/readyz")),
        Some(200)
    );
    wait_for(Duration::from_secs(30), "3 deliveries processed", || {
        let (_, v) = post_json(
            &server.admin_url("/deliveries/lookup"),
            serde_json::json!({ "ids": ids }),
        );
        v["deliveries"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|d| d["state"] == "processed"))
    });
    let (st, d) = get_json(&server.admin_url(&format!("/deliveries/{}", ids[0])));
    assert_eq!((st, &d["state"]), (200, &serde_json::json!("processed")));
    let (st, text) = get_text(&server.admin_url("/metrics/prom"));
    assert_eq!(st, 200);
    assert_eq!(
        sample(&text, "gitspy_events_received_total{event_type=\"issues\"}"),
        Some(3.0),
        "{text}"
    );
    let (st, list) = get_json(&server.admin_url("/deliveries?limit=10"));
    assert_eq!(st, 200, "{list}");

    // Admin: no webhooks there (a 404 for any method).
    let url = server.admin_url("/webhooks");
    let p = Post::signed("issues", "admin-post", fixture("issues/opened.json"));
    let r = reqwest::block_on(async { post_async(&reqwest::client(), &url, &p).await });
    assert_eq!(r.status, 404, "{}", r.body);
}

#[test]
fn without_an_admin_address_one_address_serves_everything() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    assert!(server.admin.is_none());
    for path in ["/healthz", "/readyz", "/metrics/prom", "/deliveries"] {
        assert_eq!(
            reqwest::blocking_get_status(&server.url(path)),
            Some(200),
            "{path}"
        );
    }
    let r = post(
        &server,
        &Post::signed("issues", &id("one"), fixture("issues/opened.json")),
    );
    assert_eq!(r.status, 202, "{}", r.body);
}

#[test]
fn an_admin_address_that_is_taken_fails_start_up_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let redis = Redis::start();
    let sys = Sys::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gitspy"))
        .arg("serve")
        .env_clear()
        .env("GITSPY_LISTEN", "127.0.0.1:0")
        .env("GITSPY_ADMIN_ADDR", &addr)
        .env("REDIS_URL", redis.url())
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GITSPY_DB", sys.db())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on the admin address {addr}")),
        "{err}"
    );
}
