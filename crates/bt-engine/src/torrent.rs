//! One torrent: its shared state, its control task, and piece verification.
//!
//! `TorrentState` sits behind one mutex per torrent. Connection tasks lock
//! it once per batch of messages; the control task locks it once per second
//! for rates, timeouts, interest, choking and new connections. Nothing holds
//! the lock across an await or a disk access: hashing, writing and reading
//! run on the blocking pool under the session's disk permits.

use crate::choker::{Candidate, Choker};
use crate::config::SessionConfig;
use crate::peer::{self, PeerEntry, PeerHave};
use crate::picker::{PeerKey, Picker};
use crate::rate::RateMeter;
use crate::session::SessionShared;
use crate::stats::{TorrentStats, TorrentStatus};
use bt_proto::metadata::MetadataAssembler;
use bt_proto::metainfo::Info;
use bt_proto::pex::PexFlags;
use bt_proto::{InfoHash, PeerId};
use parking_lot::Mutex;
use piece_store::{Journal, Layout, ResumeStore, Storage, StorageOptions};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Rechoke period (BEP 3 says 10 s).
const RECHOKE_EVERY: Duration = Duration::from_secs(10);
/// A peer that sent no block for this long while we wait on it is snubbed.
const SNUB_AFTER: Duration = Duration::from_secs(20);
/// A single request unanswered this long goes back to the picker.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const KEEPALIVE_EVERY: Duration = Duration::from_secs(60);
/// After this long, cancelled requests are assumed gone for good.
const UNANSWERED_CANCEL_TTL: Duration = Duration::from_secs(10);
/// IPs whose blocks failed this many hash checks are banned even when the
/// culprit could not be pinned down.
const MAX_HASH_FAILURES: u32 = 3;
/// Addresses remembered per torrent.
const MAX_KNOWN_ADDRS: usize = 2000;

pub(crate) struct TorrentShared {
    pub info_hash: InfoHash,
    pub session: Arc<SessionShared>,
    pub state: Mutex<TorrentState>,
    pub cancel: CancellationToken,
    /// Wakes the control task (metadata arrived, peer left, new addresses).
    pub wake: Notify,
}

/// Everything about one torrent that several tasks touch.
/// `left` announced while it is unknown (see [`TorrentState::left`]).
pub(crate) const UNKNOWN_LEFT: u64 = 16 * 1024;

pub(crate) struct TorrentState {
    pub info_hash: InfoHash,
    pub our_id: PeerId,
    pub config: Arc<SessionConfig>,
    pub listen_port: u16,
    pub name: String,
    pub download_dir: PathBuf,
    pub status: TorrentStatus,
    pub paused: bool,
    pub error: Option<String>,
    pub private: bool,
    pub trackers: Vec<Vec<String>>,
    pub meta: Option<Meta>,
    pub metadata: Option<MetadataFetch>,
    /// Verified info dictionary waiting for the control task to set up storage.
    pub metadata_ready: Option<Vec<u8>>,
    /// Ordered so that every pass over the peers is reproducible.
    pub peers: BTreeMap<PeerKey, PeerEntry>,
    next_key: PeerKey,
    pub addrs: AddrBook,
    pub banned: HashSet<IpAddr>,
    hash_failures: HashMap<IpAddr, u32>,
    /// Verified pieces in completion order; connections send HAVE for the
    /// entries past their cursor.
    pub completed_log: Vec<u32>,
    pub down: RateMeter,
    pub up: RateMeter,
    pub wasted: u64,
    pub failed_hashes: u32,
    /// New addresses learned through PEX.
    pub pex_learned: u64,
    /// PEX messages and entries thrown away: malformed, over the limits,
    /// too frequent, or for a private torrent.
    pub pex_dropped: u64,
    choker: Choker,
    last_rechoke: Instant,
    last_keepalive: Instant,
    pub rng: StdRng,
    pub scratch: Vec<bt_proto::wire::BlockRequest>,
    pub resume: Option<Arc<ResumeStore>>,
    pub progress: watch::Sender<Progress>,
    /// A completed-event announce is owed to the trackers.
    pub announce_completed: bool,
    /// Trackers last heard a `left` that is now wrong (storage became
    /// ready): announce again without waiting for the interval.
    pub announce_update: bool,
    pub dirty: bool,
    /// Some tracker answered at least once.
    pub tracker_ok: bool,
    pub last_tracker_error: Option<String>,
    pub streams: crate::stream::Streams,
}

/// Piece data and plan; exists once the metadata is known.
pub(crate) struct Meta {
    pub info: Arc<Info>,
    pub info_bytes: Arc<[u8]>,
    pub storage: Arc<Storage>,
    pub picker: Picker,
    /// Pieces being assembled, one piece-sized buffer each.
    pub buffers: HashMap<u32, Vec<u8>>,
    pub pool: Vec<Vec<u8>>,
    /// Who sent which block of a piece that failed its hash check, with the
    /// block's digest; compared against the good data once the piece passes.
    pub suspects: HashMap<u32, Vec<(IpAddr, u32, [u8; 20])>>,
    /// Which address each connection had, for blocks of pieces in flight.
    pub ip_of: HashMap<PeerKey, IpAddr>,
    pub journal: Option<Arc<Mutex<Journal>>>,
    pub verified_bytes: u64,
}

/// What waiters (the CLI, streams) watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub pieces: u32,
    pub total_pieces: u32,
    pub complete: bool,
    pub error: Option<String>,
    pub has_metadata: bool,
}

pub(crate) struct MetadataFetch {
    assembler: Option<MetadataAssembler>,
    pub requested: HashMap<u32, Instant>,
}

