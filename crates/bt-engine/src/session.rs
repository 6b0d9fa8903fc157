//! The session: the peer listener, the torrents, and the limits they share
//! (connections, disk jobs).

use crate::config::SessionConfig;
use crate::error::EngineError;
use crate::peer::{self, mse};
use crate::stats::{SessionStats, TorrentStats};
use crate::torrent::{self, Progress, Refused, TorrentShared, TorrentState};
use crate::transport::{Acceptor, Connection, Tcp, Transport};
use bt_proto::magnet::Magnet;
use bt_proto::metainfo::Metainfo;
use bt_proto::mse::{CryptoMethod, CryptoMethods, EncryptionMode, HandshakeRandom};
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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// New addresses found by local service discovery.
    pub lsd_learned: AtomicU64,
    /// LSD datagrams and entries thrown away (malformed, over the rate).
    pub lsd_dropped: AtomicU64,
    /// New addresses found on the DHT.
    pub dht_learned: AtomicU64,
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

    /// Randomness for one MSE handshake, from the session's generator so
    /// that simulated runs replay.
    pub fn mse_random(&self) -> HandshakeRandom {
        mse::handshake_random(&mut *self.rng.lock())
    }

    /// The info-hash whose `HASH('req2', info-hash)` an MSE initiator sent.
    /// A linear scan: one SHA-1 of 24 bytes per torrent, small next to the
    /// Diffie-Hellman exponentiation every MSE handshake costs anyway.
    fn skey_for(&self, hash: &[u8; 20]) -> Option<[u8; 20]> {
        self.torrents
            .read()
            .keys()
            .find(|ih| bt_proto::mse::skey_hash(&ih.0) == *hash)
            .map(|ih| ih.0)
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

/// Web seeds used per torrent at most.
const MAX_WEB_SEEDS: usize = 4;

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
    /// Session-wide tasks that write state on the way out (the DHT's nodes).
    background: Mutex<Vec<JoinHandle<()>>>,
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
            lsd_learned: AtomicU64::new(0),
            lsd_dropped: AtomicU64::new(0),
            dht_learned: AtomicU64::new(0),
        });
        tokio::spawn(accept_loop(shared.clone(), listener));
        if shared.config.lsd {
            tokio::spawn(crate::local_discovery::run(shared.clone()));
        }
        let mut background = Vec::new();
        if let Some(dht) = shared.config.dht.clone() {
            background.push(tokio::spawn(crate::dht::run(shared.clone(), dht)));
        }
        Ok(Session {
            shared,
            listen_addr,
            tasks: Mutex::new(HashMap::new()),
            background: Mutex::new(background),
        })
    }

    #[cfg(test)]
    pub(crate) fn shared_for_tests(&self) -> &SessionShared {
        &self.shared
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
        let web_seeds = match &add.source {
            TorrentSource::Metainfo(m) => m.url_list.clone(),
            TorrentSource::Magnet(_) => Vec::new(),
        };
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
        if info_bytes.is_some() {
            // The info dictionary is known: a peer that connects while the
            // storage is being set up must not start a ut_metadata fetch,
            // whose result would set the storage up a second time (and
            // count pieces verified in between twice).
            state.metadata = None;
        }
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
        let mut tasks = vec![control, tracker];
        // Bounded: a torrent naming hundreds of web seeds gets a few.
        for (i, url) in web_seeds.into_iter().take(MAX_WEB_SEEDS).enumerate() {
            if url.starts_with("http://") || url.starts_with("https://") {
                tasks.push(tokio::spawn(crate::web_seed::run(t.clone(), url, i as u16)));
            }
        }
        self.tasks.lock().insert(info_hash, tasks);
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
        let mut tasks: Vec<JoinHandle<()>> =
            self.tasks.lock().drain().flat_map(|(_, v)| v).collect();
        tasks.extend(self.background.lock().drain(..));
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
        s.lsd_learned = self.shared.lsd_learned.load(Ordering::Relaxed);
        s.lsd_dropped = self.shared.lsd_dropped.load(Ordering::Relaxed);
        s.dht_learned = self.shared.dht_learned.load(Ordering::Relaxed);
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

/// Tells MSE from a plain handshake, reads the handshake's first 48 bytes
/// and hands the connection to its torrent. Returns false if the
/// connection was not admitted.
async fn accept_one(shared: &Arc<SessionShared>, conn: Connection) -> bool {
    use tokio::io::AsyncReadExt;
    let remote = conn.remote;
    let mode = shared.config.encryption;
    let random = shared.mse_random();
    let greet = async {
        let mut acc = mse::accept(conn, mode, random, |h| shared.skey_for(h)).await?;
        let mut prefix = [0u8; 48];
        acc.conn.reader.read_exact(&mut prefix).await?;
        Ok::<_, mse::MseFailure>((acc, prefix))
    };
    let (acc, prefix) = match tokio::time::timeout(shared.config.handshake_timeout, greet).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "incoming handshake failed");
            return false;
        }
        Err(_) => return false,
    };
    let Ok((reserved, info_hash)) = Handshake::decode_prefix(&prefix) else {
        return false;
    };
    if acc.skey.is_some_and(|k| k != info_hash.0) {
        // MSE was for one torrent, the handshake inside it for another.
        return false;
    }
    let Some(t) = shared.torrents.read().get(&info_hash).cloned() else {
        return false;
    };
    let link = Link {
        encrypt: acc.encrypt,
        method: acc.method,
    };
    start_connection(t, acc.conn, Some(reserved), link, None)
        .await
        .is_ok()
}

