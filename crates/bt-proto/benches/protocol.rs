//! Costs the engine pays per connection and per byte for issue 7's
//! protocol pieces: an MSE handshake (four 768-bit modexps in all, two per
//! side), RC4 over received data, and SHA-256 merkle hashing of a v2 piece.
//! Run: `cargo bench -p bt-proto --bench protocol`.

use bt_proto::merkle;
use bt_proto::mse::{
    CryptoMethods, EncryptionMode, HandshakeRandom, Initiator, Receiver, skey_hash,
};
use divan::counter::BytesCount;
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

fn random(seed: u8) -> HandshakeRandom {
    let mut private_key = [0u8; 20];
    for (i, b) in private_key.iter_mut().enumerate() {
        *b = seed
            .wrapping_mul(31)
            .wrapping_add((i as u8).wrapping_mul(17))
            | 1;
    }
    HandshakeRandom {
        private_key,
        clear_pad: vec![seed; 100],
        encrypted_pad_len: 50,
    }
}

/// Both sides of a full handshake in memory, RC4 selected.
#[divan::bench]
fn mse_handshake_both_sides() {
    let skey = [7u8; 20];
    let wanted = skey_hash(&skey);
    let mut a = Initiator::new(skey, CryptoMethods::RC4, &[0u8; 68], random(1)).unwrap();
    let mut b = Receiver::new(EncryptionMode::Require, random(2)).unwrap();
    b.receive(&a.take_output(), |h| (*h == wanted).then_some(skey))
        .unwrap();
    a.receive(&b.take_output()).unwrap();
    let at_b = b
        .receive(&a.take_output(), |h| (*h == wanted).then_some(skey))
        .unwrap()
        .unwrap();
    let at_a = a.receive(&b.take_output()).unwrap().unwrap();
    black_box((at_a, at_b));
}

/// Decrypting received data in 16 KiB reads.
#[divan::bench]
fn rc4_16k(bencher: Bencher) {
    let mut cipher = {
        let skey = [7u8; 20];
        let mut a = Initiator::new(skey, CryptoMethods::RC4, &[], random(1)).unwrap();
        let mut b = Receiver::new(EncryptionMode::Require, random(2)).unwrap();
        b.receive(&a.take_output(), |_| Some(skey)).unwrap();
        a.receive(&b.take_output()).unwrap();
        b.receive(&a.take_output(), |_| Some(skey)).unwrap();
        a.receive(&b.take_output()).unwrap().unwrap().cipher
    };
    let mut buf = vec![0x5au8; 16 * 1024];
    bencher
        .counter(BytesCount::new(buf.len()))
        .bench_local(|| cipher.decrypt(black_box(&mut buf)));
}

/// The v2 hash of one 256 KiB piece (16 leaves, 15 inner nodes).
#[divan::bench]
fn merkle_piece_256k(bencher: Bencher) {
    let piece: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    bencher
        .counter(BytesCount::new(piece.len()))
        .bench(|| merkle::piece_hash(black_box(&piece), 256 * 1024));
}