impl MetadataFetch {
    pub fn next_request(&mut self, now: Instant) -> Option<u32> {
        let asm = self.assembler.as_ref()?;
        let piece = asm.missing().find(|p| {
            self.requested
                .get(p)
                .is_none_or(|at| now.duration_since(*at) > Duration::from_secs(10))
        })?;
        self.requested.insert(piece, now);
        Some(piece)
    }
}

#[derive(Debug)]
pub(crate) struct AddrEntry {
    pub connected: bool,
    pub fails: u32,
    pub retry_at: Instant,
    /// The address turned out to be ourselves.
    pub is_self: bool,
}

#[derive(Debug, Default)]
pub(crate) struct AddrBook {
    pub entries: BTreeMap<SocketAddr, AddrEntry>,
}

impl AddrBook {
    pub fn add(&mut self, addr: SocketAddr) -> bool {
        if self.entries.len() >= MAX_KNOWN_ADDRS || addr.port() == 0 {
            return false;
        }
        let mut added = false;
        self.entries.entry(addr).or_insert_with(|| {
            added = true;
            AddrEntry {
                connected: false,
                fails: 0,
                retry_at: Instant::now(),
                is_self: false,
            }
        });
        added
    }

    fn next(&mut self, now: Instant, banned: &HashSet<IpAddr>) -> Option<SocketAddr> {
        let addr = self
            .entries
            .iter()
            .filter(|(a, e)| {
                !e.connected && !e.is_self && e.retry_at <= now && !banned.contains(&a.ip())
            })
            .min_by_key(|(_, e)| e.fails)
            .map(|(a, _)| *a)?;
        self.entries.get_mut(&addr).expect("just found").connected = true;
        Some(addr)
    }

    pub fn closed(&mut self, addr: SocketAddr, failed: bool) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.connected = false;
            if failed {
                e.fails += 1;
            }
            // Back off: 5 s, 10 s, 20 s ... capped at 10 minutes.
            let secs = 5u64 << e.fails.min(7);
            e.retry_at = Instant::now() + Duration::from_secs(secs.min(600));
        }
    }
}

/// Why an incoming or outgoing connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    OurOwn,
    Duplicate,
    Banned,
    Full,
    Paused,
}

