//! BEP 52 peer messages: hash request (21), hashes (22) and hash reject
//! (23), which let v2 peers fetch piece layers (and proofs for any layer)
//! of a file's merkle tree.
//!
//! [`crate::wire::decode`] reports these ids as `Message::Unknown`, and
//! its enum stays as it is; decode the frame's payload here instead:
//!
//! ```text
//! hash request / hash reject: <pieces root: 32><base layer: u32><index: u32><length: u32><proof layers: u32>
//! hashes:                     the same header, then `length` base-layer hashes and the uncle hashes
//! ```
//!
//! The uncle count follows libtorrent (which defines the de-facto wire
//! format): `max(0, proof_layers - (log2(length) - 1))`, because the layers
//! computable from the base hashes themselves count as proof layers.
//! Only peers that set the v2 bit ([`crate::wire::Reserved::V2`]) may send
//! these; libtorrent disconnects others.

use crate::merkle::MAX_TREE_HEIGHT;

pub const HASH_REQUEST: u8 = 21;
pub const HASHES: u8 = 22;
pub const HASH_REJECT: u8 = 23;
/// Most base-layer hashes per message. BEP 52 says requests SHOULD NOT
/// ask for more than 512; accepting a little more keeps us lenient while
/// bounding a `hashes` message to ~260 KiB.
pub const MAX_HASH_COUNT: u32 = 8192;
const HEADER_LEN: usize = 32 + 4 * 4;

