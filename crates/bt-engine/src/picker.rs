//! Piece and block selection.
//!
//! The picker owns the download plan of one torrent: which pieces we have,
//! how many peers have each piece, which blocks are requested from whom, and
//! which block a peer should be asked for next. It is plain data with no
//! clock and no I/O, so every rule here is unit- and property-tested.
//!
//! Order of preference for a peer:
//! 1. free blocks of pieces already in progress (finish what we started, so
//!    piece buffers are released early and hashes are checked sooner);
//! 2. a new piece: random among the peer's pieces for the first few (so we
//!    quickly have something to trade), then rarest-first, ties broken by a
//!    fixed per-torrent pseudo-random order so peers do not all pick alike;
//! 3. endgame: when nothing is free, blocks already requested from someone
//!    else, with a bounded number of holders per block.
//!
//! Candidates (wanted, missing, not started pieces) live in an ordered set
//! keyed by (class, availability or deadline, tie-break), so a HAVE costs
//! O(log n) and picking for a seed costs O(log n).
//!
//! Streaming adds deadlines (milliseconds on the caller's clock). Pieces with
//! a deadline sort before everything else, earliest first. Those whose
//! deadline falls inside the critical horizon are *time-critical*: before
//! anything else a peer gets at most `critical_share` free blocks of them
//! (so one piece is spread over several peers and arrives sooner), and a
//! block overdue by `dup_after_ms` (each block is expected at its holder's
//! estimated delivery time) may be asked of a second
//! peer. Time-critical pieces may start beyond the cap on pieces in progress.

use crate::candidates::{Candidates, Slot};
use bt_proto::Bitfield;
use bt_proto::wire::{BLOCK_SIZE, BlockRequest};
use std::collections::{BTreeSet, HashMap};

/// Identifies a connection inside one torrent.
pub type PeerKey = u32;

/// Blocks may be requested from at most this many peers at once (endgame).
const MAX_HOLDERS: usize = 3;

/// Pieces picked at random before switching to rarest-first.
const RANDOM_FIRST_PIECES: u32 = 4;

pub const PRIORITY_SKIP: u8 = 0;
pub const PRIORITY_NORMAL: u8 = 4;
pub const PRIORITY_MAX: u8 = 7;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Block {
    Free,
    Requested(PeerKey),
    Received,
}

struct Partial {
    blocks: Box<[Block]>,
    /// Who delivered each block; used to find the liar when the hash fails.
    from: Box<[PeerKey]>,
    /// Extra holders of requested blocks (endgame duplicates).
    extra: Vec<(u32, PeerKey)>,
    /// When each requested block is expected (caller's milliseconds): the
    /// request time plus the holder's expected delivery time.
    due: Box<[u32]>,
    free: u32,
    received: u32,
    /// Lowest index that may be free; blocks are handed out in ascending
    /// order so the scan rarely starts from zero.
    free_hint: u32,
}

impl Partial {
    fn holders(&self, block: u32) -> impl Iterator<Item = PeerKey> + '_ {
        let first = match self.blocks[block as usize] {
            Block::Requested(p) => Some(p),
            _ => None,
        };
        first.into_iter().chain(
            self.extra
                .iter()
                .filter(move |(b, _)| *b == block)
                .map(|(_, p)| *p),
        )
    }
}

/// What a peer offers: every piece (a seed) or the pieces in a bitfield.
#[derive(Clone, Copy)]
pub enum PeerPieces<'a> {
    All,
    Some(&'a Bitfield),
}

impl PeerPieces<'_> {
    fn has(&self, piece: u32) -> bool {
        match self {
            PeerPieces::All => true,
            PeerPieces::Some(b) => b.get(piece),
        }
    }
}

/// How to pick for one peer.
#[derive(Clone, Copy, Debug)]
pub struct PickOptions<'a> {
    /// Only these pieces (the allowed-fast set while the peer chokes us).
    pub allowed: Option<&'a [u32]>,
    /// Requests to add at most.
    pub max: usize,
    /// Requests for pieces without a deadline to add at most.
    pub max_bulk: usize,
    pub now_ms: u32,
    /// Deadlines before this are time-critical.
    pub critical_until_ms: u32,
    /// Blocks of time-critical pieces this peer may take in this pick, in
    /// deadline order, beyond `max` if need be.
    pub critical_share: usize,
    /// A time-critical block this much later than expected may get a
    /// second holder.
    pub dup_after_ms: u32,
    /// When a block asked of this peer now is expected, from now.
    pub eta_ms: u32,
    /// Blocks of the most urgent piece, already asked of another peer, to
    /// ask of this one too right away.
    pub hedge: usize,
}

impl PickOptions<'_> {
    pub fn simple(max: usize) -> PickOptions<'static> {
        PickOptions {
            allowed: None,
            max,
            max_bulk: max,
            now_ms: 0,
            critical_until_ms: 0,
            critical_share: usize::MAX,
            dup_after_ms: u32::MAX,
            eta_ms: 0,
            hedge: 0,
        }
    }
}

/// Extra pieces in progress allowed for time-critical pieces beyond the cap.
const CRITICAL_PARTIALS: usize = 32;

/// Result of a block arriving.
#[derive(Debug, PartialEq, Eq)]
pub enum BlockArrival {
    /// Store the data. `complete` means every block of the piece is now in
    /// and it should be hashed. `cancel` lists other peers that hold a
    /// request for the same block and should get a CANCEL.
    New {
        complete: bool,
        cancel: Vec<PeerKey>,
    },
    /// We already have this block (duplicate, late after cancel, or a piece
    /// we finished): the bytes are waste.
    NotNeeded,
    /// Offset or length do not describe a block of this torrent.
    Invalid,
}

