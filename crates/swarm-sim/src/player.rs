//! A player model: reads a film through a `FileStream` into its buffer as
//! fast as data comes, and plays it at the film's bitrate.
//!
//! A *stall* (underrun) is the moment playback needs a byte that is not in
//! the buffer; playback then waits until a second of film is buffered
//! again. Each segment starts with its own initial buffering, the way a
//! player starts or seeks: stalls are counted only after it.

use bt_engine::TorrentHandle;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

/// Playback granularity.
const TICK: Duration = Duration::from_millis(20);
/// Buffered film needed to resume after a stall.
const REBUFFER: Duration = Duration::from_secs(1);
/// The player's buffer holds at most this much film ahead.
const MAX_AHEAD: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Segment {
    /// Byte offset in the file where playback (re)starts.
    pub offset: u64,
    /// How much film to play from there.
    pub play: Duration,
}

#[derive(Clone, Debug)]
pub struct SegmentReport {
    pub offset: u64,
    /// From opening (starting or seeking) to the first byte.
    pub first_byte: Duration,
    /// From opening to the end of the initial buffering.
    pub startup: Duration,
    pub stalls: u32,
    pub stalled_for: Duration,
    /// Every byte read matched the source.
    pub data_ok: bool,
    /// The first byte was already downloaded when playback (re)started.
    pub was_available: bool,
    /// The physical floor for the first byte, evaluated when playback
    /// (re)started.
    pub floor: Duration,
}

/// Plays `segments` of file `file` at `bitrate` bytes/s, with `start_buffer`
/// of film buffered before playback (re)starts. `source` is the file's true
/// content, to check every byte.
pub async fn play(
    handle: &TorrentHandle,
    file: usize,
    bitrate: u64,
    start_buffer: Duration,
    segments: &[Segment],
    source: &[u8],
    floor: impl Fn() -> Duration,
) -> Vec<SegmentReport> {
    let mut reports = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    for seg in segments {
        let opened = Instant::now();
        let was_available = handle.is_available(file, seg.offset);
        let floor = floor();
        let mut stream = handle
            .open_file(file, seg.offset)
            .await
            .expect("file opens");
        stream.set_bitrate(bitrate);
        let end = source.len() as u64;
        let mut fetched = 0u64;
        let mut first_byte = None;
        let mut data_ok = true;
        let mut read = |stream_bytes: &[u8], fetched: &mut u64| {
            let at = (seg.offset + *fetched) as usize;
            if source[at..at + stream_bytes.len()] != *stream_bytes {
                data_ok = false;
            }
            *fetched += stream_bytes.len() as u64;
        };
        // Initial buffering.
        let need = (bitrate as f64 * start_buffer.as_secs_f64()) as u64;
        while fetched < need.min(end - seg.offset) {
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "stream ended early");
            first_byte.get_or_insert_with(|| opened.elapsed());
            read(&chunk[..n], &mut fetched);
        }
        let startup = opened.elapsed();
        // Playback.
        let mut played = 0.0f64; // bytes of film played
        let total = (bitrate as f64 * seg.play.as_secs_f64()).min((end - seg.offset) as f64);
        let mut stalls = 0u32;
        let mut stalled_since: Option<Instant> = None;
        let mut stalled_for = Duration::ZERO;
        let mut next_tick = Instant::now() + TICK;
        while played < total {
            let ahead = fetched as f64 - played;
            let room =
                ahead < bitrate as f64 * MAX_AHEAD.as_secs_f64() && seg.offset + fetched < end;
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(next_tick) => {
                    next_tick += TICK;
                    match stalled_since {
                        Some(since) => {
                            if fetched as f64 - played >= bitrate as f64 * REBUFFER.as_secs_f64()
                                || seg.offset + fetched >= end
                            {
                                stalled_for += since.elapsed();
                                stalled_since = None;
                            }
                        }
                        None => {
                            let step = bitrate as f64 * TICK.as_secs_f64();
                            if played + step > fetched as f64 && seg.offset + fetched < end {
                                stalls += 1;
                                stalled_since = Some(Instant::now());
                                played = fetched as f64;
                            } else {
                                played += step;
                            }
                        }
                    }
                }
                r = stream.read(&mut chunk), if room => {
                    let n = r.expect("read");
                    if n == 0 {
                        break;
                    }
                    read(&chunk[..n], &mut fetched);
                }
            }
        }
        reports.push(SegmentReport {
            offset: seg.offset,
            first_byte: first_byte.unwrap_or_default(),
            startup,
            stalls,
            stalled_for,
            data_ok,
            was_available,
            floor,
        });
    }
    reports
}
