//! The picker's set of pieces that may be started, indexed for fast picks.
//!
//! Pieces with a streaming deadline sit in an ordered set by deadline.
//! The rest sit in one bitset per (priority class, availability), so that
//! finding the rarest piece a given peer has is a word-wise AND of the
//! peer's bitfield with the rarest non-empty buckets — a few microseconds
//! at 100,000 pieces whatever the peer has — instead of a walk over every
//! rarer piece it lacks. Moving a piece between buckets (a HAVE) is O(log
//! levels).

use crate::picker::PeerPieces;
use bt_proto::Bitfield;
use std::collections::{BTreeMap, BTreeSet};

/// Where a candidate is filed: a deadline (class 0), or a priority class
/// (1 = highest) with the piece's availability.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Slot {
    Deadline(u32),
    Normal { class: u8, availability: u32 },
}

#[derive(Debug)]
pub(crate) struct Candidates {
    num_pieces: u32,
    deadline: BTreeSet<(u32, u32)>,
    buckets: BTreeMap<(u8, u32), Bitfield>,
    len: usize,
}

impl Candidates {
    pub fn new(num_pieces: u32) -> Self {
        Candidates {
            num_pieces,
            deadline: BTreeSet::new(),
            buckets: BTreeMap::new(),
            len: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn insert(&mut self, piece: u32, slot: Slot) {
        let added = match slot {
            Slot::Deadline(d) => self.deadline.insert((d, piece)),
            Slot::Normal {
                class,
                availability,
            } => self
                .buckets
                .entry((class, availability))
                .or_insert_with(|| Bitfield::new(self.num_pieces))
                .set(piece),
        };
        if added {
            self.len += 1;
        }
    }

    pub fn remove(&mut self, piece: u32, slot: Slot) -> bool {
        let removed = match slot {
            Slot::Deadline(d) => self.deadline.remove(&(d, piece)),
            Slot::Normal {
                class,
                availability,
            } => {
                let key = (class, availability);
                let Some(bits) = self.buckets.get_mut(&key) else {
                    return false;
                };
                let r = bits.clear(piece);
                if bits.none() {
                    // Empty buckets would slow every search down.
                    self.buckets.remove(&key);
                }
                r
            }
        };
        if removed {
            self.len -= 1;
        }
        removed
    }

    #[cfg(test)]
    pub fn contains(&self, piece: u32, slot: Slot) -> bool {
        match slot {
            Slot::Deadline(d) => self.deadline.contains(&(d, piece)),
            Slot::Normal {
                class,
                availability,
            } => self
                .buckets
                .get(&(class, availability))
                .is_some_and(|b| b.get(piece)),
        }
    }

    /// Deadline candidates, earliest first.
    pub fn by_deadline(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.deadline.iter().copied()
    }

    /// The best candidate without a deadline that the peer has (and that
    /// `allowed` lists, if given): lowest class, then rarest; within a
    /// bucket, the first at or after `start`, wrapping, so that peers do not
    /// all start the same piece.
    pub fn best(&self, pieces: PeerPieces<'_>, allowed: Option<&[u32]>, start: u32) -> Option<u32> {
        let start = start % self.num_pieces.max(1);
        for bits in self.buckets.values() {
            let found = match allowed {
                Some(list) => list
                    .iter()
                    .copied()
                    .filter(|&p| bits.get(p) && has(pieces, p))
                    .min_by_key(|&p| distance(start, p, self.num_pieces)),
                None => next_common(bits, pieces, start),
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }
}

impl Candidates {
    /// Like [`Candidates::best`] but ignoring rarity and class: the
    /// candidate the peer has that comes first at or after `start`.
    pub fn nearest(
        &self,
        pieces: PeerPieces<'_>,
        allowed: Option<&[u32]>,
        start: u32,
    ) -> Option<u32> {
        let start = start % self.num_pieces.max(1);
        let dist = |p: u32| distance(start, p, self.num_pieces);
        self.buckets
            .values()
            .filter_map(|bits| match allowed {
                Some(list) => list
                    .iter()
                    .copied()
                    .filter(|&p| bits.get(p) && has(pieces, p))
                    .min_by_key(|&p| dist(p)),
                None => next_common(bits, pieces, start),
            })
            .min_by_key(|&p| dist(p))
    }
}

/// How far `p` is after `start`, going forward and wrapping at `n`.
fn distance(start: u32, p: u32, n: u32) -> u64 {
    (u64::from(p) + u64::from(n) - u64::from(start)) % u64::from(n.max(1))
}

fn has(pieces: PeerPieces<'_>, p: u32) -> bool {
    match pieces {
        PeerPieces::All => true,
        PeerPieces::Some(b) => b.get(p),
    }
}

/// First index at or after `start` (wrapping) set in `a` and in `pieces`.
fn next_common(a: &Bitfield, pieces: PeerPieces<'_>, start: u32) -> Option<u32> {
    let n = a.len();
    if n == 0 {
        return None;
    }
    let start = start % n;
    let x = a.as_bytes();
    let y = match pieces {
        PeerPieces::All => None,
        PeerPieces::Some(b) => Some(b.as_bytes()),
    };
    let word = |i: usize| -> u64 {
        let mut w = [0u8; 8];
        let end = (i * 8 + 8).min(x.len());
        w[..end - i * 8].copy_from_slice(&x[i * 8..end]);
        let mut v = u64::from_be_bytes(w);
        if let Some(y) = y {
            let mut w = [0u8; 8];
            w[..end - i * 8].copy_from_slice(&y[i * 8..end]);
            v &= u64::from_be_bytes(w);
        }
        v
    };
    let words = x.len().div_ceil(8);
    let first = (start / 64) as usize;
    // The start word, masked to bits at or after `start`.
    let head = word(first) & (u64::MAX >> (start % 64));
    if head != 0 {
        return Some(first as u32 * 64 + head.leading_zeros());
    }
    for k in 1..=words {
        let i = (first + k) % words;
        let mut w = word(i);
        if i == first {
            // Wrapped around: only the bits before `start` are left.
            w &= !(u64::MAX >> (start % 64));
        }
        if w != 0 {
            let p = i as u32 * 64 + w.leading_zeros();
            if p < n {
                return Some(p);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `best` finds exactly what a linear scan in (class, availability,
        /// wrapped index) order finds.
        #[test]
        fn best_matches_a_linear_scan(
            n in 1u32..300,
            entries in proptest::collection::vec((0u32..300, 1u8..3, 0u32..4), 0..120),
            peer in proptest::collection::vec(any::<bool>(), 300),
            start in any::<u32>(),
        ) {
            let mut c = Candidates::new(n);
            let mut model: BTreeMap<u32, (u8, u32)> = BTreeMap::new();
            for (p, class, availability) in entries {
                if p >= n || model.contains_key(&p) { continue; }
                c.insert(p, Slot::Normal { class, availability });
                model.insert(p, (class, availability));
            }
            prop_assert_eq!(c.len(), model.len());
            let mut bits = Bitfield::new(n);
            for (i, &h) in peer.iter().enumerate().take(n as usize) {
                if h { bits.set(i as u32); }
            }
            let expect = model
                .iter()
                .filter(|(p, _)| bits.get(**p))
                .min_by_key(|(p, (class, avail))| (*class, *avail, distance(start % n, **p, n)))
                .map(|(p, _)| *p);
            prop_assert_eq!(c.best(PeerPieces::Some(&bits), None, start), expect);
            let expect_all = model
                .iter()
                .min_by_key(|(p, (class, avail))| (*class, *avail, distance(start % n, **p, n)))
                .map(|(p, _)| *p);
            prop_assert_eq!(c.best(PeerPieces::All, None, start), expect_all);
        }
    }
}
