//! The session: the peer listener, the torrents, and the limits they share
//! (connections, disk jobs).

use crate::config::SessionConfig;
use crate::error::EngineError;
use crate::peer;
use crate::stats::{SessionStats, TorrentStats};
use crate::torrent::{self, Progress, Refused, TorrentShared, TorrentState};
use crate::transport::{Acceptor, Connection, Tcp, Transport};
use bt_proto::magnet::Magnet;
use bt_proto::metainfo::Metainfo;
use bt_proto::wire::{Handshake, Reserved};
use bt_proto::{InfoHash, PeerId};
use parking_lot::{Mutex, RwLock};
use piece_store::ResumeStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) struct SessionShared {
    pub config: Arc<SessionConfig>,
    pub peer_id: PeerId,
    pub listen_port: u16,
    disk: Semaphore,
    connections: AtomicUsize,
    half_open: AtomicUsize,
    pub torrents: RwLock<HashMap<InfoHash, Arc<TorrentShared>>>,
    pub resume: Option<Arc<ResumeStore>>,
    pub cancel: CancellationToken,
    pub http: reqwest::Client,
    pub transport: Arc<dyn Transport>,
    /// Seeded from the config when a run must be reproducible.
    pub rng: Mutex<StdRng>,
}

impl SessionShared {
    /// Runs disk work off the async threads, or in place when the session
    /// runs on a simulated clock (a blocking-pool job would let virtual time
    /// jump while it runs).
    pub async fn blocking<F, R>(&self, f: F) -> Result<R, tokio::task::JoinError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        if self.config.inline_disk {
            Ok(f())
        } else {
            tokio::task::spawn_blocking(f).await
        }
    }

    pub fn random_u64(&self) -> u64 {
        self.rng.lock().random()
    }

    pub async fn disk_permit(&self) -> SemaphorePermit<'_> {
        self.disk
            .acquire()
            .await
            .expect("disk semaphore is never closed")
    }

    /// Reserves a connection slot and a half-open slot for an outgoing
    /// connection attempt.
    pub fn try_begin_connect(&self) -> bool {
        if self.half_open.fetch_add(1, Ordering::AcqRel) >= self.config.max_half_open {
            self.half_open.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        if !self.try_reserve_connection() {
            self.half_open.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// The attempt is over; `connected` keeps the connection slot.
    pub fn connect_finished(&self, connected: bool) {
        self.half_open.fetch_sub(1, Ordering::AcqRel);
        if !connected {
            self.connection_closed();
        }
    }

    fn try_reserve_connection(&self) -> bool {
        if self.connections.fetch_add(1, Ordering::AcqRel) >= self.config.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    fn handshake_for(&self, info_hash: InfoHash) -> Handshake {
        Handshake {
            reserved: Reserved::default()
                .with(Reserved::FAST)
                .with(Reserved::EXTENSION_PROTOCOL),
            info_hash,
            peer_id: self.peer_id,
        }
    }
}

/// Where a torrent comes from.
pub enum TorrentSource {
    Metainfo(Box<Metainfo>),
    Magnet(Magnet),
}

pub struct AddTorrent {
    pub source: TorrentSource,
    /// Content goes to `download_dir/<torrent name>`.
    pub download_dir: PathBuf,
    /// Peers to connect to besides those from trackers.
    pub peers: Vec<SocketAddr>,
    pub paused: bool,
}

/// A running BitTorrent session.
pub struct Session {
    shared: Arc<SessionShared>,
    listen_addr: SocketAddr,
    tasks: Mutex<HashMap<InfoHash, Vec<JoinHandle<()>>>>,
}

impl Session {
    /// A session on TCP.
    pub async fn start(config: SessionConfig) -> Result<Session, EngineError> {
        Self::start_with(config, Arc::new(Tcp)).await
    }

    /// A session whose peer connections go through `transport`.
    pub async fn start_with(
        config: SessionConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Session, EngineError> {
        let addr = SocketAddr::new(config.bind_ip, config.listen_port);
        let listener = transport
            .bind(addr)
            .await
            .map_err(|source| EngineError::Listen { addr, source })?;
        let listen_addr = listener.local_addr();
        let mut rng = match config.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let resume = match &config.resume_dir {
            Some(dir) => Some(Arc::new(ResumeStore::open(dir)?)),
            None => None,
        };
        let mut id = *b"-RT0100-000000000000";
        let tail: [u8; 12] = rng.random();
        for (dst, b) in id[8..].iter_mut().zip(tail) {
            // Printable, as most clients' ids are.
            *dst = b"0123456789abcdefghijklmnopqrstuvwxyz"[usize::from(b) % 36];
        }
        // reqwest is built without a default TLS provider; a second
        // session finds it installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut http = reqwest::Client::builder().user_agent(config.client_name.clone());
        if !config.bind_ip.is_unspecified() {
            // Trackers record the announce's source address as ours; it must
            // be the address we listen on.
            http = http.local_address(config.bind_ip);
        }
        let http = http
            .timeout(config.tracker_timeout)
            .build()
            .expect("HTTP client settings are valid");
        let shared = Arc::new(SessionShared {
            disk: Semaphore::new(config.disk_jobs.max(1)),
            config: Arc::new(config),
            peer_id: PeerId(id),
            listen_port: listen_addr.port(),
            connections: AtomicUsize::new(0),
            half_open: AtomicUsize::new(0),
            torrents: RwLock::new(HashMap::new()),
            resume,
            cancel: CancellationToken::new(),
            http,
            transport,
            rng: Mutex::new(rng),
        });
        tokio::spawn(accept_loop(shared.clone(), listener));
        Ok(Session {
            shared,
            listen_addr,
            tasks: Mutex::new(HashMap::new()),
        })
    }

    pub fn transport(&self) -> Arc<dyn Transport> {
        self.shared.transport.clone()
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    pub async fn add_torrent(&self, add: AddTorrent) -> Result<TorrentHandle, EngineError> {
        if self.shared.cancel.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        if let TorrentSource::Metainfo(m) = &add.source {
            // Refuse hostile or inconsistent file lists now, with the
            // reason, rather than failing later in the background.
            piece_store::Layout::from_info(&m.info)?;
        }
        let (info_hash, name, trackers, info_bytes, mut peers) = match add.source {
            TorrentSource::Metainfo(m) => (
                m.info_hash,
                m.info.name_lossy(),
                m.trackers(),
                Some(m.info_bytes.clone()),
                Vec::new(),
            ),
            TorrentSource::Magnet(m) => {
                let peers: Vec<SocketAddr> =
                    m.peers.iter().filter_map(|p| p.parse().ok()).collect();
                (
                    m.info_hash,
                    m.display_name
                        .clone()
                        .unwrap_or_else(|| m.info_hash.to_hex()),
                    m.trackers.iter().map(|t| vec![t.clone()]).collect(),
                    None,
                    peers,
                )
            }
        };
        peers.extend(add.peers);
        // A magnet we fetched before: its metadata is cached with the resume data.
        let info_bytes = match (info_bytes, &self.shared.resume) {
            (Some(b), _) => Some(b),
            (None, Some(store)) => {
                let store = store.clone();
                self.shared
                    .blocking(move || store.load_metainfo(&info_hash))
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .flatten()
            }
            (None, None) => None,
        };
        let mut state = TorrentState::new(
            info_hash,
            self.shared.peer_id,
            self.shared.config.clone(),
            self.shared.listen_port,
            name,
            add.download_dir,
            trackers,
            self.shared.resume.clone(),
            add.paused,
            self.shared.random_u64(),
        );
        for p in peers {
            state.addrs.add(p);
        }
        let t = Arc::new(TorrentShared {
            info_hash,
            session: self.shared.clone(),
            state: Mutex::new(state),
            cancel: self.shared.cancel.child_token(),
            wake: tokio::sync::Notify::new(),
        });
        {
            let mut map = self.shared.torrents.write();
            if map.contains_key(&info_hash) {
                return Err(EngineError::Duplicate(info_hash));
            }
            map.insert(info_hash, t.clone());
        }
        let control = tokio::spawn(torrent::run(t.clone(), info_bytes));
        let tracker = tokio::spawn(crate::tracker::run(t.clone()));
        self.tasks.lock().insert(info_hash, vec![control, tracker]);
        Ok(TorrentHandle { shared: t })
    }

    pub fn torrent(&self, info_hash: &InfoHash) -> Option<TorrentHandle> {
        self.shared
            .torrents
            .read()
            .get(info_hash)
            .map(|t| TorrentHandle { shared: t.clone() })
    }

    pub fn torrents(&self) -> Vec<TorrentHandle> {
        self.shared
            .torrents
            .read()
            .values()
            .map(|t| TorrentHandle { shared: t.clone() })
            .collect()
    }

    /// Stops a torrent, announces `stopped`, writes its resume data, and
    /// optionally deletes its resume data and content.
    pub async fn remove_torrent(
        &self,
        info_hash: &InfoHash,
        delete_data: bool,
    ) -> Result<(), EngineError> {
        let t = self
            .shared
            .torrents
            .write()
            .remove(info_hash)
            .ok_or(EngineError::NotFound(*info_hash))?;
        t.cancel.cancel();
        let tasks = self.tasks.lock().remove(info_hash).unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
        if delete_data {
            let (paths, resume) = {
                let st = t.state.lock();
                let paths: Vec<PathBuf> = st
                    .meta
                    .as_ref()
                    .map(|m| {
                        (0..m.storage.layout().files().len())
                            .map(|i| m.storage.file_path(i))
                            .collect()
                    })
                    .unwrap_or_default();
                (paths, st.resume.clone())
            };
            let ih = *info_hash;
            let _ = self
                .shared
                .blocking(move || {
                    for p in paths {
                        let _ = std::fs::remove_file(&p);
                    }
                    if let Some(r) = resume {
                        let _ = r.remove(&ih);
                    }
                })
                .await;
        }
        Ok(())
    }

    /// Stops every torrent (final resume data, `stopped` announces) and the
    /// listener.
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().drain().flat_map(|(_, v)| v).collect();
        for task in tasks {
            let _ = task.await;
        }
    }

    pub fn stats(&self) -> SessionStats {
        let mut s = SessionStats::default();
        for t in self.shared.torrents.read().values() {
            let st = t.state.lock();
            s.torrents += 1;
            s.download_rate += st.down.rate();
            s.upload_rate += st.up.rate();
            s.downloaded += st.down.total();
            s.uploaded += st.up.total();
            s.peers += st.peers.len();
        }
        s
    }
}

/// Control of one torrent in a session.
#[derive(Clone)]
pub struct TorrentHandle {
    shared: Arc<TorrentShared>,
}

impl TorrentHandle {
    pub fn info_hash(&self) -> InfoHash {
        self.shared.info_hash
    }

    pub fn stats(&self) -> TorrentStats {
        self.shared.state.lock().stats()
    }

    /// Changes whenever a piece is verified, metadata arrives, or an error
    /// stops the torrent.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.shared.state.lock().progress.subscribe()
    }

    /// Resolves once every wanted piece is verified on disk, or with the
    /// error that stopped the torrent.
    pub async fn wait_complete(&self) -> Result<(), String> {
        let mut rx = self.progress();
        loop {
            {
                let p = rx.borrow_and_update();
                if let Some(e) = &p.error {
                    return Err(e.clone());
                }
                if p.complete {
                    return Ok(());
                }
            }
            if rx.changed().await.is_err() {
                return Err("torrent was removed".into());
            }
        }
    }

    /// The torrent's files; waits for the metadata of a magnet.
    pub async fn files(&self) -> Result<Vec<crate::stream::FileInfo>, EngineError> {
        self.shared.files().await
    }

    /// Opens a reader over one file, starting at byte `start` of the file.
    /// Its position drives the piece deadlines while it is open.
    pub async fn open_file(
        &self,
        file: usize,
        start: u64,
    ) -> Result<crate::stream::FileStream, EngineError> {
        self.shared.open_stream(file, start..u64::MAX).await
    }

    /// Like [`TorrentHandle::open_file`] for a reader that will stop at
    /// `range.end` (a bounded HTTP range): nothing past it is prefetched.
    pub async fn open_file_range(
        &self,
        file: usize,
        range: std::ops::Range<u64>,
    ) -> Result<crate::stream::FileStream, EngineError> {
        self.shared.open_stream(file, range).await
    }

    /// Fetches these byte ranges of a file before anything else for `ttl`.
    pub fn prefetch(&self, file: usize, ranges: &[std::ops::Range<u64>], ttl: Duration) {
        self.shared.prefetch(file, ranges, ttl);
        self.shared.wake.notify_one();
    }

    /// How fast a file is played (bytes/s), e.g. size / duration from the
    /// container; sizes the readahead window of its streams.
    pub fn set_file_bitrate(&self, file: usize, bytes_per_sec: u64) {
        let mut st = self.shared.state.lock();
        st.streams.file_bitrate.insert(file, bytes_per_sec.max(1));
        st.update_deadlines();
    }

    /// Whether byte `offset` of `file` is downloaded and verified.
    pub fn is_available(&self, file: usize, offset: u64) -> bool {
        self.shared
            .state
            .lock()
            .file_bytes_available(file, offset, 1)
            > 0
    }

    pub fn streams(&self) -> Vec<crate::stream::StreamStats> {
        self.shared.state.lock().stream_stats()
    }

    pub fn peers(&self) -> Vec<crate::stats::PeerInfo> {
        self.shared.state.lock().peer_list()
    }

    pub fn add_peers(&self, peers: &[SocketAddr]) {
        let mut st = self.shared.state.lock();
        for p in peers {
            st.addrs.add(*p);
        }
        drop(st);
        self.shared.wake.notify_one();
    }

    pub fn pause(&self) {
        let mut st = self.shared.state.lock();
        st.set_paused(true);
    }

    pub fn resume(&self) {
        let mut st = self.shared.state.lock();
        st.set_paused(false);
        drop(st);
        self.shared.wake.notify_one();
    }

    /// Writes resume data now (files synced first).
    pub async fn checkpoint(&self) {
        self.shared.checkpoint().await;
    }
}

impl TorrentState {
    pub(crate) fn set_paused(&mut self, paused: bool) {
        if self.paused == paused {
            return;
        }
        self.paused = paused;
        if paused {
            for p in self.peers.values_mut() {
                p.outbox.disconnect = Some("paused");
                p.wake();
            }
        } else {
            // Reconnect at once rather than after the disconnect backoff.
            let now = tokio::time::Instant::now();
            for e in self.addrs.entries.values_mut() {
                e.retry_at = now;
            }
        }
        self.refresh_status();
        self.publish_progress();
    }
}

async fn accept_loop(shared: Arc<SessionShared>, mut listener: Box<dyn Acceptor>) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let conn = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off rather than spin.
                tracing::warn!(error = %e, "accepting a peer connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !shared.try_reserve_connection() {
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            if !accept_one(&shared, conn).await {
                shared.connection_closed();
            }
        });
    }
}

