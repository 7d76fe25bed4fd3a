//! The process Redis backend against the real `redis-server`: data written before a SIGTERM stop
//! and before a SIGKILL is there after the next start (AOF), on the same port and dir.

use std::time::Duration;

use gitspy_chaos::system::{
    find_on_path, redis_ready, ProcessConfig, ProcessRedis, RedisBackend, RedisFault, RunState,
    Signal,
};

fn require_redis_server() {
    assert!(
        find_on_path("redis-server").is_some(),
        "redis-server is not on PATH: install it with `apt-get install -y redis-server`"
    );
}

async fn client(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn set(url: &str, key: &str, value: &str) {
    let mut c = client(url).await;
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut c)
        .await
        .unwrap();
}

async fn get(url: &str, key: &str) -> Option<String> {
    let mut c = client(url).await;
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn process_backend_keeps_aof_data_across_stop_and_kill_on_the_same_port_and_dir() {
    require_redis_server();
    let backend = RedisBackend::Process(ProcessRedis::new(ProcessConfig::default()).unwrap());
    assert_eq!(backend.inspect().await.unwrap().state, RunState::Missing);
    assert!(backend.url().is_err(), "no URL before the first start");

    backend.up().await.unwrap();
    let url = backend.url().unwrap();
    let first = backend.inspect().await.unwrap();
    assert_eq!(first.state, RunState::Running);
    let port = first.host_port.unwrap();
    let dir = match &backend {
        RedisBackend::Process(p) => p.dir().to_path_buf(),
        _ => unreachable!(),
    };
    set(&url, "gitspy:test:before-stop", "1").await;

    // Graceful stop: SIGTERM, exit code 0, nothing answers.
    backend.apply(RedisFault::Stop).await.unwrap();
    assert_eq!(
        backend.inspect().await.unwrap().state,
        RunState::Exited { code: Some(0) }
    );
    redis_ready::ping(&url, Duration::from_secs(1))
        .await
        .unwrap_err();

    // Start again: same port, same dir, the key replayed from the AOF.
    backend.apply(RedisFault::Start).await.unwrap();
    let again = backend.inspect().await.unwrap();
    assert_eq!(again.state, RunState::Running);
    assert_eq!(again.host_port, Some(port));
    assert_eq!(backend.url().unwrap(), url);
    assert!(dir.join("appendonlydir").is_dir(), "AOF dir in {dir:?}");
    assert_eq!(
        get(&url, "gitspy:test:before-stop").await.as_deref(),
        Some("1")
    );
    set(&url, "gitspy:test:before-kill", "2").await;

    // Crash: SIGKILL, exit code 128 + 9.
    backend
        .apply(RedisFault::Kill(Signal::Sigkill))
        .await
        .unwrap();
    assert_eq!(
        backend.inspect().await.unwrap().state,
        RunState::Exited { code: Some(137) }
    );
    redis_ready::ping(&url, Duration::from_secs(1))
        .await
        .unwrap_err();

    backend.apply(RedisFault::Start).await.unwrap();
    assert_eq!(backend.inspect().await.unwrap().host_port, Some(port));
    assert_eq!(
        get(&url, "gitspy:test:before-stop").await.as_deref(),
        Some("1")
    );
    assert_eq!(
        get(&url, "gitspy:test:before-kill").await.as_deref(),
        Some("2")
    );

    // Pause (SIGSTOP): the port accepts, nothing answers; unpause answers again.
    backend.apply(RedisFault::Pause).await.unwrap();
    assert_eq!(backend.inspect().await.unwrap().state, RunState::Paused);
    let err = redis_ready::ping(&url, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("no answer within"), "{err:#}");
    backend.apply(RedisFault::Unpause).await.unwrap();
    redis_ready::ping(&url, Duration::from_secs(2))
        .await
        .unwrap();

    // Restart keeps the port and the data.
    backend.apply(RedisFault::Restart).await.unwrap();
    assert_eq!(backend.inspect().await.unwrap().host_port, Some(port));
    assert_eq!(
        get(&url, "gitspy:test:before-kill").await.as_deref(),
        Some("2")
    );

    backend.teardown().await.unwrap();
    assert!(matches!(
        backend.inspect().await.unwrap().state,
        RunState::Exited { .. }
    ));
    assert!(backend.describe().contains(&format!("127.0.0.1:{port}")));
}

#[tokio::test]
async fn a_port_taken_by_someone_else_fails_the_start_with_the_log() {
    require_redis_server();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let backend = ProcessRedis::new(ProcessConfig {
        port: Some(port),
        ready_timeout: Duration::from_secs(5),
        ..ProcessConfig::default()
    })
    .unwrap();
    let err = backend.start().await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("exited during start-up"), "{text}");
    assert!(text.contains("Address already in use"), "{text}");
}
