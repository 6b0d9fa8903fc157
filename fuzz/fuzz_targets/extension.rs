//! BEP 10 extension handshake: no panics; decode(encode(x)) == x.
#![no_main]

use bt_proto::extension::ExtendedHandshake;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ExtendedHandshake::decode(data) {
        assert_eq!(ExtendedHandshake::decode(&h.encode()).as_ref(), Ok(&h));
    }
});
