//! Resume data end to end: checkpoints, the journal, files changed behind
//! our back, a real SIGKILL, and the frozen v1 fixtures.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use bt_proto::{Bitfield, InfoHash};
use piece_store::{Layout, ResumeStore, Resumed, Storage, StorageOptions, StoreError, recheck};
use sha1::{Digest, Sha1};

const PIECE: u32 = 16 * 1024;

/// 64 pieces over three files whose boundaries fall inside pieces.
fn layout() -> Arc<Layout> {
    let files = vec![
        (PathBuf::from("t/a.mkv"), 300_000, false),
        (PathBuf::from("t/sub/b.srt"), 5_000, false),
        (
            PathBuf::from("t/c.nfo"),
            u64::from(PIECE) * 64 - 305_000,
            false,
        ),
    ];
    Arc::new(Layout::new(files, PIECE).unwrap())
}

fn piece_data(layout: &Layout, piece: u32) -> Vec<u8> {
    (0..layout.piece_size(piece))
        .map(|i| (piece.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8)
        .collect()
}

fn hashes(layout: &Layout) -> Vec<[u8; 20]> {
    (0..layout.num_pieces())
        .map(|p| Sha1::digest(piece_data(layout, p)).into())
        .collect()
}

fn write_piece(storage: &Storage, piece: u32) {
    storage
        .write(piece, 0, &piece_data(storage.layout(), piece))
        .unwrap();
}

/// What the engine does after `load`: trust `checkpointed`, re-hash the
/// rest.
fn resolve(storage: &Storage, resumed: &Resumed, hashes: &[[u8; 20]]) -> Bitfield {
    let mut have = resumed.checkpointed.clone();
    for &p in &resumed.unconfirmed {
        if storage.hash_piece(p).ok() == Some(hashes[p as usize]) {
            have.set(p);
        }
    }
    have
}

fn bits(b: &Bitfield) -> Vec<u32> {
    b.iter_ones().collect()
}

fn set_mtime(path: &Path, ns: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
        .unwrap();
}

#[test]
fn checkpoint_journal_reload() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout();
    let hashes = hashes(&layout);
    let storage = Storage::open(
        &dir.path().join("dl"),
        layout.clone(),
        StorageOptions::default(),
    )
    .unwrap();
    let store = ResumeStore::open(&dir.path().join("resume")).unwrap();
    let ih = InfoHash([9; 20]);
    assert_eq!(store.load(&ih, &layout).unwrap(), None);

    let mut journal = store.journal(&ih, layout.num_pieces()).unwrap();
    let mut have = Bitfield::new(layout.num_pieces());
    // Pieces 0..=17 all lie in a.mkv (300_000 bytes = 18.3 pieces).
    for p in 0..10 {
        write_piece(&storage, p);
        journal.record(p).unwrap();
        have.set(p);
    }
    journal.checkpoint(&storage, &have).unwrap();
    // After the checkpoint: 40..44 land in c.nfo only, 45 is in flight.
    for p in 40..45 {
        write_piece(&storage, p);
        journal.record(p).unwrap();
        have.set(p);
    }
    write_piece(&storage, 45);
    drop(journal);

    let resumed = store.load_for(&ih, &storage).unwrap().unwrap();
    // a.mkv was not touched after the checkpoint: 0..10 stay trusted.
    assert_eq!(bits(&resumed.checkpointed), (0..10).collect::<Vec<_>>());
    assert_eq!(resumed.unconfirmed, (40..45).collect::<Vec<_>>());
    // c.nfo did not exist at the checkpoint (so nothing of it was trusted);
    // b.srt was never written.
    assert_eq!(resumed.changed_files, [2]);
    assert_eq!(resumed.missing_files, [1]);
    assert_eq!(bits(&resolve(&storage, &resumed, &hashes)), bits(&have));
    // `load` checks the folder recorded in the checkpoint: the same here.
    assert_eq!(store.load(&ih, &layout).unwrap().unwrap(), resumed);

    // A second checkpoint empties the journal of what it covers, keeps the
    // rest, and a reload trusts everything.
    let mut journal = store.journal(&ih, layout.num_pieces()).unwrap();
    journal.record(50).unwrap(); // recorded but (by mistake) not in `have`
    journal.checkpoint(&storage, &have).unwrap();
    let resumed = store.load_for(&ih, &storage).unwrap().unwrap();
    assert_eq!(bits(&resumed.checkpointed), bits(&have));
    assert_eq!(resumed.unconfirmed, [50]);
    let journal_len = std::fs::metadata(store.dir().join(format!("{}.journal", ih.to_hex())))
        .unwrap()
        .len();
    assert_eq!(journal_len, 16 + 8);

    store.remove(&ih).unwrap();
    assert_eq!(store.load(&ih, &layout).unwrap(), None);
    store.remove(&ih).unwrap();
}

