//! BEP 9 messages and the metadata assembler: no panics; decode(encode(x))
//! == x; the assembler never accepts data that fails the hash.
#![no_main]

use bt_proto::InfoHash;
use bt_proto::metadata::{MetadataAssembler, MetadataMsg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = MetadataMsg::decode(data) {
        assert_eq!(MetadataMsg::decode(&m.encode()).as_ref(), Ok(&m));
    }
    // Drive an assembler: 2 bytes of size, then (piece, len) records.
    if data.len() >= 2 {
        let size = u32::from(u16::from_be_bytes([data[0], data[1]])) * 3;
        if let Ok(mut a) = MetadataAssembler::new(InfoHash([0; 20]), size) {
            let mut rest = &data[2..];
            while rest.len() >= 3 {
                let piece = u32::from(rest[0]);
                let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
                rest = &rest[3..];
                let chunk = &rest[..len.min(rest.len())];
                let _ = a.add(piece, chunk);
                let _ = a.missing().count();
            }
            if a.is_complete() {
                // An all-zero info-hash is (practically) never a SHA-1.
                assert!(a.finish().is_err());
            }
        }
    }
});
