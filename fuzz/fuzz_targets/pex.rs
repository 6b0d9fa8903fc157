//! BEP 11 ut_pex payloads: no panics; at most 50 added and 50 dropped
//! peers come out of any input; a decoded message re-encodes to itself.
#![no_main]

use bt_proto::pex::{MAX_PEERS_PER_LIST, PexMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = PexMessage::decode(data) {
        assert!(r.message.added.len() <= MAX_PEERS_PER_LIST);
        assert!(r.message.dropped.len() <= MAX_PEERS_PER_LIST);
        assert!(r.message.added.iter().all(|p| p.addr.port() != 0));
        let again = PexMessage::decode(&r.message.encode()).expect("own encoding decodes");
        assert_eq!(again.ignored, 0);
        assert_eq!(again.message, r.message);
    }
});
