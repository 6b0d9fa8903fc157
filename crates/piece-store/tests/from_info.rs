//! Layouts from real (parsed) metainfo, including a hostile torrent that
//! tries every trick to write outside its download folder.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bt_proto::metainfo::{FileEntry, Info, TorrentBuilder, piece_hashes};
use piece_store::{Layout, RawFile, Storage, StorageOptions, recheck};

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn hostile_torrent_stays_inside_its_folder() {
    let names: Vec<Vec<Vec<u8>>> = vec![
        vec![b"..".to_vec(), b"..".to_vec(), b"escape.txt".to_vec()],
        vec![b"/etc".to_vec(), b"passwd".to_vec()],
        vec![b"a/../../b".to_vec()],
        vec![b"..\\..\\win.ini".to_vec()],
        vec![b"CON".to_vec(), b"nul.txt".to_vec()],
        vec![b"dup.mkv".to_vec()],
        vec![b"DUP.mkv".to_vec()],
        vec![b"dup.mkv".to_vec(), b"inner".to_vec()],
        vec![b"\xff\xfe".to_vec(), b".".to_vec()],
        vec![vec![b'x'; 400]],
    ];
    let lengths = [10u64, 20, 30, 40, 50, 60, 70, 80, 90, 100];
    let total: u64 = lengths.iter().sum();
    let data: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
    let mut builder = TorrentBuilder::new(b"../../root".to_vec(), 32);
    for (path, &len) in names.iter().zip(&lengths) {
        builder = builder.file(path.clone(), len);
    }
    let builder = builder.pieces(piece_hashes(&data, 32));
    let info = Info::from_bytes(&builder.info_bytes()).unwrap();

    // `from_info` refuses this torrent outright (see below); the sanitizing
    // layer underneath must still keep it inside its folder on its own.
    assert!(Layout::from_info(&info).is_err());
    let raw: Vec<RawFile<'_>> = info
        .files
        .iter()
        .map(|f| RawFile {
            path: &f.path,
            length: f.length,
            padding: f.padding,
        })
        .collect();
    let layout = Arc::new(
        Layout::from_raw(
            &info.name,
            info.single_file,
            &raw,
            info.piece_length,
            info.pieces.len(),
        )
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("downloads");
    for spec in layout.files() {
        assert!(
            spec.path
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "{}",
            spec.path.display()
        );
        assert!(
            spec.path.starts_with(".._.._root"),
            "{}",
            spec.path.display()
        );
    }
    let paths: Vec<String> = layout
        .files()
        .iter()
        .map(|f| f.path.display().to_string())
        .collect();
    assert_eq!(paths[0], ".._.._root/_/_/escape.txt");
    assert_eq!(paths[4], ".._.._root/_CON/_nul.txt");
    assert_eq!(paths[5], ".._.._root/dup (1).mkv");
    assert_eq!(paths[6], ".._.._root/DUP (2).mkv");
    assert_eq!(paths[7], ".._.._root/dup.mkv/inner");
    assert_eq!(paths[8], ".._.._root/%FF%FE/_");

    let storage = Storage::open(&root, layout.clone(), StorageOptions::default()).unwrap();
    for p in 0..layout.num_pieces() {
        let start = layout.piece_start(p) as usize;
        storage
            .write(p, 0, &data[start..start + layout.piece_size(p) as usize])
            .unwrap();
    }
    // Everything landed under the download folder, one file per entry,
    // and reads back intact.
    assert_eq!(all_files(dir.path()).len(), names.len());
    assert!(all_files(dir.path()).iter().all(|p| p.starts_with(&root)));
    let have = recheck(&storage, &info.pieces, &AtomicBool::new(false), |_| {}).unwrap();
    assert!(have.all());
}

#[test]
fn single_file_torrent_is_named_after_the_torrent() {
    let data = vec![7u8; 100];
    let builder = TorrentBuilder::new(b"Movie (2001).mkv".to_vec(), 64)
        .file(Vec::new(), 100)
        .pieces(piece_hashes(&data, 64));
    let info = Info::from_bytes(&builder.info_bytes()).unwrap();
    assert!(info.single_file);
    let layout = Layout::from_info(&info).unwrap();
    assert_eq!(layout.files().len(), 1);
    assert_eq!(layout.files()[0].path, PathBuf::from("Movie (2001).mkv"));
    assert_eq!(layout.num_pieces(), 2);
}

#[test]
fn inconsistent_metainfo_is_refused_with_a_reason() {
    let file = |path: &[&str], length| FileEntry {
        path: path.iter().map(|c| c.as_bytes().to_vec()).collect(),
        length,
        padding: false,
    };
    let base = Info {
        name: b"root".to_vec(),
        piece_length: 16,
        pieces: vec![[0; 20]; 3],
        files: vec![file(&["a"], 20), file(&["b"], 20)],
        private: false,
        single_file: false,
    };
    assert!(Layout::from_info(&base).is_ok());

    let mut wrong_count = base.clone();
    wrong_count.pieces.push([0; 20]);
    let err = Layout::from_info(&wrong_count).unwrap_err().to_string();
    assert!(
        err.contains("invalid torrent \"root\": it has 4 piece hashes but its files add up to 40 bytes, which is 3 pieces of 16 bytes"),
        "{err}"
    );

    let mut overflow = base.clone();
    overflow.files[1].length = u64::MAX;
    let err = Layout::from_info(&overflow).unwrap_err().to_string();
    assert!(err.contains("add up to more than 2^64 bytes"), "{err}");

    let mut no_path = base.clone();
    no_path.files[0].path.clear();
    let err = Layout::from_info(&no_path).unwrap_err().to_string();
    assert!(err.contains("file #0 has an empty path"), "{err}");

    let mut bad_single = base.clone();
    bad_single.single_file = true;
    assert!(Layout::from_info(&bad_single).is_err());

    let mut zero = base.clone();
    zero.piece_length = 0;
    assert!(Layout::from_info(&zero).is_err());
}

/// (torrent name, one file's path components, expected reason).
type HostileCase<'a> = (&'a [u8], Vec<Vec<u8>>, &'a str);

#[test]
fn from_info_refuses_path_traversal_and_absolute_paths() {
    let cases: Vec<HostileCase<'_>> = vec![
        (
            b"root",
            vec![b"..".to_vec(), b"x".to_vec()],
            "path traversal",
        ),
        (b"root", vec![b"a/../../b".to_vec()], "path traversal"),
        (b"root", vec![b"..\\..\\win.ini".to_vec()], "path traversal"),
        (
            b"root",
            vec![b"/etc".to_vec(), b"passwd".to_vec()],
            "absolute path",
        ),
        (b"root", vec![b"C:".to_vec(), b"x".to_vec()], "drive-letter"),
        (b"../../root", vec![b"ok".to_vec()], "path traversal"),
        (b"/root", vec![b"ok".to_vec()], "absolute path"),
    ];
    for (name, path, why) in cases {
        let data = vec![1u8; 10];
        let builder = TorrentBuilder::new(name.to_vec(), 32)
            .file(path.clone(), 10)
            .file(vec![b"other".to_vec()], 0)
            .pieces(piece_hashes(&data, 32));
        let info = Info::from_bytes(&builder.info_bytes()).unwrap();
        let err = Layout::from_info(&info).unwrap_err().to_string();
        assert!(
            err.contains(why) && err.contains("hostile"),
            "{path:?}: {err}"
        );
    }
}
