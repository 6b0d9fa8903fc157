//! SHA-1 of a 1 MiB piece: RustCrypto `sha1` (runtime SHA-NI detection)
//! against `ring` (already linked through rustls) and, with
//! `--features bench-aws-lc`, aws-lc-rs.
//! Run: `cargo bench -p bt-engine --bench sha1 [--features bench-aws-lc]`.

use divan::Bencher;
use divan::counter::BytesCount;
use sha1::{Digest, Sha1};

fn main() {
    divan::main();
}

const PIECE: usize = 1 << 20;

fn piece() -> Vec<u8> {
    (0..PIECE)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect()
}

#[divan::bench]
fn rustcrypto_sha1(b: Bencher) {
    let data = piece();
    b.counter(BytesCount::new(PIECE))
        .bench(|| Sha1::digest(divan::black_box(&data)));
}

#[divan::bench]
fn ring_sha1(b: Bencher) {
    let data = piece();
    b.counter(BytesCount::new(PIECE)).bench(|| {
        ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            divan::black_box(&data),
        )
    });
}

#[cfg(feature = "bench-aws-lc")]
#[divan::bench]
fn aws_lc_sha1(b: Bencher) {
    let data = piece();
    b.counter(BytesCount::new(PIECE)).bench(|| {
        aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            divan::black_box(&data),
        )
    });
}
