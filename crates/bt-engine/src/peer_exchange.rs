//! Peer exchange (BEP 11, `ut_pex`) in the engine: what we tell each peer
//! about our other peers, and what we take from what they tell us.
//!
//! Per peer we remember the addresses we told it, so each message is a
//! diff (added since last time, dropped since last time), at most
//! [`MAX_PEERS_PER_LIST`] of each; the rest waits for the next message a
//! minute later. Received addresses go to the torrent's address book, which
//! is bounded, and only from peers that keep to about one message a
//! minute. Private torrents (BEP 27) neither send nor accept PEX.

use bt_proto::pex::{MAX_PEERS_PER_LIST, PexFlags, PexMessage, PexPeer};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

/// BEP 11: at most one message a minute to each peer.
pub(crate) const SEND_EVERY: Duration = Duration::from_secs(60);
/// The first message to a peer goes this long after its extension
/// handshake, so that it does not wait a minute for what we know.
pub(crate) const FIRST_AFTER: Duration = Duration::from_secs(3);
/// A message closer than this to the previous one from the same peer is
/// dropped (and counted): honest peers send one a minute.
pub(crate) const MIN_RECEIVE_GAP: Duration = Duration::from_secs(20);

/// The next message for a peer that we told `told` so far, given the
/// addresses we could tell it now (`current`, with their flags; the peer's
/// own address is `except`). Updates `told`; `None` when nothing changed.
pub(crate) fn next_message(
    told: &mut BTreeSet<SocketAddr>,
    current: &BTreeMap<SocketAddr, PexFlags>,
    except: Option<SocketAddr>,
) -> Option<PexMessage> {
    let added: Vec<PexPeer> = current
        .iter()
        .filter(|(a, _)| Some(**a) != except && !told.contains(*a))
        .take(MAX_PEERS_PER_LIST)
        .map(|(a, f)| PexPeer {
            addr: *a,
            flags: *f,
        })
        .collect();
    let dropped: Vec<SocketAddr> = told
        .iter()
        .filter(|a| !current.contains_key(*a) || Some(**a) == except)
        .take(MAX_PEERS_PER_LIST)
        .copied()
        .collect();
    if added.is_empty() && dropped.is_empty() {
        return None;
    }
    for p in &added {
        told.insert(p.addr);
    }
    for a in &dropped {
        told.remove(a);
    }
    // IPv4 first, as the codec keeps them.
    let mut message = PexMessage { added, dropped };
    message.added.sort_by_key(|p| p.addr.is_ipv6());
    message.dropped.sort_by_key(SocketAddr::is_ipv6);
    Some(message)
}

/// Whether a received address is worth trying at all.
pub(crate) fn usable(addr: &SocketAddr) -> bool {
    let ip = addr.ip();
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 6881))
    }

    #[test]
    fn diffs_are_capped_and_carried_over() {
        let current: BTreeMap<SocketAddr, PexFlags> =
            (0..120).map(|i| (addr(i), PexFlags::SEED)).collect();
        let mut told = BTreeSet::new();
        let first = next_message(&mut told, &current, Some(addr(0))).unwrap();
        assert_eq!(first.added.len(), MAX_PEERS_PER_LIST);
        assert!(first.added.iter().all(|p| p.addr != addr(0)));
        let second = next_message(&mut told, &current, Some(addr(0))).unwrap();
        assert_eq!(second.added.len(), MAX_PEERS_PER_LIST);
        let third = next_message(&mut told, &current, Some(addr(0))).unwrap();
        assert_eq!(third.added.len(), 119 - 2 * MAX_PEERS_PER_LIST);
        assert!(next_message(&mut told, &current, Some(addr(0))).is_none());
        // Two peers leave: they are reported dropped once.
        let mut fewer = current.clone();
        fewer.remove(&addr(5));
        fewer.remove(&addr(6));
        let gone = next_message(&mut told, &fewer, Some(addr(0))).unwrap();
        assert!(gone.added.is_empty());
        assert_eq!(gone.dropped, vec![addr(5), addr(6)]);
        assert!(next_message(&mut told, &fewer, Some(addr(0))).is_none());
        // The encoded message is what a peer can decode.
        let decoded = PexMessage::decode(&gone.encode()).unwrap();
        assert_eq!(decoded.message, gone);
    }

    #[test]
    fn unusable_addresses_are_refused() {
        assert!(usable(&"127.0.0.2:6881".parse().unwrap()));
        assert!(!usable(&"127.0.0.2:0".parse().unwrap()));
        assert!(!usable(&"0.0.0.0:6881".parse().unwrap()));
        assert!(!usable(&"239.192.152.143:6771".parse().unwrap()));
    }
}
