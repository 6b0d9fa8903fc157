//! `.torrent` files written by mktorrent, transmission-create and
//! libtorrent, checked against the info-hashes those tools report.

use bt_proto::metainfo::{Metainfo, MetainfoError, piece_hashes};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The generator described in `tests/fixtures/README.md`.
fn data(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect()
}

fn pack_files() -> Vec<Vec<u8>> {
    vec![data(30000, 2), data(45000, 3), data(1, 4)]
}

fn paths(m: &Metainfo) -> Vec<String> {
    m.info
        .files
        .iter()
        .map(|f| {
            f.path
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

#[test]
fn mktorrent_single_file() {
    let m = Metainfo::from_bytes(&fixture("mktorrent-single.torrent")).unwrap();
    assert_eq!(
        m.info_hash.to_hex(),
        "ffaa1b2a94047e2dec92c7cbf75ef76ecc6bc3b6"
    );
    assert!(m.info.single_file);
    assert!(!m.info.private);
    assert_eq!(m.info.name_lossy(), "clip.bin");
    assert_eq!(m.info.piece_length, 32768);
    assert_eq!(m.info.num_pieces(), 4);
    assert_eq!(m.info.total_length(), 100_000);
    assert_eq!(m.info.piece_size(3), 100_000 - 3 * 32768);
    assert_eq!(m.info.pieces, piece_hashes(&data(100_000, 1), 32768));
    assert_eq!(
        m.trackers(),
        vec![
            vec![
                "http://127.0.0.1:6969/announce".to_string(),
                "http://127.0.0.1:6970/announce".to_string()
            ],
            vec!["udp://127.0.0.1:6969".to_string()],
        ]
    );
    assert_eq!(m.url_list, vec!["http://127.0.0.1:8080/seed/".to_string()]);
    assert_eq!(m.comment.as_deref(), Some("mktorrent fixture"));
    assert_eq!(m.created_by.as_deref(), Some("mktorrent 1.1"));
    assert!(m.creation_date.is_some());
}

#[test]
fn mktorrent_multi_file_private() {
    let m = Metainfo::from_bytes(&fixture("mktorrent-multi.torrent")).unwrap();
    assert_eq!(
        m.info_hash.to_hex(),
        "9c5e321004235065709217c5d5a4b1053fb6a517"
    );
    assert!(!m.info.single_file);
    assert!(m.info.private);
    assert_eq!(m.info.name_lossy(), "pack");
    assert_eq!(paths(&m), ["a.txt", "sub/b.bin", "sub/c.bin"]);
    assert_eq!(m.info.total_length(), 75_001);
    assert_eq!(m.info.pieces, piece_hashes(&pack_files().concat(), 32768));
    assert_eq!(
        m.trackers(),
        vec![vec!["http://127.0.0.1:6969/announce".to_string()]]
    );
}

#[test]
fn transmission_single_file() {
    let m = Metainfo::from_bytes(&fixture("transmission-single.torrent")).unwrap();
    assert_eq!(
        m.info_hash.to_hex(),
        "2bc3b9b7fe659261cb56628fa0ccea28d2043f61"
    );
    assert!(m.info.single_file);
    assert_eq!(m.info.pieces, piece_hashes(&data(100_000, 1), 32768));
    assert_eq!(m.comment.as_deref(), Some("transmission fixture"));
    assert_eq!(m.trackers().len(), 2);
}

#[test]
fn transmission_multi_file_private() {
    let m = Metainfo::from_bytes(&fixture("transmission-multi.torrent")).unwrap();
    assert_eq!(
        m.info_hash.to_hex(),
        "477bc516a7428ce8eaad9ce43829886d837e6b58"
    );
    assert!(m.info.private);
    assert_eq!(m.info.piece_length, 16384);
    assert_eq!(m.info.num_pieces(), 5);
    assert_eq!(paths(&m), ["a.txt", "sub/b.bin", "sub/c.bin"]);
    assert_eq!(m.info.pieces, piece_hashes(&pack_files().concat(), 16384));
}

#[test]
fn libtorrent_hybrid_parses_as_v1_with_padding_files() {
    let m = Metainfo::from_bytes(&fixture("libtorrent-hybrid.torrent")).unwrap();
    assert_eq!(
        m.info_hash.to_hex(),
        "b82b2450d05599f99773097e4606e1419889e65a"
    );
    assert_eq!(
        paths(&m),
        [
            "a.txt",
            ".pad/2768",
            "sub/b.bin",
            ".pad/4152",
            "sub/c.bin",
            ".pad/16383"
        ]
    );
    let padding: Vec<bool> = m.info.files.iter().map(|f| f.padding).collect();
    assert_eq!(padding, [false, true, false, true, false, true]);
    assert_eq!(m.info.total_length(), 6 * 16384);
    // Padding files read as zeros, which is what aligns files to pieces.
    let mut payload = Vec::new();
    let mut real = pack_files().into_iter();
    for f in &m.info.files {
        if f.padding {
            payload.extend(std::iter::repeat_n(0u8, f.length as usize));
        } else {
            payload.extend(real.next().unwrap());
        }
    }
    assert_eq!(m.info.pieces, piece_hashes(&payload, 16384));
}

#[test]
fn libtorrent_v2_only_is_refused_clearly() {
    let e = Metainfo::from_bytes(&fixture("libtorrent-v2only.torrent")).unwrap_err();
    assert_eq!(e, MetainfoError::V2Only);
    assert_eq!(e.to_string(), "v2-only torrents are not supported yet");
}

#[test]
fn truncated_fixtures_are_errors_not_panics() {
    for name in [
        "mktorrent-single.torrent",
        "mktorrent-multi.torrent",
        "transmission-single.torrent",
        "transmission-multi.torrent",
        "libtorrent-hybrid.torrent",
    ] {
        let bytes = fixture(name);
        for cut in 0..bytes.len() {
            assert!(
                Metainfo::from_bytes(&bytes[..cut]).is_err(),
                "{name} cut at {cut}"
            );
        }
    }
}
