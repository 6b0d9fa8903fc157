//! Streaming: readers of one file of a torrent while it downloads.
//!
//! A [`FileStream`] is an `AsyncRead + AsyncSeek` over one file. It reports
//! its position to the torrent, which turns every open stream into piece
//! deadlines for the picker:
//!
//! * the piece under the read position is due now;
//! * the following pieces, up to a readahead window sized from the stream's
//!   bitrate, are due when playback will reach them
//!   (`now + distance / bitrate`);
//! * ranges a caller asked to prefetch (the container index of an MP4 with
//!   `moov` at the end, MKV cues) are due now as well.
//!
//! Deadlines inside the critical horizon make the picker spread a piece's
//! blocks over several peers and duplicate stale requests; the rest of the
//! window is fetched in order; everything else stays rarest-first.
//!
//! When a stream opens or jumps (a seek outside what is already buffered),
//! requests for pieces nobody is waiting for are cancelled, unless the piece
//! is mostly there, so the new position is served at once rather than behind
//! a queue of bulk requests.
//!
//! Memory per stream is one read chunk (≤ 256 KiB): a slow reader makes the
//! stream wait, never buffer.

use crate::error::EngineError;
use crate::picker::PeerKey;
use crate::torrent::{Progress, TorrentShared, TorrentState};
use piece_store::Storage;
use std::future::Future;
use std::io::{self, SeekFrom};
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Largest read from disk for one poll.
const CHUNK: usize = 256 * 1024;
/// Bitrate assumed until the reader's pace or the container tells us (8 Mb/s).
const DEFAULT_BITRATE: u64 = 1_000_000;
/// Seconds of playback kept ahead of the position.
const READAHEAD_SECS: u64 = 30;
const MIN_WINDOW: u64 = 8 << 20;
const MAX_WINDOW: u64 = 128 << 20;
/// Deadlines before `now + this` are time-critical.
pub(crate) const CRITICAL_HORIZON: Duration = Duration::from_secs(2);
/// A stream that has not read for this long keeps no deadlines (a paused
/// player, an abandoned range request).
const IDLE_AFTER: Duration = Duration::from_secs(5);
/// Pieces at least this complete are not cancelled on a seek.
const KEEP_IF_RECEIVED: f64 = 1.01;
/// How long the window of a closed stream is kept for a follow-up request.
const RECENT_TTL: Duration = Duration::from_secs(3);
/// How far before a closed stream's position a new one still continues it.
const CONTINUE_BEHIND: u64 = 16 << 20;
/// Bytes past the end of a bounded range fetched in order (not urgently).
const PAST_RANGE: u64 = 4 << 20;
/// How long streaming mode outlives the last stream.
const STREAMING_LINGER: Duration = Duration::from_secs(15);
/// A prefetch hint larger than this is cut.
const MAX_HINT: u64 = 16 << 20;

/// What the torrent knows about one open stream.
#[derive(Debug)]
pub(crate) struct StreamEntry {
    pub id: u64,
    pub file: usize,
    /// The file's byte range in the torrent.
    pub span: Range<u64>,
    /// Torrent offset of the next byte the reader wants.
    pub pos: u64,
    /// Torrent offset where the reader will stop (a bounded HTTP range):
    /// nothing past it is worth fetching for this stream.
    pub limit: u64,
    pub bitrate: Option<u64>,
    pub opened_at: Instant,
    pub last_read: Instant,
    pub bytes_read: u64,
    pub first_read_at: Option<Instant>,
    pub ttfb: Option<Duration>,
    pub seek_at: Option<Instant>,
    pub seeks: u32,
    pub last_seek_latency: Option<Duration>,
    pub underruns: u32,
    pub waiting: bool,
}

impl StreamEntry {
    fn bitrate(&self, file_bitrate: Option<u64>) -> u64 {
        if let Some(b) = self.bitrate.or(file_bitrate) {
            return b.max(1);
        }
        // The reader's own pace once it has read for a while.
        match self.first_read_at {
            Some(t) if t.elapsed() > Duration::from_secs(2) && self.bytes_read > 0 => {
                (self.bytes_read as f64 / t.elapsed().as_secs_f64()) as u64
            }
            _ => DEFAULT_BITRATE,
        }
        .max(64 * 1024)
    }

    fn window(&self, bitrate: u64) -> u64 {
        (bitrate * READAHEAD_SECS).clamp(MIN_WINDOW, MAX_WINDOW)
    }
}

