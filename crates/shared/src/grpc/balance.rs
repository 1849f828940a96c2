//! Client-side balancing of gRPC calls over every replica of a peer.
//!
//! Behind a Kubernetes ClusterIP Service, one HTTP/2 connection is pinned to one pod for its
//! whole life, so replicas an autoscaler adds never receive gRPC calls. A peer named by a
//! headless Service (DNS answers one address per ready pod) is instead reached through one
//! connection per address, in a channel whose set of addresses a background task refreshes.

use std::{
    collections::BTreeSet,
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::sync::mpsc::Sender;
use tonic::transport::{Channel, Endpoint, Uri, channel::Change};

/// Finds the addresses behind a host name: DNS in production, a list a test controls in tests.
pub trait Resolve: Send + Sync + 'static {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`getaddrinfo` through `tokio::net::lookup_host`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Dns;

impl Resolve for Dns {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// The host and port to resolve when `uri` names its host by a DNS name. `None` for IP literals
/// and `localhost`, which keep one plain connection: there is nothing to balance over, and
/// `localhost` may resolve to `::1` where nothing listens (`ecomctl up` binds 127.0.0.1).
pub fn balanced_host(uri: &Uri) -> Option<(String, u16)> {
    let host = uri.host()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok()
        || bare.trim_end_matches('.').eq_ignore_ascii_case("localhost")
    {
        return None;
    }
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    Some((bare.to_owned(), port))
}

/// What one connection of a balanced channel goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    /// The URL's own name, until the first resolution succeeds.
    Name,
    Addr(SocketAddr),
}

/// Changes queued for the balancer; it takes them when it next handles a call.
const CHANGES: usize = 64;

/// A channel balancing over every address `host` resolves to, re-resolved every `every`.
/// `endpoint` is the peer's URL with its settings; `for_addr` makes the same endpoint for one
/// address. The resolver task ends when the last clone of the channel is dropped.
pub fn channel(
    endpoint: Endpoint,
    for_addr: impl Fn(SocketAddr) -> anyhow::Result<Endpoint> + Send + 'static,
    host: String,
    port: u16,
    resolver: Arc<dyn Resolve>,
    every: Duration,
) -> Channel {
    let (channel, changes) = Channel::balance_channel::<Target>(CHANGES);
    // Until an address is known, calls go to the name itself as an unbalanced channel's would:
    // they fail as fast as today (or reach one replica) instead of waiting for an address.
    if changes
        .try_send(Change::Insert(Target::Name, endpoint))
        .is_err()
    {
        tracing::warn!(host, "the balancer refused its first endpoint");
    }
    tokio::spawn(refresh(changes, for_addr, host, port, resolver, every));
    channel
}

/// Resolves `host` at once and then every `every`, inserting new addresses before removing
/// vanished ones (the balancer is never left empty). A failed or empty answer keeps the last
/// good set: a DNS hiccup, or a moment with no ready replica, must not drop working connections.
async fn refresh(
    changes: Sender<Change<Target, Endpoint>>,
    for_addr: impl Fn(SocketAddr) -> anyhow::Result<Endpoint>,
    host: String,
    port: u16,
    resolver: Arc<dyn Resolve>,
    every: Duration,
) {
    let mut current = BTreeSet::<SocketAddr>::new();
    let mut failing = false;
    // `interval` refuses zero; configuration allows 1 s at least.
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Not the shutdown token: the channel still serves calls while in-flight requests
        // drain after the signal; the task lives exactly as long as the channel.
        tokio::select! {
            () = changes.closed() => break,
            _ = tick.tick() => {}
        }
        let found: BTreeSet<SocketAddr> = match resolver.resolve(&host, port).await {
            Ok(addrs) if !addrs.is_empty() => addrs.into_iter().collect(),
            answer => {
                let error = match answer {
                    Ok(_) => "no address".to_owned(),
                    Err(e) => e.to_string(),
                };
                // Once per failing streak at warn; the repeats at debug.
                if failing {
                    tracing::debug!(
                        host,
                        error,
                        kept = current.len(),
                        "cannot resolve gRPC peer name"
                    );
                } else {
                    tracing::warn!(
                        host,
                        error,
                        kept = current.len(),
                        "cannot resolve gRPC peer name; keeping the last good set"
                    );
                }
                failing = true;
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            tracing::info!(
                host,
                addresses = found.len(),
                "gRPC peer name resolves again"
            );
        }
        if found == current {
            tracing::trace!(
                host,
                addresses = found.len(),
                "gRPC peer addresses unchanged"
            );
            continue;
        }
        let mut batch = Vec::new();
        let mut added = Vec::new();
        for &addr in found.difference(&current) {
            match for_addr(addr) {
                Ok(endpoint) => {
                    batch.push(Change::Insert(Target::Addr(addr), endpoint));
                    added.push(addr);
                }
                Err(e) => {
                    tracing::warn!(host, %addr, error = %format!("{e:#}"), "cannot make a gRPC endpoint")
                }
            }
        }
        if added.is_empty() && current.is_empty() {
            continue;
        }
        if current.is_empty() {
            batch.push(Change::Remove(Target::Name));
        }
        let removed: Vec<SocketAddr> = current.difference(&found).copied().collect();
        batch.extend(removed.iter().map(|a| Change::Remove(Target::Addr(*a))));
        current.retain(|a| found.contains(a));
        current.extend(&added);
        tracing::info!(
            host,
            ?added,
            ?removed,
            addresses = current.len(),
            "gRPC peer addresses changed"
        );
        for change in batch {
            if changes.send(change).await.is_err() {
                return;
            }
        }
    }
    tracing::debug!(host, "gRPC channel dropped: its resolver stops");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_and_localhost_are_not_balanced() {
        let host = |url: &str| balanced_host(&url.parse::<Uri>().expect("uri"));
        for plain in [
            "http://127.0.0.1:50051",
            "http://10.96.0.12:50052",
            "http://[::1]:50051",
            "http://[fd00::5]:50053",
            "http://localhost:50051",
            "http://LocalHost:50051",
            "http://localhost.:50051",
        ] {
            assert_eq!(host(plain), None, "{plain}");
        }
        assert_eq!(
            host("http://demo-products-grpc:50052"),
            Some(("demo-products-grpc".to_owned(), 50052))
        );
        assert_eq!(
            host("http://demo-users-grpc.shop.svc.cluster.local:50051"),
            Some(("demo-users-grpc.shop.svc.cluster.local".to_owned(), 50051))
        );
        assert_eq!(host("http://peer"), Some(("peer".to_owned(), 80)));
    }
}