/// How a connection's bytes are protected after the MSE step.
pub(crate) struct Link {
    pub encrypt: mse::Encryptor,
    /// `None`: no MSE (plain BitTorrent).
    pub method: Option<CryptoMethod>,
}

impl Link {
    fn describe(&self) -> &'static str {
        match self.method {
            None => "plain",
            Some(CryptoMethod::Plaintext) => "mse-plaintext",
            Some(CryptoMethod::Rc4) => "mse-rc4",
        }
    }
}

/// Why a connection did not run.
enum StartError {
    /// The BitTorrent handshake failed; `closed` when the peer hung up.
    Handshake {
        closed: bool,
    },
    Refused,
}

/// Handshake, registration and the connection loop for either direction.
/// `ours_sent`: our handshake already went out (MSE initial payload).
async fn start_connection(
    t: Arc<TorrentShared>,
    mut conn: Connection,
    incoming: Option<Reserved>,
    mut link: Link,
    rtt: Option<Duration>,
) -> Result<(), StartError> {
    let addr = conn.remote;
    // An outgoing MSE handshake carried ours as its initial payload.
    let ours_sent = incoming.is_none() && link.method.is_some();
    let mut ours = t.session.handshake_for(t.info_hash).encode();
    if let Some(rc4) = link.encrypt.as_mut().filter(|_| !ours_sent) {
        // Only bytes that are sent may pass the keystream.
        rc4.apply(&mut ours);
    }
    let (reserved, peer_id) = match peer::handshake(
        &mut conn,
        (!ours_sent).then_some(&ours[..]),
        &t.info_hash,
        incoming,
        t.session.config.handshake_timeout,
    )
    .await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(%addr, error = %e, "handshake failed");
            let closed = matches!(&e, peer::PeerError::Io(io) if mse::is_closed(io));
            return Err(StartError::Handshake { closed });
        }
    };
    let registered = {
        let mut st = t.state.lock();
        let r = st.register_peer(addr, peer_id, reserved, incoming.is_some(), rtt);
        if let Ok((key, _)) = &r
            && let Some(p) = st.peers.get_mut(key)
        {
            p.encrypted = link.encrypt.is_some();
        }
        r
    };
    match registered {
        Ok((key, notify)) => {
            tracing::debug!(
                %addr,
                ?peer_id,
                incoming = incoming.is_some(),
                link = link.describe(),
                "peer connected"
            );
            peer::run(t, key, conn, link.encrypt, notify).await;
            Ok(())
        }
        Err(why) => {
            if why != Refused::Duplicate {
                tracing::debug!(%addr, ?why, "connection refused");
            }
            Err(StartError::Refused)
        }
    }
}

/// A web seed's in-process connection (`web_seed.rs`); it takes a
/// connection slot like any peer. Returns whether it ran.
pub(crate) async fn start_web_seed_connection(
    t: Arc<TorrentShared>,
    conn: Connection,
    link: Link,
) -> bool {
    if !t.session.try_reserve_connection() {
        return false;
    }
    match start_connection(t.clone(), conn, None, link, None).await {
        Ok(()) => true,
        Err(_) => {
            t.session.connection_closed();
            false
        }
    }
}

/// One way of opening an outgoing connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    Plain,
    Mse(CryptoMethods),
}

