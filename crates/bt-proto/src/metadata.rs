//! BEP 9 `ut_metadata`: fetching the info dictionary from peers, for
//! torrents added by magnet link.
//!
//! A message is a bencoded dictionary, and a `data` message carries the raw
//! piece right after it. [`MetadataAssembler`] collects the pieces and
//! accepts the result only if its SHA-1 is the info-hash (or, for a v2-only
//! torrent, its SHA-256 is the v2 info-hash), so a lying peer can waste our
//! time but never hand us a different torrent.

use crate::bencode::{self, BencodeError, Limits, Value};
use crate::metainfo::info_hash_of;
use crate::{InfoHash, InfoHashV2};

/// Every piece is this big except the last.
pub const METADATA_PIECE_SIZE: usize = 16384;
/// Largest metadata we fetch. libtorrent refuses above 30 MiB; a few torrents
/// with millions of files come close.
pub const MAX_METADATA_SIZE: u32 = 32 * 1024 * 1024;

/// The dictionary before the data is tiny; anything bigger is not BEP 9.
const LIMITS: Limits = Limits {
    max_depth: 4,
    max_input: 2 * METADATA_PIECE_SIZE,
    max_items: 64,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataMsg {
    Request {
        piece: u32,
    },
    Data {
        piece: u32,
        total_size: u32,
        data: Vec<u8>,
    },
    /// The peer does not have (or will not send) that piece.
    Reject {
        piece: u32,
    },
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error("ut_metadata message is not valid bencode: {0}")]
    Bencode(#[from] BencodeError),
    #[error("ut_metadata message is not a bencoded dictionary")]
    NotADict,
    #[error("ut_metadata message lacks a valid `{0}` field")]
    Missing(&'static str),
    #[error("ut_metadata message type {0} is unknown")]
    UnknownType(i64),
    #[error("ut_metadata data message carries {0} bytes, more than one 16 KiB piece")]
    PieceTooLarge(usize),
    #[error("metadata size {0} is invalid: it must be between 1 byte and 32 MiB")]
    BadSize(u32),
    #[error("metadata piece {piece} does not exist; there are {count} pieces")]
    NoSuchPiece { piece: u32, count: u32 },
    #[error("metadata piece {piece} is {got} bytes, expected {expected}")]
    WrongPieceSize {
        piece: u32,
        got: usize,
        expected: usize,
    },
    #[error("metadata is incomplete: {missing} pieces missing")]
    Incomplete { missing: u32 },
    #[error("metadata does not match the info-hash {expected}")]
    HashMismatch { expected: InfoHash },
    #[error("metadata does not match the v2 info-hash {expected}")]
    HashMismatchV2 { expected: InfoHashV2 },
}

impl MetadataMsg {
    pub fn decode(payload: &[u8]) -> Result<Self, MetadataError> {
        // Data beyond the limit can only follow a dict, which is never that
        // long, so only the front of the payload is handed to the decoder.
        let head = &payload[..payload.len().min(LIMITS.max_input)];
        let (dict, used) = bencode::decode_prefix(head, &LIMITS)?;
        if dict.as_dict().is_none() {
            return Err(MetadataError::NotADict);
        }
        let int = |key: &'static str| {
            dict.get(key.as_bytes())
                .and_then(Value::as_int)
                .ok_or(MetadataError::Missing(key))
        };
        let u32_field = |key: &'static str| {
            int(key).and_then(|v| u32::try_from(v).map_err(|_| MetadataError::Missing(key)))
        };
        let piece = u32_field("piece")?;
        match int("msg_type")? {
            0 => Ok(MetadataMsg::Request { piece }),
            1 => {
                let data = &payload[used..];
                if data.len() > METADATA_PIECE_SIZE {
                    return Err(MetadataError::PieceTooLarge(data.len()));
                }
                Ok(MetadataMsg::Data {
                    piece,
                    total_size: u32_field("total_size")?,
                    data: data.to_vec(),
                })
            }
            2 => Ok(MetadataMsg::Reject { piece }),
            other => Err(MetadataError::UnknownType(other)),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut d = Value::dict();
        let (msg_type, piece) = match self {
            MetadataMsg::Request { piece } => (0, piece),
            MetadataMsg::Data { piece, .. } => (1, piece),
            MetadataMsg::Reject { piece } => (2, piece),
        };
        d.insert("msg_type", msg_type);
        d.insert("piece", i64::from(*piece));
        if let MetadataMsg::Data { total_size, .. } = self {
            d.insert("total_size", i64::from(*total_size));
        }
        let mut out = bencode::encode(&d);
        if let MetadataMsg::Data { data, .. } = self {
            out.extend_from_slice(data);
        }
        out
    }
}

/// Number of 16 KiB pieces in `total_size` bytes of metadata.
pub fn metadata_pieces(total_size: u32) -> u32 {
    total_size.div_ceil(METADATA_PIECE_SIZE as u32)
}

/// Collects metadata pieces from any number of peers.
#[derive(Clone, Debug)]
pub struct MetadataAssembler {
    info_hash: InfoHash,
    buf: Vec<u8>,
    have: Vec<bool>,
    missing: u32,
}

impl MetadataAssembler {
    /// `total_size` comes from a peer's `metadata_size`, so it is validated
    /// before the buffer is allocated.
    pub fn new(info_hash: InfoHash, total_size: u32) -> Result<Self, MetadataError> {
        if total_size == 0 || total_size > MAX_METADATA_SIZE {
            return Err(MetadataError::BadSize(total_size));
        }
        let n = metadata_pieces(total_size);
        Ok(MetadataAssembler {
            info_hash,
            buf: vec![0; total_size as usize],
            have: vec![false; n as usize],
            missing: n,
        })
    }

    pub fn total_size(&self) -> u32 {
        self.buf.len() as u32
    }

    pub fn num_pieces(&self) -> u32 {
        self.have.len() as u32
    }

    /// Pieces not received yet, ascending.
    pub fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        self.have
            .iter()
            .enumerate()
            .filter(|(_, h)| !**h)
            .map(|(i, _)| i as u32)
    }

    fn piece_range(&self, piece: u32) -> Result<std::ops::Range<usize>, MetadataError> {
        if piece >= self.num_pieces() {
            return Err(MetadataError::NoSuchPiece {
                piece,
                count: self.num_pieces(),
            });
        }
        let start = piece as usize * METADATA_PIECE_SIZE;
        Ok(start..(start + METADATA_PIECE_SIZE).min(self.buf.len()))
    }

    /// Stores a piece. A piece received twice overwrites the first copy.
    pub fn add(&mut self, piece: u32, data: &[u8]) -> Result<(), MetadataError> {
        let range = self.piece_range(piece)?;
        if data.len() != range.len() {
            return Err(MetadataError::WrongPieceSize {
                piece,
                got: data.len(),
                expected: range.len(),
            });
        }
        self.buf[range].copy_from_slice(data);
        let have = &mut self.have[piece as usize];
        if !*have {
            *have = true;
            self.missing -= 1;
        }
        Ok(())
    }

    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// The verified info dictionary bytes. On a hash mismatch the pieces
    /// are lost; the caller starts over with a new assembler (and should
    /// distrust the peers that contributed).
    pub fn finish(self) -> Result<Vec<u8>, MetadataError> {
        if self.missing > 0 {
            return Err(MetadataError::Incomplete {
                missing: self.missing,
            });
        }
        if info_hash_of(&self.buf) != self.info_hash {
            return Err(MetadataError::HashMismatch {
                expected: self.info_hash,
            });
        }
        Ok(self.buf)
    }

    /// [`finish`](Self::finish) for a v2-only torrent (a magnet with only
    /// `btmh`): the metadata must hash to `expected` with SHA-256. Build
    /// the assembler with `expected.truncated()`, the swarm's 20-byte id.
    /// A hybrid torrent can use either check; its v1 one is cheaper.
    pub fn finish_v2(self, expected: InfoHashV2) -> Result<Vec<u8>, MetadataError> {
        if self.missing > 0 {
            return Err(MetadataError::Incomplete {
                missing: self.missing,
            });
        }
        if crate::metainfo::info_hash_v2_of(&self.buf) != expected {
            return Err(MetadataError::HashMismatchV2 { expected });
        }
        Ok(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bep9_examples() {
        assert_eq!(
            MetadataMsg::decode(b"d8:msg_typei0e5:piecei0ee").unwrap(),
            MetadataMsg::Request { piece: 0 }
        );
        assert_eq!(
            MetadataMsg::decode(b"d8:msg_typei1e5:piecei0e10:total_sizei34256eexxxxxxxx").unwrap(),
            MetadataMsg::Data {
                piece: 0,
                total_size: 34256,
                data: b"xxxxxxxx".to_vec()
            }
        );
        assert_eq!(
            MetadataMsg::decode(b"d8:msg_typei2e5:piecei0ee").unwrap(),
            MetadataMsg::Reject { piece: 0 }
        );
        assert_eq!(
            MetadataMsg::Request { piece: 0 }.encode(),
            b"d8:msg_typei0e5:piecei0ee"
        );
    }

    #[test]
    fn malformed_messages() {
        assert_eq!(
            MetadataMsg::decode(b"d8:msg_typei7e5:piecei0ee"),
            Err(MetadataError::UnknownType(7))
        );
        assert_eq!(
            MetadataMsg::decode(b"d8:msg_typei0e5:piecei-1ee"),
            Err(MetadataError::Missing("piece"))
        );
        assert_eq!(
            MetadataMsg::decode(b"d8:msg_typei1e5:piecei0ee"),
            Err(MetadataError::Missing("total_size"))
        );
        assert_eq!(MetadataMsg::decode(b"i1e"), Err(MetadataError::NotADict));
        let mut big = b"d8:msg_typei1e5:piecei0e10:total_sizei9ee".to_vec();
        big.extend(vec![0; METADATA_PIECE_SIZE + 1]);
        assert_eq!(
            MetadataMsg::decode(&big),
            Err(MetadataError::PieceTooLarge(METADATA_PIECE_SIZE + 1))
        );
        // A full-size data piece after its dict is fine.
        let mut full = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
        full.extend(vec![0; METADATA_PIECE_SIZE]);
        assert!(MetadataMsg::decode(&full).is_ok());
    }

    #[test]
    fn assembler_verifies_hash_and_sizes() {
        let info: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
        let ih = info_hash_of(&info);
        assert_eq!(
            MetadataAssembler::new(ih, 0).unwrap_err(),
            MetadataError::BadSize(0)
        );
        assert!(MetadataAssembler::new(ih, MAX_METADATA_SIZE + 1).is_err());
        let mut a = MetadataAssembler::new(ih, info.len() as u32).unwrap();
        assert_eq!(a.num_pieces(), 3);
        assert!(matches!(
            a.add(3, &[]),
            Err(MetadataError::NoSuchPiece { piece: 3, count: 3 })
        ));
        assert!(matches!(
            a.add(0, &info[..100]),
            Err(MetadataError::WrongPieceSize { .. })
        ));
        // Last piece must be exactly the remainder.
        assert!(a.add(2, &info[32768..40_001.min(info.len())]).is_ok());
        assert!(a.add(2, &info[32768..39_999]).is_err());
        a.add(0, &info[..16384]).unwrap();
        assert_eq!(a.missing().collect::<Vec<_>>(), vec![1]);
        assert!(!a.is_complete());
        assert_eq!(
            a.clone().finish(),
            Err(MetadataError::Incomplete { missing: 1 })
        );
        let mut bad = a.clone();
        bad.add(1, &[0; 16384]).unwrap();
        assert!(matches!(
            bad.finish(),
            Err(MetadataError::HashMismatch { .. })
        ));
        a.add(1, &info[16384..32768]).unwrap();
        assert!(a.is_complete());
        assert_eq!(a.clone().finish().unwrap(), info);

        // The same bytes as v2 metadata: SHA-256 decides.
        let v2 = crate::metainfo::info_hash_v2_of(&info);
        assert_eq!(a.clone().finish_v2(v2).unwrap(), info);
        let wrong = InfoHashV2([9; 32]);
        assert_eq!(
            a.finish_v2(wrong),
            Err(MetadataError::HashMismatchV2 { expected: wrong })
        );
        let partial = MetadataAssembler::new(v2.truncated(), 10).unwrap();
        assert_eq!(
            partial.finish_v2(v2),
            Err(MetadataError::Incomplete { missing: 1 })
        );
    }

    proptest! {
        #[test]
        fn round_trip(
            which in 0u8..3,
            piece in any::<u32>(),
            total_size in any::<u32>(),
            data in proptest::collection::vec(any::<u8>(), 0..=METADATA_PIECE_SIZE),
        ) {
            let msg = match which {
                0 => MetadataMsg::Request { piece },
                1 => MetadataMsg::Data { piece, total_size, data },
                _ => MetadataMsg::Reject { piece },
            };
            prop_assert_eq!(MetadataMsg::decode(&msg.encode()).unwrap(), msg);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = MetadataMsg::decode(&bytes);
        }

        #[test]
        fn assemble_any_size(len in 1usize..70_000, order in any::<u64>()) {
            let info: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
            let mut a = MetadataAssembler::new(info_hash_of(&info), len as u32).unwrap();
            let n = a.num_pieces() as usize;
            for k in 0..n {
                let p = (k + order as usize) % n;
                let end = ((p + 1) * METADATA_PIECE_SIZE).min(len);
                a.add(p as u32, &info[p * METADATA_PIECE_SIZE..end]).unwrap();
            }
            prop_assert_eq!(a.finish().unwrap(), info);
        }
    }
}
