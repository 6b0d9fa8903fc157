//! BEP 52 (BitTorrent v2) torrents: `meta version` 2, a `file tree` with a
//! merkle `pieces root` per file, `piece layers` beside `info`, and a
//! SHA-256 info-hash. A *hybrid* torrent carries a v1 `pieces`/`files`
//! description of the same data as well (with BEP 47 padding files so
//! every file starts on a piece boundary) and has both info-hashes.
//!
//! [`Torrent::from_bytes`] reads any `.torrent` and says which views it
//! has; [`Metainfo::from_bytes`](super::Metainfo::from_bytes) keeps giving
//! the v1 view alone (and refuses v2-only torrents, as before).
//!
//! Pieces of a v2 torrent never span files: piece indices on the wire
//! number the pieces of every file in file-tree order, as if each file
//! were padded to a piece boundary ([`InfoV2::aligned_files`] lays that
//! out with v1-style padding entries). A piece is checked with SHA-256
//! merkle hashes ([`crate::merkle`]) against the file's piece layer, or
//! against its `pieces root` when the file fits in one piece.
//!
//! A hybrid's v1 and v2 parts must describe the same files in the same
//! order with the same alignment, or peers of one version would fetch
//! different bytes than peers of the other; a mismatch is refused.

use super::{
    FileEntry, Info, MAX_FILES, MAX_PIECE_LENGTH, MAX_TOTAL_LENGTH, METAINFO_LIMITS, Metainfo,
    MetainfoError, TopLevel, info_hash_of,
};
use crate::bencode::{self, Value};
use crate::magnet::Magnet;
use crate::merkle::{self, BLOCK_SIZE, MerkleError};
use crate::{InfoHash, InfoHashV2};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ops::Range;

/// A parsed `.torrent` of any version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Torrent {
    V1(Box<Metainfo>),
    V2(Box<MetainfoV2>),
    /// Both views of the same data.
    Hybrid {
        v1: Box<Metainfo>,
        v2: Box<MetainfoV2>,
    },
}

