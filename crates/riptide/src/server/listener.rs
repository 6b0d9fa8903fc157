//! The HTTP listener: connection limits (total and per client address)
//! and a header read timeout, so a slowloris client that opens many
//! connections and dribbles headers can neither hold them for long nor
//! take every slot; connections over a limit are closed at once.
//!
//! The per-address count uses the TCP peer: behind a reverse proxy the
//! proxy is one address, so give it a high `http.max_connections_per_ip`.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::HttpConfig;

struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A connection slot; dropping it frees the slot.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        c.total -= 1;
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

fn take_slot(counts: &Arc<Mutex<Counts>>, ip: IpAddr, cfg: &HttpConfig) -> Option<Slot> {
    let mut c = counts.lock();
    let mine = c.per_ip.get(&ip).copied().unwrap_or(0);
    if c.total >= cfg.max_connections || mine >= cfg.max_connections_per_ip {
        return None;
    }
    c.total += 1;
    *c.per_ip.entry(ip).or_insert(0) += 1;
    Some(Slot {
        counts: counts.clone(),
        ip,
    })
}

/// Serves `app` on `listener` until `shutdown`; then stops accepting and
/// gives open connections `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cfg: HttpConfig,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let counts = Arc::new(Mutex::new(Counts {
        total: 0,
        per_ip: HashMap::new(),
    }));
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        // Cancel-safety: `accept` loses nothing when the other branch wins.
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = take_slot(&counts, peer.ip(), &cfg) else {
            tracing::debug!(%peer, "connection limit reached; closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let header_timeout = cfg.header_timeout;
        let shutdown = shutdown.clone();
        conns.spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(64 * 1024)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                biased;
                r = conn.as_mut() => { let _ = r; }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(grace, conn.as_mut()).await;
                }
            }
        });
    }
    conns.close();
    let _ = tokio::time::timeout(grace, conns.wait()).await;
}
