//! Real OS errors surface as actionable `StoreError`s, never panics.
//!
//! Tests here run unprivileged tricks only:
//! - ENOSPC: the torrent's file is a symlink to `/dev/full`, whose every
//!   write fails with ENOSPC.
//! - A parent folder that is a regular file gives ENOTDIR.
//! - EACCES needs a folder we may not write to. Root ignores permission
//!   bits (and CI runs as root), so as root the check reruns in a child
//!   process started as user `nobody`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use piece_store::{Layout, Storage, StorageOptions, StoreError};

fn storage(root: &Path, files: &[(&str, u64)]) -> Storage {
    let files = files
        .iter()
        .map(|&(p, l)| (PathBuf::from(p), l, false))
        .collect();
    let layout = Arc::new(Layout::new(files, 16).unwrap());
    Storage::open(root, layout, StorageOptions::default()).unwrap()
}

#[test]
fn disk_full_names_the_file() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: /dev/full does not exist on this system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = storage(dir.path(), &[("t/a.mkv", 40)]);
    std::fs::create_dir_all(dir.path().join("t")).unwrap();
    std::os::unix::fs::symlink("/dev/full", store.file_path(0)).unwrap();
    let err = store.write(0, 0, &[1; 16]).unwrap_err();
    assert!(matches!(err, StoreError::NoSpace { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "no space left on device writing {}: free up space or move the download folder to a bigger disk",
            store.file_path(0).display()
        )
    );
    // Vectored writes report the same.
    let err = store.write_vectored(1, 0, &[&[1; 8], &[2; 8]]).unwrap_err();
    assert!(matches!(err, StoreError::NoSpace { .. }), "{err:?}");
}

#[test]
fn parent_that_is_a_file_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    // Where the torrent wants its root folder "t", there is a file.
    std::fs::write(dir.path().join("t"), b"in the way").unwrap();
    let store = storage(dir.path(), &[("t/a.mkv", 40)]);
    let err = store.write(0, 0, &[1; 16]).unwrap_err();
    assert!(matches!(err, StoreError::NotADirectory { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is a regular file, not a folder"),
        "{err}"
    );
    assert!(err.path().is_some());
    // Reading through it is an error as well, and not a panic.
    assert!(store.read(0, 0, &mut [0; 16]).is_err());
}

/// Tries to create a torrent file under `locked` and checks the error.
fn assert_permission_denied(locked: &Path) {
    let store = storage(locked, &[("t/a.mkv", 40)]);
    let err = store.write(0, 0, &[1; 16]).unwrap_err();
    assert!(
        matches!(err, StoreError::PermissionDenied { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "permission denied creating {}",
            locked.join("t").display()
        )),
        "{err}"
    );
}

/// Not a test on its own: run as an unprivileged user by
/// `read_only_folder_is_permission_denied` when the suite runs as root.
#[test]
fn eacces_child() {
    if let Ok(locked) = std::env::var("PIECE_STORE_EACCES_CHILD") {
        assert_permission_denied(Path::new(&locked));
    }
}

#[test]
fn read_only_folder_is_permission_denied() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(locked.join("probe"), b"").is_err() {
        assert_permission_denied(&locked);
        return;
    }
    // Root (CAP_DAC_OVERRIDE) writes anyway, and CI runs as root: rerun
    // this check in a child process as user `nobody`.
    std::fs::remove_file(locked.join("probe")).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "eacces_child", "--test-threads=1"])
        .env("PIECE_STORE_EACCES_CHILD", &locked)
        .uid(65534)
        .gid(65534)
        .output();
    match child {
        Ok(out) => assert!(
            out.status.success(),
            "child as nobody failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(e) => eprintln!(
            "skipped: running as root and cannot start a child as user nobody ({e}); \
             the EACCES -> PermissionDenied mapping is still covered by error::tests"
        ),
    }
}
