//! Finding a media container's index from the first bytes of a file, so
//! that a stream can fetch it before the player asks.
//!
//! Players read the head of a file, then the index, then seek to the first
//! frame. An MP4 written without `faststart` keeps its index (`moov`) after
//! the media data (`mdat`), i.e. at the end; Matroska files usually keep
//! their Cues at the end, pointed to by the SeekHead. Both pointers are in
//! the first few kilobytes, so a streamer that parses them can fetch head
//! and index together instead of one after the other.
//!
//! The parsers only walk element headers, never allocate in proportion to
//! the input, bound their loops, and treat every length as untrusted.

use std::ops::Range;

/// How much of an index we ask for when its size is not known.
const INDEX_GUESS: u64 = 4 << 20;
/// Element headers walked at most (bounds hostile input).
const MAX_ELEMENTS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mp4,
    Matroska,
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sniffed {
    pub kind: Kind,
    /// Byte ranges of the file worth fetching early (the index).
    pub index: Vec<Range<u64>>,
    /// Duration in seconds, when the head says.
    pub duration_secs: Option<f64>,
}

/// Looks at `head` (the first bytes of a file of `file_len` bytes).
pub fn sniff(head: &[u8], file_len: u64) -> Sniffed {
    if head.len() >= 8 && &head[4..8] == b"ftyp" {
        return mp4(head, file_len);
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return matroska(head, file_len);
    }
    Sniffed {
        kind: Kind::Unknown,
        index: Vec::new(),
        duration_secs: None,
    }
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

fn mp4(head: &[u8], file_len: u64) -> Sniffed {
    let mut out = Sniffed {
        kind: Kind::Mp4,
        index: Vec::new(),
        duration_secs: None,
    };
    let mut at: u64 = 0;
    for _ in 0..MAX_ELEMENTS {
        if at + 8 > file_len {
            break;
        }
        let Some(h) = head.get(at as usize..at as usize + 8) else {
            // The next box starts beyond what we have: if it is the one after
            // `mdat`, it is most likely `moov`.
            if out.index.is_empty() {
                out.index.push(at..(at + INDEX_GUESS).min(file_len));
            }
            break;
        };
        let mut size = be(&h[..4]);
        let kind = &h[4..8];
        let mut header = 8;
        if size == 1 {
            let Some(large) = head.get(at as usize + 8..at as usize + 16) else {
                break;
            };
            size = be(large);
            header = 16;
        } else if size == 0 {
            size = file_len - at;
        }
        if size < header || at.checked_add(size).is_none_or(|end| end > file_len) {
            break;
        }
        if kind == b"moov" {
            let end = at + size;
            if end as usize > head.len() {
                out.index.clear();
                out.index.push(at..end);
            } else {
                out.index.clear();
            }
            out.duration_secs =
                mvhd_duration(head.get(at as usize + header as usize..).unwrap_or(&[]));
            break;
        }
        at += size;
    }
    out
}

/// Duration from the `mvhd` box at the start of `moov`'s payload.
fn mvhd_duration(moov: &[u8]) -> Option<f64> {
    let mut at = 0usize;
    for _ in 0..64 {
        let h = moov.get(at..at + 8)?;
        let size = be(&h[..4]) as usize;
        if &h[4..8] == b"mvhd" {
            let body = moov.get(at + 8..)?;
            let version = *body.first()?;
            let (scale, dur) = if version == 1 {
                (be(body.get(20..24)?), be(body.get(24..32)?))
            } else {
                (be(body.get(12..16)?), be(body.get(16..20)?))
            };
            if scale == 0 {
                return None;
            }
            return Some(dur as f64 / scale as f64);
        }
        if size < 8 {
            return None;
        }
        at = at.checked_add(size)?;
    }
    None
}

/// Reads an EBML variable-length integer; `strip` removes the length
/// marker (sizes) or keeps it (IDs). Returns the value and its length.
fn vint(buf: &[u8], strip: bool) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let bytes = buf.get(..len)?;
    let mut v = u64::from(if strip {
        first & 0xFFu8.checked_shr(len as u32).unwrap_or(0)
    } else {
        first
    });
    for &b in &bytes[1..] {
        v = (v << 8) | u64::from(b);
    }
    Some((v, len))
}

