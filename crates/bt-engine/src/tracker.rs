//! Tracker announces (BEP 3 HTTP, BEP 15 UDP) with BEP 12 tiers.
//!
//! One task per torrent. Within a tier the trackers are shuffled once and
//! tried in order; one that answers moves to the front of its tier. Every
//! tier is announced to, as libtorrent does by default, so a dead tracker in
//! one tier does not hide the peers of another.

use crate::stats::TorrentStatus;
use crate::torrent::TorrentShared;
use bt_proto::tracker::udp::{UdpRequest, UdpResponse};
use bt_proto::tracker::{AnnounceRequest, AnnounceResponse, Event, http};
use rand::seq::SliceRandom;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Bounds on the re-announce interval a tracker may ask for.
const MIN_INTERVAL: Duration = Duration::from_secs(30);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// While downloading with no peers, ask again this soon (then back off).
const HUNGRY_RETRY: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
const NUMWANT: u32 = 200;

#[derive(Debug, thiserror::Error)]
enum AnnounceError {
    #[error("{0}")]
    Tracker(#[from] bt_proto::tracker::TrackerError),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("UDP: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer")]
    Timeout,
    #[error("unsupported tracker URL")]
    Unsupported,
}

pub(crate) async fn run(t: Arc<TorrentShared>) {
    let mut tiers: Vec<Vec<String>> = t.state.lock().trackers.clone();
    if tiers.is_empty() {
        return;
    }
    for tier in &mut tiers {
        tier.shuffle(&mut rand::rng());
    }
    let key: u32 = rand::random();
    let mut started = false;
    let mut next = Instant::now();
    let mut failures = 0u32;
    let mut hungry_backoff = HUNGRY_RETRY;
    loop {
        tokio::select! {
            biased;
            _ = t.cancel.cancelled() => break,
            _ = tokio::time::sleep_until(next) => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                // Events (completed, pause, resume) and a changed `left` are
                // noticed within a second.
                let st = t.state.lock();
                let owes_event =
                    st.announce_completed || st.announce_update || st.paused == started;
                if !owes_event {
                    continue;
                }
            }
        }
        let (paused, completed_owed, status) = {
            let mut st = t.state.lock();
            // Whatever goes out now carries the current `left`.
            st.announce_update = false;
            (
                st.paused || st.error.is_some(),
                st.announce_completed,
                st.status,
            )
        };
        let event = if paused {
            if !started {
                next = Instant::now() + MAX_INTERVAL;
                continue;
            }
            Some(Event::Stopped)
        } else if !started {
            Some(Event::Started)
        } else if completed_owed {
            Some(Event::Completed)
        } else {
            None
        };
        let (interval, ok) = announce_all(&t, &mut tiers, event, key, None).await;
        if ok {
            failures = 0;
            match event {
                Some(Event::Started) => started = true,
                Some(Event::Stopped) => started = false,
                Some(Event::Completed) => t.state.lock().announce_completed = false,
                None => {}
            }
            let no_peers = t.state.lock().peers.is_empty();
            let mut wait = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
            if status == TorrentStatus::Downloading || status == TorrentStatus::FetchingMetadata {
                if no_peers {
                    wait = wait.min(hungry_backoff);
                    hungry_backoff = (hungry_backoff * 2).min(MAX_INTERVAL);
                } else {
                    hungry_backoff = HUNGRY_RETRY;
                }
            }
            next = Instant::now() + wait;
        } else {
            failures += 1;
            // BEP 15-style backoff: 15 s, 30 s, 60 s ... capped at 30 minutes.
            let secs = (15u64 << failures.min(7)).min(1800);
            next = Instant::now() + Duration::from_secs(secs);
        }
    }
    if started {
        let _ = tokio::time::timeout(
            STOP_TIMEOUT,
            announce_all(
                &t,
                &mut tiers,
                Some(Event::Stopped),
                key,
                Some(STOP_TIMEOUT),
            ),
        )
        .await;
    }
}

/// Announces to each tier; returns the shortest interval asked for and
/// whether any tracker answered.
async fn announce_all(
    t: &Arc<TorrentShared>,
    tiers: &mut [Vec<String>],
    event: Option<Event>,
    key: u32,
    timeout: Option<Duration>,
) -> (Duration, bool) {
    let req = {
        let st = t.state.lock();
        AnnounceRequest {
            info_hash: t.info_hash,
            peer_id: t.session.peer_id,
            port: t.session.listen_port,
            uploaded: st.up.total(),
            downloaded: st.down.total(),
            left: st.left(),
            event,
            numwant: (event != Some(Event::Stopped)).then_some(NUMWANT),
            key,
            tracker_id: None,
        }
    };
    let timeout = timeout.unwrap_or(t.session.config.tracker_timeout);
    let mut interval = MAX_INTERVAL;
    let mut any_ok = false;
    for tier in tiers.iter_mut() {
        for i in 0..tier.len() {
            let url = tier[i].clone();
            match announce_one(t, &url, &req, timeout).await {
                Ok(resp) => {
                    tracing::debug!(%url, peers = resp.peers.len(), interval = resp.interval, "announced");
                    if let Some(w) = &resp.warning {
                        tracing::info!(%url, warning = %w, "tracker warning");
                    }
                    {
                        let mut st = t.state.lock();
                        st.tracker_ok = true;
                        st.last_tracker_error = None;
                    }
                    add_peers(t, &resp.peers);
                    let asked = Duration::from_secs(u64::from(
                        resp.interval.max(resp.min_interval.unwrap_or(0)),
                    ));
                    interval = interval.min(asked);
                    any_ok = true;
                    tier[..=i].rotate_right(1);
                    break;
                }
                Err(e) => {
                    tracing::info!(%url, error = %e, "tracker announce failed");
                    t.state.lock().last_tracker_error = Some(format!("{url}: {e}"));
                }
            }
        }
    }
    (interval, any_ok)
}

