//! Redis connections with explicit timeouts that recover after Redis goes away.
//!
//! redis-rs's multiplexed connection has a 500 ms default response timeout (too short for a long
//! `BLOCK`) and `ConnectionManager` does not reconnect after a timeout. So: one cached multiplexed
//! connection for ordinary commands, dropped and re-dialled after any I/O, timeout or dropped-connection
//! error; blocking reads get their own connection (see [`RedisConn::dedicated`]).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, RedisResult};
use tokio::sync::Mutex;

/// A lazily (re)connected multiplexed connection.
pub struct RedisConn {
    client: redis::Client,
    timeout: Duration,
    cached: Mutex<Option<MultiplexedConnection>>,
}

impl RedisConn {
    /// `timeout` bounds connecting and every response on this connection.
    pub fn new(url: &str, timeout: Duration) -> RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            timeout,
            cached: Mutex::new(None),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The cached connection, dialling a new one when there is none.
    pub async fn get(&self) -> RedisResult<MultiplexedConnection> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let c = self.dial(self.timeout).await?;
        *cached = Some(c.clone());
        Ok(c)
    }

    /// A fresh connection whose response timeout is `response_timeout` — for `XREADGROUP … BLOCK`, the
    /// caller passes more than the block time.
    pub async fn dedicated(
        &self,
        response_timeout: Duration,
    ) -> RedisResult<MultiplexedConnection> {
        self.dial(response_timeout).await
    }

    async fn dial(&self, response_timeout: Duration) -> RedisResult<MultiplexedConnection> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(response_timeout));
        // The outer timeout also covers the handshake against a paused Redis that accepts TCP but
        // never answers.
        match tokio::time::timeout(
            self.timeout + Duration::from_millis(100),
            self.client
                .get_multiplexed_async_connection_with_config(&cfg),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(timeout_error()),
        }
    }

    /// Call after a command failed: connection-level errors drop the cached connection so the next
    /// call re-dials.
    ///
    /// Never waits: `get` holds the lock while it dials (up to the timeout), and a caller whose
    /// own deadline already passed must answer now, not after someone else's dial (a partition
    /// made ingress answer 503 after up to twice `GITSPY_REDIS_TIMEOUT` that way). A held lock
    /// means a dial is in progress — the cached slot is empty, nothing to drop — or another
    /// caller is dropping it already.
    pub async fn note_error(&self, err: &RedisError) {
        if is_connection_error(err) {
            if let Ok(mut cached) = self.cached.try_lock() {
                *cached = None;
            }
        }
    }

    /// Runs `f` on the connection with an overall deadline of the configured timeout, dropping the
    /// connection when it failed at the connection level.
    pub async fn run<T, F, Fut>(&self, f: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let deadline = self.timeout + Duration::from_millis(200);
        let result = match tokio::time::timeout(deadline, async {
            let c = self.get().await?;
            f(c).await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(timeout_error()),
        };
        if let Err(e) = &result {
            self.note_error(e).await;
        }
        result
    }
}

/// True for errors that mean the connection (or Redis) is gone rather than a command error.
pub fn is_connection_error(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
}

fn timeout_error() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "redis did not answer in time",
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Regression test (found by scenario 09-partition): during a partition, a request whose
    /// deadline passed waited in `note_error` for another request's dial to give up, so ingress
    /// answered 503 after up to twice `GITSPY_REDIS_TIMEOUT`. The dial to a blackhole (accepts
    /// TCP, never answers) holds the lock; `note_error` must return before that dial does.
    #[tokio::test]
    async fn a_failed_call_does_not_wait_for_another_callers_dial() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _blackhole = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let conn = Arc::new(
            RedisConn::new(&format!("redis://{addr}"), Duration::from_millis(800)).unwrap(),
        );
        let dialling = {
            let c = conn.clone();
            tokio::spawn(async move { c.get().await.map(|_| ()) })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while conn.cached.try_lock().is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the dial never held the lock"
            );
            tokio::task::yield_now().await;
        }
        let err = timeout_error();
        tokio::select! {
            biased;
            r = dialling => panic!("note_error waited for another caller's dial to end ({r:?})"),
            () = conn.note_error(&err) => {}
        }
    }
}