/// An element header: id, payload size (None = unknown), header length.
fn element(buf: &[u8]) -> Option<(u64, Option<u64>, usize)> {
    let (id, il) = vint(buf, false)?;
    let (size, sl) = vint(buf.get(il..)?, true)?;
    let unknown = size == (1u64 << (7 * sl)) - 1;
    Some((id, (!unknown).then_some(size), il + sl))
}

const EBML_HEADER: u64 = 0x1A45_DFA3;
const SEGMENT: u64 = 0x1853_8067;
const SEEK_HEAD: u64 = 0x114D_9B74;
const SEEK: u64 = 0x4DBB;
const SEEK_ID: u64 = 0x53AB;
const SEEK_POSITION: u64 = 0x53AC;
const CUES: u64 = 0x1C53_BB6B;
const INFO: u64 = 0x1549_A966;
const TIMECODE_SCALE: u64 = 0x2AD7B1;
const DURATION: u64 = 0x4489;
const CLUSTER: u64 = 0x1F43_B675;

fn matroska(head: &[u8], file_len: u64) -> Sniffed {
    let mut out = Sniffed {
        kind: Kind::Matroska,
        index: Vec::new(),
        duration_secs: None,
    };
    let Some((id, Some(size), hl)) = element(head) else {
        return out;
    };
    if id != EBML_HEADER {
        return out;
    }
    let seg_at = hl + size as usize;
    let Some((SEGMENT, _, seg_hl)) = head.get(seg_at..).and_then(element) else {
        return out;
    };
    let data_start = seg_at + seg_hl;
    let mut at = data_start;
    let mut scale = 1_000_000f64;
    for _ in 0..MAX_ELEMENTS {
        let Some((id, size, hl)) = head.get(at..).and_then(element) else {
            break;
        };
        let Some(size) = size else {
            break;
        };
        let body_start = at + hl;
        let body = head
            .get(body_start..body_start.saturating_add(size as usize).min(head.len()))
            .unwrap_or(&[]);
        match id {
            SEEK_HEAD => {
                for (target, pos) in seek_entries(body) {
                    if target == CUES {
                        let start = data_start as u64 + pos;
                        if start < file_len && start >= head.len() as u64 {
                            out.index.push(start..(start + INDEX_GUESS).min(file_len));
                        }
                    }
                }
            }
            INFO => {
                let mut dur = None;
                let mut i = 0;
                for _ in 0..64 {
                    let Some((cid, Some(csize), chl)) = body.get(i..).and_then(element) else {
                        break;
                    };
                    let v = body.get(i + chl..i + chl + csize as usize);
                    match (cid, v) {
                        (TIMECODE_SCALE, Some(v)) if !v.is_empty() && v.len() <= 8 => {
                            scale = be(v) as f64
                        }
                        (DURATION, Some(v)) if v.len() == 4 => {
                            dur = Some(f64::from(f32::from_bits(be(v) as u32)));
                        }
                        (DURATION, Some(v)) if v.len() == 8 => dur = Some(f64::from_bits(be(v))),
                        _ => {}
                    }
                    i += chl + csize as usize;
                }
                out.duration_secs = dur
                    .map(|d| d * scale / 1e9)
                    .filter(|d| d.is_finite() && *d > 0.0);
            }
            CLUSTER => break,
            _ => {}
        }
        at = body_start.saturating_add(size as usize);
    }
    out
}

