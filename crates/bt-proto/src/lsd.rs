//! Local service discovery (BEP 14): the `BT-SEARCH` datagrams peers
//! multicast on the local network to find each other without a tracker.
//!
//! ```text
//! BT-SEARCH * HTTP/1.1\r\n
//! Host: 239.192.152.143:6771\r\n
//! Port: 6881\r\n
//! Infohash: 0123456789abcdef0123456789abcdef01234567\r\n
//! Infohash: ...\r\n            (one per torrent; several are allowed)
//! cookie: 5fa1\r\n             (optional; lets a sender drop its own echo)
//! \r\n
//! \r\n
//! ```
//!
//! Anyone on the LAN can send these, so parsing is bounded: the datagram
//! size ([`MAX_DATAGRAM`]), the number of lines and of info-hashes, and the
//! cookie length. Header names are case-insensitive (libtorrent writes
//! `cookie`, others `Cookie`), lines may end in `\n` alone, unknown headers
//! are skipped, and an info-hash that is not 40 hex characters is skipped
//! and counted rather than failing the whole announce.

use crate::InfoHash;
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// BEP 14's IPv4 multicast group and port.
pub const MULTICAST_V4: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 192, 152, 143), 6771);
/// BEP 14's IPv6 multicast group (site-local scope) and port.
pub const MULTICAST_V6: SocketAddrV6 = SocketAddrV6::new(
    Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0xefc0, 0x988f),
    6771,
    0,
    0,
);
/// Largest datagram parsed or written: an Ethernet frame's UDP payload
/// over IPv6 is 1452 bytes; announces are written to fit in 1400 like
/// libtorrent's, and anything past 1500 is not a real announce.
pub const MAX_DATAGRAM: usize = 1500;
/// What [`LsdAnnounce::to_datagrams`] packs into one datagram.
pub const SEND_DATAGRAM: usize = 1400;
/// Info-hashes kept from one announce; 1500 bytes hold at most 26 lines.
pub const MAX_INFOHASHES: usize = 32;
/// Longest cookie accepted or written.
pub const MAX_COOKIE: usize = 64;
/// Longest `Host` value accepted; `[ff15::efc0:988f]:6771` is 22 bytes.
pub const MAX_HOST: usize = 64;
const MAX_LINES: usize = 64;

/// One announce: the sender's listen port and the torrents it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LsdAnnounce {
    /// `Host` as sent (a multicast group), kept for logging; not checked,
    /// since a datagram's destination is what the socket saw.
    pub host: String,
    /// The TCP port the sender listens on (never 0).
    pub port: u16,
    pub info_hashes: Vec<InfoHash>,
    /// Opaque token the sender includes so it can recognise its own
    /// announces coming back.
    pub cookie: Option<String>,
}

