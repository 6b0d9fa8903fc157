//! `riptide library scan|list|search` end to end on the sample set.

use std::path::Path;
use std::process::Command;

fn samples() -> Option<std::path::PathBuf> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/media/make-samples.sh");
    if !script.exists() {
        eprintln!("skipping: {} is absent", script.display());
        return None;
    }
    let dir = std::env::var_os("MEDIA_SAMPLES_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::env::temp_dir().join("riptide-media-samples-full"));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "make-samples.sh failed");
    Some(dir)
}

fn riptide(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_riptide"))
        .arg("library")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("RIPTIDE_DATABASE_URL")
        .env_remove("RIPTIDE_TMDB_API_KEY")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn scan_list_search_json() {
    let Some(dir) = samples() else { return };
    let data = tempfile::tempdir().unwrap();
    let (ok, out, err) = riptide(data.path(), &["scan", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("18 videos"), "{out}");
    assert!(out.contains("broken:") && out.contains("0 bytes"), "{out}");
    assert!(data.path().join("riptide.db").exists());

    let (ok, out, _) = riptide(data.path(), &["list", "--json"]);
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 16, "18 videos minus 2 unplayable");
    for e in list {
        for k in [
            "id",
            "title",
            "year",
            "tmdb_id",
            "file_path",
            "video_codec",
            "audio_codec",
            "duration",
        ] {
            assert!(e.get(k).is_some(), "{k} missing in {e}");
        }
        assert!(e["tmdb_id"].is_null());
    }

    let (ok, out, _) = riptide(data.path(), &["search", "amelie", "--json"]);
    assert!(ok);
    let hits: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(hits[0]["title"], "Amélie");
    assert_eq!(hits[0]["video_codec"], "mpeg4");
    assert_eq!(hits.as_array().unwrap().len(), 1);

    let (ok, out, _) = riptide(data.path(), &["search", "the", "--year", "1999"]);
    assert!(ok && out.contains("The Matrix (1999)"), "{out}");

    let (ok, _, err) = riptide(data.path(), &["scan", "/nonexistent/films"]);
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
}