pub struct Picker {
    num_pieces: u32,
    piece_length: u32,
    total_length: u64,
    have: Bitfield,
    priority: Vec<u8>,
    availability: Vec<u16>,
    seeds: u32,
    candidates: Candidates,
    /// Reused by `pick` for the pieces in progress, and in endgame.
    scratch: Vec<((u8, u32), u32)>,
    endgame_scratch: Vec<u32>,
    /// Spreads the starting point of piece searches (see `next_start`).
    picks: std::cell::Cell<u32>,
    partials: HashMap<u32, Partial>,
    /// Pieces whose blocks are all in, waiting for their hash check.
    verifying: BTreeSet<u32>,
    max_partials: usize,
    seed: u64,
    wanted_missing: u32,
    /// Deadlines of pieces still missing, both ways.
    deadline_of: HashMap<u32, u32>,
    deadlines: BTreeSet<(u32, u32)>,
}

impl Picker {
    pub fn new(num_pieces: u32, piece_length: u32, total_length: u64, seed: u64) -> Self {
        let mut p = Picker {
            num_pieces,
            piece_length,
            total_length,
            have: Bitfield::new(num_pieces),
            priority: vec![PRIORITY_NORMAL; num_pieces as usize],
            availability: vec![0; num_pieces as usize],
            seeds: 0,
            candidates: Candidates::new(num_pieces),
            picks: std::cell::Cell::new(0),
            scratch: Vec::new(),
            endgame_scratch: Vec::new(),
            partials: HashMap::new(),
            verifying: BTreeSet::new(),
            max_partials: usize::MAX,
            seed,
            wanted_missing: num_pieces,
            deadline_of: HashMap::new(),
            deadlines: BTreeSet::new(),
        };
        for i in 0..num_pieces {
            p.candidates.insert(i, p.slot(i));
        }
        p
    }

    /// Bounds the pieces in progress (each holds a piece-sized buffer).
    pub fn set_max_partials(&mut self, n: usize) {
        self.max_partials = n.max(1);
    }

    pub fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn has_piece(&self, piece: u32) -> bool {
        self.have.get(piece)
    }

    pub fn piece_size(&self, piece: u32) -> u32 {
        if piece + 1 == self.num_pieces {
            let rem = self.total_length - u64::from(piece) * u64::from(self.piece_length);
            rem as u32
        } else {
            self.piece_length
        }
    }

    pub fn blocks_in(&self, piece: u32) -> u32 {
        self.piece_size(piece).div_ceil(BLOCK_SIZE)
    }

    fn block_len(&self, piece: u32, block: u32) -> u32 {
        let size = self.piece_size(piece);
        (size - block * BLOCK_SIZE).min(BLOCK_SIZE)
    }

    /// Wanted pieces we do not have yet (including those in progress).
    pub fn wanted_missing(&self) -> u32 {
        self.wanted_missing
    }

    pub fn is_complete(&self) -> bool {
        self.wanted_missing == 0
    }

    pub fn in_progress(&self) -> usize {
        self.partials.len()
    }

    pub fn availability(&self, piece: u32) -> u32 {
        u32::from(self.availability[piece as usize]) + self.seeds
    }

    /// Distributed copies: how many full copies the connected peers hold.
    pub fn distributed_copies(&self) -> f64 {
        if self.num_pieces == 0 {
            return 0.0;
        }
        let min = self.availability.iter().copied().min().unwrap_or(0);
        let above = self.availability.iter().filter(|&&a| a > min).count();
        f64::from(self.seeds) + f64::from(min) + above as f64 / f64::from(self.num_pieces)
    }

    fn tiebreak(&self, piece: u32) -> u32 {
        // splitmix64: a cheap fixed permutation per torrent.
        let mut z = self.seed ^ u64::from(piece).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as u32
    }

    /// Where a candidate is filed: by deadline, else by priority class and
    /// availability (rarest first within a class).
    fn slot(&self, piece: u32) -> Slot {
        match self.deadline_of.get(&piece) {
            Some(&d) => Slot::Deadline(d),
            None => Slot::Normal {
                class: 1 + PRIORITY_MAX - self.priority[piece as usize],
                availability: u32::from(self.availability[piece as usize]),
            },
        }
    }

    /// A different pseudo-random starting point for every search, so peers
    /// do not all start the same piece.
    fn next_start(&self) -> u32 {
        let n = self.picks.get().wrapping_add(1);
        self.picks.set(n);
        self.tiebreak(n)
    }

    fn wanted(&self, piece: u32) -> bool {
        self.priority[piece as usize] != PRIORITY_SKIP || self.deadline_of.contains_key(&piece)
    }

    fn is_candidate(&self, piece: u32) -> bool {
        !self.have.get(piece)
            && self.wanted(piece)
            && !self.partials.contains_key(&piece)
            && !self.verifying.contains(&piece)
    }

    pub fn deadline(&self, piece: u32) -> Option<u32> {
        self.deadline_of.get(&piece).copied()
    }

    /// Gives a missing piece a deadline (or moves it). Pieces we have are
    /// ignored.
    pub fn set_deadline(&mut self, piece: u32, deadline_ms: u32) {
        if piece >= self.num_pieces || self.have.get(piece) {
            return;
        }
        if self.deadline_of.get(&piece) == Some(&deadline_ms) {
            return;
        }
        let cand = self.is_candidate(piece);
        if cand {
            self.candidates.remove(piece, self.slot(piece));
        }
        if let Some(old) = self.deadline_of.insert(piece, deadline_ms) {
            self.deadlines.remove(&(old, piece));
        } else if self.priority[piece as usize] == PRIORITY_SKIP {
            self.wanted_missing += 1;
        }
        self.deadlines.insert((deadline_ms, piece));
        if self.is_candidate(piece) {
            self.candidates.insert(piece, self.slot(piece));
        }
    }

