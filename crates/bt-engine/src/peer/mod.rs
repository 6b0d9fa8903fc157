//! One peer connection: handshake, then a loop that moves bytes between the
//! socket and the torrent's shared state.
//!
//! The task owns the socket and two buffers. Everything the rest of the
//! engine needs to know about the peer (choke and interest flags, what it
//! has, our outstanding requests, its rates) lives in its [`PeerEntry`]
//! inside the torrent state, so the choker, the picker and other peers can
//! act on it under the torrent lock. They talk back through the entry's
//! [`Outbox`] and wake the task with its `Notify`; no queue between tasks can
//! grow without bound.
//!
//! Cancellation: every branch of the main `select!` is cancel-safe (`read`
//! and `write` on a split `TcpStream`, `Notify::notified`, a `JoinHandle`
//! polled by reference, `CancellationToken::cancelled`). Leaving the loop
//! for any reason runs [`TorrentState::peer_disconnected`], which returns
//! every outstanding request to the picker.

pub(crate) mod handle;
pub(crate) mod mse;

use crate::picker::PeerKey;
use crate::rate::RateMeter;
use crate::torrent::{TorrentShared, TorrentState};
use crate::transport::Connection;
use bt_proto::wire::{self, BlockRequest, Handshake, Message, Reserved};
use bt_proto::{Bitfield, InfoHash, PeerId};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Our extension ids (BEP 10): the numbers peers must use when they send
/// these messages to us.
pub(crate) const EXT_UT_METADATA: u8 = 3;
pub(crate) const EXT_UT_PEX: u8 = 1;

/// Steady-state receive buffer; grows only for frames that do not fit.
const READ_BUF: usize = 64 * 1024;
/// Stop reading upload data from disk while this much is waiting to be sent.
const SEND_HIGH_WATER: usize = 512 * 1024;
/// Upload data read from disk in one job.
const UPLOAD_BATCH_BYTES: usize = 256 * 1024;

/// What a peer has told us it has.
#[derive(Debug)]
pub(crate) enum PeerHave {
    /// We do not know the piece count yet (magnet without metadata); keep
    /// what the peer said until we can check it.
    Pending {
        bitfield: Option<Vec<u8>>,
        have_all: bool,
        haves: Vec<u32>,
    },
    Bits(Bitfield),
    All,
}

/// Requests from the rest of the engine to a connection's task.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub cancels: Vec<BlockRequest>,
    pub choke_changed: bool,
    pub interest_changed: bool,
    pub keepalive: bool,
    /// Send our bitfield (metadata just arrived).
    pub send_bitfield: bool,
    /// A `ut_pex` payload to send (at most one, about 2 KiB).
    pub pex: Option<Vec<u8>>,
    pub disconnect: Option<&'static str>,
}

#[derive(Debug)]
pub(crate) struct ExtState {
    pub ut_metadata: Option<u8>,
    pub ut_pex: Option<u8>,
    pub metadata_size: Option<u32>,
    pub client: Option<String>,
    /// The port the peer listens on (`p`), for telling others where to
    /// reach a peer that connected to us.
    pub listen_port: Option<u16>,
    /// BEP 10 `e`: the peer prefers MSE.
    pub prefers_encryption: bool,
}

/// Peer exchange with one peer.
#[derive(Debug, Default)]
pub(crate) struct PexState {
    /// Addresses we told it about and have not reported dropped since.
    pub told: std::collections::BTreeSet<SocketAddr>,
    pub next_send: Option<Instant>,
    pub last_received: Option<Instant>,
}

