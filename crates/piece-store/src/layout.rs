//! Where each piece of a torrent lives on disk.
//!
//! A torrent is one long byte string cut into fixed-size pieces (the last one
//! shorter) and, independently, into files laid end to end. [`Layout`] maps
//! between the two: which files a piece touches ([`Layout::spans`]), which
//! pieces a file touches ([`Layout::file_pieces`]). It is pure arithmetic,
//! validated once at construction so nothing later can overflow.
//!
//! Padding files (BEP 47) occupy torrent offsets like any file but are never
//! written; their bytes read as zeros.

use std::ops::Range;
use std::path::PathBuf;

use crate::error::StoreError;
use crate::sanitize::{disambiguate, is_safe_relative, sanitize_component, sanitize_path};

/// One file of the torrent, as it will be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    /// Relative to the download folder, sanitized; for multi-file torrents it
    /// starts with the torrent's root folder.
    pub path: PathBuf,
    pub length: u64,
    /// Where the file starts in the torrent's byte string.
    pub offset: u64,
    /// BEP 47 padding: never written, reads as zeros.
    pub padding: bool,
}

/// The part of a piece range that falls into one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub file: usize,
    pub file_offset: u64,
    pub len: u32,
}

/// A torrent's file list, as the engine hands it over (or as
/// `bt_proto::metainfo::Info` carries it): raw bytes, unsanitized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFile<'a> {
    /// Path elements below the root folder; empty for a single-file torrent.
    pub path: &'a [Vec<u8>],
    pub length: u64,
    pub padding: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    files: Vec<FileSpec>,
    piece_length: u32,
    num_pieces: u32,
    total_length: u64,
}

impl Layout {
    /// Builds a layout from a file list whose paths are already sanitized and
    /// relative (they are checked again: a path with `..`, a root or an
    /// empty component is refused).
    pub fn new(files: Vec<(PathBuf, u64, bool)>, piece_length: u32) -> Result<Layout, StoreError> {
        let invalid = |reason: String| StoreError::InvalidTorrent {
            name: files
                .first()
                .map(|f| f.0.display().to_string())
                .unwrap_or_default(),
            reason,
        };
        if piece_length == 0 {
            return Err(invalid("piece length is 0".into()));
        }
        if files.is_empty() {
            return Err(invalid("it lists no files".into()));
        }
        let mut specs = Vec::with_capacity(files.len());
        let mut offset: u64 = 0;
        for (path, length, padding) in &files {
            if !is_safe_relative(path) {
                return Err(invalid(format!(
                    "file path {} is not a plain relative path",
                    path.display()
                )));
            }
            specs.push(FileSpec {
                path: path.clone(),
                length: *length,
                offset,
                padding: *padding,
            });
            offset = offset
                .checked_add(*length)
                .ok_or_else(|| invalid("the file lengths add up to more than 2^64 bytes".into()))?;
        }
        let num_pieces = offset.div_ceil(u64::from(piece_length));
        let num_pieces = u32::try_from(num_pieces).map_err(|_| {
            invalid(format!(
                "{offset} bytes in pieces of {piece_length} bytes is more than 2^32 pieces"
            ))
        })?;
        Ok(Layout {
            files: specs,
            piece_length,
            num_pieces,
            total_length: offset,
        })
    }

    /// Lays out a torrent from its metainfo, sanitizing every name:
    /// single-file torrents become `<name>`, multi-file ones
    /// `<name>/<a>/<b>`. Refuses file lists that cannot be right: no files,
    /// a multi-file entry without a path, lengths that overflow, or a piece
    /// hash count that does not match the total length.
    ///
    /// Names no legitimate torrent has (`..` components, absolute or
    /// drive-letter paths) are refused outright rather than rewritten, so
    /// the user learns that the torrent is hostile.
    pub fn from_info(info: &bt_proto::metainfo::Info) -> Result<Layout, StoreError> {
        refuse_traversal(&info.name, info.files.iter().map(|f| f.path.as_slice()))?;
        let files: Vec<RawFile<'_>> = info
            .files
            .iter()
            .map(|f| RawFile {
                path: &f.path,
                length: f.length,
                padding: f.padding,
            })
            .collect();
        Layout::from_raw(
            &info.name,
            info.single_file,
            &files,
            info.piece_length,
            info.pieces.len(),
        )
    }