    /// Removes a piece's deadline; it goes back to its normal priority (not
    /// below it, unlike libtorrent, so pieces behind a seek keep their place).
    pub fn clear_deadline(&mut self, piece: u32) {
        let Some(&d) = self.deadline_of.get(&piece) else {
            return;
        };
        let cand = self.is_candidate(piece);
        if cand {
            self.candidates.remove(piece, self.slot(piece));
        }
        self.deadline_of.remove(&piece);
        self.deadlines.remove(&(d, piece));
        if self.priority[piece as usize] == PRIORITY_SKIP && !self.have.get(piece) {
            self.wanted_missing -= 1;
        }
        if self.is_candidate(piece) {
            self.candidates.insert(piece, self.slot(piece));
        }
    }

    /// Pieces with a deadline, earliest first.
    pub fn deadline_pieces(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.deadlines.iter().map(|&(d, p)| (p, d))
    }

    /// Fraction of a piece's blocks already received (0 when not started).
    pub fn received_fraction(&self, piece: u32) -> f64 {
        match self.partials.get(&piece) {
            Some(p) => f64::from(p.received) / p.blocks.len() as f64,
            None => 0.0,
        }
    }

    /// Marks a piece as verified on disk (resume data or a hash check).
    pub fn set_have(&mut self, piece: u32) {
        if piece >= self.num_pieces || self.have.get(piece) {
            return;
        }
        if self.is_candidate(piece) {
            self.candidates.remove(piece, self.slot(piece));
        }
        self.partials.remove(&piece);
        self.verifying.remove(&piece);
        if self.wanted(piece) {
            self.wanted_missing -= 1;
        }
        if let Some(d) = self.deadline_of.remove(&piece) {
            self.deadlines.remove(&(d, piece));
        }
        self.have.set(piece);
    }

    pub fn priority(&self, piece: u32) -> u8 {
        self.priority[piece as usize]
    }

    pub fn set_priority(&mut self, piece: u32, prio: u8) {
        let prio = prio.min(PRIORITY_MAX);
        let old = self.priority[piece as usize];
        if old == prio {
            return;
        }
        let was = self.is_candidate(piece);
        if was {
            self.candidates.remove(piece, self.slot(piece));
        }
        if !self.have.get(piece) && !self.deadline_of.contains_key(&piece) {
            match (old == PRIORITY_SKIP, prio == PRIORITY_SKIP) {
                (true, false) => self.wanted_missing += 1,
                (false, true) => self.wanted_missing -= 1,
                _ => {}
            }
        }
        self.priority[piece as usize] = prio;
        if self.is_candidate(piece) {
            self.candidates.insert(piece, self.slot(piece));
        }
    }

    fn adjust_availability(&mut self, piece: u32, up: bool) {
        let cand = self.is_candidate(piece);
        if cand {
            self.candidates.remove(piece, self.slot(piece));
        }
        let a = &mut self.availability[piece as usize];
        *a = if up {
            a.saturating_add(1)
        } else {
            a.saturating_sub(1)
        };
        if cand {
            self.candidates.insert(piece, self.slot(piece));
        }
    }

    pub fn peer_has(&mut self, piece: u32) {
        if piece < self.num_pieces {
            self.adjust_availability(piece, true);
        }
    }

    pub fn peer_bitfield(&mut self, bits: &Bitfield) {
        for p in bits.iter_ones() {
            self.adjust_availability(p, true);
        }
    }

    pub fn peer_seed(&mut self) {
        self.seeds += 1;
    }

    /// Undoes the availability a departing peer contributed.
    pub fn peer_gone(&mut self, pieces: PeerPieces<'_>) {
        match pieces {
            PeerPieces::All => self.seeds = self.seeds.saturating_sub(1),
            PeerPieces::Some(bits) => {
                for p in bits.iter_ones() {
                    self.adjust_availability(p, false);
                }
            }
        }
    }

    /// Whether the peer has anything we want.
    pub fn is_interesting(&self, pieces: PeerPieces<'_>) -> bool {
        if self.wanted_missing == 0 {
            return false;
        }
        match pieces {
            PeerPieces::All => true,
            PeerPieces::Some(bits) => {
                let theirs = bits.as_bytes();
                let ours = self.have.as_bytes();
                for (i, (&t, &o)) in theirs.iter().zip(ours).enumerate() {
                    let mut m = t & !o;
                    while m != 0 {
                        let bit = m.leading_zeros();
                        let piece = i as u32 * 8 + bit;
                        if self.wanted(piece) {
                            return true;
                        }
                        m &= !(0x80 >> bit);
                    }
                }
                false
            }
        }
    }

