//! The mainline DHT (BEP 5) as a peer source: `get_peers` for every
//! torrent that is not private, then `announce_peer` with our listen port,
//! again every [`LOOKUP_EVERY`] (every [`RETRY_EVERY`] while the torrent
//! knows few peers).
//!
//! The DHT node itself is the `mainline` crate, which runs its own thread
//! and UDP socket and drops malformed KRPC datagrams there. It joins
//! through `DhtConfig::bootstrap` (no built-in default: the caller decides
//! which hosts are contacted, so a test can use loopback nodes only) plus
//! the nodes remembered from the last run in the resume folder
//! ([`NODES_FILE`], at most [`MAX_SAVED_NODES`], written every
//! [`SAVE_EVERY`] and on shutdown).
//!
//! Bounds: at most [`MAX_LOOKUPS`] lookups run at once, each takes at most
//! [`MAX_PEERS_PER_LOOKUP`] addresses (the address book is bounded too).

use crate::config::DhtConfig;
use crate::session::SessionShared;
use crate::torrent::TorrentShared;
use bt_proto::InfoHash;
use futures_lite::StreamExt;
use mainline::async_dht::AsyncDht;
use mainline::{Dht, Id};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Re-lookup and re-announce interval (libtorrent's `dht_announce_interval`).
pub(crate) const LOOKUP_EVERY: Duration = Duration::from_secs(15 * 60);
/// Lookup interval while a torrent knows fewer than [`FEW_PEERS`] peers.
pub(crate) const RETRY_EVERY: Duration = Duration::from_secs(60);
const FEW_PEERS: usize = 5;
const MAX_LOOKUPS: usize = 2;
const MAX_PEERS_PER_LOOKUP: usize = 200;
pub(crate) const NODES_FILE: &str = "dht-nodes";
const NODES_HEADER: &str = "riptide dht nodes v1";
pub(crate) const MAX_SAVED_NODES: usize = 64;
const SAVE_EVERY: Duration = Duration::from_secs(10 * 60);

/// The session's DHT task.
pub(crate) async fn run(shared: Arc<SessionShared>, config: DhtConfig) {
    let nodes_file = shared
        .config
        .resume_dir
        .as_ref()
        .map(|d| d.join(NODES_FILE));
    let bind = match shared.config.bind_ip {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    let port = config.port.unwrap_or(shared.listen_port);
    let file = nodes_file.clone();
    // Resolving bootstrap host names and reading the nodes file block.
    let built = shared
        .blocking(move || {
            let mut nodes = config.bootstrap.clone();
            if let Some(f) = &file {
                nodes.extend(load_nodes(f));
            }
            let mut builder = Dht::builder();
            // Always set: without it mainline would use public routers.
            builder.bootstrap(&nodes);
            if !bind.is_unspecified() {
                builder.bind_address(bind);
            }
            builder.port(port);
            builder.build().map(|d| (d.as_async(), nodes.len()))
        })
        .await;
    let (dht, bootstrap_count) = match built {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, port, "DHT is off: cannot open its UDP socket");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "DHT is off: setting it up failed");
            return;
        }
    };
    tracing::info!(port, bootstrap = bootstrap_count, "DHT started");
    let mut next_lookup: HashMap<InfoHash, Instant> = HashMap::new();
    let mut lookups: JoinSet<(InfoHash, usize)> = JoinSet::new();
    let mut running: Vec<InfoHash> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_save = Instant::now();
    loop {
        // Cancel-safe: an interval tick, `JoinSet::join_next` (a finished
        // lookup stays in the set until taken) and a token.
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            Some(done) = lookups.join_next(), if !lookups.is_empty() => {
                let Ok((ih, known)) = done else { continue };
                running.retain(|r| *r != ih);
                let wait = if known < FEW_PEERS { RETRY_EVERY } else { LOOKUP_EVERY };
                next_lookup.insert(ih, Instant::now() + wait);
            }
            _ = tick.tick() => {
                start_due_lookups(&shared, &dht, &mut next_lookup, &mut lookups, &mut running);
                if last_save.elapsed() >= SAVE_EVERY {
                    last_save = Instant::now();
                    save(&shared, &dht, nodes_file.clone()).await;
                }
            }
        }
    }
    lookups.abort_all();
    save(&shared, &dht, nodes_file).await;
}