/// Every stream of a torrent, plus prefetch ranges.
#[derive(Debug)]
pub(crate) struct Streams {
    pub next_id: u64,
    pub list: Vec<StreamEntry>,
    /// Torrent byte ranges to fetch first (container indexes), with expiry.
    pub hints: Vec<(Range<u64>, Instant)>,
    /// Origin of the picker's millisecond clock.
    pub epoch: Instant,
    /// Bitrates learnt per file (from the container), bytes/s.
    pub file_bitrate: std::collections::HashMap<usize, u64>,
    /// When a stream or hint last existed.
    pub last_active: Option<Instant>,
    /// Windows of streams that closed a moment ago: a player's next range
    /// request usually continues where the last one stopped, so these keep
    /// their (relaxed) deadlines until a new stream either takes one over or
    /// jumps elsewhere.
    pub recent: Vec<(Range<u64>, Instant)>,
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            next_id: 0,
            list: Vec::new(),
            hints: Vec::new(),
            epoch: Instant::now(),
            file_bitrate: std::collections::HashMap::new(),
            last_active: None,
            recent: Vec::new(),
        }
    }
}

impl Streams {
    pub fn now_ms(&self) -> u32 {
        self.epoch.elapsed().as_millis().min(u128::from(u32::MAX)) as u32
    }

    /// Streaming mode lasts a while after the last reader closed: players
    /// open a new range request after the previous one, and deep bulk
    /// pipelines in between would delay it.
    pub fn active(&self) -> bool {
        !self.list.is_empty()
            || !self.hints.is_empty()
            || self
                .last_active
                .is_some_and(|t| t.elapsed() < STREAMING_LINGER)
    }
}

/// Public per-stream figures.
#[derive(Clone, Debug)]
pub struct StreamStats {
    pub id: u64,
    pub file: usize,
    /// Offset in the file of the next byte the reader wants.
    pub position: u64,
    pub bytes_read: u64,
    /// From opening the stream to its first byte delivered.
    pub time_to_first_byte: Option<Duration>,
    pub seeks: u32,
    /// From the latest seek to the first byte delivered after it.
    pub last_seek_latency: Option<Duration>,
    /// Verified bytes ahead of the position, as seconds of playback.
    pub buffered_ahead_secs: f64,
    /// Times the reader had to wait for data it asked for.
    pub underruns: u32,
    pub bitrate: u64,
}

impl TorrentState {
    /// Recomputes every piece deadline from the open streams and hints.
    pub(crate) fn update_deadlines(&mut self) {
        let now = Instant::now();
        let TorrentState { streams, meta, .. } = self;
        let Some(meta) = meta.as_mut() else {
            return;
        };
        streams.hints.retain(|(_, until)| *until > now);
        streams
            .recent
            .retain(|(_, at)| now.duration_since(*at) < RECENT_TTL);
        if !streams.list.is_empty() || !streams.hints.is_empty() {
            streams.last_active = Some(now);
        }
        let now_ms = streams.now_ms();
        let piece_len = u64::from(meta.info.piece_length);
        let mut want: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        let mut due = |piece: u32, ms: u32| {
            let e = want.entry(piece).or_insert(ms);
            *e = (*e).min(ms);
        };
        for s in &streams.list {
            if now.duration_since(s.last_read) > IDLE_AFTER && !s.waiting {
                continue;
            }
            let rate = s.bitrate(streams.file_bitrate.get(&s.file).copied());
            // A bounded range (a player's probe, a range request) is often
            // followed by the next one: the bytes just past it are fetched
            // in order too, after the range and never as time-critical.
            let window_end = (s.pos + s.window(rate)).min(s.span.end);
            let past_limit = s.limit.saturating_add(PAST_RANGE).min(window_end);
            let end = s.limit.min(window_end).max(past_limit);
            if s.pos >= end {
                continue;
            }
            let first = (s.pos / piece_len) as u32;
            let last = ((end - 1) / piece_len) as u32;
            let relaxed = now_ms.saturating_add(CRITICAL_HORIZON.as_millis() as u32 + 1000);
            for p in first..=last {
                let start = u64::from(p) * piece_len;
                let ahead = start.saturating_sub(s.pos);
                let ms = (ahead.saturating_mul(1000) / rate).min(u64::from(u32::MAX / 2)) as u32;
                let mut at = now_ms.saturating_add(ms);
                if start >= s.limit {
                    at = at.max(relaxed);
                }
                due(p, at);
            }
        }
        for (r, _) in &streams.hints {
            if r.start >= r.end {
                continue;
            }
            for p in (r.start / piece_len) as u32..=((r.end - 1) / piece_len) as u32 {
                due(p, now_ms);
            }
        }
        let relaxed = now_ms.saturating_add(CRITICAL_HORIZON.as_millis() as u32 + 1000);
        for (r, _) in &streams.recent {
            if r.start >= r.end {
                continue;
            }
            for p in (r.start / piece_len) as u32..=((r.end - 1) / piece_len) as u32 {
                due(p, relaxed);
            }
        }
        let stale: Vec<u32> = meta
            .picker
            .deadline_pieces()
            .map(|(p, _)| p)
            .filter(|p| !want.contains_key(p))
            .collect();
        for p in stale {
            meta.picker.clear_deadline(p);
        }
        for (p, ms) in want {
            meta.picker.set_deadline(p, ms);
        }
    }

