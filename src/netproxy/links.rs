//! The proxies of one managed run, by link name (`sender-server`, `server-redis`,
//! `worker-<i>-redis`; with a PostgreSQL store `server-store`, `worker-<i>-store`), and the Redis
//! URL rewriting that points GitSpy at them.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::Proxy;

/// Every proxied link of a run, in the order they were started.
#[derive(Debug, Default)]
pub struct NetLinks {
    links: Vec<Arc<Proxy>>,
}

/// A link as run.json records it: the proxy's address and the real one behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// `sender-server`, `server-redis`, `worker-<i>-redis`, `server-store`, `worker-<i>-store`.
    pub name: String,
    /// Where the client connects (the proxy).
    pub listen: String,
    /// The real address behind it.
    pub upstream: String,
}

impl NetLinks {
    /// Adds a link.
    pub fn push(&mut self, p: Proxy) -> Arc<Proxy> {
        let p = Arc::new(p);
        self.links.push(p.clone());
        p
    }

    /// The link called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Proxy>> {
        self.links.iter().find(|p| p.name() == name)
    }

    /// Every link.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Proxy>> {
        self.links.iter()
    }

    /// Whether the run has no proxies (attach mode).
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// What run.json records.
    pub fn records(&self) -> Vec<LinkRecord> {
        self.links
            .iter()
            .map(|p| LinkRecord {
                name: p.name().to_string(),
                listen: p.listen_addr().to_string(),
                upstream: p.upstream().to_string(),
            })
            .collect()
    }

    /// Removes every toxic from every link.
    pub fn heal_all(&self) {
        for p in &self.links {
            p.heal();
        }
    }
}

/// The `host:port` a `redis://` URL points at (resolved; the managed backends give
/// `redis://127.0.0.1:<port>`).
pub async fn redis_upstream(url: &str) -> anyhow::Result<SocketAddr> {
    let (_, authority, _) = split_redis_url(url)?;
    let hostport = authority.rsplit('@').next().unwrap_or(authority);
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:6379")
    };
    let mut addrs = tokio::net::lookup_host(hostport.as_str())
        .await
        .with_context(|| format!("resolving {hostport} of {url}"))?;
    addrs
        .next()
        .with_context(|| format!("{hostport} of {url} resolves to nothing"))
}

/// `url` with its host and port replaced by `via` (credentials and database kept).
pub fn redis_url_via(url: &str, via: SocketAddr) -> anyhow::Result<String> {
    let (scheme, authority, rest) = split_redis_url(url)?;
    let creds = authority
        .rsplit_once('@')
        .map(|(c, _)| format!("{c}@"))
        .unwrap_or_default();
    Ok(format!("{scheme}://{creds}{via}{rest}"))
}

fn split_redis_url(url: &str) -> anyhow::Result<(&str, &str, &str)> {
    let (scheme, after) = url
        .split_once("://")
        .with_context(|| format!("`{url}` is not a redis:// URL"))?;
    anyhow::ensure!(
        scheme == "redis",
        "`{url}`: only redis:// URLs can be proxied (no TLS or unix sockets)"
    );
    let end = after.find('/').unwrap_or(after.len());
    Ok((scheme, &after[..end], &after[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_host_and_port_and_keeps_the_rest() {
        let via: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            redis_url_via("redis://127.0.0.1:6379", via).unwrap(),
            "redis://127.0.0.1:4000"
        );
        assert_eq!(
            redis_url_via("redis://u:p@localhost:6379/2", via).unwrap(),
            "redis://u:p@127.0.0.1:4000/2"
        );
        assert!(redis_url_via("rediss://h:1", via).is_err());
        assert!(redis_url_via("h:1", via).is_err());
    }

    #[tokio::test]
    async fn resolves_the_upstream() {
        assert_eq!(
            redis_upstream("redis://127.0.0.1:7001/0").await.unwrap(),
            "127.0.0.1:7001".parse::<SocketAddr>().unwrap()
        );
    }
}
