//! Piece picker at 100,000 pieces: every operation on the receive path is
//! O(log n) or better. Run: `cargo bench -p bt-engine --bench picker`.

use bt_engine::picker::{BlockArrival, PeerPieces, PickOptions, Picker};
use bt_proto::Bitfield;
use divan::Bencher;

const PIECES: u32 = 100_000;
const PIECE_LEN: u32 = 256 * 1024;

fn main() {
    divan::main();
}

fn fresh() -> Picker {
    let mut p = Picker::new(
        PIECES,
        PIECE_LEN,
        u64::from(PIECES) * u64::from(PIECE_LEN),
        7,
    );
    p.set_max_partials(64);
    // A realistic swarm: a few seeds and partial peers.
    p.peer_seed();
    p.peer_seed();
    let mut half = Bitfield::new(PIECES);
    for i in (0..PIECES).step_by(2) {
        half.set(i);
    }
    p.peer_bitfield(&half);
    // Past the random first pieces.
    for i in 0..8 {
        p.set_have(i * 1000);
    }
    p
}

/// A HAVE from a peer: availability of one piece changes.
#[divan::bench]
fn have(b: Bencher) {
    let mut p = fresh();
    let mut i = 0u32;
    b.bench_local(|| {
        i = (i + 7919) % PIECES;
        p.peer_has(i);
    });
}

/// Asking a seed for one block (starts a new piece every 16 calls).
#[divan::bench]
fn pick_one_block_from_a_seed(b: Bencher) {
    let mut p = fresh();
    let mut out = Vec::with_capacity(16);
    let opts = PickOptions::simple(1);
    b.bench_local(|| {
        out.clear();
        p.pick(1, PeerPieces::All, &opts, &mut out);
        // Deliver it at once so pieces in progress stay few.
        for r in &out {
            if let BlockArrival::New { complete: true, .. } =
                p.block_received(1, r.index, r.begin, r.length)
            {
                p.piece_checked(r.index, true);
            }
        }
    });
}

/// Picking 16 blocks for a peer that has half of the pieces.
#[divan::bench]
fn pick_from_a_half_peer(b: Bencher) {
    let mut p = fresh();
    let mut half = Bitfield::new(PIECES);
    for i in (0..PIECES).step_by(2) {
        half.set(i);
    }
    let mut out = Vec::with_capacity(16);
    let opts = PickOptions::simple(16);
    b.bench_local(|| {
        out.clear();
        p.pick(2, PeerPieces::Some(&half), &opts, &mut out);
        for r in &out {
            if let BlockArrival::New { complete: true, .. } =
                p.block_received(2, r.index, r.begin, r.length)
            {
                p.piece_checked(r.index, true);
            }
        }
    });
}

/// Moving a streaming deadline (a reader advanced).
#[divan::bench]
fn set_deadline(b: Bencher) {
    let mut p = fresh();
    let mut i = 0u32;
    let mut t = 0u32;
    b.bench_local(|| {
        i = (i + 104_729) % PIECES;
        t = t.wrapping_add(13);
        p.set_deadline(i, t);
    });
}