    /// Cancels requests for pieces nobody waits for, so a new position is
    /// not served behind them. Mostly-received pieces are kept.
    pub(crate) fn cancel_unwanted_requests(&mut self) {
        let TorrentState { peers, meta, .. } = self;
        let Some(meta) = meta.as_mut() else {
            return;
        };
        let keys: Vec<PeerKey> = peers.keys().copied().collect();
        for key in keys {
            let peer = peers.get_mut(&key).expect("key from map");
            let picker = &mut meta.picker;
            let mut cancelled = Vec::new();
            peer.outstanding.retain(|(r, _)| {
                let keep = picker.deadline(r.index).is_some()
                    || picker.received_fraction(r.index) >= KEEP_IF_RECEIVED;
                if !keep {
                    cancelled.push(*r);
                }
                keep
            });
            for r in &cancelled {
                picker.request_dropped(key, r.index, r.begin, r.length);
            }
            tracing::debug!(peer = %peer.addr, cancelled = cancelled.len(), "cancelled requests nobody waits for");
            if !cancelled.is_empty() {
                peer.outbox.cancels.extend(cancelled);
                peer.wake();
            }
        }
    }

    /// Reacts to a stream opening or moving to torrent offset `at`: if it
    /// continues a window that is being fetched (a closed stream's, or
    /// already buffered data) nothing is cancelled; a jump elsewhere drops
    /// the lingering windows and cancels requests nobody waits for, so the
    /// new position is served first. Every connection is woken.
    fn stream_moved(&mut self, at: u64) {
        let continues = self
            .streams
            .recent
            .iter()
            .any(|(r, _)| continues_from(r.start, at))
            || self.readable(at, 1) > 0;
        if continues {
            self.streams
                .recent
                .retain(|(r, _)| !continues_from(r.start, at));
            self.update_deadlines();
        } else {
            self.streams.recent.clear();
            self.update_deadlines();
            self.cancel_unwanted_requests();
        }
        for p in self.peers.values() {
            p.wake();
        }
    }

    /// A stream closed: its window lingers for a follow-up request.
    fn stream_closed(&mut self, id: u64) {
        let Some(i) = self.streams.list.iter().position(|s| s.id == id) else {
            return;
        };
        let s = self.streams.list.remove(i);
        let rate = s.bitrate(self.streams.file_bitrate.get(&s.file).copied());
        let end = (s.pos + s.window(rate))
            .min(s.limit.saturating_add(PAST_RANGE))
            .min(s.span.end);
        if s.pos < end {
            self.streams.recent.push((s.pos..end, Instant::now()));
        }
        self.update_deadlines();
    }

    /// Whether `[offset, offset+len)` is contiguous verified data; returns
    /// how many bytes from `offset` are readable (0 if the first is not).
    fn readable(&self, offset: u64, max: u64) -> u64 {
        let Some(meta) = &self.meta else {
            return 0;
        };
        let piece_len = u64::from(meta.info.piece_length);
        let total = meta.info.total_length();
        let end = (offset + max).min(total);
        let mut at = offset;
        while at < end {
            let piece = (at / piece_len) as u32;
            if !meta.picker.has_piece(piece) {
                break;
            }
            at = (u64::from(piece) + 1) * piece_len;
        }
        at.min(end) - offset
    }

