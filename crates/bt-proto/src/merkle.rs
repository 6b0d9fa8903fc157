//! BEP 52 merkle trees: every file of a v2 torrent has a binary SHA-256
//! tree over its 16 KiB blocks.
//!
//! - Leaves (layer 0) are the SHA-256 of each 16 KiB block; the last block
//!   is hashed at its real length, not padded.
//! - The tree is as wide as the next power of two of the block count;
//!   leaves past the end of the file are all-zero hashes, so an inner node
//!   over nothing but padding is [`pad_hash`] of its height.
//! - The root is the file's `pieces root`. The *piece layer* is the layer
//!   whose nodes each cover one piece (`piece length / 16 KiB` leaves); a
//!   `.torrent` carries it in `piece layers` for files longer than one
//!   piece, and peers send parts of it (and of other layers) in `hashes`
//!   messages ([`crate::wire_v2`]).
//! - A file of at most one piece has no piece layer: its single piece is
//!   checked against the root, whose tree is only as wide as its blocks
//!   need (so *not* the piece-layer hash of a zero-padded piece).
//!
//! Layers are numbered from the leaves up (layer 0 = blocks), as in the
//! `base layer` field of hash requests.

use sha2::{Digest, Sha256};

/// Leaf size.
pub const BLOCK_SIZE: usize = 16 * 1024;
/// Tallest tree handled: 2^48 leaves of 16 KiB is 4 EiB, far past the
/// 1 PiB torrent limit; anything taller in a message is hostile.
pub const MAX_TREE_HEIGHT: u32 = 48;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MerkleError {
    #[error(
        "piece layer has {got} hashes, but a {file_length}-byte file in {piece_length}-byte pieces needs {expected}"
    )]
    LayerLength {
        got: usize,
        expected: u64,
        file_length: u64,
        piece_length: u32,
    },
    #[error("piece layer does not hash to the file's pieces root")]
    LayerRootMismatch,
    #[error("{0} hashes cannot form a subtree: the count must be a power of two")]
    NotPowerOfTwo(usize),
    #[error("hashes at layer {base} index {index} do not start a subtree of {count}")]
    Misaligned { base: u32, index: u32, count: usize },
    #[error("hash proof climbs past the top of a tree of height {height}")]
    ProofTooTall { height: u32 },
    #[error("hash proof does not reach the file's pieces root")]
    ProofRootMismatch,
}

/// SHA-256 of one block (at most [`BLOCK_SIZE`] bytes).
pub fn block_hash(block: &[u8]) -> [u8; 32] {
    Sha256::digest(block).into()
}

/// One leaf hash per 16 KiB block of `data`; none for empty data.
pub fn block_hashes(data: &[u8]) -> Vec<[u8; 32]> {
    data.chunks(BLOCK_SIZE).map(block_hash).collect()
}

/// The parent of two nodes.
pub fn hash_pair(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// Root of a subtree of height `height` whose leaves are all padding:
/// zeros at height 0, then hashes of pairs of the one below.
pub fn pad_hash(height: u32) -> [u8; 32] {
    let mut h = [0u8; 32];
    for _ in 0..height.min(MAX_TREE_HEIGHT) {
        h = hash_pair(&h, &h);
    }
    h
}

/// Root over `nodes`, which sit at `height` above the leaves, after padding
/// them with [`pad_hash`]`(height)` to the next power of two of
/// `max(nodes.len(), width)`.
pub fn root(nodes: &[[u8; 32]], height: u32, width: usize) -> [u8; 32] {
    let width = width.max(nodes.len()).max(1).next_power_of_two();
    let mut layer: Vec<[u8; 32]> = nodes.to_vec();
    let mut pad = pad_hash(height);
    let mut w = width;
    while w > 1 {
        if layer.len() % 2 == 1 {
            layer.push(pad);
        }
        layer = layer.chunks(2).map(|p| hash_pair(&p[0], &p[1])).collect();
        pad = hash_pair(&pad, &pad);
        w /= 2;
    }
    layer.first().copied().unwrap_or(pad)
}

/// Leaves per piece: `piece_length` is a power of two of at least 16 KiB
/// in a valid v2 torrent.
pub fn blocks_per_piece(piece_length: u32) -> u32 {
    (piece_length as usize / BLOCK_SIZE).max(1) as u32
}

/// Width of a file's tree: the next power of two of its block count.
pub fn num_leaves(file_length: u64) -> u64 {
    file_length
        .div_ceil(BLOCK_SIZE as u64)
        .max(1)
        .next_power_of_two()
}

/// The `pieces root` of a file held in memory (for tests and torrent
/// creation). An empty file has no root; this returns zeros for it.
pub fn file_root(data: &[u8]) -> [u8; 32] {
    let leaves = block_hashes(data);
    root(&leaves, 0, leaves.len())
}

/// The piece-layer hash of one piece of a file longer than one piece:
/// the root over `piece_length / 16 KiB` leaves, zero-padded past the
/// data (only a file's last piece is short).
pub fn piece_hash(piece: &[u8], piece_length: u32) -> [u8; 32] {
    root(
        &block_hashes(piece),
        0,
        blocks_per_piece(piece_length) as usize,
    )
}

/// The piece layer of a file held in memory. Empty for a file of at most
/// one piece, which has none (BEP 52 leaves it out of `piece layers`).
pub fn piece_layer(data: &[u8], piece_length: u32) -> Vec<[u8; 32]> {
    if data.len() as u64 <= u64::from(piece_length) {
        return Vec::new();
    }
    data.chunks(piece_length as usize)
        .map(|p| piece_hash(p, piece_length))
        .collect()
}

/// Root over a file's piece layer.
pub fn root_from_piece_layer(layer: &[[u8; 32]], piece_length: u32) -> [u8; 32] {
    root(
        layer,
        blocks_per_piece(piece_length).trailing_zeros(),
        layer.len(),
    )
}

/// Checks a file's piece layer (from a `.torrent`'s `piece layers` or
/// assembled from `hashes` messages): one hash per piece, hashing up to
/// `pieces_root`.
pub fn verify_piece_layer(
    layer: &[[u8; 32]],
    file_length: u64,
    piece_length: u32,
    pieces_root: &[u8; 32],
) -> Result<(), MerkleError> {
    let expected = file_length.div_ceil(u64::from(piece_length));
    if layer.len() as u64 != expected {
        return Err(MerkleError::LayerLength {
            got: layer.len(),
            expected,
            file_length,
            piece_length,
        });
    }
    if root_from_piece_layer(layer, piece_length) != *pieces_root {
        return Err(MerkleError::LayerRootMismatch);
    }
    Ok(())
}

/// A node of a tree: its layer (0 = leaves), position in that layer, hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    pub layer: u32,
    pub index: u64,
    pub hash: [u8; 32],
}