/// Shared view of one connection, kept in the torrent state.
#[derive(Debug)]
pub(crate) struct PeerEntry {
    pub addr: SocketAddr,
    pub peer_id: PeerId,
    pub incoming: bool,
    pub local: bool,
    pub fast: bool,
    /// RC4 on the wire (MSE).
    pub encrypted: bool,
    pub extensions: bool,
    pub ext: Option<ExtState>,
    pub reqq: Option<u32>,
    pub have: PeerHave,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    pub allowed_fast: Vec<u32>,
    pub down: RateMeter,
    pub up: RateMeter,
    /// Requests sent and not yet answered, oldest first.
    pub outstanding: VecDeque<(BlockRequest, Instant)>,
    pub queue_depth: usize,
    pub slow_start: bool,
    /// CANCELs sent that the peer has answered with neither the block nor a
    /// reject yet: their data may still be in its send buffer, ahead of
    /// anything we ask now.
    pub unanswered_cancels: u32,
    pub cancels_sent_at: Instant,
    /// Round-trip estimate (TCP connect time of outgoing connections).
    pub rtt: Option<Duration>,
    /// Bytes received in the previous second, to detect the end of slow start.
    pub prev_second: u64,
    pub snubbed: bool,
    pub connected_at: Instant,
    pub last_block_at: Instant,
    pub last_received: Instant,
    /// Entries of the torrent's completion log already announced with HAVE.
    pub haves_sent: usize,
    pub metadata_requests: Vec<(u32, Instant)>,
    pub pex: PexState,
    pub outbox: Outbox,
    pub notify: Arc<Notify>,
}

impl PeerEntry {
    /// Where others can connect to this peer: the address we reached it at,
    /// or for an incoming connection its IP and advertised listen port.
    pub fn connectable_addr(&self) -> Option<SocketAddr> {
        if !self.incoming {
            return Some(self.addr);
        }
        let port = self.ext.as_ref()?.listen_port?;
        Some(SocketAddr::new(self.addr.ip(), port))
    }

    pub fn is_seed(&self) -> bool {
        match &self.have {
            PeerHave::All => true,
            PeerHave::Bits(b) => b.all(),
            PeerHave::Pending { have_all, .. } => *have_all,
        }
    }

    pub fn wake(&self) {
        self.notify.notify_one();
    }
}

