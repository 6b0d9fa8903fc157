//! Local service discovery (BEP 14): announces our torrents to the IPv4
//! multicast group 239.192.152.143:6771 and adds the peers that announce
//! the same torrents there to their address books.
//!
//! Off unless `SessionConfig::lsd` is set: it speaks to the whole LAN,
//! which a server behind a VPN may not want, and a test may use it only
//! inside a network namespace of its own. IPv4 only (the IPv6 group is
//! site-local and rarely routed on home networks).
//!
//! Each torrent is announced when it is added and then every
//! [`ANNOUNCE_EVERY`]; datagrams go out at most [`SEND_PER_TICK`] a
//! second, so a session of thousands of torrents does not burst. Our own
//! announces come back (multicast loopback) and are recognised by the
//! session's random cookie. Anyone on the LAN can send to the group, so at
//! most [`RECEIVE_PER_TICK`] datagrams a second are parsed; malformed ones
//! and the excess are dropped and counted (`SessionStats::lsd_dropped`).
//! Private torrents (BEP 27) are neither announced nor fed.

use crate::session::SessionShared;
use bt_proto::InfoHash;
use bt_proto::lsd::{LsdAnnounce, MAX_DATAGRAM, MULTICAST_V4, host_header};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// libtorrent's `local_service_announce_interval`.
pub(crate) const ANNOUNCE_EVERY: Duration = Duration::from_secs(5 * 60);
/// Datagrams sent per second at most.
const SEND_PER_TICK: usize = 4;
/// Datagrams parsed per second at most.
const RECEIVE_PER_TICK: u32 = 64;
/// Info-hashes that surely fit one datagram of 1400 bytes with a 16-byte
/// cookie (each line is 52 bytes; `to_datagrams` packs up to 24).
const HASHES_PER_DATAGRAM: usize = 20;
/// Multicast stays on the local link.
const TTL: u32 = 1;

/// The session's LSD task: one socket for both directions.
pub(crate) async fn run(shared: Arc<SessionShared>) {
    let group = *MULTICAST_V4.ip();
    let interface = match shared.config.bind_ip {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    let socket = match open_socket(group, interface) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "local service discovery is off: cannot join 239.192.152.143:6771");
            return;
        }
    };
    let cookie = format!("{:016x}", shared.random_u64());
    let mut next_announce: HashMap<InfoHash, Instant> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut received_this_tick = 0u32;
    loop {
        // Cancel-safe branches: `recv_from` on a UDP socket, an interval
        // tick and a token; a dropped receive loses no datagram that was
        // already handed to us.
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            _ = tick.tick() => {
                received_this_tick = 0;
                let datagrams = due_announces(&shared, &mut next_announce, &cookie);
                for d in datagrams {
                    if let Err(e) = socket.send_to(&d, SocketAddr::V4(MULTICAST_V4)).await {
                        tracing::debug!(error = %e, "LSD announce not sent");
                    }
                }
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                received_this_tick += 1;
                if received_this_tick > RECEIVE_PER_TICK {
                    shared.lsd_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                on_datagram(&shared, &buf[..n], from, &cookie);
            }
        }
    }
}

fn open_socket(group: Ipv4Addr, interface: Ipv4Addr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Other clients on this host listen on 6771 too.
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(
        &SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::UNSPECIFIED,
            MULTICAST_V4.port(),
        ))
        .into(),
    )?;
    s.join_multicast_v4(&group, &interface)?;
    if !interface.is_unspecified() {
        s.set_multicast_if_v4(&interface)?;
    }
    s.set_multicast_ttl_v4(TTL)?;
    // Peers on this same host must hear us; our own echo is filtered by
    // the cookie.
    s.set_multicast_loop_v4(true)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// The datagrams to send this second: torrents whose announce is due, as
/// few datagrams as their info-hashes fit in, at most [`SEND_PER_TICK`].
fn due_announces(
    shared: &SessionShared,
    next: &mut HashMap<InfoHash, Instant>,
    cookie: &str,
) -> Vec<Vec<u8>> {
    let now = Instant::now();
    let torrents: Vec<(InfoHash, bool)> = shared
        .torrents
        .read()
        .values()
        .map(|t| (t.info_hash, t.state.lock().private))
        .collect();
    next.retain(|ih, _| torrents.iter().any(|(t, _)| t == ih));
    let mut due: Vec<InfoHash> = torrents
        .iter()
        .filter(|(ih, private)| !private && next.get(ih).is_none_or(|at| *at <= now))
        .map(|(ih, _)| *ih)
        .collect();
    due.sort_unstable_by_key(|ih| ih.0);
    // The rest is due again next second.
    due.truncate(SEND_PER_TICK * HASHES_PER_DATAGRAM);
    for ih in &due {
        next.insert(*ih, now + ANNOUNCE_EVERY);
    }
    LsdAnnounce {
        host: host_header(SocketAddr::V4(MULTICAST_V4)),
        port: shared.listen_port,
        info_hashes: due,
        cookie: Some(cookie.to_string()),
    }
    .to_datagrams()
}

