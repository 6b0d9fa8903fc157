//! MSE/PE handshake (both sides): no panics, and
//! - raw bytes: a receiver or initiator fed bytes that are not a handshake
//!   fails by the spec's sync limits (96 + 532 / 96 + 520 bytes);
//! - tampering: an honest initiator and receiver whose streams are XORed
//!   with fuzzer bytes (RC4 is a stream cipher, so this sets every decrypted
//!   field — VC, crypto_provide/select, pad and IA lengths — to values the
//!   fuzzer picks) either both finish with matching results or fail; with
//!   an all-zero mask they always finish.
#![no_main]

use bt_proto::mse::{
    CryptoMethods, EncryptionMode, HandshakeRandom, INITIATOR_SYNC_LIMIT, Initiator,
    RECEIVER_SYNC_LIMIT, Receiver, skey_hash,
};
use libfuzzer_sys::fuzz_target;

const SKEY: [u8; 20] = [7; 20];

fn lookup(h: &[u8; 20]) -> Option<[u8; 20]> {
    (*h == skey_hash(&SKEY)).then_some(SKEY)
}

/// Private keys of one significant byte: the DH arithmetic stays correct
/// (any non-zero key is valid), but each modexp is a handful of
/// multiplications instead of 160 squarings, which under ASan would hold
/// the target to ~100 runs a second.
fn random(seed: u8, pad: usize, enc_pad: u16) -> HandshakeRandom {
    let mut private_key = [0u8; 20];
    private_key[19] = seed | 1;
    HandshakeRandom {
        private_key,
        clear_pad: vec![seed; pad],
        encrypted_pad_len: enc_pad,
    }
}

fn mode(b: u8) -> EncryptionMode {
    match b % 3 {
        0 => EncryptionMode::Prefer,
        1 => EncryptionMode::Require,
        _ => EncryptionMode::Disabled,
    }
}

/// Raw bytes to one side (chosen by a bit of the first byte, so each run
/// pays for one side's Diffie-Hellman work only).
fn raw(data: &[u8]) {
    let chunk = usize::from(data[1]) + 1;
    let input = &data[2..];
    if data[0] & 2 == 0 {
        let mut b = Receiver::new(mode(data[0] >> 2), random(3, 0, 0)).unwrap();
        let mut fed = 0;
        for c in input.chunks(chunk) {
            fed += c.len();
            match b.receive(c, lookup) {
                Ok(None) => assert!(
                    fed < RECEIVER_SYNC_LIMIT,
                    "receiver still waiting after {fed} bytes"
                ),
                // Only a plain BitTorrent handshake can finish without keys.
                Ok(Some(e)) => {
                    assert!(e.skey.is_none() && input.starts_with(b"\x13BitTorrent protocol"));
                    break;
                }
                Err(_) => break,
            }
        }
    } else {
        let mut a = Initiator::new(SKEY, CryptoMethods::BOTH, b"ia", random(5, 0, 0)).unwrap();
        let mut fed = 0;
        for c in input.chunks(chunk) {
            fed += c.len();
            match a.receive(c) {
                Ok(None) => assert!(
                    fed < INITIATOR_SYNC_LIMIT,
                    "initiator still waiting after {fed} bytes"
                ),
                Ok(Some(_)) => panic!("initiator finished without a receiver"),
                Err(_) => break,
            }
        }
    }
}

fn tampered(data: &[u8]) {
    let [sel, pads, chunk, off_hi, off_lo, modes, ..] = data[..6] else {
        return;
    };
    let mask = &data[6..];
    let chunk = usize::from(chunk) + 1;
    let offset = usize::from(u16::from_be_bytes([off_hi, off_lo])) % 1500;
    let to_receiver = sel & 2 != 0;
    let pad = usize::from(pads) * 2;
    let (mode_a, mode_b) = (mode(modes), mode(modes / 3));
    let Some(provide) = mode_a.outgoing() else {
        return;
    };
    let mut a = Initiator::new(
        SKEY,
        provide,
        b"initial payload",
        random(11, pad, u16::from(pads)),
    )
    .unwrap();
    let mut b = Receiver::new(mode_b, random(13, 512 - pad, 3)).unwrap();
    // Applies the mask to a stream at absolute positions.
    let xor = |buf: &mut [u8], start: usize| {
        for (i, byte) in buf.iter_mut().enumerate() {
            let pos = start + i;
            if pos >= offset && pos - offset < mask.len() {
                *byte ^= mask[pos - offset];
            }
        }
    };
    let (mut a_sent, mut b_sent) = (0usize, 0usize);
    let mut to_b = a.take_output();
    let mut to_a = Vec::new();
    let (mut ra, mut rb) = (Ok(None), Ok(None));
    for _ in 0..10_000 {
        if matches!(rb, Ok(None)) && !to_b.is_empty() {
            let n = chunk.min(to_b.len());
            let mut piece: Vec<u8> = to_b.drain(..n).collect();
            if to_receiver {
                xor(&mut piece, a_sent);
            }
            a_sent += n;
            rb = b.receive(&piece, lookup);
            to_a.extend(b.take_output());
        } else if matches!(ra, Ok(None)) && !to_a.is_empty() {
            let n = chunk.min(to_a.len());
            let mut piece: Vec<u8> = to_a.drain(..n).collect();
            if !to_receiver {
                xor(&mut piece, b_sent);
            }
            b_sent += n;
            ra = a.receive(&piece);
            to_b.extend(a.take_output());
        } else {
            break;
        }
    }
    if let (Ok(Some(ea)), Ok(Some(eb))) = (&ra, &rb) {
        // Both finished: they agree on the method unless the mask
        // rewrote crypto_select on its way to the initiator.
        if ea.method != eb.method {
            assert!(!to_receiver && !mask.is_empty());
        }
    }
    let policies_agree = mode_b.select(provide).is_some();
    if mask.iter().all(|&m| m == 0) && policies_agree {
        let (ea, eb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
        assert_eq!(ea.method, eb.method);
        assert_eq!(eb.payload, b"initial payload");
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    if data[0] & 1 == 0 {
        raw(data);
    } else {
        tampered(data);
    }
});
