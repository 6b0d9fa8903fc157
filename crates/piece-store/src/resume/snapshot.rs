//! The checkpoint snapshot file: format, versions and the upgrade chain.
//!
//! A snapshot is a bencoded dictionary (readable with any bencode tool when
//! debugging a user's resume folder). Version 1:
//!
//! ```text
//! d
//!   bitfield      <bytes>   pieces trusted at checkpoint time, wire layout
//!   download dir  <bytes>   folder the files were in (raw OS bytes)
//!   files         list of d(mtime: i, size: i), one per torrent file in
//!                 order; size -1 (and mtime 0) = not on disk or padding;
//!                 mtime in nanoseconds since the Unix epoch
//!   format        "riptide-resume"
//!   info-hash     <20 bytes>
//!   piece length  i
//!   pieces        i         number of pieces
//!   total length  i
//!   version       i1e
//! e
//! ```
//!
//! Any change to what is written needs a new version: keep `decode_v1`,
//! add `decode_v2`, make [`upgrade`] convert old versions forward, and add a
//! frozen fixture of the new version next to `tests/fixtures/v1.resume`.
//! The bencode subset here is private to this file on purpose: the stored
//! format must not change because a protocol codec elsewhere did.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use bt_proto::Bitfield;

/// The version [`Snapshot::encode`] writes.
pub(crate) const CURRENT_VERSION: i64 = 1;

const FORMAT_TAG: &[u8] = b"riptide-resume";

/// Enough for our own files and small enough that a garbage file cannot
/// make us allocate without bound.
const MAX_DEPTH: usize = 4;

/// What one torrent file looked like at checkpoint time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileStamp {
    Missing,
    Present { size: u64, mtime_ns: i64 },
}

/// The current in-memory form of a snapshot; every older version is
/// upgraded into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub info_hash: [u8; 20],
    /// Folder the stamped files were in (`Storage::root`).
    pub download_dir: PathBuf,
    pub piece_length: u32,
    pub total_length: u64,
    pub have: Bitfield,
    pub files: Vec<FileStamp>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FormatError {
    Corrupt(String),
    TooNew(i64),
}

fn corrupt(reason: impl Into<String>) -> FormatError {
    FormatError::Corrupt(reason.into())
}

impl Snapshot {
    /// Encodes as the current version.
    pub fn encode(&self) -> Vec<u8> {
        let files = self
            .files
            .iter()
            .map(|f| {
                let (size, mtime) = match *f {
                    FileStamp::Missing => (-1, 0),
                    FileStamp::Present { size, mtime_ns } => (size as i64, mtime_ns),
                };
                dict([
                    (&b"mtime"[..], Value::Int(mtime)),
                    (b"size", Value::Int(size)),
                ])
            })
            .collect();
        let root = dict([
            (
                &b"bitfield"[..],
                Value::Bytes(self.have.as_bytes().to_vec()),
            ),
            (
                b"download dir",
                Value::Bytes(self.download_dir.as_os_str().as_bytes().to_vec()),
            ),
            (b"files", Value::List(files)),
            (b"format", Value::Bytes(FORMAT_TAG.to_vec())),
            (b"info-hash", Value::Bytes(self.info_hash.to_vec())),
            (b"piece length", Value::Int(i64::from(self.piece_length))),
            (b"pieces", Value::Int(i64::from(self.have.len()))),
            (b"total length", Value::Int(self.total_length as i64)),
            (b"version", Value::Int(CURRENT_VERSION)),
        ]);
        let mut out = Vec::new();
        root.encode(&mut out);
        out
    }

    /// Decodes any supported version.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, FormatError> {
        let root = Value::decode(bytes)?;
        let version = root
            .get(b"version")
            .and_then(Value::as_int)
            .ok_or_else(|| corrupt("no version"))?;
        upgrade(version, bytes)
    }
}

/// The upgrade hook: reads a snapshot stored as `version` and returns it in
/// the current form. Each future version adds an arm that decodes its own
/// layout; older arms convert forward step by step.
pub(crate) fn upgrade(version: i64, bytes: &[u8]) -> Result<Snapshot, FormatError> {
    match version {
        1 => decode_v1(bytes),
        v if v > CURRENT_VERSION => Err(FormatError::TooNew(v)),
        v => Err(corrupt(format!("unknown format version {v}"))),
    }
}

fn decode_v1(bytes: &[u8]) -> Result<Snapshot, FormatError> {
    let root = Value::decode(bytes)?;
    if root.get(b"format").and_then(Value::as_bytes) != Some(FORMAT_TAG) {
        return Err(corrupt("not a Riptide resume file"));
    }
    let int = |key: &'static str| -> Result<i64, FormatError> {
        root.get(key.as_bytes())
            .and_then(Value::as_int)
            .ok_or_else(|| corrupt(format!("missing or non-integer \"{key}\"")))
    };
    let info_hash: [u8; 20] = root
        .get(b"info-hash")
        .and_then(Value::as_bytes)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("info-hash is not 20 bytes"))?;
    let piece_length =
        u32::try_from(int("piece length")?).map_err(|_| corrupt("piece length out of range"))?;
    let pieces = u32::try_from(int("pieces")?).map_err(|_| corrupt("piece count out of range"))?;
    let total_length =
        u64::try_from(int("total length")?).map_err(|_| corrupt("total length out of range"))?;
    let download_dir = root
        .get(b"download dir")
        .and_then(Value::as_bytes)
        .map(|b| PathBuf::from(OsStr::from_bytes(b)))
        .ok_or_else(|| corrupt("no download dir"))?;
    let bits = root
        .get(b"bitfield")
        .and_then(Value::as_bytes)
        .ok_or_else(|| corrupt("no bitfield"))?;
    let have = Bitfield::from_bytes(bits, pieces).map_err(|e| corrupt(e.to_string()))?;
    let list = match root.get(b"files") {
        Some(Value::List(l)) => l,
        _ => return Err(corrupt("no file list")),
    };
    let mut files = Vec::with_capacity(list.len());
    for (i, f) in list.iter().enumerate() {
        let size = f.get(b"size").and_then(Value::as_int);
        let mtime = f.get(b"mtime").and_then(Value::as_int);
        files.push(match (size, mtime) {
            (Some(-1), Some(_)) => FileStamp::Missing,
            (Some(size), Some(mtime_ns)) if size >= 0 => FileStamp::Present {
                size: size as u64,
                mtime_ns,
            },
            _ => return Err(corrupt(format!("bad entry for file #{i}"))),
        });
    }
    Ok(Snapshot {
        info_hash,
        download_dir,
        piece_length,
        total_length,
        have,
        files,
    })
}

