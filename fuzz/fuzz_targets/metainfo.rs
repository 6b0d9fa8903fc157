//! `.torrent` parser: no panics, and accepted torrents are self-consistent,
//! in their v1 view (`Metainfo`) and in their v2 view (`Torrent`,
//! `MetainfoV2`, BEP 52).
#![no_main]

use bt_proto::magnet::Magnet;
use bt_proto::merkle;
use bt_proto::metainfo::{Info, InfoV2, Metainfo, Torrent, info_hash_of, info_hash_v2_of};
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
    let _ = InfoV2::from_bytes(data);

    if let Ok(t) = Torrent::from_bytes(data) {
        assert!(!t.swarm_hashes().is_empty());
        if let Some(m) = t.v2() {
            assert_eq!(m.info_hash, info_hash_v2_of(&m.info_bytes));
            assert_eq!(InfoV2::from_bytes(&m.info_bytes).as_ref(), Ok(&m.info));
            assert_eq!(m.v1_info_hash, t.v1().map(|v1| v1.info_hash));
            let info = &m.info;
            let pl = u64::from(info.piece_length);
            assert!(info.piece_length.is_power_of_two() && pl >= merkle::BLOCK_SIZE as u64);
            // Every non-empty file starts on a piece boundary of the
            // aligned layout, and the layout holds every file's bytes.
            let mut offset = 0u64;
            let mut real = 0u64;
            for f in info.aligned_files() {
                if !f.padding {
                    if f.length > 0 {
                        assert_eq!(offset % pl, 0);
                    }
                    real += f.length;
                }
                offset += f.length;
            }
            assert_eq!(real, info.total_length());
            if info.num_pieces() <= 4096 {
                let total: u64 = (0..info.num_pieces())
                    .map(|i| u64::from(info.piece_size(i)))
                    .sum();
                assert_eq!(total, info.total_length());
                for i in 0..info.num_pieces() {
                    assert!(info.piece_file(i).is_some());
                }
            }
            assert_eq!(info.piece_size(info.num_pieces()), 0);
            for (root, layer) in &m.piece_layers {
                let f = info
                    .files
                    .iter()
                    .find(|f| f.pieces_root == Some(*root))
                    .expect("layers belong to files");
                merkle::verify_piece_layer(layer, f.length, info.piece_length, root)
                    .expect("stored layers verify");
            }
            let magnet = Magnet::parse(&t.to_magnet().to_uri());
            if let Ok(magnet) = magnet {
                assert_eq!(magnet.info_hash_v2, Some(m.info_hash));
            }
        }
    }
});
