//! `.torrent` files made by an external tool (mktorrent), read back with the
//! fixture-local bencode reader, plus piece-level helpers (verify a save path,
//! make a deliberately corrupted copy).
//!
//! mktorrent only accepts piece lengths 2^15..=2^28; other powers of two (16 KiB
//! pieces are useful for edge cases) are made by python3-libtorrent's
//! `create_torrent` with the v1-only flag, through the same `py/lt_peer.py` helper.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha1::{Digest, Sha1};

use crate::bencode::{self, Value};
use crate::payload::Payload;

/// A v1 `.torrent` on disk and what tests need to know about it.
#[derive(Debug, Clone)]
pub struct Torrent {
    /// The `.torrent` file.
    pub path: PathBuf,
    /// Lower-case hex SHA-1 of the bencoded `info` dictionary.
    pub info_hash_hex: String,
    /// `magnet:?xt=urn:btih:<hex>&dn=<name>&tr=<announce>`.
    pub magnet: String,
    pub piece_length: u32,
    /// `info.name`.
    pub name: String,
    /// Files in torrent order: path relative to the content root (for a single-file
    /// torrent: just `name`) and length.
    pub files: Vec<(PathBuf, u64)>,
    /// Concatenated 20-byte SHA-1 piece hashes.
    pub piece_hashes: Vec<u8>,
    /// Whether `info` has a `files` list (content is a directory).
    pub multi_file: bool,
}

impl Torrent {
    /// Reads and parses an existing `.torrent` file.
    pub fn load(path: &Path) -> Result<Torrent, String> {
        let data = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let root = bencode::decode(&data)?;
        let span = bencode::dict_value_span(&data, b"info")?;
        let info_hash_hex = hex(&Sha1::digest(&data[span]));
        let info = root.get("info").ok_or("no info dict")?;
        let name = info
            .get("name")
            .and_then(Value::as_str)
            .ok_or("no info.name")?
            .to_string();
        let piece_length = info
            .get("piece length")
            .and_then(Value::as_int)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or("bad piece length")?;
        let piece_hashes = info
            .get("pieces")
            .and_then(Value::as_bytes)
            .ok_or("no pieces")?
            .to_vec();
        let (files, multi_file) = match info.get("files").and_then(Value::as_list) {
            Some(list) => {
                let mut files = Vec::new();
                for f in list {
                    let len = f
                        .get("length")
                        .and_then(Value::as_int)
                        .ok_or("file without length")?;
                    let parts = f
                        .get("path")
                        .and_then(Value::as_list)
                        .ok_or("file without path")?;
                    let mut p = PathBuf::new();
                    for part in parts {
                        p.push(part.as_str().ok_or("non-utf8 path")?);
                    }
                    files.push((p, len as u64));
                }
                (files, true)
            }
            None => {
                let len = info
                    .get("length")
                    .and_then(Value::as_int)
                    .ok_or("no length")?;
                (vec![(PathBuf::from(&name), len as u64)], false)
            }
        };
        let announce = root.get("announce").and_then(Value::as_str).unwrap_or("");
        let mut magnet = format!(
            "magnet:?xt=urn:btih:{info_hash_hex}&dn={}",
            url_encode(name.as_bytes())
        );
        if !announce.is_empty() {
            magnet.push_str("&tr=");
            magnet.push_str(&url_encode(announce.as_bytes()));
        }
        Ok(Torrent {
            path: path.to_path_buf(),
            info_hash_hex,
            magnet,
            piece_length,
            name,
            files,
            piece_hashes,
            multi_file,
        })
    }

