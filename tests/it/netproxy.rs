//! The network proxy between a real redis-rs client and a real `redis-server` (spawned by the
//! test on a free port): what a partition, a reset, `limit_data` and latency do to Redis
//! commands, and what the proxy's counters say they hit.

use std::time::Duration;

use gitspy_chaos::netproxy::links::{redis_upstream, redis_url_via};
use gitspy_chaos::netproxy::Proxy;
use redis::aio::MultiplexedConnection;

use crate::util::Redis;

async fn spawn_redis() -> Redis {
    tokio::task::spawn_blocking(Redis::start)
        .await
        .expect("starting redis-server")
}

async fn proxied(redis: &Redis) -> (Proxy, String) {
    let up = redis_upstream(&redis.url).await.unwrap();
    let p = Proxy::start("test-redis", up, 42).await.unwrap();
    let url = redis_url_via(&redis.url, p.listen_addr()).unwrap();
    (p, url)
}

async fn connect(url: &str, timeout: Duration) -> redis::RedisResult<MultiplexedConnection> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}

async fn get(c: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(c).await.unwrap()
}

async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn redis_commands_pass_through_the_proxy() {
    let redis = spawn_redis().await;
    let (p, url) = proxied(&redis).await;
    let mut c = connect(&url, Duration::from_secs(5)).await.unwrap();
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(get(&mut c, "k").await.as_deref(), Some("v"));
    let s = p.stats();
    assert!(
        s.accepted >= 1 && s.bytes_up > 0 && s.bytes_down > 0,
        "{s:?}"
    );
}

/// A partition is not an error the client sees at once: the command times out, nothing reaches
/// Redis while it lasts, and what was sent is delivered when it heals (as TCP retransmits
/// across a healed partition) — so a command the client gave up on can still run. This is the
/// hazard behind a 503 whose enqueue landed late (scenario 09-partition).
#[tokio::test]
async fn a_partition_holds_a_command_that_runs_when_the_link_heals() {
    let redis = spawn_redis().await;
    let (p, url) = proxied(&redis).await;
    let mut direct = connect(&redis.url, Duration::from_secs(5)).await.unwrap();
    let mut c = connect(&url, Duration::from_millis(300)).await.unwrap();
    p.update(|s| {
        s.up.partition = true;
        s.down.partition = true;
    });
    let r: redis::RedisResult<i64> = redis::cmd("INCR").arg("n").query_async(&mut c).await;
    let err = r.expect_err("INCR answered through a partition");
    assert!(err.is_timeout(), "a timeout, not {err:?}");
    assert_eq!(get(&mut direct, "n").await, None, "nothing reached Redis");
    assert!(p.stats().held > 0, "{:?}", p.stats());
    assert!(p.stats().open >= 1, "the connection stays open");
    p.heal();
    eventually("the held INCR runs after the heal", || {
        let mut d = direct.clone();
        async move { get(&mut d, "n").await.as_deref() == Some("1") }
    })
    .await;
}

#[tokio::test]
async fn reset_breaks_open_and_new_connections_until_healed() {
    let redis = spawn_redis().await;
    let (p, url) = proxied(&redis).await;
    let mut c = connect(&url, Duration::from_secs(2)).await.unwrap();
    let _: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    p.update(|s| s.reset = true);
    let r: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
    assert!(r.is_err(), "PING on a reset connection: {r:?}");
    assert!(
        connect(&url, Duration::from_secs(2)).await.is_err(),
        "a new connection is reset too"
    );
    assert!(p.stats().resets >= 2, "{:?}", p.stats());
    p.heal();
    let mut c = connect(&url, Duration::from_secs(2)).await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// `limit_data` on the replies cuts a bulk reply in the middle: the client must see an error,
/// never a shortened value.
#[tokio::test]
async fn limit_data_cuts_a_reply_and_the_client_sees_an_error_not_half_a_value() {
    let redis = spawn_redis().await;
    let (p, url) = proxied(&redis).await;
    let mut direct = connect(&redis.url, Duration::from_secs(5)).await.unwrap();
    let big = "x".repeat(10_000);
    let () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query_async(&mut direct)
        .await
        .unwrap();
    let mut c = connect(&url, Duration::from_secs(2)).await.unwrap();
    p.update(|s| {
        s.down.limit_data = Some(100);
        s.down.limit_epoch += 1;
    });
    let r: redis::RedisResult<String> = redis::cmd("GET").arg("big").query_async(&mut c).await;
    match r {
        Ok(v) => assert_eq!(v.len(), big.len(), "a shortened value came back"),
        Err(e) => assert!(
            e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error(),
            "{e:?}"
        ),
    }
    assert_eq!(p.stats().cut, 1, "{:?}", p.stats());
}

#[tokio::test]
async fn latency_slows_commands_down_but_they_complete() {
    let redis = spawn_redis().await;
    let (p, url) = proxied(&redis).await;
    let mut c = connect(&url, Duration::from_secs(5)).await.unwrap();
    p.update(|s| {
        for t in [&mut s.up, &mut s.down] {
            t.latency = Some(Duration::from_millis(100));
            t.jitter = Duration::from_millis(20);
        }
    });
    let t = tokio::time::Instant::now();
    let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    assert_eq!(pong, "PONG");
    // Two directions of at least 80 ms each: a lower bound, which a slow machine cannot break.
    assert!(
        t.elapsed() >= Duration::from_millis(160),
        "{:?}",
        t.elapsed()
    );
    assert!(p.stats().delayed > 0);
}
