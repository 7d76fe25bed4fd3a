//! `POST /webhooks`: queued, duplicate, bad input — against a real server and Redis.

use std::time::Duration;

use crate::util::*;

#[test]
fn signed_fixture_is_queued_processed_acked_and_logged_once() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let body = fixture("issues/opened.json");
    let id = id("queued");
    let r = post(&server, &Post::signed("issues", &id, body));
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["status"], "queued");
    assert_eq!(r.json()["delivery"], id.as_str());
    // No worker yet: exactly one stream entry, state received.
    assert_eq!(xlen(&redis, "gitspy:events"), 1);
    assert_eq!(
        get(&redis, &format!("events:{id}:state")).as_deref(),
        Some("received")
    );

    // A slow worker lets us see `processing` before `processed`.
    let _worker = sys.worker(
        &redis,
        &[("GITSPY_TEST_PROCESSING_DELAY", "1500ms".into())],
        "worker",
    );
    wait_for(Duration::from_secs(20), "state processing", || {
        get(&redis, &format!("events:{id}:state")).as_deref() == Some("processing")
    });
    wait_processed(&server, std::slice::from_ref(&id), Duration::from_secs(30));
    // Acknowledged and deleted; logged once.
    assert_eq!(xlen(&redis, "gitspy:events"), 0);
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg("gitspy:events")
        .arg("gitspy-workers")
        .query(&mut redis.conn())
        .unwrap();
    match &pending {
        redis::Value::Array(parts) => {
            assert_eq!(parts.first(), Some(&redis::Value::Int(0)), "{pending:?}")
        }
        other => panic!("XPENDING: {other:?}"),
    }
    let d = delivery(&server, &id);
    assert_eq!(d["logged"], 1, "{d}");
    assert_eq!(d["effects"], 1, "{d}");
    assert_eq!(d["state"], "processed");
    // Nothing left locked.
    assert!(locks(&redis).is_empty(), "{:?}", locks(&redis));
}

#[test]
fn duplicate_delivery_is_answered_200_and_not_enqueued() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let body = fixture("issues/labeled.json");
    let id = id("dup");
    assert_eq!(
        post(&server, &Post::signed("issues", &id, body.clone())).status,
        202
    );
    let r = post(&server, &Post::signed("issues", &id, body));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "duplicate");
    assert_eq!(xlen(&redis, "gitspy:events"), 1);
}

#[test]
fn twenty_concurrent_posts_of_one_new_id_enqueue_and_apply_once() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let body = fixture("pull_request/opened.json");
    let id = id("conc");
    let url = server.url("/webhooks");
    let statuses: Vec<u16> = reqwest::block_on(async {
        let client = reqwest::client();
        let futs = (0..20).map(|_| {
            let p = Post::signed("pull_request", &id, body.clone());
            let client = client.clone();
            let url = url.clone();
            async move { post_async(&client, &url, &p).await.status }
        });
        futures::future::join_all(futs).await
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(xlen(&redis, "gitspy:events"), 1);
    let _worker = sys.worker(&redis, &[], "worker");
    wait_processed(&server, std::slice::from_ref(&id), Duration::from_secs(30));
    let d = delivery(&server, &id);
    assert_eq!(
        (d["logged"].as_u64(), d["effects"].as_u64()),
        (Some(1), Some(1)),
        "{d}"
    );
}

/// The group commit puts concurrent requests into one script call: 64 copies of one new id, sent
/// at once, still give exactly one 202, 63 duplicates, one stream entry and one application; and
/// distinct ids sharing batches with their copies are each queued once.
#[test]
fn sixty_four_concurrent_copies_of_one_id_are_queued_once_and_applied_once() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let body = fixture("issues/opened.json");
    let id = id("conc64");
    let url = server.url("/webhooks");
    let answers: Vec<(u16, String)> = reqwest::block_on(async {
        let client = reqwest::client();
        let futs = (0..64).map(|_| {
            let p = Post::signed("issues", &id, body.clone());
            let client = client.clone();
            let url = url.clone();
            async move {
                let r = post_async(&client, &url, &p).await;
                let status = r.json()["status"].as_str().unwrap_or("").to_string();
                (r.status, status)
            }
        });
        futures::future::join_all(futs).await
    });
    let queued = answers
        .iter()
        .filter(|a| *a == &(202, "queued".to_string()))
        .count();
    let duplicates = answers
        .iter()
        .filter(|a| *a == &(200, "duplicate".to_string()))
        .count();
    assert_eq!((queued, duplicates), (1, 63), "{answers:?}");
    assert_eq!(xlen(&redis, "gitspy:events"), 1);

    // 16 new ids, 4 concurrent copies each, interleaved: 16 queued, 48 duplicates.
    let ids: Vec<String> = (0..16).map(|i| self::id(&format!("mix{i}"))).collect();
    let answers: Vec<(String, u16)> = reqwest::block_on(async {
        let client = reqwest::client();
        let futs = (0..64).map(|i| {
            let id = ids[i % ids.len()].clone();
            let body = body.clone();
            let client = client.clone();
            let url = url.clone();
            async move {
                let status = {
                    let p = Post::signed("issues", &id, body);
                    post_async(&client, &url, &p).await.status
                };
                (id, status)
            }
        });
        futures::future::join_all(futs).await
    });
    for id in &ids {
        let statuses: Vec<u16> = answers
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 202).count(),
            1,
            "{id}: {statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            3,
            "{id}: {statuses:?}"
        );
    }
    assert_eq!(xlen(&redis, "gitspy:events"), 17);

    let _worker = sys.worker(&redis, &[], "worker");
    let mut all = ids.clone();
    all.push(id.clone());
    wait_processed(&server, &all, Duration::from_secs(60));
    for i in &all {
        let d = delivery(&server, i);
        assert_eq!(
            (d["logged"].as_u64(), d["effects"].as_u64()),
            (Some(1), Some(1)),
            "{i}: {d}"
        );
    }
}

