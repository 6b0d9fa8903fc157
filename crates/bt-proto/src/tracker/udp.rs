//! UDP tracker protocol (BEP 15): fixed big-endian packets, a connect
//! round-trip to obtain a connection id, then announce or scrape.
//!
//! Decoding is strict about sizes (a packet shorter than its action needs is
//! an error) but ignores trailing bytes after fixed-size requests, where
//! BEP 41 puts URL data.

use super::{
    AnnounceRequest, Event, ScrapeStats, TrackerError, decode_compact_v4, decode_compact_v6,
    encode_compact_all_v6,
};
use crate::{InfoHash, PeerId};
use std::net::{IpAddr, SocketAddr};

/// Magic constant a connect request starts with.
pub const PROTOCOL_ID: u64 = 0x41727101980;
/// BEP 15 limits a scrape to what fits in one packet.
pub const MAX_SCRAPE_HASHES: usize = 74;

const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_SCRAPE: u32 = 2;
const ACTION_ERROR: u32 = 3;

const ANNOUNCE_REQUEST_LEN: usize = 98;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpRequest {
    Connect {
        transaction_id: u32,
    },
    /// `req.numwant` and `req.tracker_id` are not on the wire: `num_want`
    /// (-1 = tracker's default) is what is sent.
    Announce {
        connection_id: u64,
        transaction_id: u32,
        req: AnnounceRequest,
        /// IPv4 address to announce instead of the packet's source; 0 = use
        /// the source.
        ip: u32,
        num_want: i32,
    },
    Scrape {
        connection_id: u64,
        transaction_id: u32,
        info_hashes: Vec<InfoHash>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpResponse {
    Connect {
        transaction_id: u32,
        connection_id: u64,
    },
    Announce {
        transaction_id: u32,
        interval: u32,
        leechers: u32,
        seeders: u32,
        peers: Vec<SocketAddr>,
    },
    Scrape {
        transaction_id: u32,
        stats: Vec<ScrapeStats>,
    },
    Error {
        transaction_id: u32,
        message: String,
    },
}

/// Big-endian reads at fixed offsets of a buffer whose length was checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u16(&self, at: usize) -> u16 {
        u16::from_be_bytes(self.0[at..at + 2].try_into().expect("checked length"))
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.0[at..at + 4].try_into().expect("checked length"))
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_be_bytes(self.0[at..at + 8].try_into().expect("checked length"))
    }
    fn id20(&self, at: usize) -> [u8; 20] {
        self.0[at..at + 20].try_into().expect("checked length")
    }
}

fn need(buf: &[u8], n: usize) -> Result<(), TrackerError> {
    if buf.len() < n {
        return Err(TrackerError::TooShort {
            got: buf.len(),
            need: n,
        });
    }
    Ok(())
}

fn event_code(e: Option<Event>) -> u32 {
    match e {
        None => 0,
        Some(Event::Completed) => 1,
        Some(Event::Started) => 2,
        Some(Event::Stopped) => 3,
    }
}