fn add_peers(t: &Arc<TorrentShared>, peers: &[SocketAddr]) {
    let own_port = t.session.listen_port;
    let mut st = t.state.lock();
    let mut added = false;
    for p in peers {
        // Trackers hand us back to ourselves; the handshake would catch it,
        // but skipping it here saves a connection.
        if p.port() == own_port && (p.ip().is_loopback() || p.ip() == t.session.config.bind_ip) {
            continue;
        }
        added |= st.addrs.add(*p);
    }
    drop(st);
    if added {
        t.wake.notify_one();
    }
}

async fn announce_one(
    t: &Arc<TorrentShared>,
    url: &str,
    req: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceResponse, AnnounceError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        let full = http::announce_url(url, req);
        let resp = t.session.http.get(&full).timeout(timeout).send().await?;
        if !resp.status().is_success() {
            return Err(AnnounceError::Status(resp.status().as_u16()));
        }
        let body = resp.bytes().await?;
        Ok(http::parse_announce_response(&body)?)
    } else if let Some(rest) = url.strip_prefix("udp://") {
        let host = rest.split('/').next().unwrap_or(rest);
        tokio::time::timeout(timeout, announce_udp(t, host, req))
            .await
            .map_err(|_| AnnounceError::Timeout)?
    } else {
        Err(AnnounceError::Unsupported)
    }
}

/// BEP 15: connect, then announce, retransmitting on a short timer (the
/// caller bounds the total time).
async fn announce_udp(
    t: &Arc<TorrentShared>,
    host: &str,
    req: &AnnounceRequest,
) -> Result<AnnounceResponse, AnnounceError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(host).await?.collect();
    let target = addrs.first().copied().ok_or(AnnounceError::Unsupported)?;
    let bind = if target.is_ipv4() {
        SocketAddr::new(
            if t.session.config.bind_ip.is_ipv4() {
                t.session.config.bind_ip
            } else {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            },
            0,
        )
    } else {
        SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 0)
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(target).await?;
    let tid: u32 = rand::random();
    let connect = UdpRequest::Connect {
        transaction_id: tid,
    };
    let connection_id = match exchange(&sock, &connect, tid, target.is_ipv6()).await? {
        UdpResponse::Connect { connection_id, .. } => connection_id,
        UdpResponse::Error { message, .. } => {
            return Err(bt_proto::tracker::TrackerError::Failure(message).into());
        }
        _ => return Err(AnnounceError::Timeout),
    };
    let tid: u32 = rand::random();
    let announce = UdpRequest::Announce {
        connection_id,
        transaction_id: tid,
        req: req.clone(),
        ip: 0,
        num_want: req.numwant.map_or(-1, |n| n as i32),
    };
    match exchange(&sock, &announce, tid, target.is_ipv6()).await? {
        UdpResponse::Announce {
            interval,
            leechers,
            seeders,
            peers,
            ..
        } => Ok(AnnounceResponse {
            interval,
            min_interval: None,
            tracker_id: None,
            complete: Some(seeders),
            incomplete: Some(leechers),
            peers,
            warning: None,
        }),
        UdpResponse::Error { message, .. } => {
            Err(bt_proto::tracker::TrackerError::Failure(message).into())
        }
        _ => Err(AnnounceError::Timeout),
    }
}

/// Sends `req` and waits for the response with its transaction id,
/// retransmitting every 3 s; stray packets are ignored.
async fn exchange(
    sock: &UdpSocket,
    req: &UdpRequest,
    tid: u32,
    ipv6: bool,
) -> Result<UdpResponse, AnnounceError> {
    let mut out = Vec::with_capacity(128);
    req.encode(&mut out);
    let mut buf = vec![0u8; 4096];
    loop {
        sock.send(&out).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(r) => r?,
            };
            match UdpResponse::decode(&buf[..n], ipv6) {
                Ok(resp) if resp.transaction_id() == tid => return Ok(resp),
                _ => continue,
            }
        }
    }
}
