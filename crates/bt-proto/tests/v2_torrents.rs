//! BEP 52 torrents made by libtorrent (see `fixtures/README.md`): v2-only
//! and hybrid, 16 KiB and 64 KiB pieces, single- and multi-file. The data
//! is regenerated here, so every pieces root, piece layer and piece hash
//! is checked against the bytes, and the info-hashes against what
//! libtorrent reported.

use bt_proto::bencode::{self, Value};
use bt_proto::magnet::Magnet;
use bt_proto::merkle;
use bt_proto::metainfo::{Metainfo, MetainfoError, MetainfoV2, MetainfoV2Error, Torrent};
use bt_proto::wire_v2::{HashMessage, HashRequest};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn data(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect()
}

fn paths(m: &MetainfoV2) -> Vec<String> {
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

/// Checks every pieces root, piece layer and piece of `m` against the
/// file contents, in file-tree order.
fn check_against_data(m: &MetainfoV2, contents: &[Vec<u8>]) {
    assert_eq!(m.info.files.len(), contents.len());
    let pl = m.info.piece_length as usize;
    for (i, (f, d)) in m.info.files.iter().zip(contents).enumerate() {
        assert_eq!(f.length, d.len() as u64, "file {i}");
        if d.is_empty() {
            assert_eq!(f.pieces_root, None);
            assert!(m.info.file_pieces(i).is_empty());
            continue;
        }
        let root = f.pieces_root.unwrap();
        assert_eq!(root, merkle::file_root(d), "root of file {i}");
        if d.len() > pl {
            assert_eq!(
                m.piece_layers[&root],
                merkle::piece_layer(d, m.info.piece_length)
            );
        } else {
            assert!(!m.piece_layers.contains_key(&root));
        }
        for (k, piece) in m.info.file_pieces(i).enumerate() {
            let bytes = &d[k * pl..d.len().min((k + 1) * pl)];
            assert_eq!(m.info.piece_size(piece) as usize, bytes.len());
            let got = m.info.hash_piece(piece, bytes).unwrap();
            assert_eq!(Some(got), m.expected_piece_hash(piece), "piece {piece}");
            let mut corrupt = bytes.to_vec();
            corrupt[0] ^= 1;
            assert_ne!(
                m.info.hash_piece(piece, &corrupt),
                m.expected_piece_hash(piece)
            );
        }
    }
    assert_eq!(m.expected_piece_hash(m.info.num_pieces()), None);
    assert_eq!(m.info.piece_size(m.info.num_pieces()), 0);
}

fn pack16() -> Vec<Vec<u8>> {
    vec![data(30000, 2), data(45000, 3), data(1, 4)]
}

fn pack64() -> Vec<Vec<u8>> {
    // File-tree order: big.bin, dir/three.bin, empty.txt, mid.bin, small.bin.
    vec![
        data(200_000, 5),
        data(49157, 8),
        Vec::new(),
        data(70000, 6),
        data(10000, 7),
    ]
}

#[test]
fn libtorrent_v2_only_16k() {
    let bytes = fixture("libtorrent-v2only.torrent");
    let t = Torrent::from_bytes(&bytes).unwrap();
    assert!(t.v1().is_none());
    let m = t.v2().unwrap();
    assert_eq!(
        m.info_hash.to_hex(),
        "64cf3f5716c5625d3e52dc0569fceb49a8bdd30e5037d8980306ff0b3f428ec0"
    );
    assert_eq!(m.v1_info_hash, None);
    assert_eq!(paths(m), ["a.txt", "sub/b.bin", "sub/c.bin"]);
    assert!(!m.info.single_file);
    assert_eq!(m.info.num_pieces(), 2 + 3 + 1);
    check_against_data(m, &pack16());
    assert_eq!(t.swarm_hashes(), vec![m.info_hash.truncated()]);
    // The v1 entry point still refuses it, as before.
    assert_eq!(Metainfo::from_bytes(&bytes), Err(MetainfoError::V2Only));
    // A v2-only magnet carries btmh alone and parses back.
    let uri = t.to_magnet().to_uri();
    assert!(uri.starts_with("magnet:?xt=urn:btmh:1220"));
    assert!(!uri.contains("btih"));
    let back = Magnet::parse(&uri).unwrap();
    assert_eq!(back.info_hash_v2, Some(m.info_hash));
    assert_eq!(back.info_hash, m.info_hash.truncated());
    assert_eq!(back.trackers, ["http://127.0.0.1:6969/announce"]);
}

#[test]
fn libtorrent_hybrid_16k() {
    let t = Torrent::from_bytes(&fixture("libtorrent-hybrid.torrent")).unwrap();
    let (v1, v2) = match &t {
        Torrent::Hybrid { v1, v2 } => (v1, v2),
        other => panic!("not hybrid: {other:?}"),
    };
    assert_eq!(
        v1.info_hash.to_hex(),
        "b82b2450d05599f99773097e4606e1419889e65a"
    );
    assert_eq!(
        v2.info_hash.to_hex(),
        "edf3f3c59c1d7d6d3d6fed64a0e605c808f3868b2e5b8f69551bc7f1b7273111"
    );
    assert_eq!(v2.v1_info_hash, Some(v1.info_hash));
    assert_eq!(v2.info_bytes, v1.info_bytes);
    check_against_data(v2, &pack16());
    assert_eq!(
        t.swarm_hashes(),
        vec![v1.info_hash, v2.info_hash.truncated()]
    );
    let magnet = Magnet::parse(&t.to_magnet().to_uri()).unwrap();
    assert_eq!(magnet.info_hash, v1.info_hash);
    assert_eq!(magnet.info_hash_v2, Some(v2.info_hash));
}

#[test]
fn libtorrent_64k_pieces_v2_only_and_hybrid() {
    let v2only = Torrent::from_bytes(&fixture("libtorrent-v2only-64k.torrent")).unwrap();
    let m = v2only.v2().unwrap();
    assert_eq!(
        m.info_hash.to_hex(),
        "63cfcd4a795bf729c0f02365fd21da58f396c854e3bc9e4eea6ab843e9798f92"
    );
    assert_eq!(
        paths(m),
        [
            "big.bin",
            "dir/three.bin",
            "empty.txt",
            "mid.bin",
            "small.bin"
        ]
    );
    assert_eq!(m.info.piece_length, 65536);
    assert_eq!(m.info.num_pieces(), 8);
    check_against_data(m, &pack64());
    assert_eq!(m.created_by.as_deref(), Some("libtorrent fixture"));

    let hybrid = Torrent::from_bytes(&fixture("libtorrent-hybrid-64k.torrent")).unwrap();
    let (v1, v2) = (hybrid.v1().unwrap(), hybrid.v2().unwrap());
    assert_eq!(
        v1.info_hash.to_hex(),
        "366725a39710f2e11cacb488b8f9835ab7c19b12"
    );
    assert_eq!(
        v2.info_hash.to_hex(),
        "a30163def0ba61ff30753c32dd54f578b9c37dd55d45a6aeb6ac07d570f4faa8"
    );
    check_against_data(v2, &pack64());
    assert_eq!(v1.info.num_pieces(), v2.info.num_pieces());
    // Our aligned layout is libtorrent's v1 layout, bar the tail padding
    // it adds after the last file.
    let aligned = v2.info.aligned_files();
    assert_eq!(aligned[..], v1.info.files[..v1.info.files.len() - 1]);
    assert_eq!(aligned, m.info.aligned_files());
    // v1 pieces over the aligned bytes (padding reads as zeros) match the
    // SHA-1 hashes, so both swarms fetch the same bytes.
    let mut payload = Vec::new();
    let mut real = pack64().into_iter();
    for f in &v1.info.files {
        if f.padding {
            payload.extend(std::iter::repeat_n(0u8, f.length as usize));
        } else {
            payload.extend(real.next().unwrap());
        }
    }
    assert_eq!(
        v1.info.pieces,
        bt_proto::metainfo::piece_hashes(&payload, 65536)
    );
}

#[test]
fn libtorrent_v2_single_file() {
    let t = Torrent::from_bytes(&fixture("libtorrent-v2only-single.torrent")).unwrap();
    let m = t.v2().unwrap();
    assert_eq!(
        m.info_hash.to_hex(),
        "294a284404884f44e392dbb165fe546a8c992a0d8eae2040b13fa26dee721812"
    );
    assert!(m.info.single_file);
    assert_eq!(m.info.name, b"clip.bin");
    assert_eq!(m.info.num_pieces(), 4);
    check_against_data(m, &[data(100_000, 1)]);
    let aligned = m.info.aligned_files();
    assert_eq!(aligned.len(), 1);
    assert!(aligned[0].path.is_empty());
}

#[test]
fn piece_layers_can_come_from_peers() {
    // Without `piece layers` (a torrent fetched by magnet), pieces of
    // multi-piece files have no expected hash until hash messages bring
    // the layer; single-piece files still verify against their root.
    let bytes = fixture("libtorrent-v2only-64k.torrent");
    let mut root = bencode::decode(&bytes).unwrap();
    if let Value::Dict(d) = &mut root {
        d.remove(b"piece layers".as_slice());
    }
    let m = MetainfoV2::from_bytes(&bencode::encode(&root)).unwrap();
    assert!(m.piece_layers.is_empty());
    assert_eq!(m.expected_piece_hash(0), None);
    let small = m.info.file_pieces(4).start;
    assert!(m.expected_piece_hash(small).is_some());

    // A peer answers a hash request for big.bin's piece layer (layer 2
    // with 64 KiB pieces: 4 hashes, the whole layer) with no uncles
    // needed: the four hashes are the whole tree below the root.
    let big = &m.info.files[0];
    let layer = merkle::piece_layer(&pack64()[0], 65536);
    let request = HashRequest {
        pieces_root: big.pieces_root.unwrap(),
        base_layer: 2,
        index: 0,
        length: 4,
        proof_layers: 0,
    };
    let mut frame = Vec::new();
    HashMessage::Hashes {
        request,
        hashes: layer.clone(),
        uncles: vec![],
    }
    .encode(&mut frame);
    let HashMessage::Hashes { hashes, uncles, .. } =
        HashMessage::decode(frame[4], &frame[5..]).unwrap()
    else {
        panic!("not hashes");
    };
    merkle::verify_proof(&request.pieces_root, big.length, 2, 0, &hashes, &uncles).unwrap();
    merkle::verify_piece_layer(&hashes, big.length, 65536, &request.pieces_root).unwrap();
}

fn edit(name: &str, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut root = bencode::decode(&fixture(name)).unwrap();
    f(&mut root);
    bencode::encode(&root)
}

fn info_mut(root: &mut Value) -> &mut Value {
    match root {
        Value::Dict(d) => d.get_mut(b"info".as_slice()).unwrap(),
        _ => unreachable!(),
    }
}

#[test]
fn bad_v2_torrents_are_refused_clearly() {
    // A hybrid whose v1 part names another file.
    let bytes = edit("libtorrent-hybrid.torrent", |r| {
        if let Value::Dict(info) = info_mut(r)
            && let Some(Value::List(files)) = info.get_mut(b"files".as_slice())
        {
            files[0].insert("path", vec![Value::from("z.txt")]);
        }
    });
    let e = Torrent::from_bytes(&bytes).unwrap_err();
    assert!(matches!(e, MetainfoV2Error::HybridMismatch(_)), "{e}");
    assert!(e.to_string().contains("\"z.txt\""), "{e}");

    // A piece layer that does not hash to its root.
    let bytes = edit("libtorrent-v2only.torrent", |r| {
        if let Value::Dict(d) = r
            && let Some(Value::Dict(layers)) = d.get_mut(b"piece layers".as_slice())
        {
            for v in layers.values_mut() {
                if let Value::Bytes(b) = v {
                    b[0] ^= 1;
                }
            }
        }
    });
    let e = Torrent::from_bytes(&bytes).unwrap_err();
    assert!(matches!(e, MetainfoV2Error::PieceLayer { .. }), "{e}");
    assert!(e.to_string().contains("piece layer of file"), "{e}");

    let e = Torrent::from_bytes(&edit("libtorrent-v2only.torrent", |r| {
        info_mut(r).insert("piece length", 20000)
    }))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "v2 piece length 20000 is not a power of two of at least 16 KiB"
    );
    let e = Torrent::from_bytes(&edit("libtorrent-v2only.torrent", |r| {
        info_mut(r).insert("meta version", 3)
    }))
    .unwrap_err();
    assert_eq!(e, MetainfoV2Error::BadMetaVersion(3));

    // 2^49 bytes in 16 KiB pieces: 2^35 pieces, more than a u32 counts.
    let mut huge = Value::dict();
    huge.insert("length", 1i64 << 49);
    huge.insert("pieces root", vec![1u8; 32]);
    let mut file = Value::dict();
    file.insert("", huge);
    let mut tree = Value::dict();
    tree.insert("huge.bin", file);
    let e = Torrent::from_bytes(&edit("libtorrent-v2only.torrent", |r| {
        info_mut(r).insert("file tree", tree)
    }))
    .unwrap_err();
    assert_eq!(e, MetainfoV2Error::TooManyPieces(1 << 35));

    // A file that is also a directory, and a file without a root.
    let tree = |leaf: Value, extra: bool| {
        let mut file = Value::dict();
        file.insert("", leaf);
        if extra {
            file.insert("child", Value::dict());
        }
        let mut tree = Value::dict();
        tree.insert("f.bin", file);
        tree
    };
    let mut leaf = Value::dict();
    leaf.insert("length", 5);
    leaf.insert("pieces root", vec![1u8; 32]);
    let e = Torrent::from_bytes(&edit("libtorrent-v2only.torrent", |r| {
        info_mut(r).insert("file tree", tree(leaf.clone(), true))
    }))
    .unwrap_err();
    assert!(e.to_string().contains("a file also has children"), "{e}");
    let mut rootless = Value::dict();
    rootless.insert("length", 5);
    let e = Torrent::from_bytes(&edit("libtorrent-v2only.torrent", |r| {
        info_mut(r).insert("file tree", tree(rootless, false))
    }))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "file \"f.bin\" has 5 bytes but no 32-byte `pieces root`"
    );
    // A v1 torrent is not a v2 one.
    assert_eq!(
        MetainfoV2::from_bytes(&fixture("mktorrent-single.torrent")),
        Err(MetainfoV2Error::NotV2)
    );
    assert!(matches!(
        Torrent::from_bytes(&fixture("mktorrent-single.torrent")),
        Ok(Torrent::V1(_))
    ));
}

#[test]
fn truncated_v2_fixtures_are_errors_not_panics() {
    for name in [
        "libtorrent-v2only.torrent",
        "libtorrent-hybrid-64k.torrent",
        "libtorrent-v2only-single.torrent",
    ] {
        let bytes = fixture(name);
        for cut in 0..bytes.len() {
            assert!(
                Torrent::from_bytes(&bytes[..cut]).is_err(),
                "{name} cut at {cut}"
            );
        }
    }
}
