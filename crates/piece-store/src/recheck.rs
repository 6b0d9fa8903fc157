//! Full recheck: hash every piece on disk against the torrent's hashes.
//!
//! Used when there is no resume data (a torrent added over existing files)
//! or the user asks for it. Pieces that cannot be read because their file is
//! missing or too short are simply not set; any other I/O error stops the
//! recheck, because it means the result would be wrong (a permission
//! problem, a failing disk) rather than "not downloaded yet".

use std::sync::atomic::{AtomicBool, Ordering};

use bt_proto::Bitfield;

use crate::error::StoreError;
use crate::storage::Storage;

/// Hashes every piece in order. `cancel` is checked before each piece;
/// `progress` is called after each with the number of pieces checked so far.
pub fn recheck(
    storage: &Storage,
    hashes: &[[u8; 20]],
    cancel: &AtomicBool,
    mut progress: impl FnMut(u32),
) -> Result<Bitfield, StoreError> {
    let layout = storage.layout();
    let n = layout.num_pieces();
    if hashes.len() != n as usize {
        return Err(StoreError::InvalidTorrent {
            name: storage.root().display().to_string(),
            reason: format!("{} piece hashes for {n} pieces", hashes.len()),
        });
    }
    let mut have = Bitfield::new(n);
    for (piece, want) in (0..n).zip(hashes) {
        if cancel.load(Ordering::Relaxed) {
            return Err(StoreError::Cancelled {
                path: storage.root().to_path_buf(),
            });
        }
        match storage.hash_piece(piece) {
            Ok(got) if got == *want => {
                have.set(piece);
            }
            Ok(_) | Err(StoreError::NotOnDisk { .. }) => {}
            Err(e) => return Err(e),
        }
        progress(piece + 1);
    }
    Ok(have)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;
    use crate::storage::StorageOptions;
    use sha1::{Digest, Sha1};
    use std::path::PathBuf;
    use std::sync::Arc;

    #[test]
    fn finds_exactly_the_written_pieces() {
        let files = vec![
            (PathBuf::from("t/a"), 100, false),
            (PathBuf::from("t/pad"), 28, true),
            (PathBuf::from("t/b"), 300, false),
        ];
        let layout = Arc::new(Layout::new(files, 64).unwrap());
        let data: Vec<u8> = (0..layout.total_length())
            .map(|i| {
                if (100..128).contains(&i) {
                    0
                } else {
                    (i * 7 % 251) as u8
                }
            })
            .collect();
        let hashes: Vec<[u8; 20]> = data.chunks(64).map(|c| Sha1::digest(c).into()).collect();
        let dir = tempfile::tempdir().unwrap();
        let store = Storage::open(dir.path(), layout.clone(), StorageOptions::default()).unwrap();
        let written = [1u32, 2, 4, 6];
        for &p in &written {
            let s = layout.piece_start(p) as usize;
            store
                .write(p, 0, &data[s..s + layout.piece_size(p) as usize])
                .unwrap();
        }
        // Piece 3 is written with wrong data.
        store.write(3, 0, &[0xEE; 64]).unwrap();
        let mut calls = Vec::new();
        let have = recheck(&store, &hashes, &AtomicBool::new(false), |c| calls.push(c)).unwrap();
        assert_eq!(have.iter_ones().collect::<Vec<_>>(), written);
        assert_eq!(calls, (1..=layout.num_pieces()).collect::<Vec<_>>());

        // Nothing on disk at all: nothing set, no error.
        let empty = tempfile::tempdir().unwrap();
        let store = Storage::open(empty.path(), layout, StorageOptions::default()).unwrap();
        let have = recheck(&store, &hashes, &AtomicBool::new(false), |_| {}).unwrap();
        assert!(have.none());
    }

    #[test]
    fn cancel_stops_it() {
        let layout = Arc::new(Layout::new(vec![(PathBuf::from("a"), 10, false)], 4).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let store = Storage::open(dir.path(), layout, StorageOptions::default()).unwrap();
        let cancel = AtomicBool::new(false);
        let err = recheck(&store, &[[0; 20]; 3], &cancel, |_| {
            cancel.store(true, Ordering::Relaxed)
        });
        assert!(matches!(err, Err(StoreError::Cancelled { .. })));
        assert!(recheck(&store, &[[0; 20]; 2], &AtomicBool::new(false), |_| {}).is_err());
    }
}
