//! Turning hostile torrent file names into safe relative paths.
//!
//! A `.torrent` is untrusted input and its file names are arbitrary bytes.
//! The invariant this module guarantees: whatever the bytes, the result of
//! [`sanitize_component`] is exactly one non-empty, ordinary path component,
//! so `download_dir.join(path)` can never leave `download_dir`. On top of
//! that the names are made portable, because download folders are often
//! shared over SMB or live on NTFS/exFAT disks: no Windows-reserved
//! characters or device names, no trailing dots or spaces, at most 255 bytes.
//!
//! [`sanitize_paths`] then makes whole file lists collision-free: two files
//! that sanitize to the same name (or a file that collides with another
//! file's directory) must not overwrite each other, so later ones get a
//! " (1)", " (2)"… suffix before the extension.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// Longest component most file systems accept (ext4, NTFS, exFAT, APFS).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Longest relative path we produce. Linux refuses paths over 4096 bytes in
/// a single syscall, and the download folder itself needs room too.
pub const MAX_PATH_BYTES: usize = 1024;

/// Deepest relative path we produce (root folder and file name included).
pub const MAX_DEPTH: usize = 32;

/// Extensions longer than this are not worth keeping when truncating: they
/// are more likely part of a long name with a dot in it.
const MAX_KEPT_EXTENSION: usize = 16;

/// Turns one raw path element from a torrent into a single safe component.
///
/// Never fails and never returns an empty string, `.`, `..`, or anything
/// containing `/`, `\`, NUL or control characters. Invalid UTF-8 bytes are
/// written as `%XX` so distinct raw names usually stay distinct.
pub fn sanitize_component(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.push(if is_forbidden(c) { '_' } else { c });
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    let mut name = truncate_keeping_extension(&out, MAX_COMPONENT_BYTES);
    trim_trailing_dots_and_spaces(&mut name);
    if name.is_empty() {
        name.push('_');
    }
    if is_windows_reserved(&name) {
        name.insert(0, '_');
        // The prefix can push a 255-byte name over the limit. The name now
        // starts with '_', so plain truncation keeps it non-empty and no
        // longer reserved.
        if name.len() > MAX_COMPONENT_BYTES {
            name.truncate(floor_char_boundary(&name, MAX_COMPONENT_BYTES));
            trim_trailing_dots_and_spaces(&mut name);
        }
    }
    name
}

/// Characters that are never allowed in a component: path separators, NUL
/// and other control characters, the characters Windows forbids in names,
/// and Unicode bidi overrides (which can disguise `evil\u{202E}vkm.exe` as
/// `evilexe.mkv` in a file list).
fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Windows refuses trailing dots and spaces (it strips them, so "a." and
/// "a" would be the same file) and `.`/`..` are made only of dots.
fn trim_trailing_dots_and_spaces(s: &mut String) {
    let kept = s.trim_end_matches(['.', ' ']).len();
    s.truncate(kept);
}

/// CON, PRN, AUX, NUL, COM1-9, LPT1-9 (also with superscript digits, and
/// CONIN$/CONOUT$), case-insensitive and also with any extension: on
/// Windows "nul.txt" is the null device.
fn is_windows_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => {
            let mut chars = upper.chars();
            let prefix: String = chars.by_ref().take(3).collect();
            let rest: Vec<char> = chars.collect();
            (prefix == "COM" || prefix == "LPT")
                && rest.len() == 1
                && matches!(rest[0], '1'..='9' | '¹' | '²' | '³')
        }
    }
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Cuts `s` to at most `max` bytes at a char boundary, keeping a short
/// extension (".mkv") so the file still opens with the right program.
fn truncate_keeping_extension(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let ext = match s.rfind('.') {
        Some(dot) if dot > 0 && s.len() - dot <= MAX_KEPT_EXTENSION => &s[dot..],
        _ => "",
    };
    let stem = &s[..s.len() - ext.len()];
    let keep = floor_char_boundary(stem, max - ext.len());
    let mut out = String::with_capacity(max);
    out.push_str(&stem[..keep]);
    out.push_str(ext);
    out
}

/// Sanitizes a whole relative path (given as raw components) and bounds its
/// depth and length: when the path is too deep or too long, directories
/// right below the first component (the torrent's root folder, for
/// multi-file torrents) are dropped until it fits. The first and last
/// components are always kept, and each is at most 255 bytes, so the result
/// always fits in [`MAX_PATH_BYTES`].
pub fn sanitize_path<C: AsRef<[u8]>>(raw: &[C]) -> PathBuf {
    let mut parts: Vec<String> = raw.iter().map(|c| sanitize_component(c.as_ref())).collect();
    if parts.is_empty() {
        parts.push("_".to_string());
    }
    let total = |parts: &[String]| parts.iter().map(|p| p.len() + 1).sum::<usize>() - 1;
    while parts.len() > 2 && (parts.len() > MAX_DEPTH || total(&parts) > MAX_PATH_BYTES) {
        parts.remove(1);
    }
    parts.iter().collect()
}