impl TorrentState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        info_hash: InfoHash,
        our_id: PeerId,
        config: Arc<SessionConfig>,
        listen_port: u16,
        name: String,
        download_dir: PathBuf,
        trackers: Vec<Vec<String>>,
        resume: Option<Arc<ResumeStore>>,
        paused: bool,
        seed: u64,
    ) -> Self {
        let slots = config.upload_slots;
        TorrentState {
            info_hash,
            our_id,
            config,
            listen_port,
            name,
            download_dir,
            status: TorrentStatus::FetchingMetadata,
            paused,
            error: None,
            private: false,
            trackers,
            meta: None,
            metadata: Some(MetadataFetch {
                assembler: None,
                requested: HashMap::new(),
            }),
            metadata_ready: None,
            peers: BTreeMap::new(),
            next_key: 0,
            addrs: AddrBook::default(),
            banned: HashSet::new(),
            hash_failures: HashMap::new(),
            completed_log: Vec::new(),
            down: RateMeter::default(),
            up: RateMeter::default(),
            wasted: 0,
            failed_hashes: 0,
            pex_learned: 0,
            pex_dropped: 0,
            choker: Choker::new(slots),
            last_rechoke: Instant::now(),
            last_keepalive: Instant::now(),
            rng: StdRng::seed_from_u64(seed),
            scratch: Vec::new(),
            resume,
            progress: watch::Sender::new(Progress::default()),
            announce_completed: false,
            announce_update: false,
            dirty: false,
            tracker_ok: false,
            last_tracker_error: None,
            streams: crate::stream::Streams::default(),
        }
    }

    pub fn storage(&self) -> Option<Arc<Storage>> {
        self.meta.as_ref().map(|m| m.storage.clone())
    }

    pub fn is_complete(&self) -> bool {
        self.meta.as_ref().is_some_and(|m| m.picker.is_complete())
    }

    /// Bytes still to download, for tracker announces. Before storage is
    /// ready (metadata still coming, files being checked) we do not know;
    /// a small non-zero amount, as libtorrent sends, keeps trackers from
    /// counting us as a seed (some then return no seeds to us).
    pub fn left(&self) -> u64 {
        match &self.meta {
            Some(m) => m.info.total_length() - m.verified_bytes,
            None => UNKNOWN_LEFT,
        }
    }

    pub fn register_peer(
        &mut self,
        addr: SocketAddr,
        peer_id: PeerId,
        reserved: bt_proto::wire::Reserved,
        incoming: bool,
        rtt: Option<Duration>,
    ) -> Result<(PeerKey, Arc<Notify>), Refused> {
        use bt_proto::wire::Reserved;
        if peer_id == self.our_id {
            if let Some(e) = self.addrs.entries.get_mut(&addr) {
                e.is_self = true;
            }
            return Err(Refused::OurOwn);
        }
        if self.paused {
            return Err(Refused::Paused);
        }
        if self.banned.contains(&addr.ip()) {
            return Err(Refused::Banned);
        }
        if self.peers.values().any(|p| p.peer_id == peer_id) {
            return Err(Refused::Duplicate);
        }
        if self.peers.len() >= self.config.max_peers_per_torrent {
            return Err(Refused::Full);
        }
        let key = self.next_key;
        self.next_key += 1;
        let now = Instant::now();
        let notify = Arc::new(Notify::new());
        let local = self.config.unchoke_local_peers && is_local(addr.ip());
        let have = match &self.meta {
            Some(m) => PeerHave::Bits(bt_proto::Bitfield::new(m.picker.num_pieces())),
            None => PeerHave::Pending {
                bitfield: None,
                have_all: false,
                haves: Vec::new(),
            },
        };
        self.peers.insert(
            key,
            PeerEntry {
                addr,
                peer_id,
                incoming,
                local,
                fast: reserved.has(Reserved::FAST),
                encrypted: false,
                extensions: reserved.has(Reserved::EXTENSION_PROTOCOL),
                ext: None,
                reqq: None,
                have,
                am_choking: true,
                am_interested: false,
                peer_choking: true,
                peer_interested: false,
                allowed_fast: Vec::new(),
                down: RateMeter::default(),
                up: RateMeter::default(),
                outstanding: Default::default(),
                queue_depth: 16,
                slow_start: true,
                unanswered_cancels: 0,
                cancels_sent_at: now,
                rtt,
                prev_second: 0,
                snubbed: false,
                connected_at: now,
                last_block_at: now,
                last_received: now,
                haves_sent: 0,
                metadata_requests: Vec::new(),
                pex: Default::default(),
                outbox: Default::default(),
                notify: notify.clone(),
            },
        );
        if incoming {
            // Outgoing connections were marked connected when picked.
            if let Some(e) = self.addrs.entries.get_mut(&addr) {
                e.connected = true;
            }
        }
        // Say we are interested right away rather than after the peer's
        // bitfield: most peers we reach are seeds, and a rate-limited peer
        // may unchoke only on its next tick. Corrected when the bitfield
        // shows nothing we want.
        if self.meta.as_ref().is_some_and(|m| !m.picker.is_complete()) && !self.paused {
            let peer = self.peers.get_mut(&key).expect("just inserted");
            peer.am_interested = true;
            peer.outbox.interest_changed = true;
        }
        Ok((key, notify))
    }

    pub fn peer_disconnected(&mut self, key: PeerKey, reason: &str) {
        self.drop_outstanding(key, false);
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        if let Some(meta) = &mut self.meta {
            Self::forget_have(&mut meta.picker, &peer.have);
        }
        if let Some(f) = &mut self.metadata {
            for (p, _) in &peer.metadata_requests {
                f.requested.remove(p);
            }
        }
        let useless = peer.down.total() == 0 && peer.up.total() == 0;
        self.addrs
            .closed(peer.addr, useless && reason != "torrent stopped");
    }

    pub fn unchoke_if_slot_free(&mut self, key: PeerKey) {
        let unchoked_remote = self
            .peers
            .values()
            .filter(|p| !p.am_choking && !p.local)
            .count();
        let free = self.choker.has_free_slot(unchoked_remote);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.am_choking && (peer.local || free) && !self.paused {
            peer.am_choking = false;
            peer.outbox.choke_changed = true;
        }
    }

    pub fn metadata_size_hint(&mut self, size: u32) {
        let Some(fetch) = &mut self.metadata else {
            return;
        };
        if fetch.assembler.is_none() {
            match MetadataAssembler::new(self.info_hash, size) {
                Ok(a) => fetch.assembler = Some(a),
                Err(e) => tracing::debug!(error = %e, "peer announced unusable metadata size"),
            }
        }
        // Peers waiting for metadata can start asking.
        for p in self.peers.values() {
            p.wake();
        }
    }

    pub fn metadata_piece(&mut self, piece: u32, data: &[u8]) {
        let Some(fetch) = &mut self.metadata else {
            return;
        };
        let Some(asm) = &mut fetch.assembler else {
            return;
        };
        if let Err(e) = asm.add(piece, data) {
            tracing::debug!(error = %e, piece, "bad metadata piece");
            fetch.requested.remove(&piece);
            return;
        }
        if asm.is_complete() {
            let asm = fetch.assembler.take().expect("checked");
            fetch.requested.clear();
            match asm.finish() {
                Ok(bytes) => self.metadata_ready = Some(bytes),
                Err(e) => {
                    tracing::warn!(error = %e, "metadata failed its hash check; fetching again")
                }
            }
        }
    }

    /// Installs the plan once storage is ready (metadata known, resume data
    /// loaded or files checked).
    fn install_meta(&mut self, meta: Meta) {
        if self.meta.is_some() {
            // Replacing live storage would lose pieces in flight.
            tracing::warn!(torrent = %self.info_hash, "metadata arrived twice; keeping the first");
            return;
        }
        let n = meta.picker.num_pieces();
        tracing::info!(
            torrent = %self.info_hash,
            have = meta.picker.have().count_ones(),
            pieces = n,
            "storage ready: {} of {n} pieces already verified",
            meta.picker.have().count_ones()
        );
        self.private = meta.info.private;
        self.name = meta.info.name_lossy();
        self.metadata = None;
        self.meta = Some(meta);
        self.announce_update = true;
        // Convert what peers told us before we knew the piece count.
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let peer = self.peers.get_mut(&key).expect("key from map");
            let meta = self.meta.as_mut().expect("just set");
            let pending =
                std::mem::replace(&mut peer.have, PeerHave::Bits(bt_proto::Bitfield::new(n)));
            if let PeerHave::Pending {
                bitfield,
                have_all,
                haves,
            } = pending
            {
                if have_all {
                    peer.have = PeerHave::All;
                    meta.picker.peer_seed();
                } else {
                    let mut bits = match bitfield.map(|b| bt_proto::Bitfield::from_bytes(&b, n)) {
                        Some(Ok(b)) => b,
                        Some(Err(_)) => {
                            peer.outbox.disconnect =
                                Some("bitfield does not match the piece count");
                            peer.wake();
                            continue;
                        }
                        None => bt_proto::Bitfield::new(n),
                    };
                    for h in haves {
                        bits.set(h);
                    }
                    if bits.all() {
                        peer.have = PeerHave::All;
                        meta.picker.peer_seed();
                    } else {
                        meta.picker.peer_bitfield(&bits);
                        peer.have = PeerHave::Bits(bits);
                    }
                }
            }
            peer.outbox.send_bitfield = true;
            peer.haves_sent = self.completed_log.len();
            self.update_interest(key);
            if let Some(p) = self.peers.get(&key) {
                p.wake();
            }
        }
        self.refresh_status();
        self.publish_progress();
    }

    pub(crate) fn refresh_status(&mut self) {
        self.status = if self.error.is_some() {
            TorrentStatus::Error
        } else if self.paused {
            TorrentStatus::Paused
        } else if self.meta.is_none() {
            TorrentStatus::FetchingMetadata
        } else if self.is_complete() {
            TorrentStatus::Seeding
        } else {
            TorrentStatus::Downloading
        };
    }

    pub fn publish_progress(&self) {
        let p = match &self.meta {
            Some(m) => Progress {
                pieces: m.picker.have().count_ones(),
                total_pieces: m.picker.num_pieces(),
                complete: m.picker.is_complete(),
                error: self.error.clone(),
                has_metadata: true,
            },
            None => Progress {
                error: self.error.clone(),
                ..Progress::default()
            },
        };
        self.progress.send_if_modified(|old| {
            if *old != p {
                *old = p;
                true
            } else {
                false
            }
        });
    }

    fn fail(&mut self, message: String) {
        tracing::error!(torrent = %self.info_hash, %message, "torrent stopped on error");
        self.error = Some(message);
        for p in self.peers.values_mut() {
            p.outbox.disconnect = Some("torrent error");
            p.wake();
        }
        self.refresh_status();
        self.publish_progress();
    }

    fn ban(&mut self, ip: IpAddr, why: &str) {
        if self.banned.insert(ip) {
            tracing::warn!(%ip, why, "banning peer");
        }
        for p in self.peers.values_mut().filter(|p| p.addr.ip() == ip) {
            p.outbox.disconnect = Some("banned: sent data that failed the hash check");
            p.wake();
        }
    }

    /// The hash check and write of a complete piece finished.
    fn piece_checked(&mut self, piece: u32, outcome: CheckOutcome) {
        let Some(meta) = &mut self.meta else {
            return;
        };
        match outcome.result {
            Checked::Good { block_hashes } => {
                let from = meta.picker.piece_checked(piece, true);
                meta.pool.push(outcome.buf);
                meta.verified_bytes += u64::from(meta.picker.piece_size(piece));
                let suspects = meta.suspects.remove(&piece);
                tracing::debug!(piece, "piece verified");
                self.completed_log.push(piece);
                self.dirty = true;

                if let (Some(suspects), Some(good)) = (suspects, block_hashes) {
                    let liars: HashSet<IpAddr> = suspects
                        .into_iter()
                        .filter(|(_, block, digest)| good.get(*block as usize) != Some(digest))
                        .map(|(ip, _, _)| ip)
                        .collect();
                    for ip in liars {
                        self.ban(ip, "its blocks differ from the verified piece");
                    }
                }
                drop(from);
                for p in self.peers.values() {
                    p.wake();
                }
                if self.is_complete() {
                    tracing::info!(torrent = %self.info_hash, "download complete");
                    self.announce_completed = true;
                    self.refresh_status();
                }
                self.publish_progress();
            }
            Checked::Mismatch { block_hashes } => {
                self.failed_hashes += 1;
                let from = meta.picker.piece_checked(piece, false);
                meta.pool.push(outcome.buf);
                self.wasted += u64::from(meta.picker.piece_size(piece));
                let ips: Vec<Option<IpAddr>> =
                    from.iter().map(|k| meta.ip_of.get(k).copied()).collect();
                let distinct: HashSet<IpAddr> = ips.iter().flatten().copied().collect();
                tracing::warn!(
                    piece,
                    senders = distinct.len(),
                    "piece failed its hash check"
                );
                let entry = meta.suspects.entry(piece).or_default();
                for (block, ip) in ips.iter().enumerate() {
                    if let Some(ip) = ip {
                        entry.push((*ip, block as u32, block_hashes[block]));
                    }
                }
                if distinct.len() == 1 {
                    let ip = *distinct.iter().next().expect("one");
                    self.ban(ip, "sent every block of a piece that failed its hash check");
                } else {
                    for ip in distinct {
                        let n = self.hash_failures.entry(ip).or_default();
                        *n += 1;
                        if *n >= MAX_HASH_FAILURES {
                            self.ban(
                                ip,
                                "took part in too many pieces that failed their hash check",
                            );
                        }
                    }
                }
            }
            Checked::StoreFailed(e) => {
                meta.picker.piece_checked(piece, false);
                meta.pool.push(outcome.buf);
                self.fail(e.to_string());
            }
        }
        if let Some(meta) = &mut self.meta {
            // Forget addresses of connections that no longer matter.
            if meta.ip_of.len() > 4096 {
                let live: HashSet<PeerKey> = self.peers.keys().copied().collect();
                meta.ip_of.retain(|k, _| live.contains(k));
            }
        }
    }

    /// Once-per-second housekeeping.
    fn tick(&mut self, now: Instant) {
        self.down.tick();
        self.up.tick();
        let queue_time = self.config.request_queue_time.as_secs_f64();
        let cap = self.config.max_requests_per_peer;
        let keepalive = now.duration_since(self.last_keepalive) >= KEEPALIVE_EVERY;
        if keepalive {
            self.last_keepalive = now;
        }
        let seeding = self.is_complete();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in &keys {
            let key = *key;
            let peer = self.peers.get_mut(&key).expect("key from map");
            peer.down.tick();
            peer.up.tick();
            let max = peer::handle::max_depth(cap, peer.reqq);
            if peer.slow_start {
                let last = peer.down.last_second();
                if last > 0 && last * 10 < peer.prev_second * 11 {
                    peer.slow_start = false;
                }
                peer.prev_second = last;
            }
            if !peer.slow_start {
                peer.queue_depth = peer::handle::depth_for_rate(peer.down.rate(), queue_time, max);
            }
            if now.duration_since(peer.last_received) > self.config.peer_timeout {
                peer.outbox.disconnect = Some("peer sent nothing for too long");
                peer.wake();
                continue;
            }
            if seeding && peer.is_seed() {
                peer.outbox.disconnect = Some("both sides are seeds");
                peer.wake();
                continue;
            }
            if keepalive {
                peer.outbox.keepalive = true;
            }
            if peer.unanswered_cancels > 0
                && now.duration_since(peer.cancels_sent_at) > UNANSWERED_CANCEL_TTL
            {
                // Many peers never answer a CANCEL; stop counting on it.
                peer.unanswered_cancels = 0;
            }
            let waiting = !peer.outstanding.is_empty();
            if waiting && !peer.snubbed && now.duration_since(peer.last_block_at) > SNUB_AFTER {
                peer.snubbed = true;
                let dropped: Vec<_> = peer.outstanding.iter().map(|(r, _)| *r).collect();
                peer.outbox.cancels.extend(dropped);
                self.drop_outstanding(key, false);
            } else if let Some((_, at)) = peer.outstanding.front()
                && now.duration_since(*at) > REQUEST_TIMEOUT
            {
                let stale: Vec<_> = peer
                    .outstanding
                    .iter()
                    .filter(|(_, at)| now.duration_since(*at) > REQUEST_TIMEOUT)
                    .map(|(r, _)| *r)
                    .collect();
                peer.outstanding
                    .retain(|(_, at)| now.duration_since(*at) <= REQUEST_TIMEOUT);
                if let Some(meta) = &mut self.meta {
                    for r in &stale {
                        meta.picker.request_dropped(key, r.index, r.begin, r.length);
                    }
                }
                let peer = self.peers.get_mut(&key).expect("key from map");
                peer.outbox.cancels.extend(stale);
            }
            self.update_interest(key);
        }
        if self.streams.active() {
            self.update_deadlines();
        }
        if now.duration_since(self.last_rechoke) >= RECHOKE_EVERY {
            self.last_rechoke = now;
            self.rechoke();
        }
        self.queue_pex(now);
        for p in self.peers.values() {
            p.wake();
        }
    }

    /// Gives every peer that is due its next `ut_pex` message.
    fn queue_pex(&mut self, now: Instant) {
        // Before the metadata we cannot know whether the torrent is private.
        if self.private || self.meta.is_none() {
            return;
        }
        let due = |p: &PeerEntry| {
            p.ext.as_ref().is_some_and(|e| e.ut_pex.is_some())
                && p.pex.next_send.is_some_and(|t| t <= now)
                && p.outbox.pex.is_none()
        };
        if !self.peers.values().any(due) {
            return;
        }
        let current: BTreeMap<SocketAddr, PexFlags> = self
            .peers
            .values()
            .filter_map(|p| {
                let addr = p.connectable_addr()?;
                let mut flags = PexFlags::default();
                if p.is_seed() {
                    flags = flags | PexFlags::SEED;
                }
                if !p.incoming {
                    flags = flags | PexFlags::REACHABLE;
                }
                if p.ext.as_ref().is_some_and(|e| e.prefers_encryption) {
                    flags = flags | PexFlags::ENCRYPTION;
                }
                Some((addr, flags))
            })
            .collect();
        for p in self.peers.values_mut() {
            if !due(p) {
                continue;
            }
            p.pex.next_send = Some(now + crate::peer_exchange::SEND_EVERY);
            let except = p.connectable_addr();
            if let Some(msg) = crate::peer_exchange::next_message(&mut p.pex.told, &current, except)
            {
                p.outbox.pex = Some(msg.encode());
            }
        }
    }

    fn rechoke(&mut self) {
        let seeding = self.is_complete();
        let now = Instant::now();
        let candidates: Vec<Candidate> = self
            .peers
            .iter()
            .map(|(k, p)| Candidate {
                key: *k,
                interested: p.peer_interested,
                local: p.local,
                down_rate: p.down.rate(),
                up_rate: p.up.rate(),
                unchoked: !p.am_choking,
                new: now.duration_since(p.connected_at) < Duration::from_secs(30),
            })
            .collect();
        let unchoke: HashSet<PeerKey> = self
            .choker
            .rechoke(&candidates, seeding, &mut self.rng)
            .into_iter()
            .collect();
        for (k, p) in self.peers.iter_mut() {
            let choke = !unchoke.contains(k) || self.paused;
            if choke != p.am_choking {
                p.am_choking = choke;
                p.outbox.choke_changed = true;
            }
        }
    }

    fn next_connect(&mut self, now: Instant) -> Option<SocketAddr> {
        if self.paused
            || self.error.is_some()
            || self.peers.len() >= self.config.max_peers_per_torrent
        {
            return None;
        }
        // A seed connects out too: trackers hand seeds a list of leechers,
        // and some leechers (Transmission on loopback) never connect in.
        self.addrs.next(now, &self.banned)
    }

    pub fn stats(&self) -> TorrentStats {
        let (total, verified, pieces, have, piece_length) = match &self.meta {
            Some(m) => (
                m.info.total_length(),
                m.verified_bytes,
                m.picker.num_pieces(),
                m.picker.have().count_ones(),
                m.info.piece_length,
            ),
            None => (0, 0, 0, 0, 0),
        };
        let rate = self.down.rate();
        let left = total - verified;
        let eta = if left == 0 || self.meta.is_none() {
            None
        } else {
            left.checked_div(rate).map(Duration::from_secs)
        };
        TorrentStats {
            info_hash: self.info_hash,
            name: self.name.clone(),
            status: self.status,
            error: self.error.clone(),
            total_bytes: total,
            verified_bytes: verified,
            num_pieces: pieces,
            pieces_have: have,
            piece_length,
            download_rate: rate,
            upload_rate: self.up.rate(),
            downloaded: self.down.total(),
            uploaded: self.up.total(),
            wasted: self.wasted,
            failed_hashes: self.failed_hashes,
            pex_learned: self.pex_learned,
            pex_dropped: self.pex_dropped,
            peers: self.peers.len(),
            seeds: self.peers.values().filter(|p| p.is_seed()).count(),
            known_peers: self.addrs.entries.len(),
            banned_peers: self.banned.len(),
            eta,
            download_dir: self.download_dir.clone(),
            has_trackers: !self.trackers.is_empty(),
            tracker_ok: self.tracker_ok,
            tracker_error: self.last_tracker_error.clone(),
        }
    }

    pub fn peer_list(&self) -> Vec<crate::stats::PeerInfo> {
        self.peers
            .values()
            .map(|p| crate::stats::PeerInfo {
                addr: p.addr,
                client: p.ext.as_ref().and_then(|e| e.client.clone()),
                incoming: p.incoming,
                encrypted: p.encrypted,
                seed: p.is_seed(),
                am_choking: p.am_choking,
                am_interested: p.am_interested,
                peer_choking: p.peer_choking,
                peer_interested: p.peer_interested,
                download_rate: p.down.rate(),
                upload_rate: p.up.rate(),
                downloaded: p.down.total(),
                uploaded: p.up.total(),
                outstanding_requests: p.outstanding.len(),
            })
            .collect()
    }
}

