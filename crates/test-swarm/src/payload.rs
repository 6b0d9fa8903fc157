//! Deterministic test payloads and byte-exact tree comparison.
//!
//! Content comes from a SplitMix64 stream seeded per file, so the same
//! `(name, sizes, seed)` always yields the same bytes (and the same info-hash),
//! and generating tens of MiB takes milliseconds rather than reading /dev/urandom.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Files on disk that a torrent is made from.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The directory that holds the content: what a seeder gets as its save/data dir.
    /// The content itself is `root/name` (a file, or a directory of files).
    pub root: PathBuf,
    /// Torrent name: the file name (single file) or top directory (multi-file).
    pub name: String,
    /// `(path relative to the content, size)`, in creation order. For a single-file
    /// payload the one entry's path is `name`.
    pub files: Vec<(PathBuf, u64)>,
}

impl Payload {
    /// `root/name`: the file or top directory.
    pub fn content_path(&self) -> PathBuf {
        self.root.join(&self.name)
    }

    /// True for a multi-file (directory) payload.
    pub fn is_multi_file(&self) -> bool {
        self.content_path().is_dir()
    }

    /// Absolute path of file `i` under `root`.
    pub fn file_path(&self, i: usize) -> PathBuf {
        if self.is_multi_file() {
            self.content_path().join(&self.files[i].0)
        } else {
            self.content_path()
        }
    }

    /// Sum of all file sizes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|(_, s)| s).sum()
    }

    /// Panics unless `out_dir/name` is byte-identical to this payload.
    pub fn assert_downloaded_to(&self, out_dir: &Path) {
        assert_same_tree(&self.content_path(), &out_dir.join(&self.name));
    }
}

/// Relative path of file `i` of a multi-file payload: a mix of top-level files and
/// files in one- and two-level subdirectories, so clients' directory creation is
/// exercised. Names sort in creation order.
fn multi_file_rel(i: usize) -> PathBuf {
    match i % 3 {
        0 => PathBuf::from(format!("f{i:03}.bin")),
        1 => PathBuf::from(format!("sub/f{i:03}.bin")),
        _ => PathBuf::from(format!("sub/deeper/f{i:03}.bin")),
    }
}

/// Writes a payload under `dir` (created if needed). One size gives a single file
/// `dir/name`; several give `dir/name/<files>` with nested directories.
pub fn make_payload(dir: &Path, name: &str, file_sizes: &[u64], seed: u64) -> Payload {
    assert!(
        !file_sizes.is_empty(),
        "make_payload needs at least one file size"
    );
    let content = dir.join(name);
    let files: Vec<(PathBuf, u64)> = if file_sizes.len() == 1 {
        vec![(PathBuf::from(name), file_sizes[0])]
    } else {
        file_sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| (multi_file_rel(i), s))
            .collect()
    };
    for (i, (rel, size)) in files.iter().enumerate() {
        let path = if file_sizes.len() == 1 {
            content.clone()
        } else {
            content.join(rel)
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        }
        let file_seed = seed ^ (i as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F);
        write_random_file(&path, *size, file_seed)
            .unwrap_or_else(|e| panic!("write payload {}: {e}", path.display()));
    }
    Payload {
        root: dir.to_path_buf(),
        name: name.to_string(),
        files,
    }
}

fn write_random_file(path: &Path, size: u64, seed: u64) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut rng = SplitMix64(seed);
    let mut block = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.next().to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        w.write_all(&block[..n])?;
        left -= n as u64;
    }
    w.flush()
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Panics with a helpful message unless `actual_root` has exactly the same files
/// (for a directory: same relative paths, recursively) with identical bytes.
/// Both arguments may be files or directories.
pub fn assert_same_tree(expected_root: &Path, actual_root: &Path) {
    if let Err(msg) = compare_trees(expected_root, actual_root) {
        panic!("trees differ: {msg}");
    }
}