/// (target id, position) pairs of a SeekHead's payload.
fn seek_entries(body: &[u8]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    for _ in 0..256 {
        let Some((id, Some(size), hl)) = body.get(at..).and_then(element) else {
            break;
        };
        let Some(seek) = body.get(at + hl..at + hl + size as usize) else {
            break;
        };
        if id == SEEK {
            let (mut target, mut pos) = (None, None);
            let mut i = 0;
            for _ in 0..8 {
                let Some((cid, Some(csize), chl)) = seek.get(i..).and_then(element) else {
                    break;
                };
                let v = seek.get(i + chl..i + chl + csize as usize);
                match (cid, v) {
                    (SEEK_ID, Some(v)) if v.len() <= 8 => target = Some(be(v)),
                    (SEEK_POSITION, Some(v)) if v.len() <= 8 => pos = Some(be(v)),
                    _ => {}
                }
                i += chl + csize as usize;
            }
            if let (Some(t), Some(p)) = (target, pos) {
                out.push((t, p));
            }
        }
        at += hl + size as usize;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn mp4_moov_at_end_points_past_mdat() {
        let mut head = boxed(b"ftyp", b"isom\0\0\x02\0isomiso2");
        let mdat_at = head.len() as u64;
        let mdat_len = 5_000_000u64;
        head.extend_from_slice(&(mdat_len as u32).to_be_bytes());
        head.extend_from_slice(b"mdat");
        head.extend_from_slice(&[0u8; 1000]);
        let file_len = mdat_at + mdat_len + 300_000;
        let s = sniff(&head, file_len);
        assert_eq!(s.kind, Kind::Mp4);
        assert_eq!(s.index, vec![mdat_at + mdat_len..file_len]);
    }

    #[test]
    fn mp4_faststart_needs_nothing_more() {
        let mut mvhd = vec![0u8; 100];
        mvhd[12..16].copy_from_slice(&1000u32.to_be_bytes());
        mvhd[16..20].copy_from_slice(&600_000u32.to_be_bytes());
        let moov = boxed(b"moov", &boxed(b"mvhd", &mvhd));
        let mut head = boxed(b"ftyp", b"isom");
        head.extend_from_slice(&moov);
        head.extend_from_slice(&boxed(b"mdat", &[0; 64]));
        let s = sniff(&head, head.len() as u64 + 10_000);
        assert!(s.index.is_empty());
        assert_eq!(s.duration_secs, Some(600.0));
    }

    fn el(id: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let idb = id.to_be_bytes();
        let skip = idb.iter().position(|&b| b != 0).unwrap();
        v.extend_from_slice(&idb[skip..]);
        v.push(0x01); // 8-byte size vint
        v.extend_from_slice(&(payload.len() as u64).to_be_bytes()[1..]);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn matroska_cues_from_seekhead_and_duration() {
        let seek = [
            el(SEEK_ID, &CUES.to_be_bytes()[4..]),
            el(SEEK_POSITION, &9_000_000u32.to_be_bytes()),
        ]
        .concat();
        let seekhead = el(SEEK_HEAD, &el(SEEK, &seek));
        let info = [
            el(TIMECODE_SCALE, &1_000_000u32.to_be_bytes()[1..]),
            el(DURATION, &(125_000.0f64).to_bits().to_be_bytes()),
        ]
        .concat();
        let mut segment_body = seekhead;
        segment_body.extend(el(INFO, &info));
        let mut head = el(EBML_HEADER, b"\x42\x86\x81\x01");
        let seg = el(SEGMENT, &segment_body);
        let data_start = head.len() + 12;
        head.extend(seg);
        let s = sniff(&head, 20_000_000);
        assert_eq!(s.kind, Kind::Matroska);
        let start = data_start as u64 + 9_000_000;
        assert_eq!(s.index, vec![start..(start + INDEX_GUESS).min(20_000_000)]);
        assert_eq!(s.duration_secs, Some(125.0));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_in_file(mut head in proptest::collection::vec(any::<u8>(), 0..2048), len in 0u64..u64::MAX / 2, mkv in any::<bool>()) {
            if mkv && head.len() >= 4 {
                head[..4].copy_from_slice(&[0x1A, 0x45, 0xDF, 0xA3]);
            } else if head.len() >= 8 {
                head[4..8].copy_from_slice(b"ftyp");
            }
            let s = sniff(&head, len);
            for r in s.index {
                prop_assert!(r.start <= r.end && r.end <= len);
            }
        }
    }
}