/// The bencode subset the snapshot uses.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

fn dict<'a>(entries: impl IntoIterator<Item = (&'a [u8], Value)>) -> Value {
    Value::Dict(entries.into_iter().map(|(k, v)| (k.to_vec(), v)).collect())
}

impl Value {
    fn get(&self, key: &[u8]) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key),
            _ => None,
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Value::List(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.encode(out));
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Value::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    fn decode(bytes: &[u8]) -> Result<Value, FormatError> {
        let mut pos = 0;
        let v = Value::parse(bytes, &mut pos, 0)?;
        if pos != bytes.len() {
            return Err(corrupt(format!("{} trailing bytes", bytes.len() - pos)));
        }
        Ok(v)
    }

    fn parse(b: &[u8], pos: &mut usize, depth: usize) -> Result<Value, FormatError> {
        if depth > MAX_DEPTH {
            return Err(corrupt("nested too deeply"));
        }
        let eof = || corrupt("file ends early");
        match *b.get(*pos).ok_or_else(eof)? {
            b'i' => {
                let end = b[*pos..].iter().position(|&c| c == b'e').ok_or_else(eof)? + *pos;
                let text =
                    std::str::from_utf8(&b[*pos + 1..end]).map_err(|_| corrupt("bad integer"))?;
                let v = text.parse::<i64>().map_err(|_| corrupt("bad integer"))?;
                *pos = end + 1;
                Ok(Value::Int(v))
            }
            b'l' => {
                *pos += 1;
                let mut items = Vec::new();
                while *b.get(*pos).ok_or_else(eof)? != b'e' {
                    items.push(Value::parse(b, pos, depth + 1)?);
                }
                *pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                *pos += 1;
                let mut map = BTreeMap::new();
                while *b.get(*pos).ok_or_else(eof)? != b'e' {
                    let Value::Bytes(k) = Value::parse(b, pos, depth + 1)? else {
                        return Err(corrupt("dictionary key is not a string"));
                    };
                    let v = Value::parse(b, pos, depth + 1)?;
                    if map.insert(k, v).is_some() {
                        return Err(corrupt("duplicate dictionary key"));
                    }
                }
                *pos += 1;
                Ok(Value::Dict(map))
            }
            b'0'..=b'9' => {
                let colon = b[*pos..].iter().position(|&c| c == b':').ok_or_else(eof)? + *pos;
                let len: usize = std::str::from_utf8(&b[*pos..colon])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| corrupt("bad string length"))?;
                let start = colon + 1;
                let end = start
                    .checked_add(len)
                    .filter(|&e| e <= b.len())
                    .ok_or_else(eof)?;
                *pos = end;
                Ok(Value::Bytes(b[start..end].to_vec()))
            }
            c => Err(corrupt(format!(
                "unexpected byte 0x{c:02x} at {pos}",
                pos = *pos
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut have = Bitfield::new(10);
        have.set(0);
        have.set(9);
        Snapshot {
            info_hash: [7; 20],
            download_dir: PathBuf::from("/dl/\u{e9}"),
            piece_length: 16384,
            total_length: 150_000,
            have,
            files: vec![
                FileStamp::Present {
                    size: 100_000,
                    mtime_ns: -5,
                },
                FileStamp::Missing,
                FileStamp::Present {
                    size: 0,
                    mtime_ns: 1_700_000_000_000_000_001,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(Snapshot::decode(&s.encode()), Ok(s));
    }

    #[test]
    fn newer_and_unknown_versions_are_refused() {
        let bytes = sample().encode();
        let with_version = |v: u8| {
            let at = bytes
                .windows(12)
                .position(|w| w == b"7:versioni1e")
                .unwrap();
            let mut b = bytes.clone();
            b[at + 10] = v;
            b
        };
        assert_eq!(
            Snapshot::decode(&with_version(b'9')),
            Err(FormatError::TooNew(9))
        );
        assert!(matches!(
            Snapshot::decode(&with_version(b'0')),
            Err(FormatError::Corrupt(_))
        ));
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Snapshot::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(b'x');
        assert!(Snapshot::decode(&extra).is_err());
        assert!(Snapshot::decode(&[b'l'; 10_000]).is_err());
        assert!(Snapshot::decode(b"99999999999999999999999:").is_err());
        assert!(Snapshot::decode(b"d7:versioni1ee").is_err());
    }
}