/// Loopback, private (RFC 1918), link-local and unique-local addresses.
pub(crate) fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

struct CheckOutcome {
    buf: Vec<u8>,
    result: Checked,
}

enum Checked {
    /// Block digests are computed only when the piece had failed before.
    Good {
        block_hashes: Option<Vec<[u8; 20]>>,
    },
    Mismatch {
        block_hashes: Vec<[u8; 20]>,
    },
    StoreFailed(piece_store::StoreError),
}

fn block_digests(data: &[u8]) -> Vec<[u8; 20]> {
    data.chunks(bt_proto::wire::BLOCK_SIZE as usize)
        .map(|b| Sha1::digest(b).into())
        .collect()
}

/// Hashing and writing go chunk by chunk so each chunk is copied into the
/// page cache while it is still in the CPU cache from hashing: one 1 MiB
/// `pwrite` of a cold buffer cost 4-7x the kernel CPU of 128 KiB ones here
/// (BENCHMARKS.md, "where the time goes").
const WRITE_CHUNK: usize = 128 * 1024;

/// SHA-1 of `data`, written to the piece as it is hashed. The write result
/// matters only if the digest matches; the first error stops writing.
fn hash_and_write(
    storage: &piece_store::Storage,
    piece: u32,
    data: &[u8],
) -> ([u8; 20], Result<(), piece_store::StoreError>) {
    let mut hasher = Sha1::new();
    let mut written = Ok(());
    for (i, chunk) in data.chunks(WRITE_CHUNK).enumerate() {
        hasher.update(chunk);
        if written.is_ok() {
            written = storage.write(piece, (i * WRITE_CHUNK) as u32, chunk);
        }
    }
    (hasher.finalize().into(), written)
}

