//! "Does Redis answer?" — one bounded PING, and a poll until PING answers or a deadline passes.
//!
//! Every backend returns from start/restart/unpause only once Redis answers, so a scenario's next
//! step never races a Redis that is still loading its AOF. A PING is one fresh connection: a
//! paused Redis accepts the TCP connection (the kernel or docker-proxy does) but never replies,
//! so only a timeout around the whole exchange tells "paused" from "up".

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// How long one PING may take inside [`wait_until_ready`]: a live local Redis answers in well
/// under a millisecond; 1 s leaves room for a loaded 2-core machine without stalling the poll.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause between two readiness attempts: short, since start-up usually takes tens of ms.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// One PING on a fresh connection to `url`, the whole exchange (connect, handshake, reply)
/// bounded by `timeout`. `Ok` only on `PONG`; `LOADING` and other error replies are errors.
pub async fn ping(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = redis::Client::open(url).with_context(|| format!("invalid Redis URL {url}"))?;
    let exchange = async {
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .context("connect")?;
        let reply: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .context("PING")?;
        anyhow::Ok(reply)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => bail!("PING to {url} got no answer within {timeout:?}"),
        Ok(Err(e)) => Err(e).with_context(|| format!("PING to {url}")),
        Ok(Ok(reply)) if reply == "PONG" => Ok(()),
        Ok(Ok(reply)) => bail!("PING to {url} answered {reply:?} instead of PONG"),
    }
}

/// Polls [`ping`] until Redis answers or `deadline` has passed; returns how long it took.
/// The error names the last failure, so "connection refused" and "no answer" stay apart.
pub async fn wait_until_ready(url: &str, deadline: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let remaining = deadline.saturating_sub(started.elapsed());
        match ping(
            url,
            PING_TIMEOUT.min(remaining.max(Duration::from_millis(1))),
        )
        .await
        {
            Ok(()) => return Ok(started.elapsed()),
            Err(e) if started.elapsed() >= deadline => {
                return Err(e.context(format!(
                    "Redis at {url} did not answer PING within {deadline:?}"
                )));
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_listening_fails_after_the_deadline_naming_the_url() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis://127.0.0.1:{port}");
        let err = wait_until_ready(&url, Duration::from_millis(300))
            .await
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(&url), "{text}");
        assert!(text.contains("did not answer PING"), "{text}");
    }

    #[tokio::test]
    async fn a_listener_that_never_replies_times_out() {
        // Accepts connections (the backlog does) but never answers: what a paused Redis looks like.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let err = ping(&url, Duration::from_millis(200)).await.unwrap_err();
        assert!(format!("{err:#}").contains("no answer within"), "{err:#}");
    }
}