#[test]
fn bad_input_gets_its_status_and_nothing_is_enqueued() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[("GITSPY_MAX_BODY", "64KiB".into())]);
    let body = fixture("issues/opened.json");
    let good = sign(&body);
    let form_body = {
        let mut s = String::from("payload=");
        s.extend(form_urlencoded::byte_serialize(&body));
        s.into_bytes()
    };
    let no_payload_form = b"foo=bar".to_vec();
    let huge = {
        let mut v = b"{\"pad\":\"".to_vec();
        v.extend(std::iter::repeat_n(b'x', 70 * 1024));
        v.extend(b"\"}");
        v
    };
    struct Case<'a> {
        name: &'a str,
        post: Post<'a>,
        status: u16,
        error: &'a str,
    }
    let cases = vec![
        Case {
            name: "wrong signature",
            post: Post {
                signature: Some(gitspy::github::signature::sign(b"other", &body)),
                ..Post::signed("issues", "b1", body.clone())
            },
            status: 401,
            error: "invalid signature",
        },
        Case {
            name: "missing signature",
            post: Post {
                signature: None,
                ..Post::signed("issues", "b2", body.clone())
            },
            status: 401,
            error: "invalid signature",
        },
        Case {
            name: "sha1 only",
            post: Post {
                signature: Some(good.replace("sha256=", "sha1=")),
                ..Post::signed("issues", "b3", body.clone())
            },
            status: 401,
            error: "invalid signature",
        },
        Case {
            name: "uppercase digest",
            post: Post {
                signature: Some(format!("sha256={}", good[7..].to_uppercase())),
                ..Post::signed("issues", "b4", body.clone())
            },
            status: 401,
            error: "invalid signature",
        },
        Case {
            name: "short digest",
            post: Post {
                signature: Some(good[..40].to_string()),
                ..Post::signed("issues", "b5", body.clone())
            },
            status: 401,
            error: "invalid signature",
        },
        Case {
            name: "non-hex digest",
            post: Post {
                signature: Some(format!("sha256={}", "g".repeat(64))),
                ..Post::signed("issues", "b6", body.clone())
            },
            status: 401,
            error: "invalid signature",
        },
        Case {
            name: "missing event",
            post: Post {
                event: None,
                ..Post::signed("issues", "b7", body.clone())
            },
            status: 400,
            error: "X-GitHub-Event",
        },
        Case {
            name: "missing delivery",
            post: Post {
                delivery: None,
                ..Post::signed("issues", "b8", body.clone())
            },
            status: 400,
            error: "X-GitHub-Delivery",
        },
        Case {
            name: "invalid json",
            post: Post::signed("issues", "b9", b"{not json".to_vec()),
            status: 400,
            error: "not valid JSON",
        },
        Case {
            name: "form without payload",
            post: Post {
                content_type: "application/x-www-form-urlencoded",
                ..Post::signed("issues", "b10", no_payload_form)
            },
            status: 400,
            error: "payload",
        },
        Case {
            name: "over the body limit",
            post: Post::signed("issues", "b11", huge),
            status: 413,
            error: "",
        },
    ];
    for c in &cases {
        let r = post(&server, &c.post);
        assert_eq!(r.status, c.status, "{}: {}", c.name, r.body);
        if !c.error.is_empty() {
            let err = r.json()["error"].as_str().unwrap_or("").to_owned();
            assert!(
                err.contains(c.error),
                "{}: error `{err}` lacks `{}`",
                c.name,
                c.error
            );
        }
    }
    assert_eq!(
        xlen(&redis, "gitspy:events"),
        0,
        "a rejected delivery was enqueued"
    );
    let mut c = redis.conn();
    let states: Vec<String> = redis::cmd("KEYS").arg("events:*").query(&mut c).unwrap();
    assert!(states.is_empty(), "{states:?}");

    // A form-encoded delivery is accepted; the signature covers the form bytes.
    let id = id("form");
    let r = post(
        &server,
        &Post {
            content_type: "application/x-www-form-urlencoded",
            ..Post::signed("issues", &id, form_body)
        },
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(xlen(&redis, "gitspy:events"), 1);
}
