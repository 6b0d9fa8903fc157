//! Peer wire framing: no panics, and every decoded message re-encodes to the
//! exact bytes it came from.
#![no_main]

use bt_proto::Bitfield;
use bt_proto::wire::{self, HANDSHAKE_LEN, Handshake, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(h) = data.get(..HANDSHAKE_LEN)
        && let Ok(hs) = Handshake::decode(h.try_into().expect("68 bytes"))
    {
        assert_eq!(&hs.encode()[..], h);
    }
    let mut rest = data;
    while let Ok(Some((msg, used))) = wire::decode(rest, 1 << 16) {
        assert!(used >= 4 && used <= rest.len());
        if !matches!(msg, Message::Unknown { .. }) {
            let mut out = Vec::new();
            msg.encode(&mut out);
            assert_eq!(out, &rest[..used]);
        }
        if let Message::Bitfield(b) = msg {
            let bits = (b.len() as u32).saturating_mul(8);
            let _ = Bitfield::from_bytes(b, bits.saturating_sub(3));
        }
        rest = &rest[used..];
    }
});