/// A parsed announce and how many info-hash lines were skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedLsd {
    pub announce: LsdAnnounce,
    /// Malformed or excess `Infohash` lines.
    pub ignored: usize,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LsdError {
    #[error("LSD datagram of {len} bytes exceeds the {MAX_DATAGRAM}-byte limit")]
    TooLarge { len: usize },
    #[error("LSD datagram is not text")]
    NotText,
    #[error("not a BT-SEARCH announce (request line {0:?})")]
    NotBtSearch(String),
    #[error("LSD announce has more than {MAX_LINES} lines")]
    TooManyLines,
    #[error("LSD announce has no valid `Port` header")]
    BadPort,
    #[error("LSD announce has no valid `Infohash` header")]
    NoInfoHash,
    #[error("LSD announce has a `{0}` header twice")]
    Duplicate(&'static str),
    #[error("LSD `Host` header is longer than {MAX_HOST} bytes")]
    BadHost,
    #[error("LSD cookie is longer than {MAX_COOKIE} bytes or not printable")]
    BadCookie,
    #[error("LSD header line {0:?} has no colon")]
    BadHeader(String),
}

impl LsdAnnounce {
    pub fn parse(datagram: &[u8]) -> Result<ReceivedLsd, LsdError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(LsdError::TooLarge {
                len: datagram.len(),
            });
        }
        let text = std::str::from_utf8(datagram).map_err(|_| LsdError::NotText)?;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let request = lines.next().unwrap_or_default();
        if request != "BT-SEARCH * HTTP/1.1" {
            return Err(LsdError::NotBtSearch(request.chars().take(40).collect()));
        }
        let mut host = None;
        let mut port = None;
        let mut cookie = None;
        let mut info_hashes = Vec::new();
        let mut ignored = 0;
        for (n, line) in lines.enumerate() {
            if n >= MAX_LINES {
                return Err(LsdError::TooManyLines);
            }
            // The blank line ends the headers; BEP 14 sends two.
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| LsdError::BadHeader(line.chars().take(40).collect()))?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("host") {
                if value.len() > MAX_HOST {
                    return Err(LsdError::BadHost);
                }
                set_once(&mut host, value.to_owned(), "Host")?;
            } else if name.eq_ignore_ascii_case("port") {
                let p = value
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or(LsdError::BadPort)?;
                set_once(&mut port, p, "Port")?;
            } else if name.eq_ignore_ascii_case("infohash") {
                match InfoHash::from_hex_or_base32(value) {
                    Ok(h) if value.len() == 40 && info_hashes.len() < MAX_INFOHASHES => {
                        if !info_hashes.contains(&h) {
                            info_hashes.push(h);
                        }
                    }
                    _ => ignored += 1,
                }
            } else if name.eq_ignore_ascii_case("cookie") {
                if !valid_cookie(value) {
                    return Err(LsdError::BadCookie);
                }
                set_once(&mut cookie, value.to_owned(), "cookie")?;
            }
        }
        if info_hashes.is_empty() {
            return Err(LsdError::NoInfoHash);
        }
        Ok(ReceivedLsd {
            announce: LsdAnnounce {
                host: host.unwrap_or_default(),
                port: port.ok_or(LsdError::BadPort)?,
                info_hashes,
                cookie,
            },
            ignored,
        })
    }

    /// The announce as datagrams of at most [`SEND_DATAGRAM`] bytes, with
    /// the info-hashes spread over as many as needed (each datagram is a
    /// complete announce). `host` should be the group it is sent to,
    /// formatted by [`host_header`]. An invalid cookie is left out.
    pub fn to_datagrams(&self) -> Vec<Vec<u8>> {
        let mut head = format!("BT-SEARCH * HTTP/1.1\r\nHost: {}\r\n", self.host);
        let _ = write!(head, "Port: {}\r\n", self.port);
        let mut tail = String::new();
        if let Some(c) = self.cookie.as_deref().filter(|c| valid_cookie(c)) {
            let _ = write!(tail, "cookie: {c}\r\n");
        }
        tail.push_str("\r\n\r\n");
        const LINE: usize = "Infohash: \r\n".len() + 40;
        let room = SEND_DATAGRAM.saturating_sub(head.len() + tail.len()) / LINE;
        let per_datagram = room.clamp(1, MAX_INFOHASHES);
        self.info_hashes
            .chunks(per_datagram)
            .map(|chunk| {
                let mut s = head.clone();
                for h in chunk {
                    let _ = write!(s, "Infohash: {}\r\n", h.to_hex());
                }
                s.push_str(&tail);
                s.into_bytes()
            })
            .collect()
    }
}

/// The `Host` value for a multicast group: `239.192.152.143:6771` or
/// `[ff15::efc0:988f]:6771`.
pub fn host_header(group: SocketAddr) -> String {
    group.to_string()
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), LsdError> {
    if slot.is_some() {
        return Err(LsdError::Duplicate(name));
    }
    *slot = Some(value);
    Ok(())
}