    /// Appends up to `opts.max` block requests for `peer` to `out`.
    pub fn pick(
        &mut self,
        peer: PeerKey,
        pieces: PeerPieces<'_>,
        opts: &PickOptions<'_>,
        out: &mut Vec<BlockRequest>,
    ) {
        let start = out.len();
        let allowed = opts.allowed;
        let usable = |p: u32| pieces.has(p) && allowed.is_none_or(|a| a.contains(&p));
        let room = |out: &Vec<BlockRequest>| opts.max.saturating_sub(out.len() - start);
        let mut bulk = 0usize;

        // 1. Time-critical pieces, earliest deadline first, spread over peers.
        let critical: Vec<u32> = self
            .deadlines
            .range(..(opts.critical_until_ms, 0))
            .map(|&(_, p)| p)
            .filter(|&p| usable(p))
            .collect();
        // A budget for the whole pass, on top of the pipeline: the blocks a
        // reader waits for may go beyond what the pipe would allow for bulk.
        let mut budget = opts.critical_share;
        for (nth, piece) in critical.into_iter().enumerate() {
            if budget == 0 {
                break;
            }
            if self.verifying.contains(&piece) {
                continue;
            }
            if !self.partials.contains_key(&piece) {
                if self.partials.len() >= self.max_partials.saturating_add(CRITICAL_PARTIALS) {
                    continue;
                }
                self.candidates.remove(piece, self.slot(piece));
                self.start_piece(piece);
            }
            let taken = self.take_free_blocks(piece, peer, budget, opts.now_ms, opts.eta_ms, out);
            budget -= taken;
            if nth == 0 && opts.hedge > 0 {
                // The piece a reader waits on right now is hedged: blocks
                // already asked of another peer are asked of this one too,
                // and the first copy wins.
                self.duplicate_stale(piece, peer, opts.hedge, None, opts, out);
            } else if budget > 0 {
                let before = out.len();
                self.duplicate_stale(piece, peer, budget, Some(opts.dup_after_ms), opts, out);
                budget -= out.len() - before;
            }
        }

        // 2. The rest, most urgent first: pieces with a deadline (in
        // progress, then new), then bulk pieces (in progress, then new).
        // Time-critical pieces were dealt out above and only there, by
        // budget. Sorted: HashMap order would make runs irreproducible.
        let critical_until = opts.critical_until_ms;
        let is_critical = |p: &u32, deadline_of: &HashMap<u32, u32>| {
            deadline_of.get(p).is_some_and(|&d| d < critical_until)
        };
        // A reused list: the receive path must not allocate per block.
        let mut in_progress = std::mem::take(&mut self.scratch);
        in_progress.clear();
        in_progress.extend(
            self.partials
                .iter()
                .filter(|(p, part)| {
                    part.free > 0 && usable(**p) && !is_critical(p, &self.deadline_of)
                })
                .map(|(p, _)| (self.progress_order(*p), *p)),
        );
        in_progress.sort_unstable();
        for &(_, piece) in in_progress.iter().filter(|(order, _)| order.0 == 0) {
            if room(out) == 0 {
                break;
            }
            self.take_free_blocks(piece, peer, room(out), opts.now_ms, opts.eta_ms, out);
        }
        if room(out) == 0 {
            self.scratch = in_progress;
            return;
        }
        while room(out) > 0 && self.partials.len() < self.max_partials {
            let next = self
                .candidates
                .by_deadline()
                .find(|&(d, p)| d >= critical_until && usable(p))
                .map(|(_, p)| p);
            let Some(piece) = next else {
                break;
            };
            self.candidates.remove(piece, self.slot(piece));
            self.start_piece(piece);
            self.take_free_blocks(piece, peer, room(out), opts.now_ms, opts.eta_ms, out);
        }
        for &(_, piece) in in_progress.iter().filter(|(order, _)| order.0 != 0) {
            let limit = room(out).min(opts.max_bulk - bulk);
            if limit == 0 {
                break;
            }
            bulk += self.take_free_blocks(piece, peer, limit, opts.now_ms, opts.eta_ms, out);
        }
        self.scratch = in_progress;
        while room(out) > 0 && self.partials.len() < self.max_partials {
            let limit = room(out).min(opts.max_bulk - bulk);
            if limit == 0 {
                break;
            }
            let Some(piece) = self.choose_new_piece(pieces, allowed) else {
                break;
            };
            self.candidates.remove(piece, self.slot(piece));
            self.start_piece(piece);
            bulk += self.take_free_blocks(piece, peer, limit, opts.now_ms, opts.eta_ms, out);
        }

        // 4. Endgame: only once no piece is left to start. Time-critical
        // pieces get their duplicates from the staleness rule instead.
        let startable = self.candidates.by_deadline().any(|(_, p)| usable(p))
            || self.candidates.best(pieces, allowed, 0).is_some();
        if out.len() == start && !startable {
            let deadline_of = &self.deadline_of;
            let endgame_usable =
                |p: u32| usable(p) && deadline_of.get(&p).is_none_or(|&d| d >= critical_until);
            let mut pieces = std::mem::take(&mut self.endgame_scratch);
            pieces.clear();
            pieces.extend(self.partials.keys().copied().filter(|p| endgame_usable(*p)));
            pieces.sort_unstable();
            self.pick_endgame(peer, &pieces, opts.max, opts.now_ms, out);
            self.endgame_scratch = pieces;
        }
    }

    /// Sort order of a piece in progress: (0, deadline) or (class, index).
    fn progress_order(&self, piece: u32) -> (u8, u32) {
        match self.deadline_of.get(&piece) {
            Some(&d) => (0, d),
            None => (1 + PRIORITY_MAX - self.priority[piece as usize], piece),
        }
    }