#[test]
fn torn_journal_tail_is_ignored_and_cut_before_appending() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout();
    let storage = Storage::open(
        &dir.path().join("dl"),
        layout.clone(),
        StorageOptions::default(),
    )
    .unwrap();
    let store = ResumeStore::open(&dir.path().join("resume")).unwrap();
    let ih = InfoHash([1; 20]);
    let mut journal = store.journal(&ih, layout.num_pieces()).unwrap();
    for p in [5, 2, 7] {
        write_piece(&storage, p);
        journal.record(p).unwrap();
    }
    drop(journal);
    let path = store.dir().join(format!("{}.journal", ih.to_hex()));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&[9, 0, 0]).unwrap(); // a record cut short
    drop(f);

    let resumed = store.load_for(&ih, &storage).unwrap().unwrap();
    assert!(resumed.checkpointed.none());
    assert_eq!(resumed.unconfirmed, [2, 5, 7]);

    // Reopening cuts the tail, so the next record is readable.
    let mut journal = store.journal(&ih, layout.num_pieces()).unwrap();
    journal.record(9).unwrap();
    let resumed = store.load_for(&ih, &storage).unwrap().unwrap();
    assert_eq!(resumed.unconfirmed, [2, 5, 7, 9]);

    // A journal for a different piece count is ignored by load and started
    // afresh by journal().
    let other = Layout::new(vec![(PathBuf::from("x"), 100, false)], PIECE).unwrap();
    assert_eq!(store.load(&ih, &other).unwrap(), None);
    drop(store.journal(&ih, 1).unwrap());
    assert_eq!(store.load(&ih, &layout).unwrap(), None);
}

#[test]
fn files_changed_or_deleted_after_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout();
    let hashes = hashes(&layout);
    let storage = Storage::open(
        &dir.path().join("dl"),
        layout.clone(),
        StorageOptions::default(),
    )
    .unwrap();
    let store = ResumeStore::open(&dir.path().join("resume")).unwrap();
    let ih = InfoHash([2; 20]);
    let mut journal = store.journal(&ih, layout.num_pieces()).unwrap();
    let all = Bitfield::full(layout.num_pieces());
    for p in 0..layout.num_pieces() {
        write_piece(&storage, p);
    }
    journal.checkpoint(&storage, &all).unwrap();
    let clean = store.load_for(&ih, &storage).unwrap().unwrap();
    assert!(clean.checkpointed.all());
    assert!(clean.unconfirmed.is_empty());

    // Someone edits a.mkv (same size, new mtime): its pieces are no longer
    // trusted but offered for re-hashing; the edited one fails.
    let a = storage.file_path(0);
    let f = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"XXXX", 20_000).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(f);
    let resumed = store.load_for(&ih, &storage).unwrap().unwrap();
    assert_eq!(resumed.changed_files, [0]);
    let a_pieces: Vec<u32> = layout.file_pieces(0).collect();
    assert_eq!(resumed.unconfirmed, a_pieces);
    assert!(a_pieces.iter().all(|&p| !resumed.checkpointed.get(p)));
    let have = resolve(&storage, &resumed, &hashes);
    assert_eq!(
        bits(&have),
        (0..layout.num_pieces())
            .filter(|&p| p != 1)
            .collect::<Vec<_>>()
    );

    // b.srt is deleted: pieces touching it are dropped outright, including
    // the one it shares with the changed a.mkv.
    std::fs::remove_file(storage.file_path(1)).unwrap();
    let resumed = store.load_for(&ih, &storage).unwrap().unwrap();
    assert_eq!(resumed.missing_files, [1]);
    let b_pieces: Vec<u32> = layout.file_pieces(1).collect();
    assert!(
        b_pieces
            .iter()
            .all(|p| !resumed.checkpointed.get(*p) && !resumed.unconfirmed.contains(p))
    );
    assert_eq!(resumed.unconfirmed, (0..b_pieces[0]).collect::<Vec<_>>());

    // Truncated c.nfo: size differs, so its pieces are re-hashed and the
    // ones past the new end are found missing.
    let c = storage.file_path(2);
    let f = std::fs::OpenOptions::new().write(true).open(&c).unwrap();
    let c_len = f.metadata().unwrap().len();
    f.set_len(c_len - 1).unwrap();
    drop(f);
    let resumed = store.load_for(&ih, &storage).unwrap().unwrap();
    assert_eq!(resumed.changed_files, [0, 2]);
    let have = resolve(&storage, &resumed, &hashes);
    assert!(!have.get(layout.num_pieces() - 1));
    assert!(have.get(layout.num_pieces() - 2));
}