    /// Verified bytes of `file` from `offset` on, up to `max`.
    pub(crate) fn file_bytes_available(&self, file: usize, offset: u64, max: u64) -> u64 {
        let Some(meta) = &self.meta else {
            return 0;
        };
        let Some(f) = meta.storage.layout().files().get(file) else {
            return 0;
        };
        if offset >= f.length {
            return 0;
        }
        self.readable(f.offset + offset, max.min(f.length - offset))
    }

    pub(crate) fn stream_stats(&self) -> Vec<StreamStats> {
        self.streams
            .list
            .iter()
            .map(|s| {
                let ahead = self.readable(s.pos, s.span.end - s.pos);
                let rate = s.bitrate(self.streams.file_bitrate.get(&s.file).copied());
                StreamStats {
                    id: s.id,
                    file: s.file,
                    position: s.pos - s.span.start,
                    bytes_read: s.bytes_read,
                    time_to_first_byte: s.ttfb,
                    seeks: s.seeks,
                    last_seek_latency: s.last_seek_latency,
                    buffered_ahead_secs: ahead as f64 / rate as f64,
                    underruns: s.underruns,
                    bitrate: rate,
                }
            })
            .collect()
    }
}

/// Whether a reader opening at `at` picks up where one that stopped at
/// `pos` left off: a player's next range request starts a little before
/// what it had received (it may drop buffered bytes) or just after it. A
/// jump further away, even inside the old readahead window, is a seek.
fn continues_from(pos: u64, at: u64) -> bool {
    at + CONTINUE_BEHIND >= pos && at <= pos + PAST_RANGE
}

/// Description of a file in a torrent.
#[derive(Clone, Debug)]
pub struct FileInfo {
    pub index: usize,
    /// Relative path under the download folder (sanitized).
    pub path: std::path::PathBuf,
    pub length: u64,
    /// Offset of the file's first byte in the torrent.
    pub offset: u64,
    pub padding: bool,
}

enum ReadState {
    Idle,
    Waiting(Pin<Box<dyn Future<Output = bool> + Send>>),
    Reading(JoinHandle<(Vec<u8>, io::Result<usize>)>),
}

/// An async reader over one file of a torrent that waits for pieces as it
/// goes. Dropping it unregisters it from the torrent.
pub struct FileStream {
    torrent: Arc<TorrentShared>,
    id: u64,
    file: usize,
    span: Range<u64>,
    storage: Arc<Storage>,
    /// Offset in the file.
    pos: u64,
    chunk: Vec<u8>,
    chunk_pos: usize,
    state: ReadState,
    progress: watch::Receiver<Progress>,
    spare: Vec<u8>,
}

impl std::fmt::Debug for FileStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStream")
            .field("id", &self.id)
            .field("file", &self.file)
            .field("pos", &self.pos)
            .finish()
    }
}

impl TorrentShared {
    /// Waits for the metadata, then lists the files.
    pub(crate) async fn files(self: &Arc<Self>) -> Result<Vec<FileInfo>, EngineError> {
        let mut rx = self.state.lock().progress.subscribe();
        loop {
            {
                let p = rx.borrow_and_update();
                if let Some(e) = &p.error {
                    return Err(EngineError::Torrent(e.clone()));
                }
                if p.has_metadata {
                    break;
                }
            }
            rx.changed()
                .await
                .map_err(|_| EngineError::NotFound(self.info_hash))?;
        }
        let st = self.state.lock();
        let meta = st.meta.as_ref().expect("metadata is present");
        Ok(meta
            .storage
            .layout()
            .files()
            .iter()
            .enumerate()
            .map(|(index, f)| FileInfo {
                index,
                path: f.path.clone(),
                length: f.length,
                offset: f.offset,
                padding: f.padding,
            })
            .collect())
    }

    pub(crate) async fn open_stream(
        self: &Arc<Self>,
        file: usize,
        range: Range<u64>,
    ) -> Result<FileStream, EngineError> {
        let files = self.files().await?;
        let info = files.get(file).ok_or(EngineError::NoSuchFile(file))?;
        let span = info.offset..info.offset + info.length;
        let start = range.start.min(info.length);
        let limit = span.start + range.end.clamp(start, info.length);
        let mut st = self.state.lock();
        let storage = st.storage().expect("metadata is present");
        let id = st.streams.next_id;
        st.streams.next_id += 1;
        let now = Instant::now();
        st.streams.list.push(StreamEntry {
            id,
            file,
            span: span.clone(),
            pos: span.start + start,
            limit,
            bitrate: None,
            opened_at: now,
            last_read: now,
            bytes_read: 0,
            first_read_at: None,
            ttfb: None,
            seek_at: None,
            seeks: 0,
            last_seek_latency: None,
            underruns: 0,
            waiting: true,
        });
        st.stream_moved(span.start + start);
        let progress = st.progress.subscribe();
        drop(st);
        self.wake.notify_one();
        Ok(FileStream {
            torrent: self.clone(),
            id,
            file,
            span,
            storage,
            pos: start,
            chunk: Vec::new(),
            chunk_pos: 0,
            state: ReadState::Idle,
            progress,
            spare: Vec::new(),
        })
    }

