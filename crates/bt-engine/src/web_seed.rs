//! Web seeds (BEP 19, the `url-list` of a .torrent): an HTTP server holding
//! the torrent's files, used as one more source of pieces.
//!
//! A web seed is run as an in-process peer: the engine gets an ordinary
//! [`Connection`] (one end of a `tokio::io::duplex`), and this module plays
//! a seeder on the other end that answers the engine's REQUESTs with HTTP
//! range requests. So the picker, endgame, hash checks and bans treat it
//! like any peer and the engine needs no second download path. Requests
//! for adjacent blocks are merged into one HTTP range of up to
//! [`MAX_RANGE`] bytes.
//!
//! The pretend peer has a synthetic address in `100::/64` (RFC 6666, the
//! discard prefix, never routed) so it never collides with a real peer.
//! When the server fails, the connection ends and is retried after
//! [`RETRY_AFTER`]; after [`MAX_FAILURES`] failures in a row the web seed
//! is given up.

use crate::session::{self, Link};
use crate::torrent::TorrentShared;
use crate::transport::Connection;
use bt_proto::metainfo::Info;
use bt_proto::wire::{self, BlockRequest, Handshake, Message, Reserved};
use bt_proto::{InfoHash, PeerId};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Largest HTTP range asked for at once.
const MAX_RANGE: u64 = 1 << 20;
/// Buffer of the in-process pipe in each direction.
const PIPE: usize = 256 * 1024;
const RETRY_AFTER: Duration = Duration::from_secs(30);
const MAX_FAILURES: u32 = 5;
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
enum WebSeedError {
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{url} answered {status} to a range request")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{url} sent {got} bytes for a {want}-byte range")]
    Length { url: String, got: usize, want: u64 },
    #[error("the engine side: {0}")]
    Pipe(#[from] std::io::Error),
    #[error("the engine sent a malformed message: {0}")]
    Wire(#[from] wire::WireError),
}

/// Runs web seed `url` (number `index` of the torrent's) until the torrent
/// stops, is complete, or the server failed too often.
pub(crate) async fn run(t: Arc<TorrentShared>, url: String, index: u16) {
    let mut progress = t.state.lock().progress.subscribe();
    // Wait for storage: requests need the file layout.
    loop {
        if progress.borrow_and_update().has_metadata {
            break;
        }
        tokio::select! {
            biased;
            _ = t.cancel.cancelled() => return,
            r = progress.changed() => if r.is_err() { return },
        }
    }
    let Some(info) = t.state.lock().meta.as_ref().map(|m| m.info.clone()) else {
        return;
    };
    let remote = SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, index)),
        80,
    );
    let mut failures = 0u32;
    loop {
        if t.cancel.is_cancelled() || t.state.lock().is_complete() {
            return;
        }
        let (ours, theirs) = tokio::io::duplex(PIPE);
        let (r, w) = tokio::io::split(ours);
        let conn = Connection {
            reader: Box::new(r),
            writer: Box::new(w),
            remote,
        };
        let mut id = *b"-WS0001-000000000000";
        id[18..].copy_from_slice(&index.to_be_bytes());
        let server = serve(
            theirs,
            t.info_hash,
            PeerId(id),
            info.clone(),
            url.clone(),
            t.session.http.clone(),
        );
        let engine = async {
            let link = Link {
                encrypt: None,
                method: None,
            };
            let _ = session::start_web_seed_connection(t.clone(), conn, link).await;
        };
        let outcome = tokio::select! {
            biased;
            _ = t.cancel.cancelled() => return,
            r = server => r,
            () = engine => Ok(()),
        };
        match outcome {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::debug!(%url, error = %e, failures, "web seed failed");
                if failures >= MAX_FAILURES {
                    tracing::warn!(%url, error = %e, "giving up on web seed");
                    return;
                }
            }
        }
        tokio::select! {
            biased;
            _ = t.cancel.cancelled() => return,
            _ = tokio::time::sleep(RETRY_AFTER) => {}
        }
    }
}

/// The seeder side of the pipe: handshake, have-all, unchoke, then each
/// batch of REQUESTs answered from HTTP ranges. Returns when the engine
/// closes the pipe (`Ok`) or the server fails.
async fn serve(
    mut pipe: DuplexStream,
    info_hash: InfoHash,
    peer_id: PeerId,
    info: Arc<Info>,
    url: String,
    http: reqwest::Client,
) -> Result<(), WebSeedError> {
    let mut hs = [0u8; wire::HANDSHAKE_LEN];
    pipe.read_exact(&mut hs).await?;
    let reply = Handshake {
        reserved: Reserved::default().with(Reserved::FAST),
        info_hash,
        peer_id,
    };
    pipe.write_all(&reply.encode()).await?;
    let mut out = Vec::new();
    Message::HaveAll.encode(&mut out);
    Message::Unchoke.encode(&mut out);
    pipe.write_all(&out).await?;
    let files = file_urls(&info, &url);
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0usize;
    let mut queue: Vec<BlockRequest> = Vec::new();
    loop {
        let n = pipe.read(&mut buf[have..]).await?;
        if n == 0 {
            return Ok(());
        }
        have += n;
        let mut used = 0;
        while let Some((msg, len)) = wire::decode(&buf[used..have], wire::DEFAULT_MAX_FRAME)? {
            match msg {
                Message::Request(r) => queue.push(r),
                Message::Cancel(r) => queue.retain(|q| *q != r),
                _ => {}
            }
            used += len;
        }
        buf.copy_within(used..have, 0);
        have -= used;
        if queue.is_empty() {
            continue;
        }
        out.clear();
        for run in runs(&queue, &info) {
            let data = fetch(&http, &info, &files, run.0, run.1).await?;
            let mut at = 0usize;
            for r in &queue[run.2.clone()] {
                let len = r.length as usize;
                Message::Piece {
                    index: r.index,
                    begin: r.begin,
                    data: &data[at..at + len],
                }
                .encode(&mut out);
                at += len;
            }
        }
        queue.clear();
        pipe.write_all(&out).await?;
    }
}