impl UdpRequest {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            UdpRequest::Connect { transaction_id } => {
                out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
            }
            UdpRequest::Announce {
                connection_id,
                transaction_id,
                req,
                ip,
                num_want,
            } => {
                out.extend_from_slice(&connection_id.to_be_bytes());
                out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
                out.extend_from_slice(&req.info_hash.0);
                out.extend_from_slice(&req.peer_id.0);
                out.extend_from_slice(&req.downloaded.to_be_bytes());
                out.extend_from_slice(&req.left.to_be_bytes());
                out.extend_from_slice(&req.uploaded.to_be_bytes());
                out.extend_from_slice(&event_code(req.event).to_be_bytes());
                out.extend_from_slice(&ip.to_be_bytes());
                out.extend_from_slice(&req.key.to_be_bytes());
                out.extend_from_slice(&num_want.to_be_bytes());
                out.extend_from_slice(&req.port.to_be_bytes());
            }
            UdpRequest::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => {
                out.extend_from_slice(&connection_id.to_be_bytes());
                out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
                for h in info_hashes {
                    out.extend_from_slice(&h.0);
                }
            }
        }
    }

    /// Server side, for the mock tracker in tests.
    pub fn decode(buf: &[u8]) -> Result<Self, TrackerError> {
        need(buf, 16)?;
        let r = Reader(buf);
        let connection_id = r.u64(0);
        let transaction_id = r.u32(12);
        match r.u32(8) {
            ACTION_CONNECT => {
                if connection_id != PROTOCOL_ID {
                    return Err(TrackerError::BadProtocolId(connection_id));
                }
                Ok(UdpRequest::Connect { transaction_id })
            }
            ACTION_ANNOUNCE => {
                need(buf, ANNOUNCE_REQUEST_LEN)?;
                let event = match r.u32(80) {
                    1 => Some(Event::Completed),
                    2 => Some(Event::Started),
                    3 => Some(Event::Stopped),
                    _ => None,
                };
                let num_want = r.u32(92) as i32;
                Ok(UdpRequest::Announce {
                    connection_id,
                    transaction_id,
                    req: AnnounceRequest {
                        info_hash: InfoHash(r.id20(16)),
                        peer_id: PeerId(r.id20(36)),
                        downloaded: r.u64(56),
                        left: r.u64(64),
                        uploaded: r.u64(72),
                        event,
                        key: r.u32(88),
                        port: r.u16(96),
                        numwant: u32::try_from(num_want).ok(),
                        tracker_id: None,
                    },
                    ip: r.u32(84),
                    num_want,
                })
            }
            ACTION_SCRAPE => {
                let body = &buf[16..];
                if !body.len().is_multiple_of(20) {
                    return Err(TrackerError::BadScrapeLength(body.len() % 20));
                }
                Ok(UdpRequest::Scrape {
                    connection_id,
                    transaction_id,
                    info_hashes: body
                        .chunks_exact(20)
                        .map(|c| InfoHash(c.try_into().expect("20-byte chunk")))
                        .collect(),
                })
            }
            other => Err(TrackerError::UnknownAction(other)),
        }
    }
}

impl UdpResponse {
    pub fn transaction_id(&self) -> u32 {
        match self {
            UdpResponse::Connect { transaction_id, .. }
            | UdpResponse::Announce { transaction_id, .. }
            | UdpResponse::Scrape { transaction_id, .. }
            | UdpResponse::Error { transaction_id, .. } => *transaction_id,
        }
    }

    /// `ipv6` says whether the packet came over IPv6, which makes announce
    /// peers 18 bytes each instead of 6.
    pub fn decode(buf: &[u8], ipv6: bool) -> Result<Self, TrackerError> {
        need(buf, 8)?;
        let r = Reader(buf);
        let transaction_id = r.u32(4);
        match r.u32(0) {
            ACTION_CONNECT => {
                need(buf, 16)?;
                Ok(UdpResponse::Connect {
                    transaction_id,
                    connection_id: r.u64(8),
                })
            }
            ACTION_ANNOUNCE => {
                need(buf, 20)?;
                let peers = &buf[20..];
                Ok(UdpResponse::Announce {
                    transaction_id,
                    interval: r.u32(8),
                    leechers: r.u32(12),
                    seeders: r.u32(16),
                    peers: if ipv6 {
                        decode_compact_v6(peers)
                    } else {
                        decode_compact_v4(peers)
                    },
                })
            }
            ACTION_SCRAPE => Ok(UdpResponse::Scrape {
                transaction_id,
                stats: buf[8..]
                    .chunks_exact(12)
                    .map(|c| {
                        let c = Reader(c);
                        ScrapeStats {
                            complete: c.u32(0),
                            downloaded: c.u32(4),
                            incomplete: c.u32(8),
                        }
                    })
                    .collect(),
            }),
            ACTION_ERROR => Ok(UdpResponse::Error {
                transaction_id,
                message: String::from_utf8_lossy(&buf[8..]).into_owned(),
            }),
            other => Err(TrackerError::UnknownAction(other)),
        }
    }

