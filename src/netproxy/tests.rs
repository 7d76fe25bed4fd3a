//! The proxy against a real TCP echo server on loopback: every toxic, what it does to bytes and
//! connections, and what the counters say it hit. Waits are deadlines on conditions; no
//! assertion is about speed except "nothing arrived while partitioned" and "the reply came
//! later than the configured latency" (a lower bound, which a slow machine cannot break).

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// An echo server on `127.0.0.1:0`, until the test ends.
async fn echo() -> SocketAddr {
    let l = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn proxy() -> Proxy {
    Proxy::start("test-link", echo().await, 7).await.unwrap()
}

async fn read_exact(s: &mut TcpStream, n: usize, within: Duration) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(within, s.read_exact(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline"))??;
    Ok(buf)
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

use tokio::time::Instant;

#[tokio::test]
async fn a_clean_link_passes_bytes_both_ways_and_counts_them() {
    let p = proxy().await;
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    c.write_all(b"hello").await.unwrap();
    assert_eq!(
        read_exact(&mut c, 5, Duration::from_secs(5)).await.unwrap(),
        b"hello"
    );
    let s = p.stats();
    assert_eq!((s.accepted, s.open, s.bytes_up, s.bytes_down), (1, 1, 5, 5));
    drop(c);
    wait_for("the connection closes", || p.stats().open == 0).await;
}

#[tokio::test]
async fn a_partition_holds_bytes_keeps_the_connection_open_and_delivers_them_when_it_heals() {
    let p = proxy().await;
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    c.write_all(b"a").await.unwrap();
    read_exact(&mut c, 1, Duration::from_secs(5)).await.unwrap();
    p.update(|s| s.up.partition = true);
    c.write_all(b"held").await.unwrap();
    // Nothing comes back while partitioned, and the connection is not closed either.
    let mut buf = [0u8; 8];
    let r = tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await;
    assert!(r.is_err(), "read returned during a partition: {r:?}");
    wait_for("the held bytes are counted", || p.stats().held == 4).await;
    // A new connection is held too: accepted, never connected upstream.
    let mut c2 = TcpStream::connect(p.listen_addr()).await.unwrap();
    c2.write_all(b"new").await.unwrap();
    wait_for("the new connection is held", || p.stats().held_conns == 1).await;
    p.heal();
    assert_eq!(
        read_exact(&mut c, 4, Duration::from_secs(5)).await.unwrap(),
        b"held"
    );
    assert_eq!(
        read_exact(&mut c2, 3, Duration::from_secs(5))
            .await
            .unwrap(),
        b"new"
    );
}

#[tokio::test]
async fn a_downstream_partition_lets_requests_through_and_holds_the_replies() {
    let p = proxy().await;
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    c.write_all(b"x").await.unwrap();
    read_exact(&mut c, 1, Duration::from_secs(5)).await.unwrap();
    p.update(|s| s.down.partition = true);
    c.write_all(b"yz").await.unwrap();
    wait_for("the request passed upstream", || p.stats().bytes_up == 3).await;
    wait_for("the reply is held", || p.stats().held == 2).await;
    assert_eq!(p.stats().bytes_down, 1);
    p.heal();
    assert_eq!(
        read_exact(&mut c, 2, Duration::from_secs(5)).await.unwrap(),
        b"yz"
    );
}

#[tokio::test]
async fn reset_sends_a_rst_to_open_and_new_connections() {
    let p = proxy().await;
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    c.write_all(b"a").await.unwrap();
    read_exact(&mut c, 1, Duration::from_secs(5)).await.unwrap();
    p.update(|s| s.reset = true);
    let mut buf = [0u8; 4];
    let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("the reset arrives");
    assert_eq!(
        r.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "an open connection gets a RST, not a FIN"
    );
    let mut c2 = TcpStream::connect(p.listen_addr()).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), c2.read(&mut buf))
        .await
        .expect("the reset arrives");
    assert_eq!(
        r.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );
    assert_eq!(p.stats().resets, 2);
    p.heal();
    let mut c3 = TcpStream::connect(p.listen_addr()).await.unwrap();
    c3.write_all(b"ok").await.unwrap();
    assert_eq!(
        read_exact(&mut c3, 2, Duration::from_secs(5))
            .await
            .unwrap(),
        b"ok"
    );
}

#[tokio::test]
async fn latency_delays_every_reply_by_at_least_its_value_and_keeps_order() {
    let p = proxy().await;
    p.update(|s| {
        s.down.latency = Some(Duration::from_millis(200));
        s.down.jitter = Duration::from_millis(50);
    });
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    let t = Instant::now();
    for b in [b"1", b"2", b"3"] {
        c.write_all(b).await.unwrap();
    }
    let got = read_exact(&mut c, 3, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got, b"123");
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "latency 200ms ± 50ms, got the replies after {:?}",
        t.elapsed()
    );
    assert_eq!(p.stats().delayed, 3);
}