    /// [`Layout::from_info`] without the metainfo type: the same checks and
    /// sanitizing, from the raw fields.
    pub fn from_raw(
        name: &[u8],
        single_file: bool,
        files: &[RawFile<'_>],
        piece_length: u32,
        num_hashes: usize,
    ) -> Result<Layout, StoreError> {
        let display_name = String::from_utf8_lossy(name).into_owned();
        let invalid = |reason: String| StoreError::InvalidTorrent {
            name: display_name.clone(),
            reason,
        };
        if piece_length == 0 {
            return Err(invalid("piece length is 0".into()));
        }
        if files.is_empty() {
            return Err(invalid("it lists no files".into()));
        }
        let mut paths: Vec<PathBuf> = Vec::with_capacity(files.len());
        if single_file {
            if files.len() != 1 || !files[0].path.is_empty() {
                return Err(invalid(
                    "a single-file torrent must have exactly one file without a path".into(),
                ));
            }
            paths.push(PathBuf::from(sanitize_component(name)));
        } else {
            for (i, f) in files.iter().enumerate() {
                if f.path.is_empty() {
                    return Err(invalid(format!("file #{i} has an empty path")));
                }
                let mut raw: Vec<&[u8]> = Vec::with_capacity(f.path.len() + 1);
                raw.push(name);
                raw.extend(f.path.iter().map(Vec::as_slice));
                paths.push(sanitize_path(&raw));
            }
        }
        disambiguate(&mut paths, |i| files[i].padding);

        let mut total: u64 = 0;
        for f in files {
            total = total
                .checked_add(f.length)
                .ok_or_else(|| invalid("the file lengths add up to more than 2^64 bytes".into()))?;
        }
        let expected = total.div_ceil(u64::from(piece_length));
        if expected != num_hashes as u64 {
            return Err(invalid(format!(
                "it has {num_hashes} piece hashes but its files add up to {total} bytes, which is {expected} pieces of {piece_length} bytes"
            )));
        }
        let list = paths
            .into_iter()
            .zip(files)
            .map(|(p, f)| (p, f.length, f.padding))
            .collect();
        Layout::new(list, piece_length).map_err(|e| match e {
            StoreError::InvalidTorrent { reason, .. } => invalid(reason),
            other => other,
        })
    }

    pub fn files(&self) -> &[FileSpec] {
        &self.files
    }

    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    pub fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Bytes in `piece`: the piece length, except for the last piece. Zero
    /// for indices past the end.
    pub fn piece_size(&self, piece: u32) -> u32 {
        if piece >= self.num_pieces {
            return 0;
        }
        let start = self.piece_start(piece);
        (self.total_length - start).min(u64::from(self.piece_length)) as u32
    }

    /// Torrent offset of the first byte of `piece`.
    pub fn piece_start(&self, piece: u32) -> u64 {
        u64::from(piece) * u64::from(self.piece_length)
    }

    /// The piece holding byte `torrent_offset` (past the end: an index past
    /// the last piece).
    pub fn piece_at(&self, torrent_offset: u64) -> u32 {
        (torrent_offset / u64::from(self.piece_length)).min(u64::from(u32::MAX)) as u32
    }

    /// Pieces holding at least one byte of `file`; empty for empty files.
    pub fn file_pieces(&self, file: usize) -> Range<u32> {
        let Some(f) = self.files.get(file) else {
            return 0..0;
        };
        let first = self.piece_at(f.offset);
        if f.length == 0 {
            return first..first;
        }
        first..self.piece_at(f.offset + f.length - 1) + 1
    }

    /// The files covering `len` bytes at `offset` in `piece`, in order, each
    /// byte exactly once; empty files are skipped. The range is clamped to
    /// the torrent, so callers validate it first (Storage does).
    pub fn spans(&self, piece: u32, offset: u32, len: u32) -> impl Iterator<Item = Span> + '_ {
        let start = (self.piece_start(piece) + u64::from(offset)).min(self.total_length);
        let end = (start + u64::from(len)).min(self.total_length);
        // First file that ends after `start`; empty files end where they
        // start, so they are never chosen.
        let first = self.files.partition_point(|f| f.offset + f.length <= start);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(move |(_, f)| f.offset < end)
            .filter(|(_, f)| f.length > 0)
            .map(move |(i, f)| {
                let from = start.max(f.offset);
                let to = end.min(f.offset + f.length);
                Span {
                    file: first + i,
                    file_offset: from - f.offset,
                    len: (to - from) as u32,
                }
            })
    }
}