    /// Asks `peer` too for blocks of a time-critical piece that another peer
    /// was asked for too long ago.
    fn duplicate_stale(
        &mut self,
        piece: u32,
        peer: PeerKey,
        max: usize,
        overdue_by: Option<u32>,
        opts: &PickOptions<'_>,
        out: &mut Vec<BlockRequest>,
    ) {
        let (now_ms, eta_ms) = (opts.now_ms, opts.eta_ms);
        let piece_size = self.piece_size(piece);
        let Some(part) = self.partials.get_mut(&piece) else {
            return;
        };
        let mut added = 0;
        for b in 0..part.blocks.len() as u32 {
            if added >= max {
                break;
            }
            let Block::Requested(first) = part.blocks[b as usize] else {
                continue;
            };
            // `None` hedges at once; otherwise only blocks that are late.
            if let Some(grace) = overdue_by
                && now_ms <= part.due[b as usize].saturating_add(grace)
            {
                continue;
            }
            let extra = part.extra.iter().filter(|(eb, _)| *eb == b).count();
            if first == peer || extra > 0 {
                // One duplicate per block at most, never from the same peer.
                continue;
            }
            part.extra.push((b, peer));
            part.due[b as usize] = now_ms.saturating_add(eta_ms);
            let begin = b * BLOCK_SIZE;
            out.push(BlockRequest {
                index: piece,
                begin,
                length: (piece_size - begin).min(BLOCK_SIZE),
            });
            added += 1;
        }
    }

    /// A new piece without a deadline for a peer: random among those it
    /// has for the first few pieces (so we soon have something to trade),
    /// then rarest first.
    fn choose_new_piece(&self, pieces: PeerPieces<'_>, allowed: Option<&[u32]>) -> Option<u32> {
        let start = self.next_start();
        if self.have.count_ones() < RANDOM_FIRST_PIECES {
            return self.candidates.nearest(pieces, allowed, start);
        }
        self.candidates.best(pieces, allowed, start)
    }

    /// The caller has removed `piece` from the candidates.
    fn start_piece(&mut self, piece: u32) {
        let n = self.blocks_in(piece);
        self.partials.insert(
            piece,
            Partial {
                blocks: vec![Block::Free; n as usize].into_boxed_slice(),
                from: vec![PeerKey::MAX; n as usize].into_boxed_slice(),
                extra: Vec::new(),
                due: vec![0; n as usize].into_boxed_slice(),
                free: n,
                received: 0,
                free_hint: 0,
            },
        );
    }

    fn take_free_blocks(
        &mut self,
        piece: u32,
        peer: PeerKey,
        max: usize,
        now_ms: u32,
        eta_ms: u32,
        out: &mut Vec<BlockRequest>,
    ) -> usize {
        let piece_size = self.piece_size(piece);
        let part = self.partials.get_mut(&piece).expect("partial exists");
        let mut taken = 0;
        let mut b = part.free_hint;
        let n = part.blocks.len() as u32;
        while b < n && taken < max && part.free > 0 {
            if part.blocks[b as usize] == Block::Free {
                part.blocks[b as usize] = Block::Requested(peer);
                part.due[b as usize] = now_ms.saturating_add(eta_ms);
                part.free -= 1;
                let begin = b * BLOCK_SIZE;
                out.push(BlockRequest {
                    index: piece,
                    begin,
                    length: (piece_size - begin).min(BLOCK_SIZE),
                });
                taken += 1;
            }
            b += 1;
        }
        // Everything below `b` is now taken or was not free.
        part.free_hint = b;
        taken
    }

    fn pick_endgame(
        &mut self,
        peer: PeerKey,
        pieces: &[u32],
        max: usize,
        now_ms: u32,
        out: &mut Vec<BlockRequest>,
    ) {
        let start = out.len();
        for &piece in pieces {
            let piece_size = self.piece_size(piece);
            let part = self.partials.get_mut(&piece).expect("partial exists");
            for b in 0..part.blocks.len() as u32 {
                if out.len() - start >= max {
                    return;
                }
                let Block::Requested(first) = part.blocks[b as usize] else {
                    continue;
                };
                if first == peer || part.extra.iter().any(|&(eb, ep)| eb == b && ep == peer) {
                    continue;
                }
                let holders = 1 + part.extra.iter().filter(|(eb, _)| *eb == b).count();
                if holders >= MAX_HOLDERS {
                    continue;
                }
                part.extra.push((b, peer));
                part.due[b as usize] = now_ms;
                let begin = b * BLOCK_SIZE;
                out.push(BlockRequest {
                    index: piece,
                    begin,
                    length: (piece_size - begin).min(BLOCK_SIZE),
                });
            }
        }
    }

    fn locate(&self, piece: u32, begin: u32, length: u32) -> Option<u32> {
        if piece >= self.num_pieces || !begin.is_multiple_of(BLOCK_SIZE) {
            return None;
        }
        let block = begin / BLOCK_SIZE;
        if block >= self.blocks_in(piece) || self.block_len(piece, block) != length {
            return None;
        }
        Some(block)
    }

    /// Records a block's arrival from `peer`.
    pub fn block_received(
        &mut self,
        peer: PeerKey,
        piece: u32,
        begin: u32,
        length: u32,
    ) -> BlockArrival {
        let Some(block) = self.locate(piece, begin, length) else {
            return BlockArrival::Invalid;
        };
        let Some(part) = self.partials.get_mut(&piece) else {
            return BlockArrival::NotNeeded;
        };
        let state = part.blocks[block as usize];
        if state == Block::Received {
            return BlockArrival::NotNeeded;
        }
        let cancel: Vec<PeerKey> = part.holders(block).filter(|&h| h != peer).collect();
        if state == Block::Free {
            part.free -= 1;
        }
        part.extra.retain(|(b, _)| *b != block);
        part.blocks[block as usize] = Block::Received;
        part.from[block as usize] = peer;
        part.received += 1;
        let complete = part.received == part.blocks.len() as u32;
        if complete {
            self.verifying.insert(piece);
        }
        BlockArrival::New { complete, cancel }
    }

