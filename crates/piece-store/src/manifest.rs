//! The media root's storage manifest: which folder layout it follows and
//! what lives in it.
//!
//! `MEDIA_ROOT/riptide-store.json` holds a [`StorageManifest`]
//! `{ version, layout, migrations }`. The layout (version 2, current):
//!
//! ```text
//! MEDIA_ROOT/
//!   riptide-store.json
//!   downloads/{info_hash}/   torrents being downloaded or seeded (lowercase hex)
//!   library/{movie_id}/      imported films (the media library's movie id)
//! ```
//!
//! Version 1 named folders after what people read: `downloads/<torrent
//! name>/` and `library/<Title (Year)>/`, with the manifest mapping each
//! name to its info-hash or movie id. Names collide (two releases of one
//! film, two films of one title) and change (a TMDB match corrects a title,
//! which renamed a folder under a seeding torrent), so version 2 names every
//! folder by its stable id. [`StorageManifest::open`] upgrades older
//! versions in place, one step at a time ([`upgrade_v1`] …), and appends a
//! [`MigrationRecord`] per step.
//!
//! Crash safety: the manifest is replaced atomically (temp file, fsync,
//! rename, fsync folder). An upgrade renames folders first (each rename is
//! atomic and the upgrade is idempotent: a folder already at its new name
//! counts as moved) and writes the new manifest last, so a kill at any point
//! leaves the old manifest and a half-renamed tree that the next `open`
//! finishes. Every conflict is checked before the first rename; a conflict
//! stops the upgrade with nothing deleted.
//!
//! Frozen fixtures of every version: `tests/fixtures/manifest/`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// File name of the manifest inside the media root.
pub const MANIFEST_FILE: &str = "riptide-store.json";
/// The layout version this Riptide writes.
pub const CURRENT_VERSION: u32 = 2;
/// Folder of active torrents inside the media root.
pub const DOWNLOADS_DIR: &str = "downloads";
/// Folder of imported films inside the media root.
pub const LIBRARY_DIR: &str = "library";

/// The current (version 2) manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageManifest {
    pub version: u32,
    pub layout: StoreLayout,
    /// Every upgrade this media root went through, oldest first.
    pub migrations: Vec<MigrationRecord>,
}

/// What lives in the media root; folder names follow from the ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreLayout {
    /// Info-hashes (lowercase hex) with a folder `downloads/{info_hash}/`.
    pub downloads: BTreeSet<String>,
    /// Movie ids with a folder `library/{movie_id}/`.
    pub library: BTreeSet<i64>,
}

/// One upgrade step that was applied to this media root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRecord {
    pub from: u32,
    pub to: u32,
    /// Unix time (seconds) when the step finished.
    pub at_unix: u64,
    /// Folders renamed, relative to the media root.
    pub moved: Vec<MovedFolder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedFolder {
    pub from: String,
    pub to: String,
}

/// Version 1 as it was written (frozen: `tests/fixtures/manifest/v1.json`).
#[derive(Debug, Deserialize)]
struct ManifestV1 {
    layout: LayoutV1,
    #[serde(default)]
    migrations: Vec<MigrationRecord>,
}

#[derive(Debug, Deserialize)]
struct LayoutV1 {
    /// Folder name under `downloads/` → info-hash (hex).
    downloads: BTreeMap<String, String>,
    /// Folder name under `library/` → movie id.
    library: BTreeMap<String, i64>,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

/// A manifest as read from disk, before upgrading.
#[derive(Debug)]
enum Versioned {
    V1(ManifestV1),
    V2(StorageManifest),
}

impl Default for StorageManifest {
    fn default() -> Self {
        StorageManifest {
            version: CURRENT_VERSION,
            layout: StoreLayout::default(),
            migrations: Vec::new(),
        }
    }
}

impl StorageManifest {
    /// Opens the media root: creates an empty current-version layout if
    /// there is no manifest, upgrades an older one on disk (see the module
    /// docs), and refuses one from a newer Riptide.
    pub fn open(root: &Path) -> Result<StorageManifest, StoreError> {
        Self::open_with(root, &mut |_| {})
    }

