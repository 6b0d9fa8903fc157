//! `.torrent` parser: no panics, and accepted torrents are self-consistent.
#![no_main]

use bt_proto::metainfo::{Info, Metainfo, info_hash_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Metainfo::from_bytes(data) {
        assert_eq!(m.info_hash, info_hash_of(&m.info_bytes));
        assert_eq!(Info::from_bytes(&m.info_bytes).as_ref(), Ok(&m.info));
        let total: u64 = (0..m.info.num_pieces())
            .map(|i| u64::from(m.info.piece_size(i)))
            .sum();
        assert_eq!(total, m.info.total_length());
        assert!(m.info.piece_size(m.info.num_pieces()) == 0);
        let _ = m.trackers();
        let _ = m.info.name_lossy();
    }
    let _ = Info::from_bytes(data);
});