/// Requests grouped into contiguous torrent byte ranges:
/// `(start, length, requests)`, each at most [`MAX_RANGE`] long.
fn runs(queue: &[BlockRequest], info: &Info) -> Vec<(u64, u64, std::ops::Range<usize>)> {
    let piece_length = u64::from(info.piece_length);
    let mut out: Vec<(u64, u64, std::ops::Range<usize>)> = Vec::new();
    for (i, r) in queue.iter().enumerate() {
        let start = u64::from(r.index) * piece_length + u64::from(r.begin);
        let len = u64::from(r.length);
        match out.last_mut() {
            Some(last) if last.0 + last.1 == start && last.1 + len <= MAX_RANGE => {
                last.1 += len;
                last.2.end = i + 1;
            }
            _ => out.push((start, len, i..i + 1)),
        }
    }
    out
}

/// Each file's URL (`None` for padding): BEP 19 appends the torrent's name
/// and the file's path to a URL ending in `/`; a single-file torrent's URL
/// may name the file itself.
fn file_urls(info: &Info, base: &str) -> Vec<Option<String>> {
    info.files
        .iter()
        .map(|f| {
            if f.padding {
                return None;
            }
            let mut u = base.to_string();
            if info.single_file {
                if u.ends_with('/') {
                    encode_component(&info.name, &mut u);
                }
                return Some(u);
            }
            if !u.ends_with('/') {
                u.push('/');
            }
            encode_component(&info.name, &mut u);
            for c in &f.path {
                u.push('/');
                encode_component(c, &mut u);
            }
            Some(u)
        })
        .collect()
}

/// Percent-encodes one path component (everything but unreserved bytes).
fn encode_component(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The torrent's bytes `start..start + len`, from as many files as the
/// range covers; padding reads as zeros.
async fn fetch(
    http: &reqwest::Client,
    info: &Info,
    files: &[Option<String>],
    start: u64,
    len: u64,
) -> Result<Vec<u8>, WebSeedError> {
    let mut data = Vec::with_capacity(len as usize);
    let mut offset = 0u64;
    for (i, f) in info.files.iter().enumerate() {
        let (from, to) = (offset, offset + f.length);
        offset = to;
        let lo = start.max(from);
        let hi = (start + len).min(to);
        if lo >= hi {
            continue;
        }
        let Some(url) = &files[i] else {
            data.resize(data.len() + (hi - lo) as usize, 0);
            continue;
        };
        let want = hi - lo;
        let resp = http
            .get(url)
            .header(
                reqwest::header::RANGE,
                format!("bytes={}-{}", lo - from, hi - from - 1),
            )
            .timeout(HTTP_TIMEOUT)
            .send()
            .await?;
        let status = resp.status();
        // A 200 for the whole file is acceptable only when that is the range.
        let whole = status == reqwest::StatusCode::OK && lo == from && hi == to;
        if status != reqwest::StatusCode::PARTIAL_CONTENT && !whole {
            return Err(WebSeedError::Status {
                url: url.clone(),
                status,
            });
        }
        let body = resp.bytes().await?;
        if body.len() as u64 != want {
            return Err(WebSeedError::Length {
                url: url.clone(),
                got: body.len(),
                want,
            });
        }
        data.extend_from_slice(&body);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bt_proto::FileEntry;

    fn info(single: bool) -> Info {
        let file = |p: &[&str], len, padding| FileEntry {
            path: p.iter().map(|c| c.as_bytes().to_vec()).collect(),
            length: len,
            padding,
        };
        Info {
            name: b"My Film".to_vec(),
            piece_length: 32768,
            pieces: Vec::new(),
            files: if single {
                vec![file(&[], 100_000, false)]
            } else {
                vec![
                    file(&["a b.mkv"], 40_000, false),
                    file(&[".pad", "25536"], 25_536, true),
                    file(&["sub", "c.srt"], 100, false),
                ]
            },
            private: false,
            single_file: single,
        }
    }

    #[test]
    fn urls_follow_bep_19() {
        let multi = file_urls(&info(false), "http://h/seed");
        assert_eq!(
            multi,
            vec![
                Some("http://h/seed/My%20Film/a%20b.mkv".to_string()),
                None,
                Some("http://h/seed/My%20Film/sub/c.srt".to_string()),
            ]
        );
        assert_eq!(
            file_urls(&info(true), "http://h/seed/"),
            vec![Some("http://h/seed/My%20Film".to_string())]
        );
        assert_eq!(
            file_urls(&info(true), "http://h/film.bin"),
            vec![Some("http://h/film.bin".to_string())]
        );
    }

    #[test]
    fn adjacent_requests_share_a_range() {
        let info = info(false);
        let r = |index, begin| BlockRequest {
            index,
            begin,
            length: 16384,
        };
        let q = [r(0, 0), r(0, 16384), r(1, 0), r(1, 32768 - 16384 + 16384)];
        let runs = runs(&q, &info);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0], (0, 3 * 16384, 0..3));
        assert_eq!(runs[1].2, 3..4);
    }
}