    /// A request will not be answered (reject, choke, timeout, disconnect):
    /// the block becomes free again unless another peer still holds it.
    pub fn request_dropped(&mut self, peer: PeerKey, piece: u32, begin: u32, length: u32) {
        let Some(block) = self.locate(piece, begin, length) else {
            return;
        };
        let Some(part) = self.partials.get_mut(&piece) else {
            return;
        };
        if let Some(pos) = part
            .extra
            .iter()
            .position(|&(b, p)| b == block && p == peer)
        {
            part.extra.swap_remove(pos);
            return;
        }
        if part.blocks[block as usize] == Block::Requested(peer) {
            if let Some(pos) = part.extra.iter().position(|&(b, _)| b == block) {
                let (_, next) = part.extra.swap_remove(pos);
                part.blocks[block as usize] = Block::Requested(next);
            } else {
                part.blocks[block as usize] = Block::Free;
                part.free += 1;
                part.free_hint = part.free_hint.min(block);
            }
        }
    }

    /// Whether `peer` currently holds a request for this block.
    pub fn is_requested_from(&self, peer: PeerKey, piece: u32, begin: u32) -> bool {
        let Some(part) = self.partials.get(&piece) else {
            return false;
        };
        let block = begin / BLOCK_SIZE;
        block < part.blocks.len() as u32 && part.holders(block).any(|h| h == peer)
    }

    /// The hash check of a complete piece finished.
    ///
    /// On failure the piece starts over and the function returns who sent
    /// each block, so the caller can find and ban the liar.
    pub fn piece_checked(&mut self, piece: u32, ok: bool) -> Vec<PeerKey> {
        if !self.verifying.remove(&piece) {
            return Vec::new();
        }
        if ok {
            let part = self.partials.remove(&piece);
            self.set_have(piece);
            return part.map(|p| p.from.into_vec()).unwrap_or_default();
        }
        let n = self.blocks_in(piece);
        let part = self
            .partials
            .get_mut(&piece)
            .expect("verifying piece is partial");
        let from = std::mem::replace(
            &mut part.from,
            vec![PeerKey::MAX; n as usize].into_boxed_slice(),
        );
        part.blocks.fill(Block::Free);
        part.due.fill(0);
        part.extra.clear();
        part.free = n;
        part.received = 0;
        part.free_hint = 0;
        from.into_vec()
    }

    /// Abandons a piece in progress (e.g. its buffer could not be kept).
    pub fn abandon_piece(&mut self, piece: u32) {
        if self.partials.remove(&piece).is_some() {
            self.verifying.remove(&piece);
            if self.is_candidate(piece) {
                self.candidates.insert(piece, self.slot(piece));
            }
        }
    }

