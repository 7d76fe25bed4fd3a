//! The Docker Redis backend against the real engine (Debian's docker.io, API 1.41) and the
//! offline image: lifecycle faults with inspect at every step, AOF surviving stop and SIGKILL,
//! pause observed as PING timeouts, and label-scoped cleanup.
//!
//! Needs a running daemon and the image: `scripts/setup-docker.sh` then
//! `docker/build-redis-image.sh`. Without them every test here fails saying so.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::NetworkCreateRequest;
use bollard::Docker;
use gitspy_chaos::system::docker::{
    self, cleanup, list_labelled, list_labelled_networks, CleanupOptions,
};
use gitspy_chaos::system::{
    choose, doctor, probe, redis_ready, BackendKind, DockerConfig, DockerRedis, RedisBackend,
    RedisFault, RunState, Signal, DEFAULT_IMAGE, IMAGE_SCRIPT, RUN_LABEL,
};

/// Connects to the engine and checks the image, or fails saying which script to run.
async fn require_docker() -> Docker {
    let client = match docker::connect().await {
        Ok(c) => c,
        Err(e) => panic!(
            "the Docker daemon does not answer ({e:#}): run scripts/setup-docker.sh \
             (and apt-get install -y docker.io if dockerd is missing)"
        ),
    };
    assert!(
        docker::image_present(&client, DEFAULT_IMAGE).await.unwrap(),
        "image {DEFAULT_IMAGE} is absent: run {IMAGE_SCRIPT}"
    );
    client
}

/// A run id unique to this test process and test, so parallel tests never touch each other.
fn run_id(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("test-{test}-{}-{nanos}", std::process::id())
}

/// Removes everything labelled with the run id when the test ends, also on panic.
struct CleanupGuard(String);

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let run_id = self.0.clone();
        // Drop cannot await: run the cleanup on a runtime of its own, on its own thread.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = docker::connect().await?;
                cleanup(
                    &client,
                    &CleanupOptions {
                        run_id: Some(run_id),
                        remove: true,
                    },
                )
                .await
            })
        })
        .join();
        if let Ok(Err(e)) = done {
            eprintln!("cleanup after test failed: {e:#}");
        }
    }
}

fn config(run_id: &str, name: &str) -> DockerConfig {
    DockerConfig {
        container: format!("gitspy-redis-{name}-{run_id}"),
        ..DockerConfig::new(run_id)
    }
}

async fn conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn set(url: &str, key: &str, value: &str) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut conn(url).await)
        .await
        .unwrap();
}

async fn get(url: &str, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn(url).await)
        .await
        .unwrap()
}

async fn state(backend: &RedisBackend) -> RunState {
    backend.inspect().await.unwrap().state
}