#[tokio::test]
async fn jitter_is_seeded() {
    let mut a = rand::rngs::StdRng::seed_from_u64(3);
    let mut b = rand::rngs::StdRng::seed_from_u64(3);
    let lat = Duration::from_millis(100);
    let j = Duration::from_millis(40);
    let xs: Vec<_> = (0..20)
        .map(|_| super::pump::jittered(lat, j, &mut a))
        .collect();
    let ys: Vec<_> = (0..20)
        .map(|_| super::pump::jittered(lat, j, &mut b))
        .collect();
    assert_eq!(xs, ys);
    assert!(xs
        .iter()
        .all(|d| *d >= Duration::from_millis(60) && *d <= Duration::from_millis(140)));
    assert!(xs.iter().any(|d| *d != xs[0]), "jitter varies");
}

use rand::SeedableRng as _;

#[tokio::test]
async fn limit_data_closes_the_connection_after_n_bytes() {
    let p = proxy().await;
    p.update(|s| {
        s.down.limit_data = Some(5);
        s.down.limit_epoch += 1;
    });
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    c.write_all(b"0123456789").await.unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "the connection was closed");
    assert_eq!(
        got, b"01234",
        "exactly the first 5 bytes of the reply passed"
    );
    assert_eq!(p.stats().cut, 1);
}

#[tokio::test]
async fn slice_splits_writes_and_keeps_every_byte() {
    let p = proxy().await;
    p.update(|s| {
        s.down.slice = Some(3);
        s.down.slice_delay = Duration::from_millis(5);
    });
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    let msg: Vec<u8> = (0u8..100).collect();
    c.write_all(&msg).await.unwrap();
    // The reader sees the reply in more than one read (pieces 5 ms apart).
    let mut got = Vec::new();
    let mut reads = 0;
    while got.len() < msg.len() {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
        reads += 1;
    }
    assert_eq!(got, msg);
    assert!(reads > 1, "the reply came in {reads} read(s)");
}

#[tokio::test]
async fn bandwidth_limits_the_rate() {
    let p = proxy().await;
    p.update(|s| s.down.bandwidth = Some(10_000));
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    let t = Instant::now();
    c.write_all(&[7u8; 3000]).await.unwrap();
    read_exact(&mut c, 3000, Duration::from_secs(10))
        .await
        .unwrap();
    // 3 000 bytes at 10 000 B/s take at least 0.3 s (a lower bound).
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn slow_close_passes_the_end_of_stream_on_late() {
    let p = proxy().await;
    p.update(|s| s.up.slow_close = Some(Duration::from_millis(300)));
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    c.write_all(b"bye").await.unwrap();
    read_exact(&mut c, 3, Duration::from_secs(5)).await.unwrap();
    let t = Instant::now();
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(p.stats().slow_closed, 1);
}

#[tokio::test]
async fn dropping_the_proxy_ends_its_connections() {
    let p = proxy().await;
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    c.write_all(b"a").await.unwrap();
    read_exact(&mut c, 1, Duration::from_secs(5)).await.unwrap();
    drop(p);
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "the connection ended with the proxy");
}