    /// Pieces currently in progress, with blocks received out of total.
    pub fn partial_pieces(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        self.partials
            .iter()
            .map(|(p, part)| (*p, part.received, part.blocks.len() as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KIB: u32 = 1024;

    fn picker(pieces: u32) -> Picker {
        Picker::new(pieces, 64 * KIB, u64::from(pieces) * 64 * 1024 - 1000, 42)
    }

    #[test]
    fn last_piece_and_block_are_short() {
        let p = picker(3);
        assert_eq!(p.piece_size(2), 64 * KIB - 1000);
        assert_eq!(p.blocks_in(2), 4);
        assert_eq!(p.block_len(2, 3), 16 * KIB - 1000);
    }

    #[test]
    fn finishes_started_pieces_before_starting_new_ones() {
        let mut p = picker(10);
        p.peer_seed();
        let mut out = Vec::new();
        p.pick(1, PeerPieces::All, &PickOptions::simple(2), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].index, out[1].index);
        let first = out[0].index;
        out.clear();
        p.pick(2, PeerPieces::All, &PickOptions::simple(2), &mut out);
        assert!(out.iter().all(|r| r.index == first), "{out:?}");
    }

    #[test]
    fn rarest_first_after_random_start() {
        let mut p = picker(8);
        for piece in 0..4 {
            p.set_have(piece);
        }
        let mut common = Bitfield::new(8);
        for i in 4..8 {
            common.set(i);
        }
        p.peer_bitfield(&common);
        p.peer_bitfield(&common);
        p.peer_has(4);
        p.peer_has(6);
        p.peer_has(7);
        // Piece 5 has availability 2, the others 3.
        let mut out = Vec::new();
        p.pick(
            9,
            PeerPieces::Some(&common),
            &PickOptions::simple(1),
            &mut out,
        );
        assert_eq!(out[0].index, 5);
    }

    #[test]
    fn duplicate_and_invalid_blocks() {
        let mut p = picker(2);
        let mut out = Vec::new();
        p.pick(1, PeerPieces::All, &PickOptions::simple(100), &mut out);
        assert_eq!(out.len(), 8);
        assert_eq!(
            p.block_received(1, 0, 0, 16 * KIB),
            BlockArrival::New {
                complete: false,
                cancel: vec![]
            }
        );
        assert_eq!(p.block_received(1, 0, 0, 16 * KIB), BlockArrival::NotNeeded);
        assert_eq!(p.block_received(1, 0, 1, 16 * KIB), BlockArrival::Invalid);
        assert_eq!(p.block_received(1, 0, 0, 15 * KIB), BlockArrival::Invalid);
        assert_eq!(p.block_received(1, 7, 0, 16 * KIB), BlockArrival::Invalid);
    }

    #[test]
    fn endgame_duplicates_and_cancels() {
        let mut p = picker(1);
        let mut a = Vec::new();
        p.pick(1, PeerPieces::All, &PickOptions::simple(100), &mut a);
        assert_eq!(a.len(), 4);
        let mut b = Vec::new();
        p.pick(2, PeerPieces::All, &PickOptions::simple(100), &mut b);
        assert_eq!(b.len(), 4, "endgame requests the same blocks from peer 2");
        let mut again = Vec::new();
        p.pick(2, PeerPieces::All, &PickOptions::simple(100), &mut again);
        assert!(again.is_empty(), "never the same block twice from one peer");
        assert_eq!(
            p.block_received(2, 0, 0, 16 * KIB),
            BlockArrival::New {
                complete: false,
                cancel: vec![1]
            }
        );
    }

    #[test]
    fn failed_hash_reports_senders_and_restarts() {
        let mut p = picker(1);
        let mut out = Vec::new();
        p.pick(1, PeerPieces::All, &PickOptions::simple(2), &mut out);
        p.pick(2, PeerPieces::All, &PickOptions::simple(2), &mut out);
        for (i, r) in out.iter().enumerate() {
            let from = if i < 2 { 1 } else { 2 };
            p.block_received(from, r.index, r.begin, r.length);
        }
        assert_eq!(p.piece_checked(0, false), vec![1, 1, 2, 2]);
        out.clear();
        p.pick(3, PeerPieces::All, &PickOptions::simple(100), &mut out);
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn max_partials_limits_new_pieces() {
        let mut p = picker(10);
        p.set_max_partials(2);
        let mut out = Vec::new();
        p.pick(1, PeerPieces::All, &PickOptions::simple(100), &mut out);
        let pieces: BTreeSet<u32> = out.iter().map(|r| r.index).collect();
        assert_eq!(pieces.len(), 2);
    }

    #[test]
    fn skip_priority_is_never_picked_nor_interesting() {
        let mut p = picker(3);
        p.set_priority(0, PRIORITY_SKIP);
        p.set_priority(2, PRIORITY_SKIP);
        let mut only0 = Bitfield::new(3);
        only0.set(0);
        assert!(!p.is_interesting(PeerPieces::Some(&only0)));
        let mut out = Vec::new();
        p.pick(1, PeerPieces::All, &PickOptions::simple(100), &mut out);
        assert!(out.iter().all(|r| r.index == 1));
        assert_eq!(p.wanted_missing(), 1);
    }

    fn streaming(max: usize, now_ms: u32) -> PickOptions<'static> {
        PickOptions {
            allowed: None,
            max,
            max_bulk: max,
            now_ms,
            critical_until_ms: now_ms + 2000,
            critical_share: 2,
            dup_after_ms: 500,
            eta_ms: 0,
            hedge: 0,
        }
    }

    #[test]
    fn deadline_pieces_come_first_in_deadline_order() {
        let mut p = picker(20);
        for piece in 0..4 {
            p.set_have(piece);
        }
        p.set_deadline(15, 9000);
        p.set_deadline(12, 5000);
        p.set_deadline(17, 7000);
        let mut out = Vec::new();
        p.pick(1, PeerPieces::All, &PickOptions::simple(12), &mut out);
        let order: Vec<u32> = out.iter().map(|r| r.index).collect();
        assert_eq!(order, [12, 12, 12, 12, 17, 17, 17, 17, 15, 15, 15, 15]);
    }

    #[test]
    fn critical_pieces_are_shared_between_peers() {
        let mut p = picker(10);
        p.set_deadline(5, 100);
        let mut a = Vec::new();
        p.pick(1, PeerPieces::All, &streaming(100, 0), &mut a);
        // Peer 1 gets its share (2) of the critical piece first, then other work.
        assert_eq!(a.iter().take_while(|r| r.index == 5).count(), 2);
        let mut b = Vec::new();
        p.pick(2, PeerPieces::All, &streaming(100, 0), &mut b);
        assert_eq!(
            b[0].index, 5,
            "the second peer gets the rest of the critical piece"
        );
        assert!(b.iter().filter(|r| r.index == 5).count() >= 1);
    }

    #[test]
    fn stale_critical_blocks_get_a_second_holder() {
        let mut p = picker(2);
        p.set_deadline(0, 0);
        let mut a = Vec::new();
        let mut opts = streaming(100, 0);
        opts.critical_share = 100;
        p.pick(
            1,
            PeerPieces::Some(&{
                let mut b = Bitfield::new(2);
                b.set(0);
                b
            }),
            &opts,
            &mut a,
        );
        assert_eq!(a.len(), 4);
        let only0 = {
            let mut b = Bitfield::new(2);
            b.set(0);
            b
        };
        let mut early = Vec::new();
        opts.now_ms = 100;
        p.pick(2, PeerPieces::Some(&only0), &opts, &mut early);
        assert!(early.is_empty(), "not stale yet: {early:?}");
        let mut late = Vec::new();
        opts.now_ms = 600;
        p.pick(2, PeerPieces::Some(&only0), &opts, &mut late);
        assert_eq!(late.len(), 4, "every stale block asked of peer 2");
        let mut again = Vec::new();
        opts.now_ms = 2000;
        p.pick(3, PeerPieces::Some(&only0), &opts, &mut again);
        assert!(again.is_empty(), "at most one duplicate per block");
        assert_eq!(
            p.block_received(2, 0, 0, 16 * KIB),
            BlockArrival::New {
                complete: false,
                cancel: vec![1]
            }
        );
    }

    #[test]
    fn critical_pieces_start_beyond_the_partials_cap() {
        let mut p = picker(10);
        p.set_max_partials(1);
        let mut out = Vec::new();
        p.pick(1, PeerPieces::All, &PickOptions::simple(1), &mut out);
        assert_eq!(p.in_progress(), 1);
        p.set_deadline(9, 0);
        out.clear();
        p.pick(2, PeerPieces::All, &streaming(100, 0), &mut out);
        assert!(out.iter().any(|r| r.index == 9));
    }

    #[test]
    fn clearing_a_deadline_restores_normal_priority() {
        let mut p = picker(4);
        p.set_priority(3, PRIORITY_SKIP);
        assert_eq!(p.wanted_missing(), 3);
        p.set_deadline(3, 10);
        assert_eq!(
            p.wanted_missing(),
            4,
            "a deadline makes a skipped piece wanted"
        );
        p.clear_deadline(3);
        assert_eq!(p.wanted_missing(), 3);
        p.set_deadline(1, 10);
        p.set_have(1);
        assert_eq!(p.deadline(1), None);
        assert_eq!(p.deadline_pieces().count(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Deadline { piece: u32, ms: u32 },
        Pick { peer: u32, max: usize },
        Deliver { nth: usize, from_other: bool },
        Drop { nth: usize },
        Check { ok: bool },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..12, 0u32..5000).prop_map(|(piece, ms)| Op::Deadline { piece, ms }),
            (0u32..4, 1usize..20).prop_map(|(peer, max)| Op::Pick { peer, max }),
            (any::<usize>(), any::<bool>())
                .prop_map(|(nth, from_other)| Op::Deliver { nth, from_other }),
            any::<usize>().prop_map(|nth| Op::Drop { nth }),
            any::<bool>().prop_map(|ok| Op::Check { ok }),
        ]
    }

    proptest! {
        /// Whatever happens, the picker never asks for a piece we have, never
        /// gives one peer the same block twice, and keeps its counts sane.
        #[test]
        fn invariants_hold(pieces in 1u32..12, ops in proptest::collection::vec(op(), 0..200)) {
            let total = u64::from(pieces) * 40 * 1024 - 5;
            let mut p = Picker::new(pieces, 40 * 1024, total, 7);
            let mut outstanding: Vec<(PeerKey, BlockRequest)> = Vec::new();
            let mut clock = 0u32;
            for op in ops {
                clock += 100;
                match op {
                    Op::Deadline { piece, ms } => {
                        if piece < pieces {
                            p.set_deadline(piece, ms);
                        }
                    }
                    Op::Pick { peer, max } => {
                        let mut out = Vec::new();
                        let opts = PickOptions { max, max_bulk: max, ..streaming(max, clock) };
                        p.pick(peer, PeerPieces::All, &opts, &mut out);
                        prop_assert!(out.len() <= max + opts.critical_share);
                        // Deadline pieces are requested before any others.
                        let first_bulk = out.iter().position(|r| p.deadline(r.index).is_none()).unwrap_or(out.len());
                        let deadline_after_bulk = out[first_bulk..].iter().any(|r| p.deadline(r.index).is_some());
                        let fresh_deadline_left = p.candidates.by_deadline().next().is_some();
                        prop_assert!(!deadline_after_bulk || !fresh_deadline_left);
                        for r in out {
                            prop_assert!(!p.has_piece(r.index));
                            prop_assert!(!outstanding.contains(&(peer, r)), "block requested twice from one peer");
                            outstanding.push((peer, r));
                        }
                    }
                    Op::Deliver { nth, from_other } => {
                        if outstanding.is_empty() { continue; }
                        let (peer, r) = outstanding.remove(nth % outstanding.len());
                        let from = if from_other { peer + 100 } else { peer };
                        if let BlockArrival::New { cancel, .. } = p.block_received(from, r.index, r.begin, r.length) {
                            outstanding.retain(|(op, or)| !(or == &r && cancel.contains(op)));
                        }
                    }
                    Op::Drop { nth } => {
                        if outstanding.is_empty() { continue; }
                        let (peer, r) = outstanding.remove(nth % outstanding.len());
                        p.request_dropped(peer, r.index, r.begin, r.length);
                    }
                    Op::Check { ok } => {
                        if let Some(&piece) = p.verifying.iter().next() {
                            p.piece_checked(piece, ok);
                        }
                    }
                }
                for (piece, part) in &p.partials {
                    let free = part.blocks.iter().filter(|b| **b == Block::Free).count() as u32;
                    let recv = part.blocks.iter().filter(|b| **b == Block::Received).count() as u32;
                    prop_assert_eq!(free, part.free);
                    prop_assert_eq!(recv, part.received);
                    prop_assert!(!p.have.get(*piece));
                    prop_assert!(!p.candidates.contains(*piece, p.slot(*piece)));
                }
            }
        }

        /// Delivering every request eventually downloads every wanted piece.
        #[test]
        fn everything_is_eventually_picked(pieces in 1u32..40, max_partials in 1usize..6, seed in any::<u64>()) {
            let total = u64::from(pieces) * 32 * 1024 - 1;
            let mut p = Picker::new(pieces, 32 * 1024, total, seed);
            p.set_max_partials(max_partials);
            let mut rounds = 0;
            while !p.is_complete() {
                rounds += 1;
                prop_assert!(rounds < 10_000);
                let mut out = Vec::new();
                p.pick(1, PeerPieces::All, &PickOptions::simple(7), &mut out);
                for r in out {
                    if let BlockArrival::New { complete: true, .. } = p.block_received(1, r.index, r.begin, r.length) {
                        p.piece_checked(r.index, true);
                    }
                }
            }
            prop_assert!(p.have().all());
        }
    }
}