/// Why a connection ended; logged, and used to decide on reconnecting.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Wire(#[from] wire::WireError),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("{0}")]
    Protocol(&'static str),
    #[error("disconnected: {0}")]
    Closed(&'static str),
}

/// Sends our handshake (unless it already went out as the MSE initial
/// payload: `ours` is `None`), reads the peer's and checks it; for incoming
/// connections the first 48 bytes were read by the listener already.
/// `ours` arrives encrypted when the stream is.
pub(crate) async fn handshake(
    conn: &mut Connection,
    ours: Option<&[u8]>,
    info_hash: &InfoHash,
    incoming_prefix: Option<Reserved>,
    timeout: Duration,
) -> Result<(Reserved, PeerId), PeerError> {
    let fut = async {
        if let Some(ours) = ours {
            conn.writer.write_all(ours).await?;
        }
        match incoming_prefix {
            Some(reserved) => {
                let mut id = [0u8; 20];
                conn.reader.read_exact(&mut id).await?;
                Ok((reserved, PeerId(id)))
            }
            None => {
                let mut buf = [0u8; wire::HANDSHAKE_LEN];
                conn.reader.read_exact(&mut buf).await?;
                let theirs = Handshake::decode(&buf)?;
                if theirs.info_hash != *info_hash {
                    return Err(PeerError::Protocol("peer answered for another torrent"));
                }
                Ok((theirs.reserved, theirs.peer_id))
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| PeerError::Timeout("in handshake"))?
}

/// Bytes the task keeps between events: its socket buffers and the upload
/// requests it has accepted but not yet answered.
pub(crate) struct PeerLocal {
    pub wbuf: Vec<u8>,
    pub wpos: usize,
    pub uploads: VecDeque<BlockRequest>,
    /// Pieces whose last block just arrived: hashed after the lock is released.
    pub completed: Vec<(u32, Vec<u8>)>,
    pub last_sent: Instant,
}

impl PeerLocal {
    pub fn send(&mut self, msg: &Message<'_>) {
        msg.encode(&mut self.wbuf);
    }

    fn pending_send(&self) -> usize {
        self.wbuf.len() - self.wpos
    }
}

/// Runs a registered connection until it ends, then unregisters it.
pub(crate) async fn run(
    torrent: Arc<TorrentShared>,
    key: PeerKey,
    mut conn: Connection,
    encrypt: mse::Encryptor,
    notify: Arc<Notify>,
) {
    let cancel = torrent.cancel.clone();
    let mut local = PeerLocal {
        wbuf: Vec::with_capacity(32 * 1024),
        wpos: 0,
        uploads: VecDeque::new(),
        completed: Vec::new(),
        last_sent: Instant::now(),
    };
    let result = tokio::select! {
        biased;
        r = drive(&torrent, key, &mut conn, encrypt, &notify, &mut local) => r,
        _ = cancel.cancelled() => Err(PeerError::Closed("torrent stopped")),
    };
    // Pieces this connection completed in the batch that ended it (a
    // banned peer's last read, say) still need their check, or they would
    // wait in "verifying" forever. Not once the torrent is stopped: its
    // files may be on their way out.
    if !cancel.is_cancelled() {
        for (piece, buf) in local.completed.drain(..) {
            crate::torrent::spawn_piece_check(torrent.clone(), piece, buf);
        }
    }
    let reason = match &result {
        Ok(()) => "closed".to_string(),
        Err(e) => e.to_string(),
    };
    tracing::debug!(peer = %conn.remote, %reason, "peer connection ended");
    torrent.state.lock().peer_disconnected(key, &reason);
    torrent.session.connection_closed();
    torrent.wake.notify_one();
}

async fn drive(
    torrent: &Arc<TorrentShared>,
    key: PeerKey,
    conn: &mut Connection,
    mut encrypt: mse::Encryptor,
    notify: &Notify,
    local: &mut PeerLocal,
) -> Result<(), PeerError> {
    {
        let mut st = torrent.state.lock();
        st.peer_greeting(key, local);
        // Interest (set at registration) goes out with the greeting.
        st.service_peer(key, local)?;
    }
    let mut rbuf = vec![0u8; READ_BUF];
    let mut rstart = 0usize;
    let mut rend = 0usize;
    let mut upload_read: Option<JoinHandle<UploadRead>> = None;
    let (rd, wr) = (&mut conn.reader, &mut conn.writer);
    let mut reads_first = true;
    // `wbuf[..sealed]` is encrypted already (RC4 connections): every byte
    // must pass the keystream exactly once, in order.
    let mut sealed = 0usize;

    loop {
        // Start a disk read for queued uploads when the send buffer has room.
        if upload_read.is_none()
            && !local.uploads.is_empty()
            && local.pending_send() < SEND_HIGH_WATER
        {
            upload_read = start_upload_read(torrent, local);
        }

        if rend == rbuf.len() {
            // Make room: move the partial frame to the front, growing the
            // buffer when one frame is larger than it.
            let need = wire::peek_frame_len(&rbuf[rstart..rend]).unwrap_or(0);
            rbuf.copy_within(rstart..rend, 0);
            rend -= rstart;
            rstart = 0;
            if rend == rbuf.len() || need > rbuf.len() {
                rbuf.resize(need.max(rbuf.len()), 0);
            }
        }

        // `biased` keeps a simulated run reproducible (tokio's default picks
        // a random ready branch); alternating which of read and write comes
        // first keeps either from starving the other.
        if let Some(rc4) = &mut encrypt {
            rc4.apply(&mut local.wbuf[sealed..]);
            sealed = local.wbuf.len();
        }
        let can_write = local.wpos < local.wbuf.len();
        let uploading = upload_read.is_some();
        let event = if reads_first {
            tokio::select! {
                biased;
                r = rd.read(&mut rbuf[rend..]) => Event::Read(r),
                r = wr.write(&local.wbuf[local.wpos..]), if can_write => Event::Wrote(r),
                r = async { upload_read.as_mut().expect("guarded").await }, if uploading => Event::Upload(r),
                _ = notify.notified() => Event::Notified,
            }
        } else {
            tokio::select! {
                biased;
                r = wr.write(&local.wbuf[local.wpos..]), if can_write => Event::Wrote(r),
                r = rd.read(&mut rbuf[rend..]) => Event::Read(r),
                r = async { upload_read.as_mut().expect("guarded").await }, if uploading => Event::Upload(r),
                _ = notify.notified() => Event::Notified,
            }
        };
        reads_first = !reads_first;
        match event {
            Event::Read(r) => {
                let n = r?;
                if n == 0 {
                    return Err(PeerError::Closed("peer closed the connection"));
                }
                rend += n;
                let mut st = torrent.state.lock();
                let max_frame = st.max_frame();
                loop {
                    match wire::decode(&rbuf[rstart..rend], max_frame)? {
                        None => break,
                        Some((msg, used)) => {
                            rstart += used;
                            st.on_message(key, msg, local)?;
                        }
                    }
                }
                st.service_peer(key, local)?;
                drop(st);
                if rstart == rend {
                    rstart = 0;
                    rend = 0;
                } else if rbuf.len() > READ_BUF && rend - rstart <= READ_BUF {
                    // Shrink back after an oversized frame.
                    rbuf.copy_within(rstart..rend, 0);
                    rend -= rstart;
                    rstart = 0;
                    rbuf.truncate(READ_BUF);
                    rbuf.shrink_to_fit();
                }
            }
            Event::Wrote(r) => {
                let n = r?;
                local.wpos += n;
                local.last_sent = Instant::now();
                if local.wpos == local.wbuf.len() {
                    local.wbuf.clear();
                    local.wpos = 0;
                    sealed = 0;
                    if local.wbuf.capacity() > 4 * SEND_HIGH_WATER {
                        local.wbuf.shrink_to(64 * 1024);
                    }
                }
                continue;
            }
            Event::Upload(r) => {
                upload_read = None;
                let read = r.map_err(|_| PeerError::Protocol("disk read task failed"))?;
                let mut st = torrent.state.lock();
                st.upload_done(key, read, local)?;
                st.service_peer(key, local)?;
            }
            Event::Notified => {
                let mut st = torrent.state.lock();
                st.service_peer(key, local)?;
            }
        }
        // Hash and store pieces completed by this batch, outside the lock.
        for (piece, buf) in local.completed.drain(..) {
            crate::torrent::spawn_piece_check(torrent.clone(), piece, buf);
        }
        // Compact the send buffer so it does not creep.
        if local.wpos > 0 && local.wpos >= local.wbuf.len() / 2 {
            local.wbuf.drain(..local.wpos);
            sealed = sealed.saturating_sub(local.wpos);
            local.wpos = 0;
        }
    }
}

/// What woke the connection task.
enum Event {
    Read(std::io::Result<usize>),
    Wrote(std::io::Result<usize>),
    Upload(Result<UploadRead, tokio::task::JoinError>),
    Notified,
}

/// Upload data read from disk for a batch of requests.
pub(crate) struct UploadRead {
    pub requests: Vec<BlockRequest>,
    pub data: Result<Vec<u8>, piece_store::StoreError>,
}

fn start_upload_read(
    torrent: &Arc<TorrentShared>,
    local: &mut PeerLocal,
) -> Option<JoinHandle<UploadRead>> {
    let storage = torrent.state.lock().storage()?;
    let mut requests = Vec::new();
    let mut bytes = 0usize;
    while let Some(r) = local.uploads.front() {
        if bytes + r.length as usize > UPLOAD_BATCH_BYTES && !requests.is_empty() {
            break;
        }
        bytes += r.length as usize;
        requests.push(local.uploads.pop_front().expect("front exists"));
    }
    let session = torrent.session.clone();
    Some(tokio::spawn(async move {
        let _permit = session.disk_permit().await;
        session
            .blocking(move || {
                let mut data = vec![0u8; bytes];
                let mut at = 0;
                let mut result = Ok(());
                for r in &requests {
                    let len = r.length as usize;
                    if let Err(e) = storage.read(r.index, r.begin, &mut data[at..at + len]) {
                        result = Err(e);
                        break;
                    }
                    at += len;
                }
                UploadRead {
                    requests,
                    data: result.map(|_| data),
                }
            })
            .await
            .unwrap_or_else(|_| UploadRead {
                requests: Vec::new(),
                data: Ok(Vec::new()),
            })
    }))
}

impl TorrentState {
    fn max_frame(&self) -> u32 {
        let bitfield = self
            .meta
            .as_ref()
            .map_or(0, |m| m.picker.num_pieces().div_ceil(8) + 1);
        wire::DEFAULT_MAX_FRAME.max(bitfield + 16)
    }
}