/// Hashes a completed piece and, if it is good, writes it and records it in
/// the resume journal — all on the blocking pool.
pub(crate) fn spawn_piece_check(t: Arc<TorrentShared>, piece: u32, buf: Vec<u8>) {
    let job = {
        let st = t.state.lock();
        let Some(meta) = &st.meta else {
            return;
        };
        (
            meta.storage.clone(),
            meta.info.pieces[piece as usize],
            meta.picker.piece_size(piece) as usize,
            meta.journal.clone(),
            meta.suspects.contains_key(&piece),
        )
    };
    let (storage, expected, size, journal, had_failed) = job;
    tokio::spawn(async move {
        let _permit = t.session.disk_permit().await;
        let session = t.session.clone();
        let joined = session
            .blocking(move || {
                let data = &buf[..size];
                let (digest, written) = hash_and_write(&storage, piece, data);
                let result = if digest != expected {
                    // What was written is unverified data over unverified
                    // data: the piece was never recorded, so nothing is lost.
                    Checked::Mismatch {
                        block_hashes: block_digests(data),
                    }
                } else {
                    let stored = written.and_then(|()| match &journal {
                        Some(j) => j.lock().record(piece),
                        None => Ok(()),
                    });
                    match stored {
                        Ok(()) => Checked::Good {
                            block_hashes: had_failed.then(|| block_digests(data)),
                        },
                        Err(e) => Checked::StoreFailed(e),
                    }
                };
                CheckOutcome { buf, result }
            })
            .await;
        match joined {
            Ok(outcome) => t.state.lock().piece_checked(piece, outcome),
            Err(e) => tracing::error!(error = %e, "piece check task failed"),
        }
    });
}