    /// Server side. Announce peers are written as 6-byte IPv4 entries unless
    /// one of them is IPv6, in which case all are 18 bytes (a tracker
    /// answering over IPv6).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let head = |out: &mut Vec<u8>, action: u32, tid: u32| {
            out.extend_from_slice(&action.to_be_bytes());
            out.extend_from_slice(&tid.to_be_bytes());
        };
        match self {
            UdpResponse::Connect {
                transaction_id,
                connection_id,
            } => {
                head(out, ACTION_CONNECT, *transaction_id);
                out.extend_from_slice(&connection_id.to_be_bytes());
            }
            UdpResponse::Announce {
                transaction_id,
                interval,
                leechers,
                seeders,
                peers,
            } => {
                head(out, ACTION_ANNOUNCE, *transaction_id);
                out.extend_from_slice(&interval.to_be_bytes());
                out.extend_from_slice(&leechers.to_be_bytes());
                out.extend_from_slice(&seeders.to_be_bytes());
                if peers.iter().any(SocketAddr::is_ipv6) {
                    encode_compact_all_v6(peers, out);
                } else {
                    for p in peers {
                        if let IpAddr::V4(ip) = p.ip() {
                            out.extend_from_slice(&ip.octets());
                            out.extend_from_slice(&p.port().to_be_bytes());
                        }
                    }
                }
            }
            UdpResponse::Scrape {
                transaction_id,
                stats,
            } => {
                head(out, ACTION_SCRAPE, *transaction_id);
                for s in stats {
                    out.extend_from_slice(&s.complete.to_be_bytes());
                    out.extend_from_slice(&s.downloaded.to_be_bytes());
                    out.extend_from_slice(&s.incomplete.to_be_bytes());
                }
            }
            UdpResponse::Error {
                transaction_id,
                message,
            } => {
                head(out, ACTION_ERROR, *transaction_id);
                out.extend_from_slice(message.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::tests::arb_peer;
    use proptest::prelude::*;

    #[test]
    fn bep15_connect_layout() {
        let mut out = Vec::new();
        UdpRequest::Connect {
            transaction_id: 0x0102_0304,
        }
        .encode(&mut out);
        assert_eq!(
            out,
            [
                0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 1, 2, 3, 4
            ]
        );
        let resp = [0, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9, 9, 9, 9, 9, 9];
        assert_eq!(
            UdpResponse::decode(&resp, false).unwrap(),
            UdpResponse::Connect {
                transaction_id: 0x0102_0304,
                connection_id: 0x0909_0909_0909_0909
            }
        );
        let mut bad = out.clone();
        bad[0] = 1;
        assert!(matches!(
            UdpRequest::decode(&bad),
            Err(TrackerError::BadProtocolId(_))
        ));
    }

    #[test]
    fn bep15_announce_layout() {
        let req = AnnounceRequest {
            info_hash: InfoHash([1; 20]),
            peer_id: PeerId([2; 20]),
            port: 6881,
            uploaded: 3,
            downloaded: 4,
            left: 5,
            event: Some(Event::Started),
            numwant: None,
            key: 7,
            tracker_id: None,
        };
        let mut out = Vec::new();
        UdpRequest::Announce {
            connection_id: 42,
            transaction_id: 9,
            req,
            ip: 0,
            num_want: -1,
        }
        .encode(&mut out);
        assert_eq!(out.len(), 98);
        assert_eq!(&out[56..64], &4u64.to_be_bytes()); // downloaded
        assert_eq!(&out[64..72], &5u64.to_be_bytes()); // left
        assert_eq!(&out[72..80], &3u64.to_be_bytes()); // uploaded
        assert_eq!(&out[80..84], &2u32.to_be_bytes()); // started
        assert_eq!(&out[92..96], &[0xff; 4]);
        assert_eq!(&out[96..98], &6881u16.to_be_bytes());
        // BEP 41 options after the fixed part are ignored.
        out.extend_from_slice(&[2, 5, b'/', b'a', b'n', b'n', b'o']);
        assert!(matches!(
            UdpRequest::decode(&out).unwrap(),
            UdpRequest::Announce {
                num_want: -1,
                connection_id: 42,
                ..
            }
        ));
    }

    #[test]
    fn short_and_unknown_packets() {
        assert_eq!(
            UdpResponse::decode(&[0, 0, 0, 1, 0, 0, 0, 1, 0], false),
            Err(TrackerError::TooShort { got: 9, need: 20 })
        );
        assert_eq!(
            UdpResponse::decode(&[0, 0, 0, 9, 0, 0, 0, 1], false),
            Err(TrackerError::UnknownAction(9))
        );
        let mut err = Vec::new();
        UdpResponse::Error {
            transaction_id: 5,
            message: "bad connection id".into(),
        }
        .encode(&mut err);
        assert_eq!(
            UdpResponse::decode(&err, false).unwrap(),
            UdpResponse::Error {
                transaction_id: 5,
                message: "bad connection id".into()
            }
        );
        let mut scrape = Vec::new();
        UdpRequest::Scrape {
            connection_id: 1,
            transaction_id: 2,
            info_hashes: vec![InfoHash([3; 20])],
        }
        .encode(&mut scrape);
        scrape.push(0);
        assert_eq!(
            UdpRequest::decode(&scrape),
            Err(TrackerError::BadScrapeLength(1))
        );
    }

    fn arb_request() -> impl Strategy<Value = UdpRequest> {
        let announce = (
            any::<u64>(),
            any::<u32>(),
            any::<[u8; 20]>(),
            any::<[u8; 20]>(),
            any::<(u64, u64, u64)>(),
            proptest::option::of(prop_oneof![
                Just(Event::Started),
                Just(Event::Completed),
                Just(Event::Stopped)
            ]),
            any::<(u32, u32, i32, u16)>(),
        )
            .prop_map(
                |(
                    connection_id,
                    transaction_id,
                    ih,
                    pid,
                    (up, down, left),
                    event,
                    (ip, key, num_want, port),
                )| {
                    UdpRequest::Announce {
                        connection_id,
                        transaction_id,
                        req: AnnounceRequest {
                            info_hash: InfoHash(ih),
                            peer_id: PeerId(pid),
                            port,
                            uploaded: up,
                            downloaded: down,
                            left,
                            event,
                            numwant: u32::try_from(num_want).ok(),
                            key,
                            tracker_id: None,
                        },
                        ip,
                        num_want,
                    }
                },
            );
        prop_oneof![
            any::<u32>().prop_map(|transaction_id| UdpRequest::Connect { transaction_id }),
            announce,
            (
                any::<u64>(),
                any::<u32>(),
                proptest::collection::vec(
                    any::<[u8; 20]>().prop_map(InfoHash),
                    0..MAX_SCRAPE_HASHES
                )
            )
                .prop_map(|(connection_id, transaction_id, info_hashes)| {
                    UdpRequest::Scrape {
                        connection_id,
                        transaction_id,
                        info_hashes,
                    }
                }),
        ]
    }

    fn arb_response() -> impl Strategy<Value = (UdpResponse, bool)> {
        prop_oneof![
            any::<(u32, u64)>().prop_map(|(transaction_id, connection_id)| (
                UdpResponse::Connect {
                    transaction_id,
                    connection_id
                },
                false
            )),
            (
                any::<(u32, u32, u32, u32)>(),
                proptest::collection::vec(arb_peer(), 0..20),
                any::<bool>()
            )
                .prop_map(
                    |((transaction_id, interval, leechers, seeders), peers, v6)| {
                        let peers: Vec<_> =
                            peers.into_iter().filter(|p| p.is_ipv6() == v6).collect();
                        (
                            UdpResponse::Announce {
                                transaction_id,
                                interval,
                                leechers,
                                seeders,
                                peers,
                            },
                            v6,
                        )
                    }
                ),
            (
                any::<u32>(),
                proptest::collection::vec(any::<(u32, u32, u32)>(), 0..20)
            )
                .prop_map(|(transaction_id, s)| (
                    UdpResponse::Scrape {
                        transaction_id,
                        stats: s
                            .into_iter()
                            .map(|(complete, downloaded, incomplete)| ScrapeStats {
                                complete,
                                downloaded,
                                incomplete
                            })
                            .collect()
                    },
                    false
                )),
            (any::<u32>(), ".{0,40}").prop_map(|(transaction_id, message)| (
                UdpResponse::Error {
                    transaction_id,
                    message
                },
                false
            )),
        ]
    }

    proptest! {
        #[test]
        fn request_round_trip(r in arb_request()) {
            let mut out = Vec::new();
            r.encode(&mut out);
            prop_assert_eq!(UdpRequest::decode(&out).unwrap(), r);
        }

        #[test]
        fn response_round_trip((r, v6) in arb_response()) {
            let mut out = Vec::new();
            r.encode(&mut out);
            prop_assert_eq!(UdpResponse::decode(&out, v6).unwrap(), r);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), v6 in any::<bool>()) {
            let _ = UdpRequest::decode(&bytes);
            let _ = UdpResponse::decode(&bytes, v6);
        }
    }
}
