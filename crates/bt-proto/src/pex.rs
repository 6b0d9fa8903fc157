//! Peer exchange (BEP 11): the bencoded payload of a `ut_pex` extension
//! message.
//!
//! A PEX message lists peers the sender connected to (`added`, `added6`,
//! with one flag byte each in `added.f` / `added6.f`) and peers it lost
//! (`dropped`, `dropped6`), all in compact form (BEP 23 / BEP 7).
//!
//! Every peer we talk to can send these, so decoding is bounded twice: the
//! payload size (a message within the limits is under 2 KiB; libtorrent
//! disconnects above 500 KiB, we refuse above [`MAX_PAYLOAD`]) and the
//! entry count. The convention agreed between µTorrent and Azureus, and what
//! BEP 11's reference clients send, is at most 50 added and 50 dropped
//! peers per message, IPv4 and IPv6 together: entries past that are ignored
//! and counted in [`ReceivedPex::ignored`], never stored, so a peer cannot
//! flood the address book through PEX alone. [`PexMessage::encode`] obeys
//! the same cap.
//!
//! Flag bytes are optional; a missing or short `added.f` gives the peers
//! without a flag byte no flags (libtorrent drops such a list entirely,
//! which loses peers for no gain). Unknown keys are ignored.

use crate::bencode::{self, BencodeError, Limits, Value};
use crate::tracker::{decode_compact_v4, decode_compact_v6};
use std::net::{IpAddr, SocketAddr};

/// Most added peers per message, IPv4 and IPv6 together (and the same for
/// dropped peers).
pub const MAX_PEERS_PER_LIST: usize = 50;
/// Largest payload accepted. 50 + 50 IPv6 entries with flags take about
/// 1.9 KiB; the headroom is for unknown keys of future clients.
pub const MAX_PAYLOAD: usize = 64 * 1024;

const LIMITS: Limits = Limits {
    max_depth: 4,
    max_input: MAX_PAYLOAD,
    max_items: 1024,
};

