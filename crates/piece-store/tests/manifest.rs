//! Storage manifest: frozen fixtures of every version, and upgrading a
//! version-1 media root to the current layout with nothing lost.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use piece_store::manifest::{CURRENT_VERSION, MANIFEST_FILE, MovedFolder};
use piece_store::{StorageManifest, StoreError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/manifest")
        .join(name)
}

const BBB: &str = "0123456789abcdef0123456789abcdef01234567";
const SINTEL: &str = "89abcdef0123456789abcdef0123456789abcdef";

#[test]
fn frozen_v1_fixture_upgrades_in_memory() {
    let bytes = fs::read(fixture("v1.json")).unwrap();
    let (version, m) = StorageManifest::parse_any(&bytes, Path::new("v1.json")).unwrap();
    assert_eq!(version, 1);
    assert_eq!(m.version, CURRENT_VERSION);
    assert_eq!(
        m.layout
            .downloads
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        [BBB, SINTEL]
    );
    assert_eq!(
        m.layout.library.iter().copied().collect::<Vec<_>>(),
        [7, 12, 13]
    );
}

#[test]
fn frozen_v2_fixture_loads_and_the_writer_reproduces_it() {
    let bytes = fs::read(fixture("v2.json")).unwrap();
    let (version, m) = StorageManifest::parse_any(&bytes, Path::new("v2.json")).unwrap();
    assert_eq!(version, 2);
    assert_eq!(m.migrations.len(), 1);
    assert_eq!(
        m.migrations[0].moved[2],
        MovedFolder {
            from: "library/Amélie (2001)".into(),
            to: "library/7".into()
        }
    );
    assert_eq!(
        String::from_utf8(m.to_bytes()).unwrap(),
        String::from_utf8(bytes).unwrap(),
        "the v2 writer changed: add a v3 instead"
    );
}

/// Every file under `dir`, relative path → bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(base).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn a_version_1_store_upgrades_to_the_current_layout_with_nothing_lost() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    fs::copy(fixture("v1.json"), root.join(MANIFEST_FILE)).unwrap();
    let folders = [
        (
            "downloads/Big.Buck.Bunny.2008.1080p.BluRay.x264-GRP",
            format!("downloads/{BBB}"),
        ),
        (
            "downloads/Sintel.2010.1080p.BluRay.x265.10bit.AC3.5.1-GRP",
            format!("downloads/{SINTEL}"),
        ),
        ("library/Amélie (2001)", "library/7".to_string()),
        ("library/The Thing (1982)", "library/12".to_string()),
        ("library/The Thing (2011)", "library/13".to_string()),
    ];
    let mut before = BTreeMap::new();
    for (i, (old, _)) in folders.iter().enumerate() {
        let dir = root.join(old);
        fs::create_dir_all(dir.join("Subs")).unwrap();
        fs::write(dir.join("film.mkv"), vec![i as u8; 1000 + i]).unwrap();
        fs::write(
            dir.join("Subs/en.srt"),
            format!("1\n00:00:01,000 --> 00:00:02,000\n{i}\n"),
        )
        .unwrap();
        before.insert(old.to_string(), snapshot(&dir));
    }
    // Something the manifest does not know about stays where it is.
    fs::create_dir_all(root.join("library/Unknown Film")).unwrap();
    fs::write(root.join("library/Unknown Film/x.mkv"), b"x").unwrap();

    let m = StorageManifest::open(root).unwrap();
    assert_eq!(m.version, 2);
    assert_eq!(m.migrations.len(), 1);
    assert_eq!((m.migrations[0].from, m.migrations[0].to), (1, 2));
    assert_eq!(m.migrations[0].moved.len(), folders.len());
    for (old, new) in &folders {
        assert!(!root.join(old).exists(), "{old} still there");
        assert_eq!(
            snapshot(&root.join(new)),
            before[*old],
            "{old} -> {new} lost something"
        );
    }
    assert_eq!(
        fs::read(root.join("library/Unknown Film/x.mkv")).unwrap(),
        b"x"
    );
    // The upgrade writes exactly the frozen v2 fixture (bar the clock).
    let mut fixed = m.clone();
    fixed.migrations[0].at_unix = 1_764_072_000;
    assert_eq!(fixed.to_bytes(), fs::read(fixture("v2.json")).unwrap());
    assert_eq!(
        StorageManifest::library_dir(root, 7),
        root.join("library/7")
    );
    assert_eq!(
        StorageManifest::download_dir(root, BBB),
        root.join("downloads").join(BBB)
    );

    // Saved as v2; opening again changes nothing.
    let on_disk = fs::read(root.join(MANIFEST_FILE)).unwrap();
    let (v, reread) = StorageManifest::parse_any(&on_disk, root).unwrap();
    assert_eq!((v, &reread), (2, &m));
    assert_eq!(StorageManifest::open(root).unwrap(), m);
    assert!(!root.join(format!("{MANIFEST_FILE}.tmp")).exists());
}

#[test]
fn a_new_media_root_gets_an_empty_current_layout() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("media");
    let m = StorageManifest::open(&root).unwrap();
    assert_eq!(m, StorageManifest::default());
    assert!(root.join("downloads").is_dir() && root.join("library").is_dir());
    let mut m2 = m.clone();
    m2.layout.downloads.insert(BBB.into());
    m2.layout.library.insert(42);
    m2.save(&root).unwrap();
    assert_eq!(StorageManifest::open(&root).unwrap(), m2);
}

#[test]
fn newer_damaged_and_unknown_manifests_are_refused_with_advice() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join(MANIFEST_FILE);
    fs::write(&path, br#"{"version": 3, "layout": {}, "migrations": []}"#).unwrap();
    let err = StorageManifest::open(t.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::ManifestTooNew { version: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade Riptide"));
    for bad in [
        &b"{\"version\": 2"[..],
        b"[]",
        b"{\"version\": 0}",
        b"{\"version\": 2, \"layout\": 5}",
    ] {
        fs::write(&path, bad).unwrap();
        let err = StorageManifest::open(t.path()).unwrap_err();
        assert!(matches!(err, StoreError::ManifestCorrupt { .. }), "{err}");
        assert!(err.to_string().contains(MANIFEST_FILE));
        // Never overwritten: the user may want to fix it by hand.
        assert_eq!(fs::read(&path).unwrap(), bad);
    }
}