#[test]
fn damaged_or_foreign_snapshots_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout();
    let storage = Storage::open(
        &dir.path().join("dl"),
        layout.clone(),
        StorageOptions::default(),
    )
    .unwrap();
    let store = ResumeStore::open(&dir.path().join("resume")).unwrap();
    let ih = InfoHash([3; 20]);
    let mut journal = store.journal(&ih, layout.num_pieces()).unwrap();
    journal
        .checkpoint(&storage, &Bitfield::new(layout.num_pieces()))
        .unwrap();
    let path = store.dir().join(format!("{}.resume", ih.to_hex()));
    let good = std::fs::read(&path).unwrap();

    // Another torrent's layout.
    let other = Layout::new(vec![(PathBuf::from("x"), 1 << 20, false)], PIECE).unwrap();
    let err = store.load(&ih, &other).unwrap_err();
    assert!(matches!(err, StoreError::ResumeCorrupt { .. }));
    assert!(
        err.to_string()
            .contains("delete it and Riptide will recheck"),
        "{err}"
    );

    // Truncated.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    assert!(matches!(
        store.load(&ih, &layout),
        Err(StoreError::ResumeCorrupt { .. })
    ));

    // Renamed from another torrent.
    std::fs::write(&path, &good).unwrap();
    std::fs::rename(
        &path,
        store
            .dir()
            .join(format!("{}.resume", InfoHash([4; 20]).to_hex())),
    )
    .unwrap();
    let err = store.load(&InfoHash([4; 20]), &layout).unwrap_err();
    assert!(
        err.to_string().contains("it belongs to torrent 0303"),
        "{err}"
    );

    // From the future.
    let pos = good.windows(12).position(|w| w == b"7:versioni1e").unwrap();
    let mut newer = good.clone();
    newer[pos + 10] = b'7';
    std::fs::write(&path, &newer).unwrap();
    let err = store.load(&ih, &layout).unwrap_err();
    assert!(
        matches!(err, StoreError::ResumeTooNew { version: 7, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade Riptide"), "{err}");
}

#[test]
fn metainfo_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = ResumeStore::open(dir.path()).unwrap();
    let info = b"d4:name1:xe".to_vec();
    let ih = InfoHash(Sha1::digest(&info).into());
    assert_eq!(store.load_metainfo(&ih).unwrap(), None);
    store.save_metainfo(&ih, &info).unwrap();
    assert_eq!(store.load_metainfo(&ih).unwrap(), Some(info.clone()));
    // Stored under the wrong hash (or damaged): refused, not returned.
    let wrong = InfoHash([0; 20]);
    store.save_metainfo(&wrong, &info).unwrap();
    assert!(matches!(
        store.load_metainfo(&wrong),
        Err(StoreError::ResumeCorrupt { .. })
    ));
    store.remove(&ih).unwrap();
    assert_eq!(store.load_metainfo(&ih).unwrap(), None);
}

/// Loads the frozen v1 files (see tests/fixtures/README.md). Must keep
/// passing unchanged for as long as Riptide exists.
#[test]
fn frozen_v1_fixture_loads() {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![
        (PathBuf::from("t/a"), 100, false),
        (PathBuf::from("t/pad"), 28, true),
        (PathBuf::from("t/b"), 300, false),
        (PathBuf::from("t/c"), 0, false),
        (PathBuf::from("t/d"), 50, false),
    ];
    let layout = Arc::new(Layout::new(files, 64).unwrap());
    let ih = InfoHash(std::array::from_fn(|i| i as u8 + 1));
    let store = ResumeStore::open(&dir.path().join("resume")).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::copy(
        fixtures.join("v1.resume"),
        store.dir().join(format!("{}.resume", ih.to_hex())),
    )
    .unwrap();
    std::fs::copy(
        fixtures.join("v1.journal"),
        store.dir().join(format!("{}.journal", ih.to_hex())),
    )
    .unwrap();

    // The files as they were at checkpoint time; t/d was never written.
    let storage = Storage::open(
        &dir.path().join("dl"),
        layout.clone(),
        StorageOptions::default(),
    )
    .unwrap();
    for (file, size, ns) in [
        (0, 100, 1_700_000_000_123_456_789),
        (2, 300, 1_700_000_001_000_000_000),
        (3, 0, 1_700_000_002_000_000_007),
    ] {
        let path = storage.file_path(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![0u8; size]).unwrap();
        set_mtime(&path, ns);
    }

    let resumed = store.load_for(&ih, &storage).unwrap().unwrap();
    assert_eq!(bits(&resumed.checkpointed), [0, 1, 2, 5]);
    // Journal: 3, 6, 5 and a torn tail. 5 is already trusted, 6 touches
    // the missing t/d.
    assert_eq!(resumed.unconfirmed, [3]);
    assert_eq!(resumed.missing_files, [4]);
    assert!(resumed.changed_files.is_empty());
    assert_eq!(
        resumed.download_dir.as_deref(),
        Some(Path::new(
            "/srv/riptide/downloads/0102030405060708090a0b0c0d0e0f1011121314"
        ))
    );

    // `load` looks in the recorded folder, which does not exist here.
    let elsewhere = store.load(&ih, &layout).unwrap().unwrap();
    assert!(elsewhere.checkpointed.none());
    assert_eq!(elsewhere.missing_files, [0, 2, 4]);

    // The journal can be reopened and appended to.
    let mut journal = store.journal(&ih, layout.num_pieces()).unwrap();
    journal.record(4).unwrap();
    assert_eq!(
        store.load_for(&ih, &storage).unwrap().unwrap().unconfirmed,
        [3, 4]
    );
}

/// Not a test on its own: the child process of
/// `sigkill_loses_at_most_the_piece_in_flight`.
#[test]
fn sigkill_child() {
    let Ok(dir) = std::env::var("PIECE_STORE_SIGKILL_CHILD") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let layout = layout();
    let storage =
        Storage::open(&dir.join("dl"), layout.clone(), StorageOptions::default()).unwrap();
    let store = ResumeStore::open(&dir.join("resume")).unwrap();
    let mut journal = store
        .journal(&InfoHash([5; 20]), layout.num_pieces())
        .unwrap();
    let mut have = Bitfield::new(layout.num_pieces());
    let mut out = std::io::stdout().lock();
    // A scattered order touches every file between checkpoints.
    for i in 0..layout.num_pieces() {
        let p = (i * 37) % layout.num_pieces();
        let data = piece_data(&layout, p);
        // Two block writes per piece, like the engine: a kill between them
        // leaves a half-written piece.
        let half = data.len() / 2;
        storage.write(p, 0, &data[..half]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
        storage.write(p, half as u32, &data[half..]).unwrap();
        journal.record(p).unwrap();
        have.set(p);
        writeln!(out, "recorded {p}").unwrap();
        out.flush().unwrap();
        if i % 7 == 6 {
            journal.checkpoint(&storage, &have).unwrap();
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn sigkill_loses_at_most_the_piece_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PIECE_STORE_SIGKILL_CHILD", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reported = Vec::new();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        if let Some(p) = line.strip_prefix("recorded ") {
            reported.push(p.parse::<u32>().unwrap());
            if reported.len() == 40 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(reported.len(), 40, "child died early");

    let layout = layout();
    let hashes = hashes(&layout);
    let storage = Storage::open(
        &dir.path().join("dl"),
        layout.clone(),
        StorageOptions::default(),
    )
    .unwrap();
    let store = ResumeStore::open(&dir.path().join("resume")).unwrap();
    let resumed = store
        .load_for(&InfoHash([5; 20]), &storage)
        .unwrap()
        .unwrap();
    let have = resolve(&storage, &resumed, &hashes);
    for p in &reported {
        assert!(
            have.get(*p),
            "piece {p} was recorded before the kill but is lost"
        );
    }
    let on_disk = recheck(&storage, &hashes, &AtomicBool::new(false), |_| {}).unwrap();
    for p in have.iter_ones() {
        assert!(on_disk.get(p), "piece {p} is claimed but not on disk");
    }
    // Good on disk but not resumed: only a piece whose record() the kill
    // interrupted.
    let lost = on_disk.count_ones() - have.count_ones();
    assert!(
        lost <= 1,
        "{lost} verified pieces would be downloaded again"
    );
}