/// The BEP 11 flag byte of an added peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// The peer prefers encryption (its extension handshake had `e` = 1).
    pub const ENCRYPTION: PexFlags = PexFlags(0x01);
    /// The peer is a seed or upload-only.
    pub const SEED: PexFlags = PexFlags(0x02);
    /// The peer supports µTP.
    pub const UTP: PexFlags = PexFlags(0x04);
    /// The peer advertised `ut_holepunch`.
    pub const HOLEPUNCH: PexFlags = PexFlags(0x08);
    /// The sender connected out to the peer, so it is reachable.
    pub const REACHABLE: PexFlags = PexFlags(0x10);

    pub fn contains(self, other: PexFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for PexFlags {
    type Output = PexFlags;
    fn bitor(self, rhs: PexFlags) -> PexFlags {
        PexFlags(self.0 | rhs.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PexPeer {
    pub addr: SocketAddr,
    pub flags: PexFlags,
}

/// One `ut_pex` message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PexMessage {
    /// IPv4 and IPv6 peers in message order, every IPv4 peer first
    /// (IPv4-mapped `added6` entries count as IPv4).
    pub added: Vec<PexPeer>,
    pub dropped: Vec<SocketAddr>,
}

/// A decoded message and how many entries were left out of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedPex {
    pub message: PexMessage,
    /// Entries beyond [`MAX_PEERS_PER_LIST`], entries with port 0 and
    /// trailing partial entries: the engine counts these as misbehaviour
    /// without closing the connection.
    pub ignored: usize,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PexError {
    #[error("ut_pex message of {len} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge { len: usize },
    #[error("ut_pex message is not valid bencode: {0}")]
    Bencode(#[from] BencodeError),
    #[error("ut_pex message is not a bencoded dictionary")]
    NotADict,
    #[error("ut_pex field `{0}` is not a byte string")]
    WrongType(&'static str),
}

impl PexMessage {
    pub fn decode(payload: &[u8]) -> Result<ReceivedPex, PexError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(PexError::TooLarge { len: payload.len() });
        }
        let v = bencode::decode_with(payload, &LIMITS)?;
        if v.as_dict().is_none() {
            return Err(PexError::NotADict);
        }
        let field = |key: &'static str| -> Result<&[u8], PexError> {
            match v.get(key.as_bytes()) {
                None => Ok(&[]),
                Some(x) => x.as_bytes().ok_or(PexError::WrongType(key)),
            }
        };
        let (added4, flags4) = (field("added")?, field("added.f")?);
        let (added6, flags6) = (field("added6")?, field("added6.f")?);
        let (dropped4, dropped6) = (field("dropped")?, field("dropped6")?);

        // A trailing partial entry counts as one ignored entry.
        let mut ignored = [
            added4.len() % 6,
            added6.len() % 18,
            dropped4.len() % 6,
            dropped6.len() % 18,
        ]
        .iter()
        .filter(|&&r| r != 0)
        .count();

        let mut message = PexMessage::default();
        // Only the first MAX_PEERS_PER_LIST entries of each list are even
        // decoded, so a hostile list never allocates more than that.
        let entries4 = added4.len() / 6;
        let take4 = entries4.min(MAX_PEERS_PER_LIST);
        let addrs4 = decode_compact_v4(&added4[..take4 * 6]);
        let entries6 = added6.len() / 18;
        let take6 = entries6.min(MAX_PEERS_PER_LIST - take4);
        let addrs6 = decode_compact_v6(&added6[..take6 * 18]);
        ignored += entries4 - take4 + entries6 - take6;
        let flagged = addrs4
            .into_iter()
            .enumerate()
            .map(|(i, a)| (a, flags4.get(i)))
            .chain(
                addrs6
                    .into_iter()
                    .enumerate()
                    .map(|(i, a)| (a, flags6.get(i))),
            );
        for (addr, flag) in flagged {
            if addr.port() == 0 {
                ignored += 1;
                continue;
            }
            message.added.push(PexPeer {
                addr,
                flags: PexFlags(flag.copied().unwrap_or(0)),
            });
        }

        let entries4 = dropped4.len() / 6;
        let take4 = entries4.min(MAX_PEERS_PER_LIST);
        let entries6 = dropped6.len() / 18;
        let take6 = entries6.min(MAX_PEERS_PER_LIST - take4);
        ignored += entries4 - take4 + entries6 - take6;
        message.dropped = decode_compact_v4(&dropped4[..take4 * 6]);
        message
            .dropped
            .extend(decode_compact_v6(&dropped6[..take6 * 18]));
        // An IPv4-mapped entry of `added6` decodes as IPv4; keeping every
        // IPv4 peer first makes the decoded message the same whichever
        // list such a peer came in (and what `encode` would write).
        message.added.sort_by_key(|p| p.addr.is_ipv6());
        message.dropped.sort_by_key(SocketAddr::is_ipv6);
        Ok(ReceivedPex { message, ignored })
    }

    /// The bencoded payload. At most [`MAX_PEERS_PER_LIST`] added and as
    /// many dropped peers are written (the first ones); the caller keeps
    /// the rest for the next message a minute later.
    pub fn encode(&self) -> Vec<u8> {
        let mut added4 = Vec::new();
        let mut flags4 = Vec::new();
        let mut added6 = Vec::new();
        let mut flags6 = Vec::new();
        for p in self.added.iter().take(MAX_PEERS_PER_LIST) {
            match p.addr.ip() {
                IpAddr::V4(ip) => {
                    added4.extend_from_slice(&ip.octets());
                    added4.extend_from_slice(&p.addr.port().to_be_bytes());
                    flags4.push(p.flags.0);
                }
                IpAddr::V6(ip) => {
                    added6.extend_from_slice(&ip.octets());
                    added6.extend_from_slice(&p.addr.port().to_be_bytes());
                    flags6.push(p.flags.0);
                }
            }
        }
        let dropped: Vec<SocketAddr> = self
            .dropped
            .iter()
            .copied()
            .take(MAX_PEERS_PER_LIST)
            .collect();
        let (dropped4, dropped6) = crate::tracker::encode_compact(&dropped);

        // Every key is always present: libtorrent writes them all, and
        // some older clients look the strings up without checking.
        let mut v = Value::dict();
        v.insert("added", added4);
        v.insert("added.f", flags4);
        v.insert("added6", added6);
        v.insert("added6.f", flags6);
        v.insert("dropped", dropped4);
        v.insert("dropped6", dropped6);
        bencode::encode(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    fn v4(a: u8, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, a), port))
    }

    fn v6(a: u16, port: u16) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, a),
            port,
            0,
            0,
        ))
    }

    #[test]
    fn libtorrent_shaped_message() {
        // As libtorrent's ut_pex.cpp writes it: every key present, IPv4
        // and IPv6 peers, flags per added peer.
        let mut payload = b"d5:added12:".to_vec();
        payload.extend_from_slice(&[10, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0x1a, 0xe2]);
        payload.extend_from_slice(b"7:added.f2:");
        payload.extend_from_slice(&[0x01 | 0x02, 0x10]);
        payload.extend_from_slice(b"6:added618:");
        payload.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7).octets());
        payload.extend_from_slice(&[0x1a, 0xe1]);
        payload.extend_from_slice(b"8:added6.f1:");
        payload.push(0x04);
        payload.extend_from_slice(b"7:dropped6:");
        payload.extend_from_slice(&[10, 0, 0, 9, 0, 80]);
        payload.extend_from_slice(b"8:dropped60:e");
        let got = PexMessage::decode(&payload).unwrap();
        assert_eq!(got.ignored, 0);
        let m = got.message;
        assert_eq!(
            m.added,
            vec![
                PexPeer {
                    addr: v4(1, 6881),
                    flags: PexFlags::ENCRYPTION | PexFlags::SEED
                },
                PexPeer {
                    addr: v4(2, 6882),
                    flags: PexFlags::REACHABLE
                },
                PexPeer {
                    addr: v6(7, 6881),
                    flags: PexFlags::UTP
                },
            ]
        );
        assert!(m.added[0].flags.contains(PexFlags::SEED));
        assert!(!m.added[0].flags.contains(PexFlags::UTP));
        assert_eq!(m.dropped, vec![v4(9, 80)]);
        assert_eq!(PexMessage::decode(&m.encode()).unwrap().message, m);
    }

    #[test]
    fn missing_or_short_flags_mean_no_flags() {
        let mut payload = b"d5:added12:".to_vec();
        payload.extend_from_slice(&[10, 0, 0, 1, 0, 1, 10, 0, 0, 2, 0, 2]);
        payload.extend_from_slice(b"7:added.f1:\x02e");
        let m = PexMessage::decode(&payload).unwrap().message;
        assert_eq!(m.added[0].flags, PexFlags::SEED);
        assert_eq!(m.added[1].flags, PexFlags::default());
        let m = PexMessage::decode(b"d5:added6:\x0a\x00\x00\x01\x00\x01e")
            .unwrap()
            .message;
        assert_eq!(m.added[0].flags, PexFlags(0));
    }

    #[test]
    fn excess_partial_and_port_zero_entries_are_ignored_and_counted() {
        let many: Vec<PexPeer> = (0..60)
            .map(|i| PexPeer {
                addr: v4(i as u8, 1000 + i),
                flags: PexFlags(0),
            })
            .collect();
        let mut added = Vec::new();
        for p in &many {
            if let SocketAddr::V4(a) = p.addr {
                added.extend_from_slice(&a.ip().octets());
                added.extend_from_slice(&a.port().to_be_bytes());
            }
        }
        added.extend_from_slice(&[1, 2, 3]); // partial entry
        let mut payload = format!("d5:added{}:", added.len()).into_bytes();
        payload.extend_from_slice(&added);
        payload.extend_from_slice(b"6:added618:");
        payload.extend_from_slice(&[0u8; 18]);
        payload.extend_from_slice(b"7:dropped6:\x0a\x00\x00\x01\x00\x00e");
        let got = PexMessage::decode(&payload).unwrap();
        assert_eq!(got.message.added.len(), MAX_PEERS_PER_LIST);
        assert_eq!(got.message.added[..], many[..MAX_PEERS_PER_LIST]);
        // 10 excess IPv4, 1 partial, 1 IPv6 over the shared cap.
        assert_eq!(got.ignored, 12);
        // A dropped peer with port 0 is passed on: it only removes.
        assert_eq!(got.message.dropped, vec![v4(1, 0)]);

        // Encoding caps too.
        let m = PexMessage {
            added: many,
            dropped: (0..70).map(|i| v6(i, 1)).collect(),
        };
        let back = PexMessage::decode(&m.encode()).unwrap();
        assert_eq!(back.ignored, 0);
        assert_eq!(back.message.added.len(), MAX_PEERS_PER_LIST);
        assert_eq!(back.message.dropped.len(), MAX_PEERS_PER_LIST);
    }

    #[test]
    fn mapped_ipv6_entries_sort_with_ipv4() {
        // Found by the fuzzer: an IPv4-mapped address after a real IPv6
        // one in `added6` used to decode in an order `encode` does not
        // reproduce.
        let mut payload = b"d6:added636:".to_vec();
        payload.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7).octets());
        payload.extend_from_slice(&[0, 3]);
        payload.extend_from_slice(&Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets());
        payload.extend_from_slice(&[0, 4]);
        payload.push(b'e');
        let m = PexMessage::decode(&payload).unwrap().message;
        assert_eq!(m.added[0].addr, v4(1, 4));
        assert_eq!(m.added[1].addr, v6(7, 3));
        assert_eq!(PexMessage::decode(&m.encode()).unwrap().message, m);
        let crash: [u8; 69] = [
            0x64, 0x36, 0x3a, 0x61, 0x64, 0x64, 0x65, 0x64, 0x36, 0x35, 0x36, 0x3a, 0x64, 0x64,
            0x31, 0x3a, 0x64, 0x72, 0x6f, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x24, 0x00,
            0x31, 0x38, 0x3a, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x3a, 0x7a, 0xf5, 0x6f, 0x3a, 0x65,
        ];
        let m = PexMessage::decode(&crash).unwrap().message;
        assert_eq!(PexMessage::decode(&m.encode()).unwrap().message, m);
    }

    #[test]
    fn errors_are_clear() {
        assert_eq!(
            PexMessage::decode(b"le").unwrap_err().to_string(),
            "ut_pex message is not a bencoded dictionary"
        );
        assert_eq!(
            PexMessage::decode(b"d5:addedi1ee").unwrap_err(),
            PexError::WrongType("added")
        );
        assert!(matches!(
            PexMessage::decode(b"d5:added"),
            Err(PexError::Bencode(_))
        ));
        let big = vec![b'x'; MAX_PAYLOAD + 1];
        assert_eq!(
            PexMessage::decode(&big).unwrap_err(),
            PexError::TooLarge {
                len: MAX_PAYLOAD + 1
            }
        );
        assert_eq!(
            PexMessage::decode(b"de").unwrap().message,
            PexMessage::default()
        );
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u8; 16]>(), 1u16..)
                .prop_filter("v4-mapped decodes as IPv4", |(ip, _)| {
                    Ipv6Addr::from(*ip).to_ipv4_mapped().is_none()
                })
                .prop_map(|(ip, port)| SocketAddr::from((Ipv6Addr::from(ip), port))),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(
            added in proptest::collection::vec((arb_addr(), any::<u8>()), 0..=MAX_PEERS_PER_LIST),
            dropped in proptest::collection::vec(arb_addr(), 0..=MAX_PEERS_PER_LIST),
        ) {
            let mut m = PexMessage {
                added: added.into_iter().map(|(addr, f)| PexPeer { addr, flags: PexFlags(f) }).collect(),
                dropped,
            };
            let back = PexMessage::decode(&m.encode()).unwrap();
            prop_assert_eq!(back.ignored, 0);
            // The wire puts every IPv4 entry before every IPv6 one.
            m.added.sort_by_key(|p| p.addr.is_ipv6());
            m.dropped.sort_by_key(|a| a.is_ipv6());
            prop_assert_eq!(back.message, m);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(r) = PexMessage::decode(&bytes) {
                prop_assert!(r.message.added.len() <= MAX_PEERS_PER_LIST);
                prop_assert!(r.message.dropped.len() <= MAX_PEERS_PER_LIST);
            }
        }

        #[test]
        fn arbitrary_fields_never_panic(
            a4 in proptest::collection::vec(any::<u8>(), 0..700),
            f4 in proptest::collection::vec(any::<u8>(), 0..80),
            a6 in proptest::collection::vec(any::<u8>(), 0..1000),
            d4 in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut v = Value::dict();
            v.insert("added", a4);
            v.insert("added.f", f4);
            v.insert("added6", a6);
            v.insert("dropped", d4);
            let r = PexMessage::decode(&bencode::encode(&v)).unwrap();
            prop_assert!(r.message.added.len() <= MAX_PEERS_PER_LIST);
            prop_assert!(r.message.dropped.len() <= MAX_PEERS_PER_LIST);
        }
    }
}