fn valid_cookie(c: &str) -> bool {
    !c.is_empty() && c.len() <= MAX_COOKIE && c.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H1: &str = "0123456789abcdef0123456789abcdef01234567";
    const H2: &str = "fedcba9876543210fedcba9876543210fedcba98";

    #[test]
    fn libtorrent_shaped_announce() {
        let d = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n\
             Infohash: {H1}\r\nInfohash: {}\r\ncookie: 1a2b3c\r\n\r\n\r\n",
            H2.to_uppercase()
        );
        let r = LsdAnnounce::parse(d.as_bytes()).unwrap();
        assert_eq!(r.ignored, 0);
        let a = r.announce;
        assert_eq!(a.host, "239.192.152.143:6771");
        assert_eq!(a.port, 6881);
        assert_eq!(a.info_hashes.len(), 2);
        assert_eq!(a.info_hashes[1].to_hex(), H2);
        assert_eq!(a.cookie.as_deref(), Some("1a2b3c"));
        let out = a.to_datagrams();
        assert_eq!(out.len(), 1);
        assert_eq!(LsdAnnounce::parse(&out[0]).unwrap().announce, a);
    }

    #[test]
    fn lenient_where_harmless() {
        // Bare \n, odd header case, unknown headers, no cookie, a bad
        // info-hash skipped and counted, a duplicate info-hash folded.
        let d = format!(
            "BT-SEARCH * HTTP/1.1\nhost: [ff15::efc0:988f]:6771\nPORT:  51413 \nX-Foo: bar\n\
             INFOHASH: {H1}\ninfohash: zz\nInfohash: {H1}\n\n"
        );
        let r = LsdAnnounce::parse(d.as_bytes()).unwrap();
        assert_eq!(r.ignored, 1);
        assert_eq!(r.announce.port, 51413);
        assert_eq!(r.announce.info_hashes.len(), 1);
        assert_eq!(r.announce.cookie, None);
        assert_eq!(host_header(SocketAddr::V6(MULTICAST_V6)), r.announce.host);
        assert_eq!(
            host_header(SocketAddr::V4(MULTICAST_V4)),
            "239.192.152.143:6771"
        );
    }

    #[test]
    fn errors_are_clear() {
        let ok_tail = format!("Port: 1\r\nInfohash: {H1}\r\n\r\n");
        let parse = |s: &str| LsdAnnounce::parse(s.as_bytes());
        assert!(matches!(
            parse("M-SEARCH * HTTP/1.1\r\n"),
            Err(LsdError::NotBtSearch(_))
        ));
        assert_eq!(
            parse(&format!(
                "BT-SEARCH * HTTP/1.1\r\nPort: 0\r\nInfohash: {H1}\r\n\r\n"
            )),
            Err(LsdError::BadPort)
        );
        assert_eq!(
            parse(&format!("BT-SEARCH * HTTP/1.1\r\nInfohash: {H1}\r\n\r\n")),
            Err(LsdError::BadPort)
        );
        assert_eq!(
            parse("BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n\r\n"),
            Err(LsdError::NoInfoHash)
        );
        assert_eq!(
            parse(&format!("BT-SEARCH * HTTP/1.1\r\nPort: 2\r\n{ok_tail}")),
            Err(LsdError::Duplicate("Port"))
        );
        assert_eq!(
            parse(&format!(
                "BT-SEARCH * HTTP/1.1\r\ncookie: {}\r\n{ok_tail}",
                "c".repeat(65)
            )),
            Err(LsdError::BadCookie)
        );
        assert!(matches!(
            parse(&format!("BT-SEARCH * HTTP/1.1\r\nnocolon\r\n{ok_tail}")),
            Err(LsdError::BadHeader(_))
        ));
        assert_eq!(
            LsdAnnounce::parse(&[0xff; 10]).unwrap_err().to_string(),
            "LSD datagram is not text"
        );
        let lines = "X: y\r\n".repeat(MAX_LINES + 1);
        assert_eq!(
            parse(&format!("BT-SEARCH * HTTP/1.1\r\n{lines}{ok_tail}")),
            Err(LsdError::TooManyLines)
        );
        assert_eq!(
            parse(&format!(
                "BT-SEARCH * HTTP/1.1\r\nHost: {}\r\n{ok_tail}",
                "h".repeat(65)
            )),
            Err(LsdError::BadHost)
        );
        assert!(matches!(
            LsdAnnounce::parse(&[b'a'; MAX_DATAGRAM + 1]),
            Err(LsdError::TooLarge { .. })
        ));
    }

    #[test]
    fn many_hashes_split_into_datagrams_that_fit() {
        let a = LsdAnnounce {
            host: host_header(SocketAddr::V6(MULTICAST_V6)),
            port: 6881,
            info_hashes: (0..100u8).map(|i| InfoHash([i; 20])).collect(),
            cookie: Some("abc".into()),
        };
        let out = a.to_datagrams();
        assert!(out.len() > 1);
        let mut all = Vec::new();
        for d in &out {
            assert!(d.len() <= SEND_DATAGRAM);
            let r = LsdAnnounce::parse(d).unwrap();
            assert_eq!(r.ignored, 0);
            all.extend(r.announce.info_hashes);
        }
        assert_eq!(all, a.info_hashes);
    }

    proptest! {
        #[test]
        fn round_trip(
            port in 1u16..,
            hashes in proptest::collection::btree_set(any::<[u8; 20]>(), 1..60),
            cookie in proptest::option::of("[!-~]{1,64}"),
        ) {
            let a = LsdAnnounce {
                host: "239.192.152.143:6771".into(),
                port,
                info_hashes: hashes.into_iter().map(InfoHash).collect(),
                cookie,
            };
            let mut all = Vec::new();
            for d in a.to_datagrams() {
                prop_assert!(d.len() <= SEND_DATAGRAM);
                let r = LsdAnnounce::parse(&d).unwrap();
                prop_assert_eq!(r.announce.port, a.port);
                prop_assert_eq!(&r.announce.cookie, &a.cookie);
                all.extend(r.announce.info_hashes);
            }
            prop_assert_eq!(all, a.info_hashes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            if let Ok(r) = LsdAnnounce::parse(&bytes) {
                prop_assert!(r.announce.info_hashes.len() <= MAX_INFOHASHES);
                prop_assert!(r.announce.port != 0);
            }
        }

        #[test]
        fn header_soup_never_panics(parts in proptest::collection::vec(prop_oneof![
            Just("Port: 6881".to_string()), Just("Infohash: ".to_string()), Just(H1.to_string()),
            Just("\r\n".to_string()), Just("\n".to_string()), Just("cookie:".to_string()),
            Just(":".to_string()), "[ -~]{0,12}",
        ], 0..40)) {
            let d = format!("BT-SEARCH * HTTP/1.1\r\n{}", parts.concat());
            let _ = LsdAnnounce::parse(d.as_bytes());
        }
    }
}
