//! BEP 14 BT-SEARCH datagrams: no panics; parsed announces stay within
//! their limits and survive to_datagrams -> parse (split or not).
#![no_main]

use bt_proto::lsd::{LsdAnnounce, MAX_INFOHASHES, SEND_DATAGRAM};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = LsdAnnounce::parse(data) {
        let a = r.announce;
        assert!(!a.info_hashes.is_empty() && a.info_hashes.len() <= MAX_INFOHASHES);
        assert_ne!(a.port, 0);
        let mut hashes = Vec::new();
        for d in a.to_datagrams() {
            assert!(d.len() <= SEND_DATAGRAM);
            let back = LsdAnnounce::parse(&d)
                .expect("own datagram parses")
                .announce;
            assert_eq!(
                (back.port, &back.cookie, &back.host),
                (a.port, &a.cookie, &a.host)
            );
            hashes.extend(back.info_hashes);
        }
        assert_eq!(hashes, a.info_hashes);
    }
});