/// Case-folded key used for collision checks: case-insensitive file systems
/// (NTFS, exFAT, APFS, SMB shares) would make "A.mkv" and "a.mkv" one file.
fn collision_key(path: &Path) -> String {
    path.to_string_lossy().to_lowercase()
}

/// Renames entries of an already-sanitized file list so no two of them
/// name the same file, and no file sits where another file needs a
/// directory. Earlier entries win; later ones get " (n)" appended to their
/// file name. Entries with `skip` set (padding files, which are never
/// written) are left alone and do not claim their names.
pub fn disambiguate(paths: &mut [PathBuf], skip: impl Fn(usize) -> bool) {
    // Every directory any real file needs. A file may not take one of
    // these names, or creating the other file's parent would fail.
    let mut dirs: HashSet<String> = HashSet::new();
    for (i, p) in paths.iter().enumerate() {
        if skip(i) {
            continue;
        }
        let mut dir = p.parent();
        while let Some(d) = dir {
            if d.as_os_str().is_empty() {
                break;
            }
            dirs.insert(collision_key(d));
            dir = d.parent();
        }
    }
    let mut taken: HashSet<String> = HashSet::new();
    for (i, p) in paths.iter_mut().enumerate() {
        if skip(i) {
            continue;
        }
        let key = collision_key(p);
        if !taken.contains(&key) && !dirs.contains(&key) {
            taken.insert(key);
            continue;
        }
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "_".to_string());
        for n in 1u64.. {
            let candidate = p.with_file_name(numbered_name(&name, n));
            let key = collision_key(&candidate);
            if !taken.contains(&key) && !dirs.contains(&key) {
                taken.insert(key);
                *p = candidate;
                break;
            }
        }
    }
}

/// "movie.mkv" -> "movie (n).mkv", still within 255 bytes.
fn numbered_name(name: &str, n: u64) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_KEPT_EXTENSION => name.split_at(dot),
        _ => (name, ""),
    };
    let suffix = format!(" ({n}){ext}");
    let keep = floor_char_boundary(stem, MAX_COMPONENT_BYTES.saturating_sub(suffix.len()));
    format!("{}{suffix}", &stem[..keep])
}