/// Combines the base-layer hashes of a `hashes` message into their subtree
/// root, then climbs one layer per uncle hash (uncles ordered bottom-up, as
/// on the wire). The engine compares the result with a node it already
/// trusts: the `pieces root` when `layer` is the tree's top, otherwise an
/// inner node verified earlier.
pub fn climb(
    base_layer: u32,
    index: u32,
    hashes: &[[u8; 32]],
    uncles: &[[u8; 32]],
) -> Result<Node, MerkleError> {
    let count = hashes.len();
    if count == 0 || !count.is_power_of_two() {
        return Err(MerkleError::NotPowerOfTwo(count));
    }
    if !(index as usize).is_multiple_of(count) {
        return Err(MerkleError::Misaligned {
            base: base_layer,
            index,
            count,
        });
    }
    let k = count.trailing_zeros();
    let top = u64::from(base_layer) + u64::from(k) + uncles.len() as u64;
    if top > u64::from(MAX_TREE_HEIGHT) {
        return Err(MerkleError::ProofTooTall {
            height: MAX_TREE_HEIGHT,
        });
    }
    let mut hash = root(hashes, base_layer, count);
    let mut pos = u64::from(index) >> k;
    for uncle in uncles {
        hash = if pos.is_multiple_of(2) {
            hash_pair(&hash, uncle)
        } else {
            hash_pair(uncle, &hash)
        };
        pos /= 2;
    }
    Ok(Node {
        layer: top as u32,
        index: pos,
        hash,
    })
}