/// [`assert_same_tree`] as a `Result`, for polling until a client has finished.
pub fn compare_trees(expected_root: &Path, actual_root: &Path) -> Result<(), String> {
    let exp = list_files(expected_root)?;
    let act = list_files(actual_root)?;
    let missing: Vec<_> = exp.iter().filter(|p| !act.contains(p)).collect();
    let extra: Vec<_> = act.iter().filter(|p| !exp.contains(p)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(format!(
            "{} vs {}: missing {missing:?}, unexpected {extra:?}",
            expected_root.display(),
            actual_root.display()
        ));
    }
    for rel in &exp {
        // An empty `rel` means the roots are files; join("") would append a slash.
        let join = |root: &Path| {
            if rel.as_os_str().is_empty() {
                root.to_path_buf()
            } else {
                root.join(rel)
            }
        };
        let (e, a) = (join(expected_root), join(actual_root));
        compare_files(&e, &a)?;
    }
    Ok(())
}

/// Relative paths of all regular files under `root` (`[""]` if `root` is a file).
fn list_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = fs::metadata(root).map_err(|e| format!("{}: {e}", root.display()))?;
    if meta.is_file() {
        return Ok(vec![PathBuf::new()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let entry = entry.map_err(|e| e.to_string())?;
            let child = rel.join(entry.file_name());
            let ft = entry.file_type().map_err(|e| e.to_string())?;
            if ft.is_dir() {
                stack.push(child);
            } else {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn compare_files(expected: &Path, actual: &Path) -> Result<(), String> {
    let open = |p: &Path| File::open(p).map_err(|e| format!("{}: {e}", p.display()));
    let (mut e, mut a) = (open(expected)?, open(actual)?);
    let (le, la) = (
        e.metadata().map_err(|x| x.to_string())?.len(),
        a.metadata().map_err(|x| x.to_string())?.len(),
    );
    if le != la {
        return Err(format!(
            "{}: size {la}, expected {le} (from {})",
            actual.display(),
            expected.display()
        ));
    }
    let (mut be, mut ba) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut off = 0u64;
    loop {
        let n = read_full(&mut e, &mut be).map_err(|x| x.to_string())?;
        let m = read_full(&mut a, &mut ba).map_err(|x| x.to_string())?;
        if n != m {
            return Err(format!(
                "{}: short read at {}",
                actual.display(),
                off + n.min(m) as u64
            ));
        }
        if n == 0 {
            return Ok(());
        }
        if let Some(i) = be[..n].iter().zip(&ba[..n]).position(|(x, y)| x != y) {
            let at = off + i as u64;
            let bad = ba[i..n]
                .iter()
                .zip(&be[i..n])
                .filter(|(x, y)| x != y)
                .count();
            return Err(format!(
                "{}: first difference at byte {at} (0x{at:x}): got {:#04x}, expected {:#04x}; \
                 {bad} differing bytes in this 1 MiB block (compared with {})",
                actual.display(),
                ba[i],
                be[i],
                expected.display()
            ));
        }
        off += n as u64;
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_layout() {
        let t = tempfile::tempdir().unwrap();
        let a = make_payload(&t.path().join("a"), "p", &[100_000, 5, 0, 70_001], 7);
        let b = make_payload(&t.path().join("b"), "p", &[100_000, 5, 0, 70_001], 7);
        assert!(a.is_multi_file());
        assert_eq!(a.total_size(), 170_006);
        assert!(a.content_path().join("sub/deeper/f002.bin").is_file());
        assert_same_tree(&a.content_path(), &b.content_path());
        let c = make_payload(&t.path().join("c"), "p", &[100_000, 5, 0, 70_001], 8);
        let err = compare_trees(&a.content_path(), &c.content_path()).unwrap_err();
        assert!(err.contains("first difference at byte 0"), "{err}");

        let s = make_payload(t.path(), "single.bin", &[1234], 1);
        assert!(!s.is_multi_file());
        assert_eq!(fs::metadata(s.file_path(0)).unwrap().len(), 1234);
    }

    #[test]
    fn reports_missing_and_size() {
        let t = tempfile::tempdir().unwrap();
        let a = make_payload(&t.path().join("a"), "p", &[10, 20], 1);
        let b = make_payload(&t.path().join("b"), "p", &[10, 21], 1);
        assert!(
            compare_trees(&a.content_path(), &b.content_path())
                .unwrap_err()
                .contains("size 21")
        );
        fs::remove_file(b.file_path(0)).unwrap();
        assert!(
            compare_trees(&a.content_path(), &b.content_path())
                .unwrap_err()
                .contains("missing")
        );
    }
}