/// Reads the handshake of an incoming connection and hands it to its
/// torrent. Returns false if the connection was not admitted.
async fn accept_one(shared: &Arc<SessionShared>, mut conn: Connection) -> bool {
    use tokio::io::AsyncReadExt;
    let mut prefix = [0u8; 48];
    let read = tokio::time::timeout(
        shared.config.handshake_timeout,
        conn.reader.read_exact(&mut prefix),
    )
    .await;
    if !matches!(read, Ok(Ok(_))) {
        return false;
    }
    let Ok((reserved, info_hash)) = Handshake::decode_prefix(&prefix) else {
        return false;
    };
    let Some(t) = shared.torrents.read().get(&info_hash).cloned() else {
        return false;
    };
    start_connection(t, conn, Some(reserved), None).await
}

/// Handshake, registration and the connection loop for either direction.
async fn start_connection(
    t: Arc<TorrentShared>,
    mut conn: Connection,
    incoming: Option<Reserved>,
    rtt: Option<Duration>,
) -> bool {
    let addr = conn.remote;
    let ours = t.session.handshake_for(t.info_hash);
    let (reserved, peer_id) = match peer::handshake(
        &mut conn,
        &ours,
        incoming,
        t.session.config.handshake_timeout,
    )
    .await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(%addr, error = %e, "handshake failed");
            return false;
        }
    };
    let registered = t
        .state
        .lock()
        .register_peer(addr, peer_id, reserved, incoming.is_some(), rtt);
    match registered {
        Ok((key, notify)) => {
            tracing::debug!(%addr, ?peer_id, "peer connected");
            peer::run(t, key, conn, notify).await;
            true
        }
        Err(why) => {
            if why != Refused::Duplicate {
                tracing::debug!(%addr, ?why, "connection refused");
            }
            false
        }
    }
}

/// An outgoing connection attempt; the caller reserved the slots.
pub(crate) async fn connect_out(t: Arc<TorrentShared>, addr: SocketAddr) {
    let config = t.session.config.clone();
    let connect = t.session.transport.connect(config.bind_ip, addr);
    let started = tokio::time::Instant::now();
    let stream = tokio::time::timeout(config.connect_timeout, connect).await;
    let rtt = started.elapsed();
    let Ok(Ok(conn)) = stream else {
        t.session.connect_finished(false);
        t.state.lock().addrs.closed(addr, true);
        return;
    };
    t.session.connect_finished(true);
    // `peer::run` releases the slot itself when a registered connection ends.
    if !start_connection(t.clone(), conn, None, Some(rtt)).await {
        t.session.connection_closed();
        t.state.lock().addrs.closed(addr, true);
    }
}