/// One received datagram: peers for our torrents go to their address books.
pub(crate) fn on_datagram(shared: &SessionShared, data: &[u8], from: SocketAddr, cookie: &str) {
    let received = match LsdAnnounce::parse(data) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%from, error = %e, "dropping malformed LSD datagram");
            shared.lsd_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    if received.announce.cookie.as_deref() == Some(cookie) {
        return;
    }
    if received.ignored > 0 {
        shared
            .lsd_dropped
            .fetch_add(received.ignored as u64, Ordering::Relaxed);
    }
    let peer = SocketAddr::new(from.ip(), received.announce.port);
    for ih in &received.announce.info_hashes {
        let Some(t) = shared.torrents.read().get(ih).cloned() else {
            continue;
        };
        let added = {
            let mut st = t.state.lock();
            !st.private && st.addrs.add(peer)
        };
        if added {
            shared.lsd_learned.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, torrent = %ih.to_hex(), "peer found by local service discovery");
            t.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AddTorrent, Session, SessionConfig, TorrentSource};

    const IH: &str = "0123456789abcdef0123456789abcdef01234567";

    async fn session() -> (Session, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let session = Session::start(SessionConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ..SessionConfig::default()
        })
        .await
        .unwrap();
        let magnet = bt_proto::magnet::Magnet::parse(&format!("magnet:?xt=urn:btih:{IH}")).unwrap();
        session
            .add_torrent(AddTorrent {
                source: TorrentSource::Magnet(magnet),
                download_dir: dir.path().to_path_buf(),
                peers: Vec::new(),
                paused: true,
            })
            .await
            .unwrap();
        (session, dir)
    }

    fn datagram(port: u16, hashes: &[&str], cookie: &str) -> Vec<u8> {
        let mut s =
            format!("BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: {port}\r\n");
        for h in hashes {
            s.push_str(&format!("Infohash: {h}\r\n"));
        }
        s.push_str(&format!("cookie: {cookie}\r\n\r\n\r\n"));
        s.into_bytes()
    }

    #[tokio::test]
    async fn announces_feed_the_address_book_and_junk_is_counted() {
        let (session, _dir) = session().await;
        let shared = session.shared_for_tests();
        let from: SocketAddr = "127.0.0.9:6771".parse().unwrap();
        let ours = "feedface";
        on_datagram(shared, b"GET / HTTP/1.1\r\n\r\n", from, ours);
        on_datagram(shared, &[0xff; 40], from, ours);
        assert_eq!(shared.lsd_dropped.load(Ordering::Relaxed), 2);
        // Our own echo, and a torrent we do not have: nothing learned.
        on_datagram(shared, &datagram(7000, &[IH], ours), from, ours);
        on_datagram(
            shared,
            &datagram(7001, &["ab".repeat(20).as_str()], "x"),
            from,
            ours,
        );
        assert_eq!(shared.lsd_learned.load(Ordering::Relaxed), 0);
        on_datagram(
            shared,
            &datagram(7002, &[IH, "not-hex"], "other"),
            from,
            ours,
        );
        assert_eq!(shared.lsd_learned.load(Ordering::Relaxed), 1);
        assert_eq!(shared.lsd_dropped.load(Ordering::Relaxed), 3);
        let t = session.torrents().pop().unwrap();
        assert_eq!(t.stats().known_peers, 1);
        let stats = session.stats();
        assert_eq!((stats.lsd_learned, stats.lsd_dropped), (1, 3));
        session.shutdown().await;
    }

    #[tokio::test]
    async fn each_torrent_is_announced_once_per_interval() {
        let (session, _dir) = session().await;
        let shared = session.shared_for_tests();
        let mut next = HashMap::new();
        let first = due_announces(shared, &mut next, "c00k1e");
        assert_eq!(first.len(), 1);
        let parsed = LsdAnnounce::parse(&first[0]).unwrap().announce;
        assert_eq!(parsed.port, session.listen_addr().port());
        assert_eq!(parsed.info_hashes[0].to_hex(), IH);
        assert_eq!(parsed.cookie.as_deref(), Some("c00k1e"));
        assert!(due_announces(shared, &mut next, "c00k1e").is_empty());
        session.shutdown().await;
    }
}