/// The attempts for one outgoing connection, in order. Each later attempt
/// is made only when the one before failed as `retry_after` allows.
fn attempts(mode: EncryptionMode) -> &'static [Attempt] {
    match mode {
        EncryptionMode::Disabled => &[Attempt::Plain],
        // Plain after a failed MSE attempt (a peer without MSE hangs up);
        // MSE once more when the plain one was refused too (a peer that
        // requires encryption and dropped our first key, see below).
        EncryptionMode::Prefer => &[
            Attempt::Mse(CryptoMethods::BOTH),
            Attempt::Plain,
            Attempt::Mse(CryptoMethods::BOTH),
        ],
        // libtorrent 2.0 as MSE receiver hangs up on 1 in 256 handshakes
        // (it hashes S without leading zero bytes); a new key avoids that.
        EncryptionMode::Require => &[Attempt::Mse(CryptoMethods::RC4); 2],
    }
}

/// Whether a failed attempt is worth following with the next one.
fn retry_after(failed: Attempt, closed: bool, mode: EncryptionMode) -> bool {
    match failed {
        // Anything short of MSE working falls back to plain in prefer mode.
        Attempt::Mse(_) if mode == EncryptionMode::Prefer => true,
        _ => closed,
    }
}

/// An outgoing connection attempt; the caller reserved the slots.
pub(crate) async fn connect_out(t: Arc<TorrentShared>, addr: SocketAddr) {
    let config = t.session.config.clone();
    let mut half_open = true;
    for &attempt in attempts(config.encryption) {
        let connect = t.session.transport.connect(config.bind_ip, addr);
        let started = tokio::time::Instant::now();
        let stream = tokio::time::timeout(config.connect_timeout, connect).await;
        let rtt = started.elapsed();
        let Ok(Ok(conn)) = stream else {
            break;
        };
        if std::mem::take(&mut half_open) {
            t.session.connect_finished(true);
        }
        let (conn, link) = match attempt {
            Attempt::Plain => (
                conn,
                Link {
                    encrypt: None,
                    method: None,
                },
            ),
            Attempt::Mse(provide) => {
                let ours = t.session.handshake_for(t.info_hash).encode();
                let random = t.session.mse_random();
                let mse = mse::initiate(conn, &t.info_hash, provide, &ours, random);
                match tokio::time::timeout(config.handshake_timeout, mse).await {
                    Ok(Ok((conn, encrypt, method))) => (
                        conn,
                        Link {
                            encrypt,
                            method: Some(method),
                        },
                    ),
                    Ok(Err(e)) => {
                        tracing::debug!(%addr, error = %e, "MSE handshake failed");
                        let closed = matches!(e, mse::MseFailure::Closed);
                        if retry_after(attempt, closed, config.encryption) {
                            continue;
                        }
                        break;
                    }
                    Err(_) => {
                        tracing::debug!(%addr, "MSE handshake timed out");
                        if retry_after(attempt, false, config.encryption) {
                            continue;
                        }
                        break;
                    }
                }
            }
        };
        match start_connection(t.clone(), conn, None, link, Some(rtt)).await {
            // `peer::run` released the connection slot when it ended.
            Ok(()) => return,
            Err(StartError::Refused) => break,
            Err(StartError::Handshake { closed }) => {
                if !retry_after(attempt, closed, config.encryption) {
                    break;
                }
            }
        }
    }
    if half_open {
        t.session.connect_finished(false);
    } else {
        t.session.connection_closed();
    }
    t.state.lock().addrs.closed(addr, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outgoing policy: which failure leads to which next attempt.
    #[test]
    fn outgoing_attempts_follow_the_mode() {
        use EncryptionMode::*;
        assert_eq!(attempts(Disabled), &[Attempt::Plain]);
        let prefer = attempts(Prefer);
        assert_eq!(prefer[0], Attempt::Mse(CryptoMethods::BOTH));
        // Any MSE failure falls back to plain in prefer mode ...
        assert!(retry_after(prefer[0], false, Prefer));
        assert_eq!(prefer[1], Attempt::Plain);
        // ... and a plain attempt the peer hung up on gets one more MSE try
        // (a peer requiring encryption that dropped our first key).
        assert!(retry_after(prefer[1], true, Prefer));
        assert!(!retry_after(prefer[1], false, Prefer));
        assert_eq!(prefer.len(), 3);
        // Require: RC4 only, and a second key only after a hang-up (the
        // 1-in-256 libtorrent case), not after a timeout or bad reply.
        let require = attempts(Require);
        assert_eq!(require, &[Attempt::Mse(CryptoMethods::RC4); 2]);
        assert!(retry_after(require[0], true, Require));
        assert!(!retry_after(require[0], false, Require));
    }
}
