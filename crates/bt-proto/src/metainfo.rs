//! `.torrent` files: BEP 3 (v1 single- and multi-file), BEP 12
//! (announce-list), BEP 19 (url-list), BEP 27 (private) and BEP 47 (padding
//! files), plus [`TorrentBuilder`] to write them. BEP 52 (v2 and hybrid
//! torrents) is in [`v2`]; [`Metainfo`] stays the v1 view.
//!
//! The info-hash is the SHA-1 of the `info` dictionary's bytes *as they
//! appear in the file*: a torrent with unsorted keys would get a different
//! hash if re-encoded, and then no peer would recognise it. So parsing keeps
//! the raw bytes ([`Metainfo::info_bytes`]) and hashes those.
//!
//! Paths are kept as raw bytes. Making them safe to join onto a download
//! directory (`..`, absolute paths, reserved names) is the storage layer's
//! job; here they are only checked for shape.

pub mod v2;

pub use v2::{FileV2, InfoV2, MetainfoV2, MetainfoV2Error, Torrent, info_hash_v2_of};

use crate::InfoHash;
use crate::bencode::{self, BencodeError, Limits, Value};
use crate::magnet::Magnet;
use sha1::{Digest, Sha1};

/// Largest accepted piece length. Real torrents top out at 64 MiB or so;
/// anything above this is broken or hostile and would make us buffer it.
pub const MAX_PIECE_LENGTH: u32 = 512 * 1024 * 1024;
/// Largest accepted total size (1 PiB).
pub const MAX_TOTAL_LENGTH: u64 = 1 << 50;
pub const MAX_FILES: usize = 1_000_000;