    pub(crate) fn open_with(
        root: &Path,
        after_rename: &mut dyn FnMut(usize),
    ) -> Result<StorageManifest, StoreError> {
        let path = root.join(MANIFEST_FILE);
        for dir in [
            root.to_path_buf(),
            root.join(DOWNLOADS_DIR),
            root.join(LIBRARY_DIR),
        ] {
            fs::create_dir_all(&dir).map_err(|e| StoreError::io("creating", &dir, e))?;
        }
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let m = StorageManifest::default();
                m.save(root)?;
                return Ok(m);
            }
            Err(e) => return Err(StoreError::io("reading", &path, e)),
        };
        match parse(&bytes, &path)? {
            Versioned::V2(m) => Ok(m),
            Versioned::V1(v1) => {
                let m = upgrade_v1(root, v1, &path, after_rename)?;
                m.save(root)?;
                Ok(m)
            }
        }
    }

    /// Parses any known version and upgrades it in memory only (no folder
    /// is renamed): what `open` would produce, minus the timestamps.
    pub fn parse_any(bytes: &[u8], path: &Path) -> Result<(u32, StorageManifest), StoreError> {
        Ok(match parse(bytes, path)? {
            Versioned::V2(m) => (2, m),
            Versioned::V1(v1) => (1, plan_v1(&v1, path)?.0),
        })
    }

    /// The manifest's bytes as written to disk (pretty JSON, newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = serde_json::to_vec_pretty(self).expect("manifest serializes");
        b.push(b'\n');
        b
    }

    /// Replaces `root/riptide-store.json` atomically.
    pub fn save(&self, root: &Path) -> Result<(), StoreError> {
        write_atomically(&root.join(MANIFEST_FILE), &self.to_bytes())
    }

    /// `root/downloads/{info_hash}`.
    pub fn download_dir(root: &Path, info_hash: &str) -> PathBuf {
        root.join(DOWNLOADS_DIR).join(info_hash)
    }

    /// `root/library/{movie_id}`.
    pub fn library_dir(root: &Path, movie_id: i64) -> PathBuf {
        root.join(LIBRARY_DIR).join(movie_id.to_string())
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::ManifestCorrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn parse(bytes: &[u8], path: &Path) -> Result<Versioned, StoreError> {
    let v: VersionOnly = serde_json::from_slice(bytes).map_err(|e| corrupt(path, e.to_string()))?;
    match v.version {
        1 => {
            let m: ManifestV1 =
                serde_json::from_slice(bytes).map_err(|e| corrupt(path, e.to_string()))?;
            Ok(Versioned::V1(m))
        }
        2 => {
            let m: StorageManifest =
                serde_json::from_slice(bytes).map_err(|e| corrupt(path, e.to_string()))?;
            for h in &m.layout.downloads {
                if !is_info_hash(h) {
                    return Err(corrupt(path, format!("\"{h}\" is not a hex info-hash")));
                }
            }
            Ok(Versioned::V2(m))
        }
        0 => Err(corrupt(path, "version 0 does not exist")),
        version => Err(StoreError::ManifestTooNew {
            path: path.to_path_buf(),
            version,
        }),
    }
}

/// v1 info-hashes are 40 hex digits (SHA-1), v2 torrents' 64 (SHA-256).
fn is_info_hash(h: &str) -> bool {
    (h.len() == 40 || h.len() == 64)
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A v1 folder name must be one plain path component.
fn is_folder_name(name: &str) -> bool {
    let mut c = Path::new(name).components();
    matches!((c.next(), c.next()), (Some(Component::Normal(_)), None)) && !name.contains('/')
}

type Plan = Vec<(PathBuf, PathBuf)>;

/// The v2 manifest a v1 one becomes, and the renames (relative to the
/// media root) that take the folders there.
fn plan_v1(v1: &ManifestV1, path: &Path) -> Result<(StorageManifest, Plan), StoreError> {
    let mut m = StorageManifest {
        version: CURRENT_VERSION,
        layout: StoreLayout::default(),
        migrations: v1.migrations.clone(),
    };
    let mut plan = Vec::new();
    for (name, hash) in &v1.layout.downloads {
        let hash = hash.to_ascii_lowercase();
        if !is_folder_name(name) || !is_info_hash(&hash) {
            return Err(corrupt(
                path,
                format!("bad download entry \"{name}\": \"{hash}\""),
            ));
        }
        if !m.layout.downloads.insert(hash.clone()) {
            return Err(corrupt(path, format!("info-hash {hash} is listed twice")));
        }
        plan.push((
            Path::new(DOWNLOADS_DIR).join(name),
            Path::new(DOWNLOADS_DIR).join(hash),
        ));
    }
    for (name, &id) in &v1.layout.library {
        if !is_folder_name(name) || id < 0 {
            return Err(corrupt(path, format!("bad library entry \"{name}\": {id}")));
        }
        if !m.layout.library.insert(id) {
            return Err(corrupt(path, format!("movie id {id} is listed twice")));
        }
        plan.push((
            Path::new(LIBRARY_DIR).join(name),
            Path::new(LIBRARY_DIR).join(id.to_string()),
        ));
    }
    Ok((m, plan))
}

fn exists(p: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("reading", p, e)),
    }
}