    /// The 20 raw bytes of the info-hash.
    pub fn info_hash(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&self.info_hash_hex[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }

    /// Raw bytes of the `.torrent` file.
    pub fn bytes(&self) -> Vec<u8> {
        fs::read(&self.path).unwrap_or_else(|e| panic!("read {}: {e}", self.path.display()))
    }

    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|(_, s)| s).sum()
    }

    pub fn num_pieces(&self) -> u32 {
        (self.piece_hashes.len() / 20) as u32
    }

    /// Length of piece `p` (the last one may be short).
    pub fn piece_size(&self, p: u32) -> u64 {
        let start = u64::from(p) * u64::from(self.piece_length);
        (self.total_size() - start).min(u64::from(self.piece_length))
    }

    /// Path of file `i` below a save path (`save/name[/rel]`).
    pub fn file_path_in(&self, save_path: &Path, i: usize) -> PathBuf {
        if self.multi_file {
            save_path.join(&self.name).join(&self.files[i].0)
        } else {
            save_path.join(&self.name)
        }
    }

    /// Pieces whose data under `save_path` is missing or fails its SHA-1.
    pub fn bad_pieces(&self, save_path: &Path) -> Vec<u32> {
        let mut bad = Vec::new();
        let mut reader = PieceReader::new(self, save_path);
        for p in 0..self.num_pieces() {
            let ok = match reader.read(p) {
                Ok(buf) => {
                    Sha1::digest(&buf)[..]
                        == self.piece_hashes[20 * p as usize..20 * p as usize + 20]
                }
                Err(_) => false,
            };
            if !ok {
                bad.push(p);
            }
        }
        bad
    }

    /// Maps a byte range of the torrent to `(file index, offset in file, len)` slices.
    pub fn map_range(&self, offset: u64, len: u64) -> Vec<(usize, u64, u64)> {
        let mut out = Vec::new();
        let (mut pos, end) = (offset, offset + len);
        let mut file_start = 0u64;
        for (i, (_, size)) in self.files.iter().enumerate() {
            let file_end = file_start + size;
            if pos < end && pos < file_end && pos >= file_start {
                let n = end.min(file_end) - pos;
                out.push((i, pos - file_start, n));
                pos += n;
            }
            file_start = file_end;
        }
        out
    }

    /// Copies the content under `src_save` to `dst_save` and flips one byte in the
    /// middle of each piece in `pieces`, so those pieces fail their hash check.
    pub fn write_corrupt_copy(&self, src_save: &Path, dst_save: &Path, pieces: &[u32]) {
        copy_tree(&src_save.join(&self.name), &dst_save.join(&self.name));
        for &p in pieces {
            assert!(p < self.num_pieces(), "corrupt piece {p} out of range");
            let at = u64::from(p) * u64::from(self.piece_length) + self.piece_size(p) / 2;
            let (fi, off, _) = self.map_range(at, 1)[0];
            let path = self.file_path_in(dst_save, fi);
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .expect("open copy");
            let mut b = [0u8];
            f.seek(SeekFrom::Start(off)).unwrap();
            f.read_exact(&mut b).unwrap();
            f.seek(SeekFrom::Start(off)).unwrap();
            f.write_all(&[!b[0]]).unwrap();
        }
    }
}

/// Reads whole pieces across file boundaries.
struct PieceReader<'a> {
    t: &'a Torrent,
    save: &'a Path,
}

impl<'a> PieceReader<'a> {
    fn new(t: &'a Torrent, save: &'a Path) -> Self {
        PieceReader { t, save }
    }