#[tokio::test]
async fn docker_backend_survives_every_fault_with_its_aof_data() {
    let client = require_docker().await;
    let run_id = run_id("lifecycle");
    let _guard = CleanupGuard(run_id.clone());
    let cfg = config(&run_id, "life");
    let name = cfg.container.clone();
    let backend = RedisBackend::Docker(DockerRedis::with_client(client.clone(), cfg));
    assert_eq!(state(&backend).await, RunState::Missing);

    let t = Instant::now();
    backend.up().await.unwrap();
    eprintln!("measured: create + start + PING {:?}", t.elapsed());
    let status = backend.inspect().await.unwrap();
    assert_eq!(status.state, RunState::Running);
    let port = status.host_port.unwrap();
    let url = backend.url().unwrap();
    assert_eq!(url, format!("redis://127.0.0.1:{port}"));
    let labelled = list_labelled(&client, Some(&run_id)).await.unwrap();
    assert_eq!(labelled.len(), 1, "{labelled:?}");
    assert_eq!(labelled[0].name, name);
    assert_eq!(labelled[0].run_id, run_id);
    redis_ready::ping(&url, Duration::from_secs(2))
        .await
        .unwrap();
    set(&url, "gitspy:test:k", "v1").await;
    // Redis inside runs with AOF.
    let aof: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut conn(&url).await)
        .await
        .unwrap();
    assert_eq!(aof, vec!["appendonly".to_string(), "yes".to_string()]);

    // Stop: graceful, exit code 0, nothing answers on the port.
    let t = Instant::now();
    backend.apply(RedisFault::Stop).await.unwrap();
    eprintln!("measured: stop {:?}", t.elapsed());
    assert_eq!(state(&backend).await, RunState::Exited { code: Some(0) });
    redis_ready::ping(&url, Duration::from_secs(1))
        .await
        .unwrap_err();

    // Start: same port, the key replayed from the AOF.
    let t = Instant::now();
    backend.apply(RedisFault::Start).await.unwrap();
    eprintln!("measured: start + PING {:?}", t.elapsed());
    let status = backend.inspect().await.unwrap();
    assert_eq!(status.state, RunState::Running);
    assert_eq!(status.host_port, Some(port));
    assert_eq!(get(&url, "gitspy:test:k").await.as_deref(), Some("v1"));

    // Pause: docker-proxy still accepts, Redis answers nothing.
    backend.apply(RedisFault::Pause).await.unwrap();
    assert_eq!(state(&backend).await, RunState::Paused);
    let err = redis_ready::ping(&url, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("no answer within"), "{err:#}");

    backend.apply(RedisFault::Unpause).await.unwrap();
    assert_eq!(state(&backend).await, RunState::Running);
    redis_ready::ping(&url, Duration::from_secs(2))
        .await
        .unwrap();
    set(&url, "gitspy:test:k2", "v2").await;

    // SIGKILL: a crash, exit code 137; the AOF still has both keys.
    backend
        .apply(RedisFault::Kill(Signal::Sigkill))
        .await
        .unwrap();
    assert_eq!(state(&backend).await, RunState::Exited { code: Some(137) });
    redis_ready::ping(&url, Duration::from_secs(1))
        .await
        .unwrap_err();
    backend.apply(RedisFault::Start).await.unwrap();
    assert_eq!(state(&backend).await, RunState::Running);
    assert_eq!(get(&url, "gitspy:test:k").await.as_deref(), Some("v1"));
    assert_eq!(get(&url, "gitspy:test:k2").await.as_deref(), Some("v2"));

    // Restart: same port, same data.
    let t = Instant::now();
    backend.apply(RedisFault::Restart).await.unwrap();
    eprintln!("measured: restart + PING {:?}", t.elapsed());
    let status = backend.inspect().await.unwrap();
    assert_eq!(status.state, RunState::Running);
    assert_eq!(status.host_port, Some(port));
    assert_eq!(get(&url, "gitspy:test:k2").await.as_deref(), Some("v2"));

    // Stop of a paused container thaws it first and still stops it.
    backend.apply(RedisFault::Pause).await.unwrap();
    backend.apply(RedisFault::Stop).await.unwrap();
    assert_eq!(state(&backend).await, RunState::Exited { code: Some(0) });

    // Teardown removes the container this backend created.
    backend.teardown().await.unwrap();
    assert_eq!(state(&backend).await, RunState::Missing);
    assert!(list_labelled(&client, Some(&run_id))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn cleanup_restores_then_removes_only_the_given_runs_containers_and_networks() {
    let client = require_docker().await;
    let run_id = run_id("cleanup");
    let other_run = format!("{run_id}-other");
    let _guard = CleanupGuard(run_id.clone());
    let _other_guard = CleanupGuard(other_run.clone());

    let paused = DockerRedis::with_client(client.clone(), config(&run_id, "paused"));
    let stopped = DockerRedis::with_client(client.clone(), config(&run_id, "stopped"));
    let bystander = DockerRedis::with_client(client.clone(), config(&other_run, "bystander"));
    for backend in [&paused, &stopped, &bystander] {
        backend.up().await.unwrap();
    }
    let network = format!("gitspy-net-{run_id}");
    client
        .create_network(NetworkCreateRequest {
            name: network.clone(),
            labels: Some(HashMap::from([(RUN_LABEL.to_string(), run_id.clone())])),
            ..Default::default()
        })
        .await
        .unwrap();
    paused.pause().await.unwrap();
    stopped.stop().await.unwrap();

    let states = |list: Vec<docker::LabelledContainer>| {
        let mut s: Vec<(String, String)> = list.into_iter().map(|c| (c.name, c.state)).collect();
        s.sort();
        s
    };
    assert_eq!(
        states(list_labelled(&client, Some(&run_id)).await.unwrap()),
        vec![
            (paused.container().to_string(), "paused".to_string()),
            (stopped.container().to_string(), "exited".to_string()),
        ]
    );

    // Restore mode: unpause and start, remove nothing.
    let report = cleanup(
        &client,
        &CleanupOptions {
            run_id: Some(run_id.clone()),
            remove: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.unpaused, vec![paused.container().to_string()]);
    assert_eq!(report.started, vec![stopped.container().to_string()]);
    assert!(
        report.removed.is_empty() && report.errors.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        states(list_labelled(&client, Some(&run_id)).await.unwrap()),
        vec![
            (paused.container().to_string(), "running".to_string()),
            (stopped.container().to_string(), "running".to_string()),
        ]
    );

    // Removal: a paused container is unpaused first, then everything of this run goes.
    paused.pause().await.unwrap();
    let report = cleanup(
        &client,
        &CleanupOptions {
            run_id: Some(run_id.clone()),
            remove: true,
        },
    )
    .await
    .unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.unpaused, vec![paused.container().to_string()]);
    let mut removed = report.removed.clone();
    removed.sort();
    assert_eq!(
        removed,
        vec![
            paused.container().to_string(),
            stopped.container().to_string()
        ]
    );
    assert_eq!(report.networks_removed, vec![network.clone()]);
    assert!(list_labelled(&client, Some(&run_id))
        .await
        .unwrap()
        .is_empty());
    assert!(list_labelled_networks(&client, Some(&run_id))
        .await
        .unwrap()
        .is_empty());

    // Another run's container is untouched.
    let others = list_labelled(&client, Some(&other_run)).await.unwrap();
    assert_eq!(others.len(), 1, "{others:?}");
    assert_eq!(others[0].state, "running");
    bystander.teardown().await.unwrap();
    assert!(list_labelled(&client, Some(&other_run))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_absent_image_that_cannot_be_pulled_points_to_the_offline_script() {
    let client = require_docker().await;
    let run_id = run_id("noimage");
    let _guard = CleanupGuard(run_id.clone());
    let backend = DockerRedis::with_client(
        client.clone(),
        DockerConfig {
            image: "gitspy-chaos-test-absent:never".into(),
            ..config(&run_id, "noimage")
        },
    );
    let err = backend.up().await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(
            "image `gitspy-chaos-test-absent:never` is not present and could not be pulled"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!("{IMAGE_SCRIPT} gitspy-chaos-test-absent:never")),
        "{text}"
    );
    assert!(list_labelled(&client, Some(&run_id))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn probe_and_doctor_see_the_engine_api_version_and_image() {
    let client = require_docker().await;
    // The negotiated version is the engine's own (1.41 for Debian's docker.io), never above it.
    let server = client.version().await.unwrap().api_version.unwrap();
    let parse = |v: &str| -> (u32, u32) {
        let (a, b) = v.split_once('.').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    let negotiated = client.client_version().to_string();
    assert!(
        parse(&negotiated) <= parse(&server),
        "client speaks {negotiated}, engine {server}"
    );
    eprintln!("engine API {server}, client negotiated {negotiated}");

    let available = probe(DEFAULT_IMAGE).await;
    match &available.docker {
        gitspy_chaos::system::DockerProbe::Answers {
            api_version,
            image_present,
        } => {
            assert_eq!(api_version, &client.client_version().to_string());
            assert!(*image_present);
        }
        other => panic!("docker answers but probe says {other:?}"),
    }
    assert_eq!(
        choose(BackendKind::Auto, &available, DEFAULT_IMAGE).unwrap(),
        BackendKind::Docker
    );
    let absent = probe("gitspy-chaos-test-absent:never").await;
    assert_eq!(
        choose(BackendKind::Auto, &absent, "gitspy-chaos-test-absent:never").unwrap(),
        BackendKind::Process,
        "redis-server is on PATH here, so auto falls back to it"
    );

    let checks = doctor("gitspy-chaos-test-absent:never").await;
    let engine = checks.iter().find(|c| c.name == "docker engine").unwrap();
    assert!(engine.ok, "{engine:?}");
    assert!(engine.detail.starts_with("answers, API 1."), "{engine:?}");
    let image = checks
        .iter()
        .find(|c| c.name == "docker image gitspy-chaos-test-absent:never")
        .unwrap();
    assert!(!image.ok);
    assert_eq!(
        image.hint.as_deref(),
        Some("docker/build-redis-image.sh gitspy-chaos-test-absent:never")
    );
}

#[tokio::test]
async fn an_occupied_host_port_fails_the_start_saying_so_and_teardown_removes_the_container() {
    let client = require_docker().await;
    let run_id = run_id("porttaken");
    let _guard = CleanupGuard(run_id.clone());
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let backend = RedisBackend::Docker(DockerRedis::with_client(
        client.clone(),
        DockerConfig {
            host_port: Some(port),
            ..config(&run_id, "porttaken")
        },
    ));
    let err = backend.up().await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("address already in use"), "{text}");
    assert!(text.contains(&port.to_string()), "{text}");
    // Created but never started, and still ours to remove.
    assert_eq!(state(&backend).await, RunState::Created);
    backend.teardown().await.unwrap();
    assert_eq!(state(&backend).await, RunState::Missing);
    drop(squatter);
}