/// Sets up storage for known metadata: layout, resume data or a check of
/// files already on disk. Runs on the blocking pool.
fn prepare_meta(
    info_hash: InfoHash,
    info_bytes: Vec<u8>,
    download_dir: PathBuf,
    resume: Option<Arc<ResumeStore>>,
    budget: usize,
    seed: u64,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<Meta, String> {
    let info =
        Info::from_bytes(&info_bytes).map_err(|e| format!("invalid torrent metadata: {e}"))?;
    let layout = Arc::new(Layout::from_info(&info).map_err(|e| e.to_string())?);
    let storage = Arc::new(
        Storage::open(&download_dir, layout.clone(), StorageOptions::default())
            .map_err(|e| e.to_string())?,
    );
    let mut picker = Picker::new(
        layout.num_pieces(),
        layout.piece_length(),
        layout.total_length(),
        seed,
    );
    let partials = (budget / layout.piece_length().max(1) as usize).max(4);
    picker.set_max_partials(partials);
    for (i, f) in layout.files().iter().enumerate() {
        if f.padding {
            // Padding is zeros by definition; it never needs downloading on
            // its own, but pieces spanning it still do.
            let _ = i;
        }
    }

    let mut journal = None;
    if let Some(store) = &resume {
        store
            .save_metainfo(&info_hash, &info_bytes)
            .map_err(|e| e.to_string())?;
        match store.load_for(&info_hash, &storage) {
            Ok(Some(r)) => {
                if !r.changed_files.is_empty() || !r.missing_files.is_empty() {
                    tracing::info!(
                        changed = r.changed_files.len(),
                        missing = r.missing_files.len(),
                        "files changed since the last checkpoint; re-checking their pieces"
                    );
                }
                for p in r.checkpointed.iter_ones() {
                    picker.set_have(p);
                }
                for p in r.unconfirmed {
                    if p < layout.num_pieces()
                        && storage.hash_piece(p).ok() == Some(info.pieces[p as usize])
                    {
                        picker.set_have(p);
                    }
                }
            }
            Ok(None) => recheck_existing(&storage, &info, &mut picker, cancel)?,
            Err(e) => {
                tracing::warn!(error = %e, "resume data unusable; checking the files instead");
                recheck_existing(&storage, &info, &mut picker, cancel)?;
            }
        }
        journal = Some(Arc::new(Mutex::new(
            store
                .journal(&info_hash, layout.num_pieces())
                .map_err(|e| e.to_string())?,
        )));
    } else {
        recheck_existing(&storage, &info, &mut picker, cancel)?;
    }
    let verified_bytes = picker
        .have()
        .iter_ones()
        .map(|p| u64::from(layout.piece_size(p)))
        .sum();
    Ok(Meta {
        info: Arc::new(info),
        info_bytes: info_bytes.into(),
        storage,
        picker,
        buffers: HashMap::new(),
        pool: Vec::new(),
        suspects: HashMap::new(),
        ip_of: HashMap::new(),
        journal,
        verified_bytes,
    })
}

/// Without resume data, files that already exist are checked so that a
/// finished download can be seeded and a partial one continued.
fn recheck_existing(
    storage: &Storage,
    info: &Info,
    picker: &mut Picker,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<(), String> {
    let any = (0..storage.layout().files().len()).any(|i| {
        std::fs::metadata(storage.file_path(i))
            .map(|m| m.len() > 0)
            .unwrap_or(false)
    });
    if !any {
        return Ok(());
    }
    let have =
        piece_store::recheck(storage, &info.pieces, cancel, |_| {}).map_err(|e| e.to_string())?;
    for p in have.iter_ones() {
        picker.set_have(p);
    }
    Ok(())
}

impl TorrentShared {
    /// Sets up storage for `info_bytes` and starts downloading.
    async fn start_with_metadata(self: &Arc<Self>, info_bytes: Vec<u8>) {
        let (dir, resume) = {
            let mut st = self.state.lock();
            st.status = TorrentStatus::Checking;
            (st.download_dir.clone(), st.resume.clone())
        };
        let ih = self.info_hash;
        let budget = self.session.config.piece_buffer_budget;
        let cancel_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = cancel_flag.clone();
        let seed = self.session.random_u64();
        let prepared = self
            .session
            .blocking(move || prepare_meta(ih, info_bytes, dir, resume, budget, seed, &flag));
        let result = tokio::select! {
            biased;
            r = prepared => r,
            _ = self.cancel.cancelled() => {
                cancel_flag.store(true, std::sync::atomic::Ordering::Relaxed);
                return;
            }
        };
        let mut st = self.state.lock();
        match result {
            Ok(Ok(meta)) => st.install_meta(meta),
            Ok(Err(message)) => st.fail(message),
            Err(e) => st.fail(format!("setting up storage failed: {e}")),
        }
    }

    /// Writes resume data: syncs the files, then snapshots the bitfield.
    pub(crate) async fn checkpoint(self: &Arc<Self>) {
        let job = {
            let mut st = self.state.lock();
            let Some(meta) = &st.meta else {
                return;
            };
            let Some(journal) = meta.journal.clone() else {
                return;
            };
            let job = (
                journal,
                meta.storage.clone(),
                meta.picker.have().clone(),
                meta.picker.is_complete(),
            );
            st.dirty = false;
            job
        };
        let (journal, storage, have, complete) = job;
        let _permit = self.session.disk_permit().await;
        let r = self
            .session
            .blocking(move || {
                if complete {
                    // Empty files are never written by pieces; make them exist.
                    storage.create_empty_files()?;
                }
                journal.lock().checkpoint(&storage, &have)
            })
            .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "writing resume data failed"),
            Err(e) => tracing::warn!(error = %e, "resume checkpoint task failed"),
        }
    }
}