    fn read(&mut self, p: u32) -> std::io::Result<Vec<u8>> {
        let start = u64::from(p) * u64::from(self.t.piece_length);
        let mut buf = Vec::with_capacity(self.t.piece_size(p) as usize);
        for (fi, off, n) in self.t.map_range(start, self.t.piece_size(p)) {
            let mut f = File::open(self.t.file_path_in(self.save, fi))?;
            f.seek(SeekFrom::Start(off))?;
            let before = buf.len();
            (&mut f).take(n).read_to_end(&mut buf)?;
            if (buf.len() - before) as u64 != n {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(buf)
    }
}

fn copy_tree(src: &Path, dst: &Path) {
    if src.is_dir() {
        fs::create_dir_all(dst).unwrap_or_else(|e| panic!("mkdir {}: {e}", dst.display()));
        for e in fs::read_dir(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display())) {
            let e = e.unwrap();
            copy_tree(&e.path(), &dst.join(e.file_name()));
        }
    } else {
        if let Some(p) = dst.parent() {
            fs::create_dir_all(p).unwrap();
        }
        fs::copy(src, dst)
            .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", src.display(), dst.display()));
    }
}

/// Makes a v1 `.torrent` for `payload` announcing to `announce` (empty = no
/// tracker), written to `payload.root/<name>.p<piece_length>.torrent`.
///
/// `piece_length` must be a power of two >= 16 KiB. No creation date is stored, so
/// the same payload and arguments give the same file. Panics with the tool's output
/// on failure.
pub fn make_torrent(payload: &Payload, announce: &str, piece_length: u32) -> Torrent {
    assert!(
        piece_length.is_power_of_two() && piece_length >= 16 * 1024,
        "piece_length must be a power of two >= 16 KiB, got {piece_length}"
    );
    let out = payload
        .root
        .join(format!("{}.p{piece_length}.torrent", payload.name));
    let _ = fs::remove_file(&out);
    let log2 = piece_length.trailing_zeros();
    let output = if (15..=28).contains(&log2) {
        let mut cmd = Command::new("mktorrent");
        cmd.arg("-l")
            .arg(log2.to_string())
            .arg("-d")
            .arg("-t")
            .arg("1");
        if !announce.is_empty() {
            cmd.arg("-a").arg(announce);
        }
        cmd.arg("-o").arg(&out).arg(payload.content_path());
        cmd.output()
    } else {
        let script = crate::libtorrent::write_script(&payload.root);
        let cfg = format!(
            "{{\"role\":\"create\",\"content\":{},\"piece_length\":{piece_length},\"announce\":{},\"output\":{}}}",
            json_str(&payload.content_path().to_string_lossy()),
            json_str(announce),
            json_str(&out.to_string_lossy())
        );
        Command::new(crate::PYTHON).arg(&script).arg(cfg).output()
    };
    let output =
        output.unwrap_or_else(|e| panic!("cannot run torrent creator (run scripts/test.sh): {e}"));
    if !output.status.success() || !out.exists() {
        panic!(
            "creating {} failed ({}): {}{}",
            out.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Torrent::load(&out).unwrap_or_else(|e| panic!("parse {}: {e}", out.display()))
}

/// Makes a v1 `.torrent` with no tracker whose only source is the BEP 19 web
/// seed `url` (mktorrent `-w`), written to `payload.root/<name>.webseed.torrent`.
pub fn make_web_seed_torrent(payload: &Payload, url: &str, piece_length: u32) -> Torrent {
    assert!(piece_length.is_power_of_two() && (32 * 1024..=(1 << 28)).contains(&piece_length));
    let out = payload
        .root
        .join(format!("{}.webseed.torrent", payload.name));
    let _ = fs::remove_file(&out);
    let output = Command::new("mktorrent")
        .arg("-l")
        .arg(piece_length.trailing_zeros().to_string())
        .args(["-d", "-t", "1", "-w", url, "-o"])
        .arg(&out)
        .arg(payload.content_path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run mktorrent (run scripts/test.sh): {e}"));
    if !output.status.success() || !out.exists() {
        panic!(
            "creating {} failed ({}): {}",
            out.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Torrent::load(&out).unwrap_or_else(|e| panic!("parse {}: {e}", out.display()))
}

/// Makes a BEP 52 **hybrid** `.torrent` (v1 and v2 metadata, BEP 47 pad files
/// between files) for `payload` with libtorrent's `create_torrent`, written to
/// `payload.root/<name>.hybrid.p<piece_length>.torrent`. [`Torrent`] describes its
/// v1 side (`info_hash_hex` is the SHA-1 info-hash).
pub fn make_hybrid_torrent(payload: &Payload, announce: &str, piece_length: u32) -> Torrent {
    assert!(
        piece_length.is_power_of_two() && piece_length >= 16 * 1024,
        "piece_length must be a power of two >= 16 KiB, got {piece_length}"
    );
    let out = payload
        .root
        .join(format!("{}.hybrid.p{piece_length}.torrent", payload.name));
    let _ = fs::remove_file(&out);
    let script = crate::libtorrent::write_script(&payload.root);
    let cfg = format!(
        "{{\"role\":\"create\",\"hybrid\":true,\"content\":{},\"piece_length\":{piece_length},\"announce\":{},\"output\":{}}}",
        json_str(&payload.content_path().to_string_lossy()),
        json_str(announce),
        json_str(&out.to_string_lossy())
    );
    let output = Command::new(crate::PYTHON)
        .arg(&script)
        .arg(cfg)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3-libtorrent (run scripts/test.sh): {e}"));
    if !output.status.success() || !out.exists() {
        panic!(
            "creating {} failed ({}): {}{}",
            out.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Torrent::load(&out).unwrap_or_else(|e| panic!("parse {}: {e}", out.display()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// A JSON string literal (for the small configs handed to helper scripts).
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
