//! Peer wire protocol (BEP 3) with the fast extension (BEP 6) and the
//! extension-protocol envelope (BEP 10).
//!
//! [`decode`] parses one length-prefixed frame out of a receive buffer
//! without copying: payloads borrow from the buffer, so the engine can move
//! a PIECE's block straight from its socket buffer to its destination.

use crate::{InfoHash, PeerId};
use sha1::{Digest, Sha1};
use std::net::Ipv4Addr;

/// Standard request size (BEP 3): every client uses 16 KiB blocks.
pub const BLOCK_SIZE: u32 = 16 * 1024;
/// Requests larger than this are refused; BEP 3 says clients close on them.
pub const MAX_REQUEST_LEN: u32 = 128 * 1024;
pub const HANDSHAKE_LEN: usize = 68;
const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";

/// Frame-size ceiling for everything but BITFIELD, which scales with the
/// piece count and is checked against it by the caller.
pub const DEFAULT_MAX_FRAME: u32 = 2 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    pub const DHT: (usize, u8) = (7, 0x01);
    pub const FAST: (usize, u8) = (7, 0x04);
    pub const EXTENSION_PROTOCOL: (usize, u8) = (5, 0x10);
    /// BEP 52: the peer supports v2 hash requests.
    pub const V2: (usize, u8) = (7, 0x10);

    pub fn with(mut self, bit: (usize, u8)) -> Self {
        self.0[bit.0] |= bit.1;
        self
    }

    pub fn has(&self, bit: (usize, u8)) -> bool {
        self.0[bit.0] & bit.1 != 0
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Handshake {
    pub reserved: Reserved,
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

impl Handshake {
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved.0);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    /// The first 48 bytes (everything but the peer id) are enough to route an
    /// incoming connection to its torrent; see [`Handshake::decode_prefix`].
    pub fn decode(buf: &[u8; HANDSHAKE_LEN]) -> Result<Self, WireError> {
        let (reserved, info_hash) = Self::decode_prefix(buf[..48].try_into().expect("48 bytes"))?;
        let mut peer_id = [0u8; 20];
        peer_id.copy_from_slice(&buf[48..68]);
        Ok(Handshake {
            reserved,
            info_hash,
            peer_id: PeerId(peer_id),
        })
    }

    pub fn decode_prefix(buf: &[u8; 48]) -> Result<(Reserved, InfoHash), WireError> {
        if buf[0] != 19 || &buf[1..20] != PROTOCOL {
            return Err(WireError::NotBitTorrent);
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&buf[20..28]);
        let mut ih = [0u8; 20];
        ih.copy_from_slice(&buf[28..48]);
        Ok((Reserved(reserved), InfoHash(ih)))
    }
}

/// Identifies a block: piece index, byte offset in the piece, length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct BlockRequest {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(&'a [u8]),
    Request(BlockRequest),
    Piece {
        index: u32,
        begin: u32,
        data: &'a [u8],
    },
    Cancel(BlockRequest),
    /// DHT port (BEP 5).
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRequest),
    AllowedFast(u32),
    Extended {
        id: u8,
        payload: &'a [u8],
    },
    /// A message id we do not know: forward compatibility says skip it.
    Unknown {
        id: u8,
    },
}

mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const SUGGEST: u8 = 13;
    pub const HAVE_ALL: u8 = 14;
    pub const HAVE_NONE: u8 = 15;
    pub const REJECT: u8 = 16;
    pub const ALLOWED_FAST: u8 = 17;
    pub const EXTENDED: u8 = 20;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("peer did not send a BitTorrent handshake")]
    NotBitTorrent,
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLong { len: u32, max: u32 },
    #[error("message id {id} has a payload of {len} bytes, which is invalid")]
    BadLength { id: u8, len: u32 },
}