    /// Asks for these byte ranges of a file ahead of everything else for a
    /// while (e.g. a container index at the end of the file).
    pub(crate) fn prefetch(&self, file: usize, ranges: &[Range<u64>], ttl: Duration) {
        let mut st = self.state.lock();
        let Some(meta) = &st.meta else {
            return;
        };
        let Some(f) = meta.storage.layout().files().get(file) else {
            return;
        };
        let base = f.offset;
        let len = f.length;
        let until = Instant::now() + ttl;
        for r in ranges {
            let start = r.start.min(len);
            let end = r.end.min(len).min(start + MAX_HINT);
            if start < end {
                st.streams.hints.push((base + start..base + end, until));
            }
        }
        st.update_deadlines();
        for p in st.peers.values() {
            p.wake();
        }
    }
}

impl FileStream {
    pub fn len(&self) -> u64 {
        self.span.end - self.span.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn file_index(&self) -> usize {
        self.file
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Tells the picker how fast this stream is consumed (bytes/s), e.g. from
    /// the container's duration, so the readahead window fits the film.
    pub fn set_bitrate(&self, bytes_per_sec: u64) {
        let mut st = self.torrent.state.lock();
        if let Some(s) = st.streams.list.iter_mut().find(|s| s.id == self.id) {
            s.bitrate = Some(bytes_per_sec.max(1));
        }
        st.update_deadlines();
    }

    pub fn stats(&self) -> Option<StreamStats> {
        self.torrent
            .state
            .lock()
            .stream_stats()
            .into_iter()
            .find(|s| s.id == self.id)
    }

    fn set_position(&mut self, pos: u64) {
        if pos == self.pos {
            return;
        }
        self.pos = pos;
        self.chunk.clear();
        self.chunk_pos = 0;
        if let ReadState::Reading(h) = std::mem::replace(&mut self.state, ReadState::Idle) {
            h.abort();
        }
        let mut st = self.torrent.state.lock();
        let now = Instant::now();
        if let Some(s) = st.streams.list.iter_mut().find(|s| s.id == self.id) {
            s.pos = self.span.start + pos;
            s.seeks += 1;
            s.seek_at = Some(now);
            s.last_read = now;
            s.waiting = true;
        }
        st.stream_moved(self.span.start + pos);
    }
}

impl AsyncRead for FileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.chunk_pos < this.chunk.len() {
                let n = (this.chunk.len() - this.chunk_pos).min(buf.remaining());
                buf.put_slice(&this.chunk[this.chunk_pos..this.chunk_pos + n]);
                this.chunk_pos += n;
                this.pos += n as u64;
                this.delivered(n as u64);
                return Poll::Ready(Ok(()));
            }
            if this.pos >= this.len() || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match &mut this.state {
                ReadState::Idle => {
                    this.progress.borrow_and_update();
                    let offset = this.span.start + this.pos;
                    let want = (this.len() - this.pos).min(CHUNK as u64);
                    let readable = {
                        let mut st = this.torrent.state.lock();
                        if let Some(e) = &st.error {
                            return Poll::Ready(Err(io::Error::other(e.clone())));
                        }
                        let readable = st.readable(offset, want);
                        let now = Instant::now();
                        let mut moved = false;
                        if let Some(s) = st.streams.list.iter_mut().find(|s| s.id == this.id) {
                            if readable == 0 && !s.waiting {
                                // Only a wait after data flowed is an underrun.
                                if s.first_read_at.is_some() && s.seek_at.is_none() {
                                    s.underruns += 1;
                                    tracing::debug!(stream = s.id, offset, "stream underrun");
                                }
                                s.waiting = true;
                                moved = true;
                            }
                            if s.pos != offset {
                                s.pos = offset;
                                moved = true;
                            }
                            s.last_read = now;
                        }
                        if moved {
                            st.update_deadlines();
                            for p in st.peers.values() {
                                p.wake();
                            }
                        }
                        readable
                    };
                    if readable == 0 {
                        let mut rx = this.progress.clone();
                        this.state =
                            ReadState::Waiting(Box::pin(async move { rx.changed().await.is_ok() }));
                        continue;
                    }
                    let storage = this.storage.clone();
                    let mut buf = std::mem::take(&mut this.spare);
                    buf.resize(readable as usize, 0);
                    let layout = storage.layout().clone();
                    let session = this.torrent.session.clone();
                    this.state = ReadState::Reading(tokio::spawn(async move {
                        session
                            .blocking(move || {
                                let r = read_range(&storage, &layout, offset, &mut buf);
                                (buf, r)
                            })
                            .await
                            .unwrap_or_else(|e| (Vec::new(), Err(io::Error::other(e))))
                    }));
                }
                ReadState::Waiting(fut) => {
                    let alive = ready!(fut.as_mut().poll(cx));
                    this.state = ReadState::Idle;
                    if !alive {
                        return Poll::Ready(Err(io::Error::other("torrent was removed")));
                    }
                }
                ReadState::Reading(h) => {
                    let joined = ready!(Pin::new(h).poll(cx));
                    this.state = ReadState::Idle;
                    let (data, r) = joined.map_err(io::Error::other)?;
                    let n = r?;
                    this.spare = std::mem::replace(&mut this.chunk, data);
                    this.chunk.truncate(n);
                    this.chunk_pos = 0;
                }
            }
        }
    }
}