/// The torrent's control task: metadata set-up, then once-a-second
/// housekeeping and new outgoing connections, until cancelled.
pub(crate) async fn run(t: Arc<TorrentShared>, info_bytes: Option<Vec<u8>>) {
    if let Some(bytes) = info_bytes {
        t.start_with_metadata(bytes).await;
    }
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut was_complete = t.state.lock().is_complete();
    loop {
        tokio::select! {
            biased;
            _ = t.cancel.cancelled() => break,
            _ = t.wake.notified() => {}
            _ = interval.tick() => {}
        }
        let ready = t.state.lock().metadata_ready.take();
        if let Some(bytes) = ready {
            t.start_with_metadata(bytes).await;
        }
        let now = Instant::now();
        let (complete, dirty) = {
            let mut st = t.state.lock();
            if now.duration_since(last_tick) >= Duration::from_secs(1) {
                last_tick = now;
                st.tick(now);
            }
            (st.is_complete(), st.dirty)
        };
        connect_more(&t, now);
        let checkpoint_due =
            now.duration_since(last_checkpoint) >= t.session.config.checkpoint_interval;
        if dirty && (checkpoint_due || (complete && !was_complete)) {
            last_checkpoint = now;
            t.checkpoint().await;
        }
        was_complete = complete;
    }
    // Final resume data so that a restart does not re-check.
    if t.state.lock().dirty {
        t.checkpoint().await;
    }
}

