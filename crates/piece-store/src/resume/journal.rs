//! The append-only journal of pieces verified since the last checkpoint.
//!
//! Appending one 8-byte record per verified piece is a single small
//! `write(2)` to the page cache: cheap enough for every piece, and it
//! survives SIGKILL (not a power cut; the checkpoint handles that). After a
//! crash the records are handed back as *unconfirmed*: the caller re-hashes
//! them, because the piece data itself may not have reached the disk.
//!
//! Version 1 layout, all integers little-endian:
//!
//! ```text
//! header  16 bytes: "RTJOURNL" | version u32 = 1 | piece count u32
//! record   8 bytes: piece u32 | CRC-32 (IEEE) of the 4 piece bytes
//! ```
//!
//! Each record checks itself, so a torn tail (a partial record, or the zeros
//! some file systems show after a crash; CRC-32 of four zero bytes is not
//! zero) ends the journal there. Reopening cuts such a tail off before
//! appending, so later records stay aligned.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::StoreError;

pub(crate) const MAGIC: &[u8; 8] = b"RTJOURNL";
pub(crate) const VERSION: u32 = 1;
pub(crate) const HEADER_LEN: u64 = 16;
const RECORD_LEN: usize = 8;

pub(crate) fn header(num_pieces: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..].copy_from_slice(&num_pieces.to_le_bytes());
    h
}

pub(crate) fn record(piece: u32) -> [u8; RECORD_LEN] {
    let p = piece.to_le_bytes();
    let mut r = [0u8; RECORD_LEN];
    r[..4].copy_from_slice(&p);
    r[4..].copy_from_slice(&crc32(&p).to_le_bytes());
    r
}

/// What a journal file holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// No usable header: absent, empty, not ours, or torn before the header
    /// was complete. Nothing to recover.
    Unusable,
    /// Written by a newer Riptide.
    TooNew(u32),
    Valid {
        num_pieces: u32,
        pieces: Vec<u32>,
        /// Length of the header plus every valid record; anything after is
        /// a torn tail.
        valid_len: u64,
    },
}

pub(crate) fn parse(bytes: &[u8]) -> Parsed {
    if bytes.len() < HEADER_LEN as usize || &bytes[..8] != MAGIC {
        return Parsed::Unusable;
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    let num_pieces = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default());
    match version {
        1 => {}
        v if v > VERSION => return Parsed::TooNew(v),
        _ => return Parsed::Unusable,
    }
    let mut pieces = Vec::new();
    let mut valid_len = HEADER_LEN;
    for rec in bytes[HEADER_LEN as usize..].chunks_exact(RECORD_LEN) {
        let p: [u8; 4] = rec[..4].try_into().unwrap_or_default();
        let check = u32::from_le_bytes(rec[4..].try_into().unwrap_or_default());
        if check != crc32(&p) {
            break;
        }
        let piece = u32::from_le_bytes(p);
        // A record for a piece past the end cannot be ours; treat it like
        // any other corruption.
        if piece >= num_pieces {
            break;
        }
        pieces.push(piece);
        valid_len += RECORD_LEN as u64;
    }
    Parsed::Valid {
        num_pieces,
        pieces,
        valid_len,
    }
}

pub(crate) fn read(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match File::open(path) {
        Ok(mut f) => {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)
                .map_err(|e| StoreError::io("reading", path, e))?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("opening", path, e)),
    }
}

/// An open journal file, positioned for appending.
pub(crate) struct JournalFile {
    file: File,
    path: PathBuf,
}

impl JournalFile {
    /// Opens (or creates) the journal for a torrent with `num_pieces`
    /// pieces and returns the valid records already in it. A journal for a
    /// different piece count, or an unreadable one, is started afresh.
    pub fn open(path: &Path, num_pieces: u32) -> Result<(JournalFile, Vec<u32>), StoreError> {
        let existing = read(path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(|e| StoreError::io("creating", path, e))?;
        let mut jf = JournalFile {
            file,
            path: path.to_path_buf(),
        };
        let parsed = existing.as_deref().map_or(Parsed::Unusable, parse);
        match parsed {
            Parsed::TooNew(v) => Err(StoreError::ResumeTooNew {
                path: path.to_path_buf(),
                version: i64::from(v),
            }),
            Parsed::Valid {
                num_pieces: n,
                pieces,
                valid_len,
            } if n == num_pieces => {
                jf.file
                    .set_len(valid_len)
                    .map_err(|e| StoreError::io("truncating", path, e))?;
                Ok((jf, pieces))
            }
            _ => {
                jf.reset(num_pieces, &[])?;
                Ok((jf, Vec::new()))
            }
        }
    }

    pub fn append(&mut self, piece: u32) -> Result<(), StoreError> {
        self.file
            .write_all(&record(piece))
            .map_err(|e| StoreError::io("writing", &self.path, e))
    }

    /// Replaces the contents with a header and `pieces`, in one write after
    /// the truncation. Not synced: a lost journal only costs re-downloads.
    pub fn reset(&mut self, num_pieces: u32, pieces: &[u32]) -> Result<(), StoreError> {
        let mut bytes = header(num_pieces).to_vec();
        for &p in pieces {
            bytes.extend_from_slice(&record(p));
        }
        self.file
            .set_len(0)
            .map_err(|e| StoreError::io("truncating", &self.path, e))?;
        // O_APPEND: the write goes to the (new) end, offset 0.
        self.file
            .write_all(&bytes)
            .map_err(|e| StoreError::io("writing", &self.path, e))
    }
}

/// CRC-32 (IEEE 802.3, as in zlib), bitwise: it only ever sees 4 bytes.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_ne!(crc32(&[0; 4]), 0);
    }

    #[test]
    fn torn_tails_are_ignored() {
        let mut bytes = header(10).to_vec();
        for p in [3, 1, 4] {
            bytes.extend_from_slice(&record(p));
        }
        let full = bytes.len();
        for cut in HEADER_LEN as usize..=full {
            let Parsed::Valid {
                pieces, valid_len, ..
            } = parse(&bytes[..cut])
            else {
                panic!("header is intact");
            };
            let whole = (cut - HEADER_LEN as usize) / RECORD_LEN;
            assert_eq!(pieces, [3, 1, 4][..whole]);
            assert_eq!(valid_len, HEADER_LEN + (whole * RECORD_LEN) as u64);
        }
        // Zeros after a crash, a flipped bit, and an out-of-range piece all
        // end the journal.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 16]);
        zeros.extend_from_slice(&record(5));
        assert!(matches!(parse(&zeros), Parsed::Valid { ref pieces, .. } if pieces == &[3, 1, 4]));
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN as usize + 8] ^= 1;
        assert!(matches!(parse(&flipped), Parsed::Valid { ref pieces, .. } if pieces == &[3]));
        let mut big = bytes.clone();
        big.extend_from_slice(&record(10));
        assert!(matches!(parse(&big), Parsed::Valid { ref pieces, .. } if pieces.len() == 3));
        assert_eq!(parse(&bytes[..10]), Parsed::Unusable);
        let mut newer = bytes.clone();
        newer[8] = 2;
        assert_eq!(parse(&newer), Parsed::TooNew(2));
    }
}
