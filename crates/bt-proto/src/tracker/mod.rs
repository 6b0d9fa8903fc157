//! Tracker announce and scrape codecs: HTTP (BEP 3, 23, 7, 48) in [`http`],
//! UDP (BEP 15) in [`udp`], and the compact peer format they share with PEX.
//!
//! Tracker responses are untrusted: peer lists are parsed leniently (a
//! garbled entry is skipped, not fatal) and every count is bounded by the
//! bytes actually received.

use crate::bencode::BencodeError;
use crate::{InfoHash, PeerId};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

pub mod http;
pub mod udp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    Started,
    Completed,
    Stopped,
}

impl Event {
    /// The HTTP `event=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Completed => "completed",
            Event::Stopped => "stopped",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Option<Event>,
    pub numwant: Option<u32>,
    /// Random per-session value that lets a tracker recognise us across IP
    /// changes.
    pub key: u32,
    /// Echo of the `tracker id` from an earlier response (HTTP only).
    pub tracker_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// Seconds until the next regular announce.
    pub interval: u32,
    pub min_interval: Option<u32>,
    pub tracker_id: Option<String>,
    /// Seeders.
    pub complete: Option<u32>,
    /// Leechers.
    pub incomplete: Option<u32>,
    pub peers: Vec<SocketAddr>,
    pub warning: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeStats {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads, ever.
    pub downloaded: u32,
    /// Leechers.
    pub incomplete: u32,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TrackerError {
    /// The tracker refused the request and said why.
    #[error("tracker refused the request: {0}")]
    Failure(String),
    #[error("tracker response is not valid bencode: {0}")]
    Bencode(#[from] BencodeError),
    #[error("tracker response is not a bencoded dictionary")]
    NotADict,
    #[error("tracker message lacks a valid `{0}` field")]
    Missing(&'static str),
    #[error("UDP tracker packet is {got} bytes, expected at least {need}")]
    TooShort { got: usize, need: usize },
    #[error("UDP tracker packet has unknown action {0}")]
    UnknownAction(u32),
    #[error("UDP connect request has protocol id {0:#x}, expected 0x41727101980")]
    BadProtocolId(u64),
    #[error("UDP scrape request has {0} trailing bytes after its info-hashes")]
    BadScrapeLength(usize),
    #[error("announce query has an invalid `{0}` value")]
    BadQuery(&'static str),
}

/// Decodes BEP 23 compact IPv4 peers (6 bytes each); a trailing partial
/// entry is ignored.
pub fn decode_compact_v4(buf: &[u8]) -> Vec<SocketAddr> {
    buf.chunks_exact(6)
        .map(|c| {
            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be_bytes([c[4], c[5]])))
        })
        .collect()
}

/// Decodes BEP 7 compact IPv6 peers (18 bytes each). IPv4-mapped addresses
/// come back as IPv4 so one peer never appears under two addresses.
pub fn decode_compact_v6(buf: &[u8]) -> Vec<SocketAddr> {
    buf.chunks_exact(18)
        .map(|c| {
            let octets: [u8; 16] = c[..16].try_into().expect("16 bytes");
            let ip = Ipv6Addr::from(octets);
            let port = u16::from_be_bytes([c[16], c[17]]);
            match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)),
            }
        })
        .collect()
}

/// Encodes peers in compact form: `(IPv4 entries, IPv6 entries)`, the
/// `peers` and `peers6` values of an HTTP response.
pub fn encode_compact(peers: &[SocketAddr]) -> (Vec<u8>, Vec<u8>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for p in peers {
        match p.ip() {
            IpAddr::V4(ip) => {
                v4.extend_from_slice(&ip.octets());
                v4.extend_from_slice(&p.port().to_be_bytes());
            }
            IpAddr::V6(ip) => {
                v6.extend_from_slice(&ip.octets());
                v6.extend_from_slice(&p.port().to_be_bytes());
            }
        }
    }
    (v4, v6)
}

/// 18-byte entries for every peer, IPv4 as mapped addresses; the peer list
/// of a BEP 15 announce over IPv6.
pub fn encode_compact_all_v6(peers: &[SocketAddr], out: &mut Vec<u8>) {
    for p in peers {
        let ip = match p.ip() {
            IpAddr::V4(ip) => ip.to_ipv6_mapped(),
            IpAddr::V6(ip) => ip,
        };
        out.extend_from_slice(&ip.octets());
        out.extend_from_slice(&p.port().to_be_bytes());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bep23_example() {
        // 10.10.10.5:128 from BEP 23's description.
        let peers = decode_compact_v4(&[10, 10, 10, 5, 0, 128, 1]);
        assert_eq!(peers, vec!["10.10.10.5:128".parse().unwrap()]);
        let v6 = decode_compact_v6(&[
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1, 0x1a, 0xe1,
        ]);
        assert_eq!(v6, vec!["127.0.0.1:6881".parse().unwrap()]);
    }

    pub(crate) fn arb_peer() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_filter("not v4-mapped", |(ip, _)| Ipv6Addr::from(*ip)
                    .to_ipv4_mapped()
                    .is_none())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
        ]
    }

    proptest! {
        #[test]
        fn compact_round_trip(peers in proptest::collection::vec(arb_peer(), 0..20)) {
            let (v4, v6) = encode_compact(&peers);
            let mut back = decode_compact_v4(&v4);
            back.extend(decode_compact_v6(&v6));
            let mut expected: Vec<_> = peers.iter().filter(|p| p.is_ipv4()).copied().collect();
            expected.extend(peers.iter().filter(|p| p.is_ipv6()));
            prop_assert_eq!(back, expected);
            let mut all6 = Vec::new();
            encode_compact_all_v6(&peers, &mut all6);
            prop_assert_eq!(decode_compact_v6(&all6), peers);
        }

        #[test]
        fn compact_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(decode_compact_v4(&bytes).len(), bytes.len() / 6);
            prop_assert_eq!(decode_compact_v6(&bytes).len(), bytes.len() / 18);
        }
    }
}
