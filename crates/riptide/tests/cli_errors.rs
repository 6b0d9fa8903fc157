//! Bad input to the CLI: a one-line error naming the problem, a non-zero
//! exit, never a panic and never a file written outside the output folder.

use bt_proto::bencode::{Value, encode};
use bt_proto::metainfo::{TorrentBuilder, piece_hashes};
use std::path::Path;
use std::process::{Command, Output};

fn riptide(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args(args)
        .output()
        .expect("run riptide")
}

/// Asserts a clean failure: exit code 1, one `riptide: error:` line on
/// stderr containing `needle`, and no panic.
fn assert_refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("riptide: error:"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one error line expected:\n{stderr}"
    );
    assert!(
        errors[0].contains(needle),
        "expected {needle:?} in: {}",
        errors[0]
    );
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

fn good_torrent() -> Vec<u8> {
    let data = vec![3u8; 40_000];
    TorrentBuilder::new("film.mkv", 16 * 1024)
        .file(Vec::new(), data.len() as u64)
        .pieces(piece_hashes(&data, 16 * 1024))
        .tracker_tier(vec!["http://127.0.0.1:9/announce".into()])
        .build()
}

fn multi_file_torrent(name: &[u8], path: Vec<Vec<u8>>) -> Vec<u8> {
    let data = vec![3u8; 100];
    TorrentBuilder::new(name.to_vec(), 16 * 1024)
        .file(path, 100)
        .file(vec![b"b.txt".to_vec()], 0)
        .pieces(piece_hashes(&data, 16 * 1024))
        .build()
}

/// A dict torrent with the given `info` entries (for shapes the builder
/// refuses to make).
fn raw_torrent(info: Vec<(&str, Value)>) -> Vec<u8> {
    let mut i = Value::dict();
    for (k, v) in info {
        i.insert(k, v);
    }
    let mut top = Value::dict();
    top.insert("info", i);
    encode(&top)
}

#[test]
fn info_prints_the_metainfo() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "ok.torrent", &good_torrent());
    let out = riptide(&["info", &path]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("name:         film.mkv"), "{text}");
    assert!(text.contains("pieces:       3 x 16.0 KiB"), "{text}");
    assert!(
        text.contains("tier 0: http://127.0.0.1:9/announce"),
        "{text}"
    );
    assert!(text.contains("magnet:?xt=urn:btih:"), "{text}");
}

#[test]
fn corrupt_and_hostile_torrents_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out_arg = out_dir.to_str().unwrap();
    let good = good_torrent();
    let deep = format!("d4:info{}e", "l".repeat(1_000_000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"this is not bencode".to_vec(),
            "not a valid torrent",
        ),
        ("empty", Vec::new(), "not a valid torrent"),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "not a valid torrent",
        ),
        ("deep", deep.into_bytes(), "nested deeper"),
        (
            "traversal",
            multi_file_torrent(
                b"root",
                vec![b"..".to_vec(), b"..".to_vec(), b"evil".to_vec()],
            ),
            "path traversal",
        ),
        (
            "absolute",
            multi_file_torrent(b"root", vec![b"/etc".to_vec(), b"passwd".to_vec()]),
            "absolute path",
        ),
        (
            "name-traversal",
            multi_file_torrent(b"../up", vec![b"a".to_vec()]),
            "path traversal",
        ),
        (
            "huge-piece-length",
            raw_torrent(vec![
                ("name", Value::from("x")),
                ("length", Value::Int(10)),
                ("piece length", Value::Int(1 << 40)),
                ("pieces", Value::Bytes(vec![0; 20])),
            ]),
            "piece length",
        ),
        (
            "zero-piece-length",
            raw_torrent(vec![
                ("name", Value::from("x")),
                ("length", Value::Int(10)),
                ("piece length", Value::Int(0)),
                ("pieces", Value::Bytes(vec![0; 20])),
            ]),
            "piece length",
        ),
        (
            "absurd-piece-count",
            raw_torrent(vec![
                ("name", Value::from("x")),
                ("length", Value::Int(1 << 60)),
                ("piece length", Value::Int(16384)),
                ("pieces", Value::Bytes(vec![0; 20])),
            ]),
            "",
        ),
        (
            "wrong-piece-count",
            raw_torrent(vec![
                ("name", Value::from("x")),
                ("length", Value::Int(100_000)),
                ("piece length", Value::Int(16384)),
                ("pieces", Value::Bytes(vec![0; 20])),
            ]),
            "piece",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = write(dir.path(), &format!("{name}.torrent"), &bytes);
        eprintln!("case {name}");
        let out = riptide(&["download", &path, "--out", out_arg, "--port", "0"]);
        assert_refused(&out, needle);
        let info = riptide(&["info", &path]);
        assert_refused(&info, needle);
    }
    // Nothing escaped the temporary folder.
    assert!(!dir.path().parent().unwrap().join("evil").exists());
    assert!(!dir.path().join("up").exists());
}

#[test]
fn missing_files_and_bad_magnets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    assert_refused(
        &riptide(&["download", "/nonexistent/x.torrent", "--out", out]),
        "cannot read /nonexistent/x.torrent",
    );
    assert_refused(
        &riptide(&["download", dir.path().to_str().unwrap(), "--out", out]),
        "is a directory",
    );
    assert_refused(
        &riptide(&["download", "magnet:?xt=urn:btih:xyz", "--out", out]),
        "invalid magnet link",
    );
    assert_refused(
        &riptide(&["download", "magnet:?dn=no-hash", "--out", out]),
        "invalid magnet link",
    );
}

#[test]
fn unwritable_output_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "ok.torrent", &good_torrent());
    let file = write(dir.path(), "a-file", b"x");
    let under_file = format!("{file}/out");
    assert_refused(
        &riptide(&["download", &path, "--out", &under_file]),
        "cannot create the output folder",
    );
}

#[test]
fn unreachable_tracker_gives_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 (discard) on loopback here.
    let path = write(dir.path(), "ok.torrent", &good_torrent());
    let out = dir.path().join("out");
    let o = riptide(&[
        "download",
        &path,
        "--out",
        out.to_str().unwrap(),
        "--port",
        "0",
        "--stall-timeout",
        "3",
    ]);
    assert_refused(&o, "no tracker answered and no peer connected in 3s");
    assert_refused(&o, "127.0.0.1:9");
}

#[test]
fn permission_denied_is_reported() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "ok.torrent", &good_torrent());
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = dir.path().join("out");
    // Root ignores permission bits; run as nobody where we can.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riptide"));
    cmd.args(["download", &path, "--out", out.to_str().unwrap()]);
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        cmd.uid(65534).gid(65534);
    }
    let o = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipping: cannot run riptide as nobody: {e}");
            return;
        }
    };
    if o.status.code() != Some(1)
        && !String::from_utf8_lossy(&o.stderr).contains("Permission denied")
        && !is_root
    {
        eprintln!("skipping: not root and the folder is writable");
        return;
    }
    assert_refused(&o, "cannot create the output folder");
    assert_refused(&o, "Permission denied");
}