/// Version 1 → 2: folders named by torrent name / title become folders
/// named by info-hash / movie id. Idempotent, see the module docs.
fn upgrade_v1(
    root: &Path,
    v1: ManifestV1,
    path: &Path,
    after_rename: &mut dyn FnMut(usize),
) -> Result<StorageManifest, StoreError> {
    let (mut m, plan) = plan_v1(&v1, path)?;
    // All checks before the first rename, so a conflict changes nothing.
    for (old, new) in &plan {
        if old != new && exists(&root.join(old))? && exists(&root.join(new))? {
            return Err(StoreError::MigrationConflict {
                path: root.join(old),
                other: root.join(new),
            });
        }
    }
    let mut moved = Vec::new();
    for (old, new) in &plan {
        if old == new {
            continue;
        }
        let (from, to) = (root.join(old), root.join(new));
        if exists(&from)? {
            fs::rename(&from, &to).map_err(|e| StoreError::io("renaming", &from, e))?;
            after_rename(moved.len() + 1);
        } else if !exists(&to)? {
            // Gone before the upgrade (deleted by hand); nothing to move.
            continue;
        }
        moved.push(MovedFolder {
            from: old.to_string_lossy().into_owned(),
            to: new.to_string_lossy().into_owned(),
        });
    }
    for dir in [DOWNLOADS_DIR, LIBRARY_DIR] {
        sync_dir(&root.join(dir))?;
    }
    let at_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    m.migrations.push(MigrationRecord {
        from: 1,
        to: 2,
        at_unix,
        moved,
    });
    Ok(m)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("syncing", dir, e))
}