/// The fields shared by all three messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashRequest {
    /// Identifies the file: its `pieces root`.
    pub pieces_root: [u8; 32],
    /// Layer of the requested hashes, 0 = 16 KiB blocks.
    pub base_layer: u32,
    /// First requested hash in the base layer; a multiple of `length`.
    pub index: u32,
    /// Number of base-layer hashes: a power of two, at least 2.
    pub length: u32,
    /// Layers of proof to include above the base.
    pub proof_layers: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashMessage {
    Request(HashRequest),
    Hashes {
        request: HashRequest,
        /// `request.length` hashes of the base layer.
        hashes: Vec<[u8; 32]>,
        /// Proof hashes from the bottom up.
        uncles: Vec<[u8; 32]>,
    },
    Reject(HashRequest),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WireV2Error {
    #[error("message id {0} is not a BEP 52 hash message")]
    NotAHashMessage(u8),
    #[error("hash message id {id} has a payload of {len} bytes, expected {expected}")]
    BadLength { id: u8, len: usize, expected: usize },
    #[error("hash request length {0} is not a power of two between 2 and {MAX_HASH_COUNT}")]
    BadCount(u32),
    #[error("hash request index {index} is not a multiple of its length {length}")]
    Misaligned { index: u32, length: u32 },
    #[error("hash request reaches layer {0}, above any real tree")]
    TooTall(u64),
}

impl HashRequest {
    /// Uncle hashes a `hashes` answer carries (libtorrent's rule).
    pub fn uncle_count(&self) -> u32 {
        let computable = self.length.trailing_zeros().saturating_sub(1);
        self.proof_layers.saturating_sub(computable)
    }

    fn validate(&self) -> Result<(), WireV2Error> {
        if self.length < 2 || self.length > MAX_HASH_COUNT || !self.length.is_power_of_two() {
            return Err(WireV2Error::BadCount(self.length));
        }
        if !self.index.is_multiple_of(self.length) {
            return Err(WireV2Error::Misaligned {
                index: self.index,
                length: self.length,
            });
        }
        let top = u64::from(self.base_layer) + u64::from(self.proof_layers);
        if top > u64::from(MAX_TREE_HEIGHT) {
            return Err(WireV2Error::TooTall(top));
        }
        Ok(())
    }

    fn parse(p: &[u8]) -> HashRequest {
        let u32_at = |o: usize| u32::from_be_bytes(p[o..o + 4].try_into().expect("4 bytes"));
        let mut pieces_root = [0u8; 32];
        pieces_root.copy_from_slice(&p[..32]);
        HashRequest {
            pieces_root,
            base_layer: u32_at(32),
            index: u32_at(36),
            length: u32_at(40),
            proof_layers: u32_at(44),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pieces_root);
        for v in [self.base_layer, self.index, self.length, self.proof_layers] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

impl HashMessage {
    /// Whether a frame with this message id belongs here.
    pub fn is_hash_message(id: u8) -> bool {
        matches!(id, HASH_REQUEST | HASHES | HASH_REJECT)
    }

    /// Decodes the payload (after the id byte) of a frame with id 21, 22
    /// or 23. Field values are checked for shape (power-of-two length,
    /// aligned index, bounded height); whether the file and layers exist
    /// is the torrent's business.
    pub fn decode(id: u8, payload: &[u8]) -> Result<HashMessage, WireV2Error> {
        if !Self::is_hash_message(id) {
            return Err(WireV2Error::NotAHashMessage(id));
        }
        if payload.len() < HEADER_LEN || (id != HASHES && payload.len() != HEADER_LEN) {
            return Err(WireV2Error::BadLength {
                id,
                len: payload.len(),
                expected: HEADER_LEN,
            });
        }
        let request = HashRequest::parse(payload);
        request.validate()?;
        match id {
            HASH_REQUEST => Ok(HashMessage::Request(request)),
            HASH_REJECT => Ok(HashMessage::Reject(request)),
            _ => {
                let count = request.length as usize;
                let uncles = request.uncle_count() as usize;
                let expected = HEADER_LEN + (count + uncles) * 32;
                if payload.len() != expected {
                    return Err(WireV2Error::BadLength {
                        id,
                        len: payload.len(),
                        expected,
                    });
                }
                let all: Vec<[u8; 32]> = payload[HEADER_LEN..]
                    .chunks_exact(32)
                    .map(|c| c.try_into().expect("32 bytes"))
                    .collect();
                let (hashes, uncles) = all.split_at(count);
                Ok(HashMessage::Hashes {
                    request,
                    hashes: hashes.to_vec(),
                    uncles: uncles.to_vec(),
                })
            }
        }
    }

    /// Appends the framed message (length prefix and id included).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (id, request, extra) = match self {
            HashMessage::Request(r) => (HASH_REQUEST, r, 0),
            HashMessage::Reject(r) => (HASH_REJECT, r, 0),
            HashMessage::Hashes {
                request,
                hashes,
                uncles,
            } => (HASHES, request, (hashes.len() + uncles.len()) * 32),
        };
        out.extend_from_slice(&((1 + HEADER_LEN + extra) as u32).to_be_bytes());
        out.push(id);
        request.write(out);
        if let HashMessage::Hashes { hashes, uncles, .. } = self {
            for h in hashes.iter().chain(uncles) {
                out.extend_from_slice(h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{self, Message};
    use proptest::prelude::*;

    fn req(length: u32, proof_layers: u32) -> HashRequest {
        HashRequest {
            pieces_root: [7; 32],
            base_layer: 2,
            index: 4 * length,
            length,
            proof_layers,
        }
    }

    #[test]
    fn frames_pass_through_the_v1_decoder_as_unknown() {
        let m = HashMessage::Request(req(512, 10));
        let mut buf = Vec::new();
        m.encode(&mut buf);
        assert_eq!(buf.len(), 4 + 1 + 48);
        let (msg, used) = wire::decode(&buf, wire::DEFAULT_MAX_FRAME)
            .unwrap()
            .unwrap();
        assert_eq!(msg, Message::Unknown { id: HASH_REQUEST });
        assert_eq!(HashMessage::decode(buf[4], &buf[5..used]).unwrap(), m);
    }

    #[test]
    fn hashes_carry_libtorrents_uncle_count() {
        // 4 base hashes make 2 layers computable (minus the base itself:
        // 1), so 3 proof layers mean 2 uncles.
        let r = req(4, 3);
        assert_eq!(r.uncle_count(), 2);
        assert_eq!(req(2, 0).uncle_count(), 0);
        assert_eq!(req(512, 5).uncle_count(), 0);
        let m = HashMessage::Hashes {
            request: r,
            hashes: vec![[1; 32]; 4],
            uncles: vec![[2; 32]; 2],
        };
        let mut buf = Vec::new();
        m.encode(&mut buf);
        assert_eq!(HashMessage::decode(HASHES, &buf[5..]).unwrap(), m);
        assert_eq!(
            HashMessage::decode(HASHES, &buf[5..buf.len() - 32]).unwrap_err(),
            WireV2Error::BadLength {
                id: HASHES,
                len: 48 + 5 * 32,
                expected: 48 + 6 * 32
            }
        );
    }

    #[test]
    fn bad_fields_are_refused() {
        let enc = |r: HashRequest| {
            let mut b = Vec::new();
            HashMessage::Reject(r).encode(&mut b);
            HashMessage::decode(HASH_REJECT, &b[5..])
        };
        assert_eq!(enc(req(3, 0)), Err(WireV2Error::BadCount(3)));
        assert_eq!(enc(req(1, 0)), Err(WireV2Error::BadCount(1)));
        assert_eq!(enc(req(16384, 0)), Err(WireV2Error::BadCount(16384)));
        let mut r = req(4, 0);
        r.index = 6;
        assert_eq!(
            enc(r).unwrap_err().to_string(),
            "hash request index 6 is not a multiple of its length 4"
        );
        assert_eq!(enc(req(4, 47)), Err(WireV2Error::TooTall(49)));
        assert_eq!(
            HashMessage::decode(HASH_REQUEST, &[0; 47]),
            Err(WireV2Error::BadLength {
                id: 21,
                len: 47,
                expected: 48
            })
        );
        assert_eq!(
            HashMessage::decode(HASH_REQUEST, &[0; 49]).unwrap_err(),
            WireV2Error::BadLength {
                id: 21,
                len: 49,
                expected: 48
            }
        );
        assert_eq!(
            HashMessage::decode(7, &[]),
            Err(WireV2Error::NotAHashMessage(7))
        );
    }

    proptest! {
        #[test]
        fn round_trip(
            shift in 1u32..10,
            slot in 0u32..1000,
            base in 0u32..20,
            proof in 0u32..20,
            id in prop_oneof![Just(HASH_REQUEST), Just(HASHES), Just(HASH_REJECT)],
        ) {
            let length = 1 << shift;
            let request = HashRequest { pieces_root: [3; 32], base_layer: base, index: slot * length, length, proof_layers: proof };
            let m = match id {
                HASH_REQUEST => HashMessage::Request(request),
                HASH_REJECT => HashMessage::Reject(request),
                _ => HashMessage::Hashes {
                    request,
                    hashes: (0..length).map(|i| [i as u8; 32]).collect(),
                    uncles: (0..request.uncle_count()).map(|i| [200 + i as u8; 32]).collect(),
                },
            };
            let mut buf = Vec::new();
            m.encode(&mut buf);
            prop_assert_eq!(u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize, buf.len() - 4);
            prop_assert_eq!(HashMessage::decode(buf[4], &buf[5..]).unwrap(), m);
        }

        #[test]
        fn arbitrary_payloads_never_panic(id in 20u8..25, p in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = HashMessage::decode(id, &p);
        }
    }
}