/// Whether a path is relative and made only of ordinary components; used to
/// check paths handed to [`crate::Layout::new`] by callers.
pub(crate) fn is_safe_relative(path: &Path) -> bool {
    path.components().count() > 0
        && path.components().all(|c| match c {
            Component::Normal(s) => s.to_str().is_some_and(|s| {
                !s.is_empty() && !s.contains(['/', '\\', '\0']) && s.len() <= MAX_COMPONENT_BYTES
            }),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_names() {
        let table: &[(&[u8], &str)] = &[
            (b"..", "_"),
            (b".", "_"),
            (b"", "_"),
            (b"...", "_"),
            (b"/", "_"),
            (b"/etc/passwd", "_etc_passwd"),
            (b"..\\..\\windows", ".._.._windows"),
            (b"a/../../b", "a_.._.._b"),
            (b"C:\\boot.ini", "C__boot.ini"),
            (b"nul\0byte", "nul_byte"),
            (b"tab\there", "tab_here"),
            (b"line\nfeed", "line_feed"),
            (b"del\x7f", "del_"),
            (b"CON", "_CON"),
            (b"con.txt", "_con.txt"),
            (b"Nul.tar.gz", "_Nul.tar.gz"),
            (b"COM1", "_COM1"),
            (b"lpt9.log", "_lpt9.log"),
            (b"COM0", "COM0"),
            (b"COM10", "COM10"),
            (b"CONSOLE", "CONSOLE"),
            (b"AUX .txt", "_AUX .txt"),
            ("COM¹".as_bytes(), "_COM¹"),
            (b"trailing dot.", "trailing dot"),
            (b"trailing space  ", "trailing space"),
            (b"what?*<>|\":", "what_______"),
            (b"bad\xffutf8\xc3", "bad%FFutf8%C3"),
            ("evil\u{202E}vkm.exe".as_bytes(), "evil_vkm.exe"),
            ("Amélie (2001).mkv".as_bytes(), "Amélie (2001).mkv"),
            (b".hidden", ".hidden"),
        ];
        for (raw, want) in table {
            assert_eq!(
                sanitize_component(raw),
                *want,
                "input {:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn long_names_keep_their_extension() {
        let raw = format!("{}.mkv", "é".repeat(200));
        let s = sanitize_component(raw.as_bytes());
        assert!(s.len() <= MAX_COMPONENT_BYTES);
        assert!(s.ends_with("é.mkv"), "{s}");
        // No extension worth keeping: plain truncation at a char boundary.
        let s = sanitize_component("ü".repeat(300).as_bytes());
        assert_eq!(s, "ü".repeat(127));
        // Reserved stem plus a long extension: the "_" prefix must not push
        // the name over the limit.
        let raw = format!("CON.{}", "x".repeat(251));
        let s = sanitize_component(raw.as_bytes());
        assert_eq!(s.len(), 255);
        assert!(s.starts_with("_CON."));
        // Truncation that leaves only spaces.
        let raw = format!("{}x", " ".repeat(300));
        assert_eq!(sanitize_component(raw.as_bytes()), "_");
    }

    #[test]
    fn deep_and_long_paths_are_bounded() {
        let deep: Vec<Vec<u8>> = (0..100).map(|i| format!("d{i}").into_bytes()).collect();
        let p = sanitize_path(&deep);
        assert_eq!(p.components().count(), MAX_DEPTH);
        assert!(p.starts_with("d0"));
        assert!(p.ends_with("d99"));
        let long: Vec<Vec<u8>> = (0..10).map(|_| vec![b'a'; 250]).collect();
        let p = sanitize_path(&long);
        assert!(p.as_os_str().len() <= MAX_PATH_BYTES);
    }

    #[test]
    fn collisions_are_renamed_not_clobbered() {
        let mut paths: Vec<PathBuf> = [
            "t/a.mkv", "t/A.mkv", "t/a.mkv", "t/pad", "t/sub", "t/sub/x", "t/b",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        // "t/pad" is a padding file: it is skipped and claims nothing.
        paths.push(PathBuf::from("t/pad"));
        disambiguate(&mut paths, |i| i == 3);
        let got: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            got,
            [
                "t/a.mkv",
                "t/A (1).mkv",
                "t/a (2).mkv",
                "t/pad",
                "t/sub (1)",
                "t/sub/x",
                "t/b",
                "t/pad",
            ]
        );
    }

    #[test]
    fn numbered_names_stay_short() {
        let long = format!("{}.mkv", "a".repeat(251));
        let n = numbered_name(&long, 12);
        assert!(n.len() <= MAX_COMPONENT_BYTES);
        assert!(n.ends_with(" (12).mkv"));
    }

    proptest! {
        #[test]
        fn any_bytes_give_one_safe_component(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
            let s = sanitize_component(&raw);
            prop_assert!(!s.is_empty());
            prop_assert!(s.len() <= MAX_COMPONENT_BYTES);
            prop_assert!(s != "." && s != "..");
            prop_assert!(!s.contains(['/', '\\', '\0']));
            prop_assert!(!s.chars().any(char::is_control));
            prop_assert!(!s.ends_with(['.', ' ']));
            prop_assert!(!is_windows_reserved(&s));
            let p = Path::new(&s);
            prop_assert!(!p.is_absolute());
            prop_assert_eq!(p.components().count(), 1);
            prop_assert!(matches!(p.components().next(), Some(Component::Normal(_))));
        }

        #[test]
        fn joined_paths_stay_under_root(raw in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'/'), Just(b'\\'), Just(0u8), any::<u8>()], 0..40), 0..50)
        ) {
            let rel = sanitize_path(&raw);
            prop_assert!(is_safe_relative(&rel));
            prop_assert!(rel.as_os_str().len() <= MAX_PATH_BYTES);
            prop_assert!(rel.components().count() <= MAX_DEPTH);
            let root = Path::new("/downloads/abc");
            let joined = root.join(&rel);
            prop_assert!(joined.starts_with(root));
            prop_assert!(joined.components().all(|c| !matches!(c, Component::ParentDir | Component::CurDir)));
        }

        #[test]
        fn disambiguated_paths_are_distinct(names in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![Just("a"), Just("A"), Just("b"), Just("a.x")], 1..4), 1..30)
        ) {
            let mut paths: Vec<PathBuf> = names.iter().map(|c| sanitize_path(c)).collect();
            disambiguate(&mut paths, |_| false);
            let keys: Vec<String> = paths.iter().map(|p| collision_key(p)).collect();
            let unique: HashSet<&String> = keys.iter().collect();
            prop_assert_eq!(unique.len(), keys.len());
            // No file is another file's directory.
            for p in &paths {
                for q in &paths {
                    if p != q {
                        let dir = format!("{}/", collision_key(p));
                        prop_assert!(!collision_key(q).starts_with(&dir));
                    }
                }
            }
        }
    }
}