/// Refuses a torrent whose name or paths try to leave the download folder.
pub fn refuse_traversal<'a>(
    name: &[u8],
    paths: impl Iterator<Item = &'a [Vec<u8>]>,
) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidTorrent {
        name: String::from_utf8_lossy(name).into_owned(),
        reason,
    };
    let hostile = |c: &[u8]| -> Option<&'static str> {
        if c == b".."
            || c.windows(3).any(|w| w == b"../" || w == b"..\\")
            || c.ends_with(b"/..")
            || c.ends_with(b"\\..")
        {
            Some("a `..` path component (path traversal)")
        } else if c.first().is_some_and(|&b| b == b'/' || b == b'\\') {
            Some("an absolute path")
        } else if c.len() >= 2 && c[1] == b':' && c[0].is_ascii_alphabetic() {
            Some("a drive-letter path")
        } else {
            None
        }
    };
    if let Some(why) = hostile(name) {
        return Err(invalid(format!(
            "its name is {why}; refusing a hostile torrent"
        )));
    }
    for (i, path) in paths.enumerate() {
        if let Some(why) = path.iter().find_map(|c| hostile(c)) {
            return Err(invalid(format!(
                "file #{i} has {why}; refusing a hostile torrent"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layout(sizes: &[u64], piece_length: u32) -> Layout {
        let files = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| (PathBuf::from(format!("t/f{i}")), s, false))
            .collect();
        Layout::new(files, piece_length).unwrap()
    }

    #[test]
    fn piece_arithmetic() {
        let l = layout(&[10, 0, 7, 3], 8);
        assert_eq!(l.total_length(), 20);
        assert_eq!(l.num_pieces(), 3);
        assert_eq!(l.piece_size(0), 8);
        assert_eq!(l.piece_size(2), 4);
        assert_eq!(l.piece_size(3), 0);
        assert_eq!(l.file_pieces(0), 0..2);
        assert_eq!(l.file_pieces(1), 1..1);
        assert_eq!(l.file_pieces(2), 1..3);
        assert_eq!(l.file_pieces(3), 2..3);
        assert_eq!(l.piece_at(15), 1);
        let spans: Vec<Span> = l.spans(1, 0, 8).collect();
        assert_eq!(
            spans,
            [
                Span {
                    file: 0,
                    file_offset: 8,
                    len: 2
                },
                Span {
                    file: 2,
                    file_offset: 0,
                    len: 6
                },
            ]
        );
    }

    #[test]
    fn from_raw_sanitizes_and_checks_counts() {
        let a = vec![b"..".to_vec(), b"x.mkv".to_vec()];
        let b = vec![b"X.mkv".to_vec()];
        let c = vec![b"x.mkv".to_vec()];
        let files = [
            RawFile {
                path: &a,
                length: 5,
                padding: false,
            },
            RawFile {
                path: &b,
                length: 5,
                padding: false,
            },
            RawFile {
                path: &c,
                length: 6,
                padding: false,
            },
        ];
        let l = Layout::from_raw(b"/abs/../root", false, &files, 4, 4).unwrap();
        let paths: Vec<_> = l
            .files()
            .iter()
            .map(|f| f.path.display().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "_abs_.._root/_/x.mkv",
                "_abs_.._root/X.mkv",
                "_abs_.._root/x (1).mkv"
            ]
        );

        let err = Layout::from_raw(b"root", false, &files, 4, 5).unwrap_err();
        assert!(
            err.to_string().contains(
                "it has 5 piece hashes but its files add up to 16 bytes, which is 4 pieces"
            ),
            "{err}"
        );
        let empty: Vec<Vec<u8>> = vec![];
        let bad = [RawFile {
            path: &empty,
            length: 1,
            padding: false,
        }];
        assert!(Layout::from_raw(b"root", false, &bad, 4, 1).is_err());
        let single = Layout::from_raw(b"CON.mkv", true, &bad, 4, 1).unwrap();
        assert_eq!(single.files()[0].path, PathBuf::from("_CON.mkv"));
        let huge = [
            RawFile {
                path: &c,
                length: u64::MAX,
                padding: false,
            },
            RawFile {
                path: &b,
                length: 1,
                padding: false,
            },
        ];
        assert!(
            Layout::from_raw(b"root", false, &huge, 4, 1)
                .unwrap_err()
                .to_string()
                .contains("2^64")
        );
        assert!(Layout::from_raw(b"root", false, &[], 4, 0).is_err());
        assert!(Layout::from_raw(b"root", false, &files, 0, 0).is_err());
    }

    #[test]
    fn new_refuses_unsafe_paths() {
        for bad in ["../x", "/etc/passwd", "a/../b", ""] {
            assert!(
                Layout::new(vec![(PathBuf::from(bad), 1, false)], 4).is_err(),
                "{bad}"
            );
        }
        assert!(Layout::new(vec![(PathBuf::from("a/b"), 1, false)], 4).is_ok());
    }

    proptest! {
        #[test]
        fn spans_cover_every_byte_once_in_order(
            sizes in proptest::collection::vec(prop_oneof![Just(0u64), 1u64..5, 1u64..300], 1..12),
            piece_length in 1u32..100,
        ) {
            let l = layout(&sizes, piece_length);
            let mut next = 0u64; // torrent offset the next span must start at
            for piece in 0..l.num_pieces() {
                let size = l.piece_size(piece);
                prop_assert!(size > 0);
                let mut covered = 0u32;
                for s in l.spans(piece, 0, size) {
                    let f = &l.files()[s.file];
                    prop_assert!(s.len > 0);
                    prop_assert!(s.file_offset + u64::from(s.len) <= f.length);
                    prop_assert_eq!(f.offset + s.file_offset, next);
                    prop_assert!(l.file_pieces(s.file).contains(&piece));
                    next += u64::from(s.len);
                    covered += s.len;
                }
                prop_assert_eq!(covered, size);
            }
            prop_assert_eq!(next, l.total_length());
        }

        #[test]
        fn sub_ranges_match_whole_piece(
            sizes in proptest::collection::vec(0u64..200, 1..8),
            piece_length in 1u32..64,
            a in any::<u32>(), b in any::<u32>(), p in any::<u32>(),
        ) {
            let l = layout(&sizes, piece_length);
            prop_assume!(l.num_pieces() > 0);
            let piece = p % l.num_pieces();
            let size = l.piece_size(piece);
            let (x, y) = (a % (size + 1), b % (size + 1));
            let (lo, hi) = (x.min(y), x.max(y));
            let total: u32 = l.spans(piece, lo, hi - lo).map(|s| s.len).sum();
            prop_assert_eq!(total, hi - lo);
            let first = l.spans(piece, lo, hi - lo).next();
            if let Some(s) = first {
                let f = &l.files()[s.file];
                prop_assert_eq!(f.offset + s.file_offset, l.piece_start(piece) + u64::from(lo));
            }
        }
    }
}