/// Temp file, fsync, rename, fsync the folder: after a crash `path` holds
/// the old or the new bytes, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).map_err(|e| StoreError::io("creating", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| StoreError::io("writing", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| StoreError::io("renaming", &tmp, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const V1: &str = r#"{
  "version": 1,
  "layout": {
    "downloads": {"Big Buck Bunny": "0123456789abcdef0123456789abcdef01234567"},
    "library": {"Amélie (2001)": 7, "Sintel (2010)": 9}
  },
  "migrations": []
}"#;

    fn v1_tree(root: &Path) {
        fs::create_dir_all(root.join("downloads/Big Buck Bunny/Sample")).unwrap();
        fs::write(root.join("downloads/Big Buck Bunny/bbb.mkv"), b"bunny").unwrap();
        fs::write(root.join("downloads/Big Buck Bunny/Sample/s.mkv"), b"s").unwrap();
        fs::create_dir_all(root.join("library/Amélie (2001)")).unwrap();
        fs::write(root.join("library/Amélie (2001)/a.avi"), b"amelie").unwrap();
        fs::create_dir_all(root.join("library/Sintel (2010)")).unwrap();
        fs::write(root.join("library/Sintel (2010)/s.mkv"), b"sintel").unwrap();
        fs::write(root.join(MANIFEST_FILE), V1).unwrap();
    }

    fn check_v2_tree(root: &Path) {
        let h = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            fs::read(root.join(format!("downloads/{h}/bbb.mkv"))).unwrap(),
            b"bunny"
        );
        assert_eq!(
            fs::read(root.join(format!("downloads/{h}/Sample/s.mkv"))).unwrap(),
            b"s"
        );
        assert_eq!(fs::read(root.join("library/7/a.avi")).unwrap(), b"amelie");
        assert_eq!(fs::read(root.join("library/9/s.mkv")).unwrap(), b"sintel");
        assert!(!root.join("library/Amélie (2001)").exists());
    }

    #[test]
    #[ignore = "helper process for a_kill_during_the_upgrade_loses_nothing"]
    fn upgrade_child() {
        let (Ok(root), Ok(k)) = (std::env::var("MF_ROOT"), std::env::var("MF_KILL_AFTER")) else {
            return;
        };
        let k: usize = k.parse().unwrap();
        let _ = StorageManifest::open_with(Path::new(&root), &mut |n| {
            if n == k {
                // SAFETY: plain syscalls on our own process.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            }
        });
    }

    /// SIGKILL after each folder rename of a v1 → v2 upgrade: the next open
    /// finishes it and every file is where v2 puts it.
    #[test]
    fn a_kill_during_the_upgrade_loses_nothing() {
        let exe = std::env::current_exe().unwrap();
        for k in 1..=3 {
            let t = tempfile::tempdir().unwrap();
            v1_tree(t.path());
            let out = Command::new(&exe)
                .args([
                    "--exact",
                    "manifest::tests::upgrade_child",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env("MF_ROOT", t.path())
                .env("MF_KILL_AFTER", k.to_string())
                .output()
                .unwrap();
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&out.status),
                Some(libc::SIGKILL),
                "child was not killed after rename {k}"
            );
            // Still version 1 on disk: the manifest is written last.
            let (v, _) = StorageManifest::parse_any(
                &fs::read(t.path().join(MANIFEST_FILE)).unwrap(),
                t.path(),
            )
            .unwrap();
            assert_eq!(v, 1);
            let m = StorageManifest::open(t.path()).unwrap();
            assert_eq!(m.version, 2);
            assert_eq!(m.migrations.len(), 1);
            assert_eq!(m.migrations[0].moved.len(), 3);
            check_v2_tree(t.path());
        }
    }

    #[test]
    fn conflicts_stop_the_upgrade_before_any_rename() {
        let t = tempfile::tempdir().unwrap();
        v1_tree(t.path());
        fs::create_dir_all(t.path().join("library/9")).unwrap();
        let err = StorageManifest::open(t.path()).unwrap_err();
        assert!(matches!(err, StoreError::MigrationConflict { .. }), "{err}");
        assert!(t.path().join("library/Amélie (2001)/a.avi").exists());
        assert!(t.path().join("downloads/Big Buck Bunny/bbb.mkv").exists());
    }

    #[test]
    fn hostile_v1_names_are_refused() {
        for bad in [
            r#"{"version":1,"layout":{"downloads":{"../x":"0123456789abcdef0123456789abcdef01234567"},"library":{}}}"#,
            r#"{"version":1,"layout":{"downloads":{},"library":{"a/b":1}}}"#,
            r#"{"version":1,"layout":{"downloads":{"x":"zz"},"library":{}}}"#,
            r#"{"version":1,"layout":{"downloads":{},"library":{"a":1,"b":1}}}"#,
        ] {
            let err = StorageManifest::parse_any(bad.as_bytes(), Path::new("m.json")).unwrap_err();
            assert!(
                matches!(err, StoreError::ManifestCorrupt { .. }),
                "{bad}: {err}"
            );
        }
    }
}