impl Message<'_> {
    /// Appends the framed message (length prefix included) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        fn frame(out: &mut Vec<u8>, id: u8, payload_len: usize) {
            out.extend_from_slice(&(payload_len as u32 + 1).to_be_bytes());
            out.push(id);
        }
        fn block(out: &mut Vec<u8>, id: u8, r: &BlockRequest) {
            frame(out, id, 12);
            out.extend_from_slice(&r.index.to_be_bytes());
            out.extend_from_slice(&r.begin.to_be_bytes());
            out.extend_from_slice(&r.length.to_be_bytes());
        }
        fn index(out: &mut Vec<u8>, id: u8, i: u32) {
            frame(out, id, 4);
            out.extend_from_slice(&i.to_be_bytes());
        }
        match *self {
            Message::KeepAlive => out.extend_from_slice(&[0, 0, 0, 0]),
            Message::Choke => frame(out, id::CHOKE, 0),
            Message::Unchoke => frame(out, id::UNCHOKE, 0),
            Message::Interested => frame(out, id::INTERESTED, 0),
            Message::NotInterested => frame(out, id::NOT_INTERESTED, 0),
            Message::Have(i) => index(out, id::HAVE, i),
            Message::Bitfield(b) => {
                frame(out, id::BITFIELD, b.len());
                out.extend_from_slice(b);
            }
            Message::Request(r) => block(out, id::REQUEST, &r),
            Message::Piece { index, begin, data } => {
                encode_piece_header(index, begin, data.len() as u32, out);
                out.extend_from_slice(data);
            }
            Message::Cancel(r) => block(out, id::CANCEL, &r),
            Message::Port(p) => {
                frame(out, id::PORT, 2);
                out.extend_from_slice(&p.to_be_bytes());
            }
            Message::Suggest(i) => index(out, id::SUGGEST, i),
            Message::HaveAll => frame(out, id::HAVE_ALL, 0),
            Message::HaveNone => frame(out, id::HAVE_NONE, 0),
            Message::Reject(r) => block(out, id::REJECT, &r),
            Message::AllowedFast(i) => index(out, id::ALLOWED_FAST, i),
            Message::Extended { id: ext, payload } => {
                frame(out, id::EXTENDED, payload.len() + 1);
                out.push(ext);
                out.extend_from_slice(payload);
            }
            // We never send unknown messages; encoding one writes nothing.
            Message::Unknown { .. } => {}
        }
    }
}

/// The 13-byte header of a PIECE message carrying `len` bytes of data; lets
/// a sender write header and data with one vectored write and no copy.
pub fn encode_piece_header(index: u32, begin: u32, len: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&(len + 9).to_be_bytes());
    out.push(id::PIECE);
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&begin.to_be_bytes());
}

/// Length of the next frame (prefix included) if its prefix is in `buf`.
pub fn peek_frame_len(buf: &[u8]) -> Option<usize> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?);
    Some(len as usize + 4)
}