fn start_due_lookups(
    shared: &Arc<SessionShared>,
    dht: &AsyncDht,
    next: &mut HashMap<InfoHash, Instant>,
    lookups: &mut JoinSet<(InfoHash, usize)>,
    running: &mut Vec<InfoHash>,
) {
    let now = Instant::now();
    let torrents: Vec<Arc<TorrentShared>> = shared.torrents.read().values().cloned().collect();
    next.retain(|ih, _| torrents.iter().any(|t| t.info_hash == *ih));
    let mut due: Vec<Arc<TorrentShared>> = torrents
        .into_iter()
        .filter(|t| {
            !running.contains(&t.info_hash)
                && next.get(&t.info_hash).is_none_or(|at| *at <= now)
                && {
                    let st = t.state.lock();
                    !st.private && !st.paused
                }
        })
        .collect();
    due.sort_unstable_by_key(|t| t.info_hash.0);
    for t in due {
        if running.len() >= MAX_LOOKUPS {
            break;
        }
        running.push(t.info_hash);
        let dht = dht.clone();
        let port = shared.listen_port;
        let shared = shared.clone();
        lookups.spawn(async move {
            let known = lookup(&shared, &dht, &t, port).await;
            (t.info_hash, known)
        });
    }
}

/// One `get_peers` walk and `announce_peer`; returns how many addresses
/// the torrent knows afterwards.
async fn lookup(
    shared: &SessionShared,
    dht: &AsyncDht,
    t: &Arc<TorrentShared>,
    port: u16,
) -> usize {
    let Ok(id) = Id::from_bytes(t.info_hash.0) else {
        return 0;
    };
    let mut stream = dht.get_peers(id);
    let mut seen = 0usize;
    let mut learned = 0u64;
    while let Some(batch) = stream.next().await {
        let mut st = t.state.lock();
        for a in batch.into_iter().take(MAX_PEERS_PER_LOOKUP - seen) {
            seen += 1;
            let addr = SocketAddr::V4(a);
            if crate::peer_exchange::usable(&addr) && st.addrs.add(addr) {
                learned += 1;
            }
        }
        drop(st);
        if seen >= MAX_PEERS_PER_LOOKUP {
            break;
        }
    }
    drop(stream);
    if learned > 0 {
        shared.dht_learned.fetch_add(learned, Ordering::Relaxed);
        tracing::debug!(torrent = %t.info_hash, learned, "peers found on the DHT");
        t.wake.notify_one();
    }
    if let Err(e) = dht.announce_peer(id, Some(port)).await {
        tracing::debug!(torrent = %t.info_hash, error = %e, "DHT announce failed");
    }
    t.state.lock().addrs.entries.len()
}

async fn save(shared: &SessionShared, dht: &AsyncDht, file: Option<PathBuf>) {
    let Some(file) = file else { return };
    let nodes = dht.to_bootstrap().await;
    let _ = shared
        .blocking(move || {
            if let Err(e) = store_nodes(&file, &nodes) {
                tracing::debug!(error = %e, "could not save the DHT routing table");
            }
        })
        .await;
}

/// The remembered nodes; an unreadable or foreign file gives none.
pub(crate) fn load_nodes(file: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some(NODES_HEADER) {
        return Vec::new();
    }
    lines
        .filter(|l| l.parse::<SocketAddr>().is_ok())
        .take(MAX_SAVED_NODES)
        .map(str::to_owned)
        .collect()
}

/// Writes the nodes to a temporary file and renames it into place, so a
/// crash leaves the old list or the new one.
pub(crate) fn store_nodes(file: &Path, nodes: &[String]) -> std::io::Result<()> {
    let mut text = format!("{NODES_HEADER}\n");
    for n in nodes
        .iter()
        .filter(|n| n.parse::<SocketAddr>().is_ok())
        .take(MAX_SAVED_NODES)
    {
        text.push_str(n);
        text.push('\n');
    }
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_file_round_trips_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(NODES_FILE);
        assert!(load_nodes(&f).is_empty());
        let mut nodes: Vec<String> = (0..100).map(|i| format!("127.0.1.{i}:6881")).collect();
        nodes.insert(3, "not an address".into());
        store_nodes(&f, &nodes).unwrap();
        let back = load_nodes(&f);
        assert_eq!(back.len(), MAX_SAVED_NODES);
        assert_eq!(back[0], "127.0.1.0:6881");
        assert!(back.iter().all(|n| n.parse::<SocketAddr>().is_ok()));
        // A file of another format is ignored rather than misread.
        std::fs::write(&f, "127.0.0.1:1\n").unwrap();
        assert!(load_nodes(&f).is_empty());
    }
}