impl FileStream {
    fn delivered(&mut self, n: u64) {
        let mut st = self.torrent.state.lock();
        let st_piece_len = st
            .meta
            .as_ref()
            .map_or(u64::MAX, |m| u64::from(m.info.piece_length));
        let now = Instant::now();
        let pos = self.span.start + self.pos;
        let Some(s) = st.streams.list.iter_mut().find(|s| s.id == self.id) else {
            return;
        };
        s.bytes_read += n;
        s.last_read = now;
        s.waiting = false;
        let piece_len = st_piece_len;
        let crossed = pos / piece_len != s.pos / piece_len;
        s.pos = pos;
        if s.first_read_at.is_none() {
            s.first_read_at = Some(now);
            s.ttfb = Some(now.duration_since(s.opened_at));
            tracing::info!(
                stream = s.id,
                file = s.file,
                ttfb_ms = now.duration_since(s.opened_at).as_millis() as u64,
                "stream first byte"
            );
        }
        if let Some(at) = s.seek_at.take() {
            s.last_seek_latency = Some(now.duration_since(at));
            tracing::info!(
                stream = s.id,
                seek_ms = now.duration_since(at).as_millis() as u64,
                "stream seek served"
            );
        }
        if crossed {
            st.update_deadlines();
        }
    }
}

/// Reads torrent bytes `[offset, offset + buf.len())` across pieces.
fn read_range(
    storage: &Storage,
    layout: &piece_store::Layout,
    offset: u64,
    buf: &mut [u8],
) -> io::Result<usize> {
    let piece_len = u64::from(layout.piece_length());
    let mut done = 0usize;
    while done < buf.len() {
        let at = offset + done as u64;
        let piece = (at / piece_len) as u32;
        let in_piece = (at % piece_len) as u32;
        let n = ((piece_len - u64::from(in_piece)) as usize).min(buf.len() - done);
        storage
            .read(piece, in_piece, &mut buf[done..done + n])
            .map_err(io::Error::other)?;
        done += n;
    }
    Ok(done)
}

impl AsyncSeek for FileStream {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let len = self.len() as i128;
        let target = match position {
            SeekFrom::Start(n) => i128::from(n),
            SeekFrom::End(d) => len + i128::from(d),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        if target < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            ));
        }
        let target = target.min(len) as u64;
        self.set_position(target);
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

impl Drop for FileStream {
    fn drop(&mut self) {
        if let ReadState::Reading(h) = &self.state {
            h.abort();
        }
        let mut st = self.torrent.state.lock();
        if let Some(s) = st.streams.list.iter().find(|s| s.id == self.id) {
            tracing::info!(
                stream = s.id,
                file = s.file,
                bytes = s.bytes_read,
                underruns = s.underruns,
                seeks = s.seeks,
                ttfb_ms = s.ttfb.map(|d| d.as_millis() as u64),
                "stream closed"
            );
        }
        st.stream_closed(self.id);
    }
}