/// [`climb`] all the way: the proof must end exactly at the root of a file
/// of `file_length` bytes and match `pieces_root`.
pub fn verify_proof(
    pieces_root: &[u8; 32],
    file_length: u64,
    base_layer: u32,
    index: u32,
    hashes: &[[u8; 32]],
    uncles: &[[u8; 32]],
) -> Result<(), MerkleError> {
    let height = num_leaves(file_length).trailing_zeros();
    let node = climb(base_layer, index, hashes, uncles)?;
    if node.layer > height {
        return Err(MerkleError::ProofTooTall { height });
    }
    if node.layer != height || node.index != 0 || node.hash != *pieces_root {
        return Err(MerkleError::ProofRootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect()
    }

    #[test]
    fn small_trees_by_hand() {
        let a = data(BLOCK_SIZE, 1);
        let b = data(100, 2);
        let (ha, hb) = (block_hash(&a), block_hash(&b));
        // One block: the root is its hash.
        assert_eq!(file_root(&a), ha);
        // Two blocks, the last short and hashed as is.
        let mut two = a.clone();
        two.extend_from_slice(&b);
        assert_eq!(file_root(&two), hash_pair(&ha, &hb));
        // Three blocks: padded to four with a zero leaf.
        let mut three = two.clone();
        three.extend_from_slice(&a);
        three.truncate(2 * BLOCK_SIZE + 10);
        let hc = block_hash(&three[2 * BLOCK_SIZE..]);
        let hb_full = block_hash(&three[BLOCK_SIZE..2 * BLOCK_SIZE]);
        assert_eq!(
            file_root(&three),
            hash_pair(&hash_pair(&ha, &hb_full), &hash_pair(&hc, &[0; 32]))
        );
        assert_eq!(pad_hash(0), [0; 32]);
        assert_eq!(pad_hash(2), hash_pair(&pad_hash(1), &pad_hash(1)));
    }

    #[test]
    fn single_piece_files_use_their_own_width() {
        // 10 000 bytes in 64 KiB pieces: one block, root = its hash, not
        // the piece hash over four leaves.
        let d = data(10_000, 3);
        assert_eq!(file_root(&d), block_hash(&d));
        assert_ne!(file_root(&d), piece_hash(&d, 65536));
        assert!(piece_layer(&d, 65536).is_empty());
    }

    #[test]
    fn piece_layer_errors() {
        let d = data(200_000, 4);
        let layer = piece_layer(&d, 65536);
        assert_eq!(layer.len(), 4);
        let r = file_root(&d);
        verify_piece_layer(&layer, 200_000, 65536, &r).unwrap();
        assert_eq!(
            verify_piece_layer(&layer[..3], 200_000, 65536, &r)
                .unwrap_err()
                .to_string(),
            "piece layer has 3 hashes, but a 200000-byte file in 65536-byte pieces needs 4"
        );
        let mut bad = layer.clone();
        bad[1][0] ^= 1;
        assert_eq!(
            verify_piece_layer(&bad, 200_000, 65536, &r),
            Err(MerkleError::LayerRootMismatch)
        );
    }

    /// Every layer of a file's tree, leaves first, padded.
    fn layers(d: &[u8]) -> Vec<Vec<[u8; 32]>> {
        let width = num_leaves(d.len() as u64) as usize;
        let mut l = block_hashes(d);
        l.resize(width, [0; 32]);
        let mut out = vec![l];
        while out.last().unwrap().len() > 1 {
            let next = out
                .last()
                .unwrap()
                .chunks(2)
                .map(|p| hash_pair(&p[0], &p[1]))
                .collect();
            out.push(next);
        }
        out
    }

    #[test]
    fn proofs_climb_to_the_root() {
        let d = data(37 * BLOCK_SIZE + 5, 9); // 38 blocks, 64 leaves
        let t = layers(&d);
        let r = file_root(&d);
        assert_eq!(t.last().unwrap()[0], r);
        // Four leaves at index 8, with uncles for layers 2..5.
        let base = &t[0][8..12];
        let uncles: Vec<[u8; 32]> = (2..6)
            .map(|layer| {
                let pos = 8usize >> layer;
                t[layer][pos ^ 1]
            })
            .collect();
        verify_proof(&r, d.len() as u64, 0, 8, base, &uncles).unwrap();
        // One uncle short: a partial proof ends below the root.
        let n = climb(0, 8, base, &uncles[..3]).unwrap();
        assert_eq!((n.layer, n.index, n.hash), (5, 0, t[5][0]));
        assert_eq!(
            verify_proof(&r, d.len() as u64, 0, 8, base, &uncles[..3]),
            Err(MerkleError::ProofRootMismatch)
        );
        let mut wrong = uncles.clone();
        wrong[0][3] ^= 1;
        assert_eq!(
            verify_proof(&r, d.len() as u64, 0, 8, base, &wrong),
            Err(MerkleError::ProofRootMismatch)
        );
        assert!(matches!(
            climb(0, 6, base, &[]),
            Err(MerkleError::Misaligned { .. })
        ));
        assert_eq!(
            climb(0, 0, &t[0][..3], &[]),
            Err(MerkleError::NotPowerOfTwo(3))
        );
        assert!(matches!(
            climb(40, 0, base, &[[0; 32]; 10]),
            Err(MerkleError::ProofTooTall { .. })
        ));
        let mut extra = uncles.clone();
        extra.push([0; 32]);
        assert_eq!(
            verify_proof(&r, d.len() as u64, 0, 8, base, &extra),
            Err(MerkleError::ProofTooTall { height: 6 })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn piece_layer_always_hashes_to_the_root(
            len in 1usize..600_000,
            shift in 0u32..4,
            seed in 0usize..251,
        ) {
            let piece_length = (BLOCK_SIZE as u32) << shift;
            let d = data(len, seed);
            let r = file_root(&d);
            prop_assert_eq!(r, layers(&d).last().unwrap()[0]);
            let layer = piece_layer(&d, piece_length);
            if len as u64 > u64::from(piece_length) {
                verify_piece_layer(&layer, len as u64, piece_length, &r).unwrap();
            } else {
                prop_assert!(layer.is_empty());
            }
        }

        #[test]
        fn climb_never_panics(
            base in 0u32..64,
            index in any::<u32>(),
            n in 0usize..40,
            u in 0usize..70,
        ) {
            let _ = climb(base, index, &vec![[1; 32]; n], &vec![[2; 32]; u]);
        }
    }
}