/// Parses one frame from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, otherwise the message and
/// the number of bytes it used. `max_frame` bounds the payload so that a peer
/// cannot make us buffer an arbitrary amount.
pub fn decode(buf: &[u8], max_frame: u32) -> Result<Option<(Message<'_>, usize)>, WireError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes"));
    if len > max_frame {
        return Err(WireError::TooLong {
            len,
            max: max_frame,
        });
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    if len == 0 {
        return Ok(Some((Message::KeepAlive, 4)));
    }
    let msg_id = buf[4];
    let p = &buf[5..total];
    let plen = len - 1;
    let bad = || WireError::BadLength {
        id: msg_id,
        len: plen,
    };
    let u32_at = |o: usize| u32::from_be_bytes(p[o..o + 4].try_into().expect("4 bytes"));
    let block = || BlockRequest {
        index: u32_at(0),
        begin: u32_at(4),
        length: u32_at(8),
    };
    let expect = |n: u32| if plen == n { Ok(()) } else { Err(bad()) };
    let msg = match msg_id {
        id::CHOKE => expect(0).map(|_| Message::Choke)?,
        id::UNCHOKE => expect(0).map(|_| Message::Unchoke)?,
        id::INTERESTED => expect(0).map(|_| Message::Interested)?,
        id::NOT_INTERESTED => expect(0).map(|_| Message::NotInterested)?,
        id::HAVE => expect(4).map(|_| Message::Have(u32_at(0)))?,
        id::BITFIELD => Message::Bitfield(p),
        id::REQUEST => expect(12).map(|_| Message::Request(block()))?,
        id::PIECE => {
            if plen < 8 {
                return Err(bad());
            }
            Message::Piece {
                index: u32_at(0),
                begin: u32_at(4),
                data: &p[8..],
            }
        }
        id::CANCEL => expect(12).map(|_| Message::Cancel(block()))?,
        id::PORT => expect(2).map(|_| Message::Port(u16::from_be_bytes([p[0], p[1]])))?,
        id::SUGGEST => expect(4).map(|_| Message::Suggest(u32_at(0)))?,
        id::HAVE_ALL => expect(0).map(|_| Message::HaveAll)?,
        id::HAVE_NONE => expect(0).map(|_| Message::HaveNone)?,
        id::REJECT => expect(12).map(|_| Message::Reject(block()))?,
        id::ALLOWED_FAST => expect(4).map(|_| Message::AllowedFast(u32_at(0)))?,
        id::EXTENDED => {
            if plen < 1 {
                return Err(bad());
            }
            Message::Extended {
                id: p[0],
                payload: &p[1..],
            }
        }
        other => Message::Unknown { id: other },
    };
    Ok(Some((msg, total)))
}

/// The canonical allowed-fast set of BEP 6 for a peer at `ip`.
///
/// Only the peer's /24 enters the hash, so peers behind one NAT share a set.
pub fn allowed_fast_set(ip: Ipv4Addr, info_hash: &InfoHash, num_pieces: u32, k: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(k);
    if num_pieces == 0 {
        return out;
    }
    let k = k.min(num_pieces as usize);
    let masked = u32::from(ip) & 0xffff_ff00;
    let mut x = Vec::with_capacity(24);
    x.extend_from_slice(&masked.to_be_bytes());
    x.extend_from_slice(&info_hash.0);
    while out.len() < k {
        let digest: [u8; 20] = Sha1::digest(&x).into();
        for chunk in digest.chunks(4) {
            if out.len() >= k {
                break;
            }
            let y = u32::from_be_bytes(chunk.try_into().expect("4 bytes"));
            let index = y % num_pieces;
            if !out.contains(&index) {
                out.push(index);
            }
        }
        x = digest.to_vec();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn handshake_round_trip() {
        let h = Handshake {
            reserved: Reserved::default()
                .with(Reserved::FAST)
                .with(Reserved::EXTENSION_PROTOCOL),
            info_hash: InfoHash([7; 20]),
            peer_id: PeerId(*b"-RT0001-abcdefghijkl"),
        };
        let bytes = h.encode();
        assert_eq!(Handshake::decode(&bytes).unwrap(), h);
        let mut bad = bytes;
        bad[3] = b'X';
        assert_eq!(Handshake::decode(&bad), Err(WireError::NotBitTorrent));
    }

    #[test]
    fn allowed_fast_matches_bep6_example() {
        // BEP 6: 80.4.4.200, info-hash of 20 0xaa bytes, 1313 pieces.
        let ih = InfoHash([0xaa; 20]);
        let set = allowed_fast_set(Ipv4Addr::new(80, 4, 4, 200), &ih, 1313, 7);
        assert_eq!(set, vec![1059, 431, 808, 1217, 287, 376, 1188]);
        let set9 = allowed_fast_set(Ipv4Addr::new(80, 4, 4, 200), &ih, 1313, 9);
        assert_eq!(set9, vec![1059, 431, 808, 1217, 287, 376, 1188, 353, 508]);
    }

    #[test]
    fn partial_frames_need_more_bytes() {
        let mut buf = Vec::new();
        Message::Have(5).encode(&mut buf);
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut], DEFAULT_MAX_FRAME), Ok(None));
        }
        assert_eq!(
            decode(&buf, DEFAULT_MAX_FRAME),
            Ok(Some((Message::Have(5), 9)))
        );
    }

    #[test]
    fn oversized_and_malformed_frames_are_errors() {
        let huge = [0xff, 0xff, 0xff, 0xff, 7];
        assert!(matches!(
            decode(&huge, DEFAULT_MAX_FRAME),
            Err(WireError::TooLong { .. })
        ));
        let bad_have = [0, 0, 0, 3, 4, 0, 0];
        assert!(matches!(
            decode(&bad_have, DEFAULT_MAX_FRAME),
            Err(WireError::BadLength { .. })
        ));
    }

    fn arb_block() -> impl Strategy<Value = BlockRequest> {
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(index, begin, length)| BlockRequest {
            index,
            begin,
            length,
        })
    }

    proptest! {
        #[test]
        fn messages_round_trip(
            which in 0u8..18,
            n in any::<u32>(),
            port in any::<u16>(),
            r in arb_block(),
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let msg = match which {
                0 => Message::KeepAlive,
                1 => Message::Choke,
                2 => Message::Unchoke,
                3 => Message::Interested,
                4 => Message::NotInterested,
                5 => Message::Have(n),
                6 => Message::Bitfield(&data),
                7 => Message::Request(r),
                8 => Message::Piece { index: r.index, begin: r.begin, data: &data },
                9 => Message::Cancel(r),
                10 => Message::Port(port),
                11 => Message::Suggest(n),
                12 => Message::HaveAll,
                13 => Message::HaveNone,
                14 => Message::Reject(r),
                15 => Message::AllowedFast(n),
                _ => Message::Extended { id: (n & 0xff) as u8, payload: &data },
            };
            let mut buf = Vec::new();
            msg.encode(&mut buf);
            let extra = [1u8, 2, 3];
            buf.extend_from_slice(&extra);
            let (decoded, used) = decode(&buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
            prop_assert_eq!(decoded, msg);
            prop_assert_eq!(used, buf.len() - extra.len());
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, 1024);
        }
    }
}