/// The v2 view of a v2-only or hybrid torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetainfoV2 {
    pub info_hash: InfoHashV2,
    /// The v1 info-hash when the torrent is hybrid.
    pub v1_info_hash: Option<InfoHash>,
    pub info: InfoV2,
    /// The `info` dictionary exactly as it appeared in the file.
    pub info_bytes: Vec<u8>,
    /// `pieces root` to that file's piece layer, for files longer than
    /// one piece. Every layer here was checked against its root; layers a
    /// `.torrent` left out are fetched from peers with hash requests.
    pub piece_layers: BTreeMap<[u8; 32], Vec<[u8; 32]>>,
    pub announce: Option<String>,
    pub announce_list: Vec<Vec<String>>,
    pub url_list: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoV2 {
    /// Name of the file (single-file) or top directory, raw bytes.
    pub name: Vec<u8>,
    /// A power of two, at least 16 KiB.
    pub piece_length: u32,
    /// In file-tree order (path bytes sorted, as bencode keeps them).
    pub files: Vec<FileV2>,
    pub private: bool,
    /// One file whose path is the torrent's name: it is stored as `name`
    /// itself, not `name/name` (as libtorrent and v1 do).
    pub single_file: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileV2 {
    /// Path components below the torrent's directory, raw bytes.
    pub path: Vec<Vec<u8>>,
    pub length: u64,
    /// Root of the file's merkle tree; `None` exactly for empty files.
    pub pieces_root: Option<[u8; 32]>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MetainfoV2Error {
    #[error(transparent)]
    Metainfo(#[from] MetainfoError),
    #[error("torrent is not a v2 torrent (no `meta version` 2 and `file tree`)")]
    NotV2,
    #[error("torrent has `meta version` {0}; only 2 is known")]
    BadMetaVersion(i64),
    #[error("v2 piece length {0} is not a power of two of at least 16 KiB")]
    BadPieceLength(i64),
    #[error("torrent has {0} pieces; piece indices must fit in 32 bits")]
    TooManyPieces(u64),
    #[error("v2 file tree is malformed at {path:?}: {what}")]
    BadFileTree { path: String, what: &'static str },
    #[error("file {path:?} has {len} bytes but no 32-byte `pieces root`")]
    BadPiecesRoot { path: String, len: u64 },
    #[error("`piece layers` is malformed: {0}")]
    BadPieceLayers(&'static str),
    #[error("piece layer of file {path:?} is invalid: {source}")]
    PieceLayer {
        path: String,
        #[source]
        source: MerkleError,
    },
    #[error("hybrid torrent's v1 and v2 parts describe different data: {0}")]
    HybridMismatch(String),
}

/// SHA-256 of the raw `info` dictionary bytes.
pub fn info_hash_v2_of(info_bytes: &[u8]) -> InfoHashV2 {
    InfoHashV2(Sha256::digest(info_bytes).into())
}

fn path_string(path: &[Vec<u8>]) -> String {
    path.iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

impl Torrent {
    pub fn from_bytes(buf: &[u8]) -> Result<Torrent, MetainfoV2Error> {
        let root = bencode::decode_with(buf, &METAINFO_LIMITS).map_err(MetainfoError::from)?;
        let info = root
            .as_dict()
            .ok_or(MetainfoError::NotADict)?
            .get(b"info".as_slice())
            .ok_or(MetainfoError::Missing("info"))?;
        let has_v2 = info.get(b"meta version").is_some() || info.get(b"file tree").is_some();
        let has_v1 = info.get(b"pieces").is_some();
        Ok(match (has_v1, has_v2) {
            (true, true) => {
                let v1 = Metainfo::from_bytes(buf)?;
                let v2 = MetainfoV2::from_bytes(buf)?;
                Torrent::Hybrid {
                    v1: Box::new(v1),
                    v2: Box::new(v2),
                }
            }
            (false, true) => Torrent::V2(Box::new(MetainfoV2::from_bytes(buf)?)),
            _ => Torrent::V1(Box::new(Metainfo::from_bytes(buf)?)),
        })
    }

    pub fn v1(&self) -> Option<&Metainfo> {
        match self {
            Torrent::V1(m) | Torrent::Hybrid { v1: m, .. } => Some(m),
            Torrent::V2(_) => None,
        }
    }

    pub fn v2(&self) -> Option<&MetainfoV2> {
        match self {
            Torrent::V2(m) | Torrent::Hybrid { v2: m, .. } => Some(m),
            Torrent::V1(_) => None,
        }
    }

    /// The 20-byte ids of this torrent's swarm, for handshakes, trackers,
    /// DHT and MSE: the v1 info-hash and/or the truncated v2 one. A hybrid
    /// announces and accepts both.
    pub fn swarm_hashes(&self) -> Vec<InfoHash> {
        let mut out: Vec<InfoHash> = self.v1().map(|m| m.info_hash).into_iter().collect();
        out.extend(self.v2().map(|m| m.info_hash.truncated()));
        out
    }

    pub fn to_magnet(&self) -> Magnet {
        match self {
            Torrent::V1(m) => m.to_magnet(),
            Torrent::V2(m) => m.to_magnet(),
            Torrent::Hybrid { v1, v2 } => Magnet {
                info_hash_v2: Some(v2.info_hash),
                ..v1.to_magnet()
            },
        }
    }
}

impl MetainfoV2 {
    /// The v2 view of a v2-only or hybrid `.torrent`.
    pub fn from_bytes(buf: &[u8]) -> Result<MetainfoV2, MetainfoV2Error> {
        let root = bencode::decode_with(buf, &METAINFO_LIMITS).map_err(MetainfoError::from)?;
        if root.as_dict().is_none() {
            return Err(MetainfoError::NotADict.into());
        }
        let span = bencode::find_raw_with(buf, b"info", &METAINFO_LIMITS)
            .map_err(MetainfoError::from)?
            .ok_or(MetainfoError::Missing("info"))?;
        let info_bytes = buf[span].to_vec();
        let info_value = root.get(b"info").expect("find_raw found it");
        let info = InfoV2::from_value(info_value)?;
        let v1_info_hash = if info_value.get(b"pieces").is_some() {
            let v1 = Info::from_value(info_value)?;
            check_hybrid(&v1, &info)?;
            Some(info_hash_of(&info_bytes))
        } else {
            None
        };
        let piece_layers = parse_piece_layers(root.get(b"piece layers"), &info)?;
        let top = TopLevel::from_root(&root);
        Ok(MetainfoV2 {
            info_hash: info_hash_v2_of(&info_bytes),
            v1_info_hash,
            info,
            info_bytes,
            piece_layers,
            announce: top.announce,
            announce_list: top.announce_list,
            url_list: top.url_list,
            comment: top.comment,
            created_by: top.created_by,
            creation_date: top.creation_date,
        })
    }

    /// Tracker tiers, as [`Metainfo::trackers`].
    pub fn trackers(&self) -> Vec<Vec<String>> {
        if !self.announce_list.is_empty() {
            self.announce_list.clone()
        } else if let Some(a) = &self.announce {
            vec![vec![a.clone()]]
        } else {
            Vec::new()
        }
    }

    /// A magnet with `btmh` (and `btih` when hybrid).
    pub fn to_magnet(&self) -> Magnet {
        Magnet {
            display_name: Some(String::from_utf8_lossy(&self.info.name).into_owned()),
            trackers: self.trackers().into_iter().flatten().collect(),
            info_hash_v2: Some(self.info_hash),
            ..Magnet::new(
                self.v1_info_hash
                    .unwrap_or_else(|| self.info_hash.truncated()),
            )
        }
    }

    /// The hash piece `piece` must have: its file's piece-layer entry, or
    /// the file's root when the file is a single piece. `None` when the
    /// piece does not exist or its layer is not known yet.
    pub fn expected_piece_hash(&self, piece: u32) -> Option<[u8; 32]> {
        let (file, in_file) = self.info.piece_file(piece)?;
        let f = &self.info.files[file];
        let root = f.pieces_root?;
        if f.length <= u64::from(self.info.piece_length) {
            return Some(root);
        }
        self.piece_layers.get(&root)?.get(in_file as usize).copied()
    }
}

impl InfoV2 {
    /// Parses a bare `info` dictionary (as received over BEP 9; check its
    /// SHA-256 with [`info_hash_v2_of`] first).
    pub fn from_bytes(info_bytes: &[u8]) -> Result<InfoV2, MetainfoV2Error> {
        let v = bencode::decode_with(info_bytes, &METAINFO_LIMITS).map_err(MetainfoError::from)?;
        InfoV2::from_value(&v)
    }

    fn from_value(info: &Value) -> Result<InfoV2, MetainfoV2Error> {
        if info.as_dict().is_none() {
            return Err(MetainfoError::WrongType("info").into());
        }
        match info.get(b"meta version") {
            None => return Err(MetainfoV2Error::NotV2),
            Some(v) => match v.as_int() {
                Some(2) => {}
                Some(n) => return Err(MetainfoV2Error::BadMetaVersion(n)),
                None => return Err(MetainfoError::WrongType("meta version").into()),
            },
        }
        let name = info
            .get(b"name")
            .ok_or(MetainfoError::Missing("name"))?
            .as_bytes()
            .ok_or(MetainfoError::WrongType("name"))?
            .to_vec();
        let piece_length = info
            .get(b"piece length")
            .ok_or(MetainfoError::Missing("piece length"))?
            .as_int()
            .ok_or(MetainfoError::WrongType("piece length"))?;
        if piece_length < BLOCK_SIZE as i64
            || piece_length > i64::from(MAX_PIECE_LENGTH)
            || !(piece_length as u64).is_power_of_two()
        {
            return Err(MetainfoV2Error::BadPieceLength(piece_length));
        }
        let tree = info
            .get(b"file tree")
            .ok_or(MetainfoError::Missing("file tree"))?;
        let mut files = Vec::new();
        walk_file_tree(tree, &mut Vec::new(), &mut files)?;
        if files.is_empty() {
            return Err(MetainfoError::NoFiles.into());
        }
        let mut total: u64 = 0;
        for f in &files {
            total = total
                .checked_add(f.length)
                .filter(|&t| t <= MAX_TOTAL_LENGTH)
                .ok_or(MetainfoError::TooLarge)?;
        }
        if total == 0 {
            return Err(MetainfoError::Empty.into());
        }
        // Piece indices are u32 on the wire; 1 PiB in 16 KiB pieces would
        // need 2^36 of them.
        let pieces: u64 = files
            .iter()
            .map(|f| f.length.div_ceil(piece_length as u64))
            .sum();
        if pieces > u64::from(u32::MAX) {
            return Err(MetainfoV2Error::TooManyPieces(pieces));
        }
        let single_file = files.len() == 1 && files[0].path == [name.clone()];
        Ok(InfoV2 {
            name,
            piece_length: piece_length as u32,
            files,
            private: info.get(b"private").and_then(Value::as_int) == Some(1),
            single_file,
        })
    }

    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }

    fn pieces_of(&self, f: &FileV2) -> u32 {
        f.length.div_ceil(u64::from(self.piece_length)) as u32
    }

    pub fn num_pieces(&self) -> u32 {
        self.files.iter().map(|f| self.pieces_of(f)).sum()
    }

    /// Global piece indices of file `index` (empty for an empty file).
    pub fn file_pieces(&self, index: usize) -> Range<u32> {
        let start: u32 = self.files[..index].iter().map(|f| self.pieces_of(f)).sum();
        start..start + self.files.get(index).map_or(0, |f| self.pieces_of(f))
    }

    /// The file holding `piece` and the piece's index within that file.
    pub fn piece_file(&self, piece: u32) -> Option<(usize, u32)> {
        let mut start = 0;
        for (i, f) in self.files.iter().enumerate() {
            let n = self.pieces_of(f);
            if piece < start + n {
                return Some((i, piece - start));
            }
            start += n;
        }
        None
    }

    /// Bytes in `piece`: a full piece but for each file's last one; 0
    /// past the end.
    pub fn piece_size(&self, piece: u32) -> u32 {
        let Some((file, in_file)) = self.piece_file(piece) else {
            return 0;
        };
        let pl = u64::from(self.piece_length);
        (self.files[file].length - u64::from(in_file) * pl).min(pl) as u32
    }

    /// The merkle hash of `data` as piece `piece`, to compare with
    /// [`MetainfoV2::expected_piece_hash`]. `None` past the end.
    pub fn hash_piece(&self, piece: u32, data: &[u8]) -> Option<[u8; 32]> {
        let (file, _) = self.piece_file(piece)?;
        Some(if self.files[file].length <= u64::from(self.piece_length) {
            merkle::file_root(data)
        } else {
            merkle::piece_hash(data, self.piece_length)
        })
    }

    /// The files as a v1-style list in which every file but the last
    /// starts on a piece boundary, with BEP 47 padding entries
    /// (`.pad/<len>`) between: the byte layout whose piece indices v2
    /// peers use. A single-file torrent gets one entry with an empty path,
    /// as [`Info`] does.
    pub fn aligned_files(&self) -> Vec<FileEntry> {
        let pl = u64::from(self.piece_length);
        let mut out = Vec::with_capacity(self.files.len() * 2);
        let last = self.files.len().saturating_sub(1);
        for (i, f) in self.files.iter().enumerate() {
            out.push(FileEntry {
                path: if self.single_file {
                    Vec::new()
                } else {
                    f.path.clone()
                },
                length: f.length,
                padding: false,
            });
            let tail = f.length % pl;
            if i < last && tail != 0 {
                let pad = pl - tail;
                out.push(FileEntry {
                    path: vec![b".pad".to_vec(), pad.to_string().into_bytes()],
                    length: pad,
                    padding: true,
                });
            }
        }
        out
    }
}

/// Collects the files below `node` in key order. Recursion is bounded by
/// the decoder's depth limit (64).
fn walk_file_tree(
    node: &Value,
    path: &mut Vec<Vec<u8>>,
    out: &mut Vec<FileV2>,
) -> Result<(), MetainfoV2Error> {
    let bad = |path: &[Vec<u8>], what| MetainfoV2Error::BadFileTree {
        path: path_string(path),
        what,
    };
    let dict = node
        .as_dict()
        .ok_or_else(|| bad(path, "a directory entry is not a dictionary"))?;
    if let Some(leaf) = dict.get(b"".as_slice()) {
        if dict.len() != 1 {
            return Err(bad(path, "a file also has children"));
        }
        if path.is_empty() {
            return Err(bad(path, "a file has an empty path"));
        }
        if out.len() >= MAX_FILES {
            return Err(MetainfoError::TooManyFiles.into());
        }
        let length = leaf
            .get(b"length")
            .and_then(Value::as_int)
            .ok_or_else(|| bad(path, "a file has no integer `length`"))?;
        if length < 0 {
            return Err(bad(path, "a file has a negative length"));
        }
        let length = length as u64;
        let pieces_root = match leaf.get(b"pieces root").and_then(Value::as_bytes) {
            Some(r) if r.len() == 32 && length > 0 => Some(r.try_into().expect("32 bytes")),
            // libtorrent omits the root of an empty file; tolerate one
            // that is present, since it carries no information.
            _ if length == 0 => None,
            _ => {
                return Err(MetainfoV2Error::BadPiecesRoot {
                    path: path_string(path),
                    len: length,
                });
            }
        };
        out.push(FileV2 {
            path: path.clone(),
            length,
            pieces_root,
        });
        return Ok(());
    }
    for (name, child) in dict {
        path.push(name.clone());
        walk_file_tree(child, path, out)?;
        path.pop();
    }
    Ok(())
}

fn parse_piece_layers(
    layers: Option<&Value>,
    info: &InfoV2,
) -> Result<BTreeMap<[u8; 32], Vec<[u8; 32]>>, MetainfoV2Error> {
    let mut out = BTreeMap::new();
    let Some(layers) = layers else {
        return Ok(out);
    };
    let dict = layers
        .as_dict()
        .ok_or(MetainfoV2Error::BadPieceLayers("not a dictionary"))?;
    for f in &info.files {
        let Some(root) = f.pieces_root else {
            continue;
        };
        if f.length <= u64::from(info.piece_length) {
            continue;
        }
        let Some(raw) = dict.get(root.as_slice()) else {
            continue;
        };
        let raw = raw.as_bytes().ok_or(MetainfoV2Error::BadPieceLayers(
            "a layer is not a byte string",
        ))?;
        if raw.len() % 32 != 0 {
            return Err(MetainfoV2Error::BadPieceLayers(
                "a layer's length is not a multiple of 32",
            ));
        }
        let layer: Vec<[u8; 32]> = raw
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect();
        merkle::verify_piece_layer(&layer, f.length, info.piece_length, &root).map_err(
            |source| MetainfoV2Error::PieceLayer {
                path: path_string(&f.path),
                source,
            },
        )?;
        out.insert(root, layer);
    }
    Ok(out)
}

/// A hybrid's v1 files (padding aside) must be the v2 files, in order,
/// each starting on a piece boundary.
fn check_hybrid(v1: &Info, v2: &InfoV2) -> Result<(), MetainfoV2Error> {
    let mismatch = |s: String| Err(MetainfoV2Error::HybridMismatch(s));
    if v1.piece_length != v2.piece_length {
        return mismatch(format!(
            "piece length {} vs {}",
            v1.piece_length, v2.piece_length
        ));
    }
    let mut offset = 0u64;
    let mut v2_files = v2.files.iter();
    for f in &v1.files {
        if !f.padding {
            let Some(g) = v2_files.next() else {
                return mismatch(format!("v1 has an extra file {:?}", path_string(&f.path)));
            };
            let v1_path = if v1.single_file {
                vec![v1.name.clone()]
            } else {
                f.path.clone()
            };
            if v1_path != g.path || f.length != g.length {
                return mismatch(format!(
                    "v1 file {:?} ({} bytes) vs v2 file {:?} ({} bytes)",
                    path_string(&v1_path),
                    f.length,
                    path_string(&g.path),
                    g.length
                ));
            }
            if g.length > 0 && !offset.is_multiple_of(u64::from(v1.piece_length)) {
                return mismatch(format!(
                    "file {:?} does not start on a piece boundary",
                    path_string(&g.path)
                ));
            }
        }
        offset += f.length;
    }
    if let Some(g) = v2_files.next() {
        return mismatch(format!("v2 has an extra file {:?}", path_string(&g.path)));
    }
    Ok(())
}