/// Decode limits for `.torrent` files: the default item budget, raised so
/// that a torrent at [`MAX_FILES`] (six values per file entry at least)
/// reaches the file-count check with its clearer error.
pub const METAINFO_LIMITS: Limits = Limits {
    max_depth: 64,
    max_input: 64 * 1024 * 1024,
    max_items: 8_000_000,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metainfo {
    pub info_hash: InfoHash,
    pub info: Info,
    /// The `info` dictionary exactly as it appeared in the file; what BEP 9
    /// serves to peers fetching metadata.
    pub info_bytes: Vec<u8>,
    pub announce: Option<String>,
    /// BEP 12 tiers, empty tiers dropped.
    pub announce_list: Vec<Vec<String>>,
    /// BEP 19 web seeds.
    pub url_list: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// Suggested name of the file (single-file) or top directory
    /// (multi-file), raw bytes; `name.utf-8` wins when present.
    pub name: Vec<u8>,
    pub piece_length: u32,
    pub pieces: Vec<[u8; 20]>,
    /// In torrent order, padding files included. A single-file torrent has
    /// one entry with an empty path (the file is named [`Info::name`]).
    pub files: Vec<FileEntry>,
    pub private: bool,
    pub single_file: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components below the torrent's directory, raw bytes.
    pub path: Vec<Vec<u8>>,
    pub length: u64,
    /// BEP 47 `attr` contains `p`: the file only aligns the next one to a
    /// piece boundary and is never written to disk.
    pub padding: bool,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MetainfoError {
    #[error("torrent is not valid bencode: {0}")]
    Bencode(#[from] BencodeError),
    #[error("torrent file is not a bencoded dictionary")]
    NotADict,
    #[error("torrent has no `{0}` field")]
    Missing(&'static str),
    #[error("torrent field `{0}` has the wrong type")]
    WrongType(&'static str),
    #[error("v2-only torrents are not supported yet")]
    V2Only,
    #[error("piece length {0} is invalid")]
    BadPieceLength(i64),
    #[error("piece length {0} exceeds the 512 MiB limit")]
    PieceLengthTooLarge(i64),
    #[error("pieces field is {0} bytes, not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    #[error(
        "torrent has {got} piece hashes, but {total} bytes in pieces of {piece_length} bytes need {expected}"
    )]
    PieceCountMismatch {
        got: u64,
        expected: u64,
        total: u64,
        piece_length: u32,
    },
    #[error("torrent's total length exceeds 2^50 bytes")]
    TooLarge,
    #[error("torrent has no data (total length 0)")]
    Empty,
    #[error("torrent lists more than {MAX_FILES} files")]
    TooManyFiles,
    #[error("multi-file torrent has an empty `files` list")]
    NoFiles,
    #[error("file {index} has an empty path")]
    EmptyPath { index: usize },
    #[error("file {index} has length {length}, which is invalid")]
    BadFileLength { index: usize, length: i64 },
}

impl Metainfo {
    pub fn from_bytes(buf: &[u8]) -> Result<Metainfo, MetainfoError> {
        let root = bencode::decode_with(buf, &METAINFO_LIMITS)?;
        if root.as_dict().is_none() {
            return Err(MetainfoError::NotADict);
        }
        let span = bencode::find_raw_with(buf, b"info", &METAINFO_LIMITS)?
            .ok_or(MetainfoError::Missing("info"))?;
        let info_bytes = buf[span].to_vec();
        let info = Info::from_value(root.get(b"info").expect("find_raw found it"))?;

        let top = TopLevel::from_root(&root);
        Ok(Metainfo {
            info_hash: info_hash_of(&info_bytes),
            info,
            info_bytes,
            announce: top.announce,
            announce_list: top.announce_list,
            url_list: top.url_list,
            comment: top.comment,
            created_by: top.created_by,
            creation_date: top.creation_date,
        })
    }

    /// A magnet link for this torrent: info-hash, name and every tracker.
    pub fn to_magnet(&self) -> Magnet {
        Magnet {
            display_name: Some(self.info.name_lossy()),
            trackers: self.trackers().into_iter().flatten().collect(),
            ..Magnet::new(self.info_hash)
        }
    }

    /// Tracker tiers to announce to: `announce-list` wins when present
    /// (BEP 12), else the lone `announce`.
    pub fn trackers(&self) -> Vec<Vec<String>> {
        if !self.announce_list.is_empty() {
            self.announce_list.clone()
        } else if let Some(a) = &self.announce {
            vec![vec![a.clone()]]
        } else {
            Vec::new()
        }
    }
}

/// The fields outside `info` that v1 and v2 torrents share.
struct TopLevel {
    announce: Option<String>,
    announce_list: Vec<Vec<String>>,
    url_list: Vec<String>,
    comment: Option<String>,
    created_by: Option<String>,
    creation_date: Option<i64>,
}

impl TopLevel {
    fn from_root(root: &Value) -> TopLevel {
        let text = |key: &[u8]| {
            root.get(key)
                .and_then(Value::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let announce_list = root
            .get(b"announce-list")
            .and_then(Value::as_list)
            .map(|tiers| {
                tiers
                    .iter()
                    .filter_map(Value::as_list)
                    .map(|tier| tier.iter().filter_map(url_string).collect::<Vec<_>>())
                    .filter(|tier| !tier.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        // BEP 19 allows a single string as well as a list.
        let url_list = match root.get(b"url-list") {
            Some(Value::List(l)) => l.iter().filter_map(url_string).collect(),
            Some(v) => url_string(v).into_iter().collect(),
            None => Vec::new(),
        };
        TopLevel {
            announce: root.get(b"announce").and_then(url_string),
            announce_list,
            url_list,
            comment: text(b"comment.utf-8").or_else(|| text(b"comment")),
            created_by: text(b"created by"),
            creation_date: root.get(b"creation date").and_then(Value::as_int),
        }
    }
}

/// Tracker and web-seed URLs; empty strings (common in the wild) are dropped.
fn url_string(v: &Value) -> Option<String> {
    let b = v.as_bytes()?;
    let s = String::from_utf8_lossy(b).trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// SHA-1 of the raw `info` dictionary bytes.
pub fn info_hash_of(info_bytes: &[u8]) -> InfoHash {
    InfoHash(Sha1::digest(info_bytes).into())
}

/// SHA-1 of every `piece_length` slice of `data`; for building torrents of
/// data already in memory (tests, small files).
pub fn piece_hashes(data: &[u8], piece_length: u32) -> Vec<[u8; 20]> {
    data.chunks(piece_length.max(1) as usize)
        .map(|c| Sha1::digest(c).into())
        .collect()
}

impl Info {
    /// Parses a bare `info` dictionary, as received over BEP 9.
    pub fn from_bytes(info_bytes: &[u8]) -> Result<Info, MetainfoError> {
        Info::from_value(&bencode::decode_with(info_bytes, &METAINFO_LIMITS)?)
    }

    fn from_value(info: &Value) -> Result<Info, MetainfoError> {
        if info.as_dict().is_none() {
            return Err(MetainfoError::WrongType("info"));
        }
        let has_v1_layout = info.get(b"files").is_some() || info.get(b"length").is_some();
        if info.get(b"meta version").and_then(Value::as_int) == Some(2)
            && (info.get(b"pieces").is_none() || !has_v1_layout)
        {
            return Err(MetainfoError::V2Only);
        }
        if info.get(b"file tree").is_some() && info.get(b"pieces").is_none() {
            return Err(MetainfoError::V2Only);
        }

        let name = utf8_variant(info, b"name", b"name.utf-8")
            .ok_or(MetainfoError::Missing("name"))?
            .to_vec();

        let piece_length = match info.get(b"piece length") {
            None => return Err(MetainfoError::Missing("piece length")),
            Some(v) => v.as_int().ok_or(MetainfoError::WrongType("piece length"))?,
        };
        if piece_length <= 0 {
            return Err(MetainfoError::BadPieceLength(piece_length));
        }
        if piece_length > i64::from(MAX_PIECE_LENGTH) {
            return Err(MetainfoError::PieceLengthTooLarge(piece_length));
        }
        let piece_length = piece_length as u32;

        let raw_pieces = match info.get(b"pieces") {
            None => return Err(MetainfoError::Missing("pieces")),
            Some(v) => v.as_bytes().ok_or(MetainfoError::WrongType("pieces"))?,
        };
        if !raw_pieces.len().is_multiple_of(20) {
            return Err(MetainfoError::PiecesNotMultipleOf20(raw_pieces.len()));
        }

        let (files, single_file) = match (info.get(b"files"), info.get(b"length")) {
            (Some(files), _) => (parse_files(files)?, false),
            (None, Some(length)) => {
                let length = length.as_int().ok_or(MetainfoError::WrongType("length"))?;
                let length = file_length(0, length)?;
                (
                    vec![FileEntry {
                        path: Vec::new(),
                        length,
                        padding: false,
                    }],
                    true,
                )
            }
            (None, None) => return Err(MetainfoError::Missing("length")),
        };

        let mut total: u64 = 0;
        for f in &files {
            total = total
                .checked_add(f.length)
                .filter(|t| *t <= MAX_TOTAL_LENGTH)
                .ok_or(MetainfoError::TooLarge)?;
        }
        if total == 0 {
            return Err(MetainfoError::Empty);
        }
        let expected = total.div_ceil(u64::from(piece_length));
        let got = (raw_pieces.len() / 20) as u64;
        if got != expected {
            return Err(MetainfoError::PieceCountMismatch {
                got,
                expected,
                total,
                piece_length,
            });
        }
        let pieces = raw_pieces
            .chunks_exact(20)
            .map(|c| c.try_into().expect("20-byte chunk"))
            .collect();

        Ok(Info {
            name,
            piece_length,
            pieces,
            files,
            private: info.get(b"private").and_then(Value::as_int).unwrap_or(0) != 0,
            single_file,
        })
    }

    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }

    pub fn num_pieces(&self) -> u32 {
        self.pieces.len() as u32
    }

    /// Size of piece `index`: `piece_length` for all but the last piece;
    /// 0 past the end.
    pub fn piece_size(&self, index: u32) -> u32 {
        let n = self.num_pieces();
        if index >= n {
            return 0;
        }
        if index + 1 < n {
            return self.piece_length;
        }
        let before_last = u64::from(self.piece_length) * u64::from(n - 1);
        (self.total_length() - before_last) as u32
    }

    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// `utf8_key` when it is a byte string, else `key`: BitComet-era torrents
/// put a legacy-codepage name in `name` and the real one in `name.utf-8`.
fn utf8_variant<'a>(d: &'a Value, key: &[u8], utf8_key: &[u8]) -> Option<&'a [u8]> {
    d.get(utf8_key)
        .and_then(Value::as_bytes)
        .or_else(|| d.get(key).and_then(Value::as_bytes))
}

fn file_length(index: usize, length: i64) -> Result<u64, MetainfoError> {
    if length < 0 {
        return Err(MetainfoError::BadFileLength { index, length });
    }
    Ok(length as u64)
}

fn parse_files(files: &Value) -> Result<Vec<FileEntry>, MetainfoError> {
    let list = files.as_list().ok_or(MetainfoError::WrongType("files"))?;
    if list.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    if list.len() > MAX_FILES {
        return Err(MetainfoError::TooManyFiles);
    }
    let mut out = Vec::with_capacity(list.len());
    for (index, f) in list.iter().enumerate() {
        if f.as_dict().is_none() {
            return Err(MetainfoError::WrongType("files"));
        }
        let length = f
            .get(b"length")
            .ok_or(MetainfoError::Missing("length"))?
            .as_int()
            .ok_or(MetainfoError::WrongType("length"))?;
        let length = file_length(index, length)?;
        let path = f
            .get(b"path.utf-8")
            .filter(|p| is_path(p))
            .or_else(|| f.get(b"path"))
            .ok_or(MetainfoError::Missing("path"))?;
        let components = path.as_list().ok_or(MetainfoError::WrongType("path"))?;
        let path = components
            .iter()
            .map(|c| c.as_bytes().map(<[u8]>::to_vec))
            .collect::<Option<Vec<_>>>()
            .ok_or(MetainfoError::WrongType("path"))?;
        if path.is_empty() {
            return Err(MetainfoError::EmptyPath { index });
        }
        let padding = f
            .get(b"attr")
            .and_then(Value::as_bytes)
            .is_some_and(|a| a.contains(&b'p'));
        out.push(FileEntry {
            path,
            length,
            padding,
        });
    }
    Ok(out)
}

fn is_path(v: &Value) -> bool {
    v.as_list()
        .is_some_and(|l| !l.is_empty() && l.iter().all(|c| c.as_bytes().is_some()))
}

/// Writes a v1 `.torrent` in canonical bencode.
///
/// The caller supplies the piece hashes (see [`piece_hashes`]), keeping this
/// free of file I/O. Files are `(path components, length)`; a single file
/// with an empty path makes a single-file torrent named `name`.
#[derive(Clone, Debug, Default)]
pub struct TorrentBuilder {
    name: Vec<u8>,
    piece_length: u32,
    files: Vec<FileEntry>,
    pieces: Vec<[u8; 20]>,
    trackers: Vec<Vec<String>>,
    url_list: Vec<String>,
    private: bool,
    comment: Option<String>,
    created_by: Option<String>,
    creation_date: Option<i64>,
}

impl TorrentBuilder {
    pub fn new(name: impl Into<Vec<u8>>, piece_length: u32) -> Self {
        TorrentBuilder {
            name: name.into(),
            piece_length,
            ..Default::default()
        }
    }

    pub fn file(mut self, path: Vec<Vec<u8>>, length: u64) -> Self {
        self.files.push(FileEntry {
            path,
            length,
            padding: false,
        });
        self
    }

    /// A BEP 47 padding file (`attr` = `p`).
    pub fn padding_file(mut self, path: Vec<Vec<u8>>, length: u64) -> Self {
        self.files.push(FileEntry {
            path,
            length,
            padding: true,
        });
        self
    }

    pub fn pieces(mut self, hashes: Vec<[u8; 20]>) -> Self {
        self.pieces = hashes;
        self
    }

    /// Adds a tracker tier; the first URL of the first tier becomes
    /// `announce`.
    pub fn tracker_tier(mut self, tier: Vec<String>) -> Self {
        if !tier.is_empty() {
            self.trackers.push(tier);
        }
        self
    }

    pub fn url_seed(mut self, url: impl Into<String>) -> Self {
        self.url_list.push(url.into());
        self
    }

    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    pub fn created_by(mut self, created_by: impl Into<String>) -> Self {
        self.created_by = Some(created_by.into());
        self
    }

    pub fn creation_date(mut self, unix_seconds: i64) -> Self {
        self.creation_date = Some(unix_seconds);
        self
    }

    fn single_file(&self) -> bool {
        self.files.len() == 1 && self.files[0].path.is_empty()
    }

    fn info_value(&self) -> Value {
        let mut info = Value::dict();
        info.insert("name", self.name.clone());
        info.insert("piece length", i64::from(self.piece_length));
        info.insert("pieces", self.pieces.concat());
        if self.private {
            info.insert("private", 1);
        }
        if self.single_file() {
            info.insert("length", self.files[0].length as i64);
        } else {
            let files = self
                .files
                .iter()
                .map(|f| {
                    let mut e = Value::dict();
                    e.insert("length", f.length as i64);
                    let path: Vec<Value> = f.path.iter().map(|c| Value::Bytes(c.clone())).collect();
                    e.insert("path", path);
                    if f.padding {
                        e.insert("attr", "p");
                    }
                    e
                })
                .collect::<Vec<_>>();
            info.insert("files", files);
        }
        info
    }

    /// The bencoded `info` dictionary alone.
    pub fn info_bytes(&self) -> Vec<u8> {
        bencode::encode(&self.info_value())
    }

    pub fn info_hash(&self) -> InfoHash {
        info_hash_of(&self.info_bytes())
    }

    pub fn build(&self) -> Vec<u8> {
        let mut root = Value::dict();
        if let Some(first) = self.trackers.first().and_then(|t| t.first()) {
            root.insert("announce", first.as_str());
        }
        if self.trackers.len() > 1 || self.trackers.first().is_some_and(|t| t.len() > 1) {
            let tiers: Vec<Value> = self
                .trackers
                .iter()
                .map(|t| Value::List(t.iter().map(|u| Value::from(u.as_str())).collect()))
                .collect();
            root.insert("announce-list", tiers);
        }
        if !self.url_list.is_empty() {
            let urls: Vec<Value> = self
                .url_list
                .iter()
                .map(|u| Value::from(u.as_str()))
                .collect();
            root.insert("url-list", urls);
        }
        if let Some(c) = &self.comment {
            root.insert("comment", c.as_str());
        }
        if let Some(c) = &self.created_by {
            root.insert("created by", c.as_str());
        }
        if let Some(d) = self.creation_date {
            root.insert("creation date", d);
        }
        root.insert("info", self.info_value());
        bencode::encode(&root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hashes(n: usize) -> Vec<[u8; 20]> {
        (0..n).map(|i| [i as u8; 20]).collect()
    }

    #[test]
    fn single_file_round_trip() {
        let data = vec![7u8; 40_000];
        let t = TorrentBuilder::new("movie.mkv", 16384)
            .file(vec![], data.len() as u64)
            .pieces(piece_hashes(&data, 16384))
            .tracker_tier(vec!["http://127.0.0.1:1/announce".into()])
            .comment("hi")
            .private(true);
        let bytes = t.build();
        let m = Metainfo::from_bytes(&bytes).unwrap();
        assert!(m.info.single_file);
        assert!(m.info.private);
        assert_eq!(m.info.name_lossy(), "movie.mkv");
        assert_eq!(m.info.num_pieces(), 3);
        assert_eq!(m.info.piece_size(0), 16384);
        assert_eq!(m.info.piece_size(2), 40_000 - 2 * 16384);
        assert_eq!(m.info.piece_size(3), 0);
        assert_eq!(m.info.files[0].path, Vec::<Vec<u8>>::new());
        assert_eq!(m.info_hash, t.info_hash());
        assert_eq!(m.info_bytes, t.info_bytes());
        assert_eq!(
            m.trackers(),
            vec![vec!["http://127.0.0.1:1/announce".to_string()]]
        );
        assert!(m.announce_list.is_empty());
        assert_eq!(m.comment.as_deref(), Some("hi"));
        let magnet = Magnet::parse(&m.to_magnet().to_uri()).unwrap();
        assert_eq!(magnet.info_hash, m.info_hash);
        assert_eq!(magnet.display_name.as_deref(), Some("movie.mkv"));
        assert_eq!(magnet.trackers, ["http://127.0.0.1:1/announce"]);
        assert_eq!(Info::from_bytes(&m.info_bytes).unwrap(), m.info);
    }

    #[test]
    fn multi_file_with_padding_and_tiers() {
        let t = TorrentBuilder::new("show", 32768)
            .file(vec![b"s01".to_vec(), b"e01.mkv".to_vec()], 30000)
            .padding_file(vec![b".pad".to_vec(), b"2768".to_vec()], 2768)
            .file(vec![b"s01".to_vec(), b"e02.mkv".to_vec()], 40000)
            .pieces(hashes(3))
            .tracker_tier(vec!["udp://a:1".into(), "udp://b:1".into()])
            .tracker_tier(vec!["http://c/announce".into()])
            .url_seed("http://seed/");
        let m = Metainfo::from_bytes(&t.build()).unwrap();
        assert!(!m.info.single_file);
        assert_eq!(m.info.files.len(), 3);
        assert!(m.info.files[1].padding);
        assert!(!m.info.files[0].padding);
        assert_eq!(m.info.total_length(), 72768);
        assert_eq!(m.announce.as_deref(), Some("udp://a:1"));
        assert_eq!(m.trackers().len(), 2);
        assert_eq!(m.trackers()[0].len(), 2);
        assert_eq!(m.url_list, vec!["http://seed/".to_string()]);
    }

    #[test]
    fn info_hash_uses_raw_unsorted_bytes() {
        // "pieces" before "name": not canonical, so a re-encode would hash
        // differently.
        let mut info = b"d6:lengthi5e6:pieces20:".to_vec();
        info.extend_from_slice(&[1u8; 20]);
        info.extend_from_slice(b"4:name1:a12:piece lengthi16384ee");
        let mut buf = b"d8:announce4:http4:info".to_vec();
        buf.extend_from_slice(&info);
        buf.push(b'e');
        let m = Metainfo::from_bytes(&buf).unwrap();
        assert_eq!(m.info_bytes, info);
        assert_eq!(m.info_hash, info_hash_of(&info));
        assert_ne!(
            m.info_hash,
            info_hash_of(&bencode::encode(&bencode::decode(&info).unwrap()))
        );
    }

    #[test]
    fn utf8_variants_win() {
        let mut info = Value::dict();
        info.insert("name", b"\xb2\xe2".as_slice());
        info.insert("name.utf-8", "日本");
        info.insert("piece length", 16384);
        info.insert("pieces", vec![0u8; 20]);
        let mut f = Value::dict();
        f.insert("length", 3);
        f.insert("path", vec![Value::from(b"\xb2".as_slice())]);
        f.insert("path.utf-8", vec![Value::from("é")]);
        info.insert("files", vec![f]);
        let parsed = Info::from_bytes(&bencode::encode(&info)).unwrap();
        assert_eq!(parsed.name_lossy(), "日本");
        assert_eq!(parsed.files[0].path, vec!["é".as_bytes().to_vec()]);
    }

    fn info_with(f: impl FnOnce(&mut Value)) -> Result<Info, MetainfoError> {
        let mut info = Value::dict();
        info.insert("name", "x");
        info.insert("piece length", 16384);
        info.insert("pieces", vec![0u8; 20]);
        info.insert("length", 100);
        f(&mut info);
        Info::from_bytes(&bencode::encode(&info))
    }

    #[test]
    fn absurd_inputs_are_refused_with_clear_errors() {
        let e = info_with(|i| i.insert("piece length", 0)).unwrap_err();
        assert_eq!(e.to_string(), "piece length 0 is invalid");
        let e = info_with(|i| i.insert("piece length", 1 << 30)).unwrap_err();
        assert_eq!(e, MetainfoError::PieceLengthTooLarge(1 << 30));
        let e = info_with(|i| i.insert("pieces", vec![0u8; 21])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pieces field is 21 bytes, not a multiple of 20"
        );
        let e = info_with(|i| i.insert("pieces", vec![0u8; 40])).unwrap_err();
        assert!(matches!(
            e,
            MetainfoError::PieceCountMismatch {
                got: 2,
                expected: 1,
                ..
            }
        ));
        // 2^50 bytes in 1-byte pieces would be 2^50 hashes: refused by
        // comparing counts, never by allocating.
        let e = info_with(|i| {
            i.insert("piece length", 1);
            i.insert("length", 1i64 << 50);
        })
        .unwrap_err();
        assert!(
            matches!(e, MetainfoError::PieceCountMismatch { expected, .. } if expected == 1 << 50)
        );
        let e = info_with(|i| i.insert("length", (1i64 << 50) + 1)).unwrap_err();
        assert_eq!(e, MetainfoError::TooLarge);
        let e = info_with(|i| i.insert("length", -1)).unwrap_err();
        assert_eq!(
            e,
            MetainfoError::BadFileLength {
                index: 0,
                length: -1
            }
        );
        let e = info_with(|i| i.insert("length", 0)).unwrap_err();
        assert_eq!(e, MetainfoError::Empty);
        let e = info_with(|i| {
            let mut f = Value::dict();
            f.insert("length", 100);
            f.insert("path", Vec::<Value>::new());
            i.insert("files", vec![f]);
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "file 0 has an empty path");
        let e = info_with(|i| i.insert("files", Vec::<Value>::new())).unwrap_err();
        assert_eq!(e, MetainfoError::NoFiles);
        // Many files whose lengths overflow u64 when summed.
        let e = info_with(|i| {
            let mut f = Value::dict();
            f.insert("length", i64::MAX);
            f.insert("path", vec![Value::from("a")]);
            i.insert("files", vec![f.clone(), f.clone(), f]);
        })
        .unwrap_err();
        assert_eq!(e, MetainfoError::TooLarge);
        let e = info_with(|i| {
            if let Value::Dict(d) = i {
                d.remove(b"name".as_slice());
            }
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "torrent has no `name` field");
    }

    #[test]
    fn too_many_files_is_refused() {
        let mut f = Value::dict();
        f.insert("length", 0);
        f.insert("path", vec![Value::from("a")]);
        let e = info_with(|i| i.insert("files", vec![f; MAX_FILES + 1])).unwrap_err();
        assert_eq!(e, MetainfoError::TooManyFiles);
    }

    #[test]
    fn v2_only_is_refused_and_hybrid_parses_as_v1() {
        let e = info_with(|i| {
            if let Value::Dict(d) = i {
                d.remove(b"pieces".as_slice());
                d.remove(b"length".as_slice());
            }
            i.insert("meta version", 2);
            i.insert("file tree", Value::dict());
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "v2-only torrents are not supported yet");
        let hybrid = info_with(|i| {
            i.insert("meta version", 2);
            i.insert("file tree", Value::dict());
        })
        .unwrap();
        assert_eq!(hybrid.total_length(), 100);
    }

    #[test]
    fn top_level_oddities() {
        assert_eq!(Metainfo::from_bytes(b"i1e"), Err(MetainfoError::NotADict));
        assert_eq!(
            Metainfo::from_bytes(b"de"),
            Err(MetainfoError::Missing("info"))
        );
        assert!(matches!(
            Metainfo::from_bytes(b"d4:infoi1ee"),
            Err(MetainfoError::WrongType("info"))
        ));
        // url-list as a single string, empty trackers dropped.
        let mut root = Value::dict();
        let info = bencode::decode(
            &TorrentBuilder::new("a", 16384)
                .file(vec![], 1)
                .pieces(hashes(1))
                .info_bytes(),
        )
        .unwrap();
        root.insert("info", info);
        root.insert("url-list", "http://ws/");
        root.insert("announce", "");
        root.insert(
            "announce-list",
            vec![
                Value::List(vec![]),
                Value::List(vec!["udp://t:1".into(), Value::Int(3)]),
            ],
        );
        let m = Metainfo::from_bytes(&bencode::encode(&root)).unwrap();
        assert_eq!(m.url_list, vec!["http://ws/".to_string()]);
        assert_eq!(m.announce, None);
        assert_eq!(m.announce_list, vec![vec!["udp://t:1".to_string()]]);
    }

    proptest! {
        #[test]
        fn builder_round_trips(
            piece_length in 1u32..70_000,
            files in proptest::collection::vec(
                (proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..8), 1..4), 0u64..200_000),
                1..6),
            private in any::<bool>(),
        ) {
            let total: u64 = files.iter().map(|f| f.1).sum();
            prop_assume!(total > 0);
            let n = total.div_ceil(u64::from(piece_length)) as usize;
            let mut b = TorrentBuilder::new("n", piece_length).pieces(hashes(n)).private(private);
            for (p, l) in &files {
                b = b.file(p.clone(), *l);
            }
            let m = Metainfo::from_bytes(&b.build()).unwrap();
            prop_assert_eq!(m.info.total_length(), total);
            prop_assert_eq!(m.info.num_pieces() as usize, n);
            prop_assert_eq!(m.info.private, private);
            let sum: u64 = (0..m.info.num_pieces()).map(|i| u64::from(m.info.piece_size(i))).sum();
            prop_assert_eq!(sum, total);
            prop_assert_eq!(m.info_hash, b.info_hash());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Metainfo::from_bytes(&bytes);
            let _ = Info::from_bytes(&bytes);
        }

        #[test]
        fn arbitrary_values_never_panic(v in crate::bencode::tests::arb_value()) {
            let mut root = Value::dict();
            root.insert("info", v.clone());
            let _ = Metainfo::from_bytes(&bencode::encode(&root));
            let _ = Info::from_bytes(&bencode::encode(&v));
        }
    }
}