fn connect_more(t: &Arc<TorrentShared>, now: Instant) {
    loop {
        if !t.session.try_begin_connect() {
            return;
        }
        let Some(addr) = t.state.lock().next_connect(now) else {
            t.session.connect_finished(false);
            return;
        };
        let t = t.clone();
        tokio::spawn(async move {
            crate::session::connect_out(t, addr).await;
        });
    }
}

/// The receive path allocates per piece at most, never per block: counted
/// with a global allocator that only counts on the test's own thread.
#[cfg(test)]
mod receive_path_allocations {
    use super::*;
    use crate::peer::PeerLocal;
    use bt_proto::metainfo::{TorrentBuilder, piece_hashes};
    use bt_proto::wire::{Message, Reserved};
    use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
    use std::cell::Cell;
    use std::collections::VecDeque;

    struct Counting;

    thread_local! {
        static COUNTING: Cell<bool> = const { Cell::new(false) };
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    // SAFETY: forwards to the system allocator; only bumps a counter.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
            if COUNTING.with(Cell::get) {
                ALLOCATIONS.with(|a| a.set(a.get() + 1));
            }
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
            if COUNTING.with(Cell::get) {
                ALLOCATIONS.with(|a| a.set(a.get() + 1));
            }
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    #[test]
    fn no_allocation_per_block() {
        const PIECE: u32 = 256 * 1024;
        const PIECES: u32 = 48;
        let data: Vec<u8> = (0..PIECE * PIECES)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let builder = TorrentBuilder::new("film.bin", PIECE)
            .file(Vec::new(), data.len() as u64)
            .pieces(piece_hashes(&data, PIECE));
        let info_bytes = builder.info_bytes();
        let ih = builder.info_hash();
        let dir = tempfile::tempdir().unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let meta = prepare_meta(
            ih,
            info_bytes,
            dir.path().to_path_buf(),
            None,
            8 << 20,
            1,
            &stop,
        )
        .unwrap();
        let mut st = TorrentState::new(
            ih,
            PeerId([1; 20]),
            Arc::new(SessionConfig::default()),
            6881,
            "film.bin".into(),
            dir.path().to_path_buf(),
            Vec::new(),
            None,
            false,
            1,
        );
        st.install_meta(meta);
        let addr: SocketAddr = "127.0.0.2:6881".parse().unwrap();
        let reserved = Reserved::default().with(Reserved::FAST);
        let (key, _) = st
            .register_peer(
                addr,
                PeerId([2; 20]),
                reserved,
                false,
                Some(Duration::from_millis(1)),
            )
            .unwrap();
        let mut local = PeerLocal {
            wbuf: Vec::with_capacity(1 << 20),
            wpos: 0,
            uploads: VecDeque::new(),
            completed: Vec::with_capacity(8),
            last_sent: Instant::now(),
        };
        st.on_message(key, Message::HaveAll, &mut local).unwrap();
        st.on_message(key, Message::Unchoke, &mut local).unwrap();
        st.completed_log.reserve(PIECES as usize);

        let blocks = Cell::new(0u64);
        let pieces_done = Cell::new(0u64);
        let run = |st: &mut TorrentState, local: &mut PeerLocal, count: bool, limit: u32| {
            COUNTING.with(|c| c.set(count));
            while pieces_done.get() < u64::from(limit) {
                st.service_peer(key, local).unwrap();
                local.wbuf.clear();
                let Some(&(r, _)) = st.peers[&key].outstanding.front() else {
                    break;
                };
                let at = (r.index * PIECE + r.begin) as usize;
                let block = Message::Piece {
                    index: r.index,
                    begin: r.begin,
                    data: &data[at..at + r.length as usize],
                };
                st.on_message(key, block, local).unwrap();
                blocks.set(blocks.get() + 1);
                for (piece, buf) in local.completed.drain(..) {
                    st.piece_checked(
                        piece,
                        CheckOutcome {
                            buf,
                            result: Checked::Good { block_hashes: None },
                        },
                    );
                    pieces_done.set(pieces_done.get() + 1);
                }
            }
            COUNTING.with(|c| c.set(false));
        };
        // Warm up: piece buffers, maps and queues reach their working size.
        run(&mut st, &mut local, false, 8);
        let (blocks_before, pieces_before) = (blocks.get(), pieces_done.get());
        ALLOCATIONS.with(|a| a.set(0));

        run(&mut st, &mut local, true, 40);
        let allocations = ALLOCATIONS.with(Cell::get);
        let measured_blocks = blocks.get() - blocks_before;
        let measured_pieces = pieces_done.get() - pieces_before;
        eprintln!(
            "{allocations} allocations over {measured_blocks} blocks, {measured_pieces} pieces"
        );
        assert!(
            measured_blocks >= 400,
            "too few blocks measured: {measured_blocks}"
        );
        // A piece in progress gets its block table (three small arrays);
        // a block gets nothing.
        assert!(
            allocations <= 4 * measured_pieces,
            "{allocations} allocations for {measured_blocks} blocks ({measured_pieces} pieces): the block path allocates"
        );
    }
}
