//! Reacting to a peer's messages and filling its request pipeline, under
//! the torrent lock. Nothing here awaits or touches the disk: data to
//! verify goes back to the connection task in `PeerLocal::completed`.

use super::{EXT_UT_METADATA, EXT_UT_PEX, ExtState, PeerError, PeerHave, PeerLocal, UploadRead};
use crate::peer::PeerEntry;
use crate::picker::{BlockArrival, PeerKey, PeerPieces, PickOptions};
use crate::stream::CRITICAL_HORIZON;
use crate::torrent::TorrentState;
use bt_proto::Bitfield;
use bt_proto::extension::ExtendedHandshake;
use bt_proto::metadata::{METADATA_PIECE_SIZE, MetadataMsg};
use bt_proto::wire::{BLOCK_SIZE, BlockRequest, MAX_REQUEST_LEN, Message};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// A peer that has not told us `reqq` gets at most this many requests
/// (the value BEP 10 suggests; some clients drop requests beyond it).
const DEFAULT_PEER_REQQ: u32 = 250;
/// Round trip assumed for peers that connected to us.
const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// Pipeline while streaming, in seconds of the peer's rate.
const STREAMING_PIPE_SECS: f64 = 0.1;
/// Cancelled blocks assumed to sit in a peer's send buffer at most.
const MAX_STALE_BLOCKS: u32 = 4;
/// While streaming, 1/this of a pipe may carry pieces without a deadline.
const STREAMING_BULK_SHARE: usize = 4;
/// Before the peer's rate is known: two pieces' worth of a common size, so
/// the piece after the first is already queued when the first arrives.
const STREAMING_START_PIPE_BYTES: f64 = 2.0 * 1024.0 * 1024.0;
/// HAVEs kept for a peer while we wait for metadata.
const MAX_PENDING_HAVES: usize = 100_000;
/// Allowed-fast pieces remembered per peer.
const MAX_ALLOWED_FAST: usize = 32;
/// Outstanding ut_metadata requests per peer (libtorrent uses 2).
const METADATA_REQUESTS_PER_PEER: usize = 2;
const METADATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl TorrentState {
    /// First messages after the handshake: what we have, and our
    /// extension handshake.
    pub(crate) fn peer_greeting(&mut self, key: PeerKey, local: &mut PeerLocal) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.haves_sent = self.completed_log.len();
        if peer.extensions {
            let mut m = std::collections::BTreeMap::new();
            m.insert("ut_metadata".to_string(), EXT_UT_METADATA);
            if !self.private {
                m.insert(bt_proto::extension::UT_PEX.to_string(), EXT_UT_PEX);
            }
            let hs = ExtendedHandshake {
                m,
                v: Some(self.config.client_name.clone()),
                p: Some(self.listen_port),
                reqq: Some(self.config.reqq),
                metadata_size: self.meta.as_ref().map(|m| m.info_bytes.len() as u32),
                yourip: Some(match peer.addr.ip() {
                    std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
                    std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
                }),
                upload_only: false,
            };
            let payload = hs.encode_with_encryption(
                self.config.encryption != bt_proto::mse::EncryptionMode::Disabled,
            );
            local.send(&Message::Extended {
                id: 0,
                payload: &payload,
            });
        }
        let fast = peer.fast;
        send_have_state(self.meta.as_ref().map(|m| m.picker.have()), fast, local);
    }

    pub(crate) fn on_message(
        &mut self,
        key: PeerKey,
        msg: Message<'_>,
        local: &mut PeerLocal,
    ) -> Result<(), PeerError> {
        let now = Instant::now();
        let Some(peer) = self.peers.get_mut(&key) else {
            return Err(PeerError::Closed("unregistered"));
        };
        peer.last_received = now;
        if !matches!(msg, Message::Piece { .. }) {
            tracing::trace!(peer = %peer.addr, ?msg, "received");
        }
        match msg {
            Message::KeepAlive
            | Message::Port(_)
            | Message::Suggest(_)
            | Message::Unknown { .. } => {}
            Message::Choke => {
                peer.peer_choking = true;
                self.drop_outstanding(key, true);
            }
            Message::Unchoke => {
                tracing::debug!(peer = %peer.addr, "unchoked by peer");
                peer.peer_choking = false;
            }
            Message::Interested => {
                peer.peer_interested = true;
                self.unchoke_if_slot_free(key);
            }
            Message::NotInterested => peer.peer_interested = false,
            Message::Have(i) => self.on_have(key, i)?,
            Message::Bitfield(bytes) => self.on_bitfield(key, bytes)?,
            Message::HaveAll => self.on_have_all(key),
            Message::HaveNone => {
                if let Some(meta) = &self.meta {
                    peer.have = PeerHave::Bits(Bitfield::new(meta.picker.num_pieces()));
                } else {
                    peer.have = PeerHave::Pending {
                        bitfield: None,
                        have_all: false,
                        haves: Vec::new(),
                    };
                }
            }
            Message::Request(r) => self.on_request(key, r, local)?,
            Message::Cancel(r) => {
                if let Some(pos) = local.uploads.iter().position(|u| *u == r) {
                    local.uploads.remove(pos);
                    if peer.fast {
                        local.send(&Message::Reject(r));
                    }
                }
            }
            Message::Reject(r) => {
                if let Some(pos) = peer.outstanding.iter().position(|(o, _)| *o == r) {
                    peer.outstanding.remove(pos);
                    if let Some(meta) = &mut self.meta {
                        meta.picker.request_dropped(key, r.index, r.begin, r.length);
                    }
                } else {
                    // The answer to one of our CANCELs.
                    peer.unanswered_cancels = peer.unanswered_cancels.saturating_sub(1);
                }
            }
            Message::AllowedFast(i) => {
                let valid = self.meta.as_ref().is_none_or(|m| i < m.picker.num_pieces());
                if valid
                    && peer.allowed_fast.len() < MAX_ALLOWED_FAST
                    && !peer.allowed_fast.contains(&i)
                {
                    peer.allowed_fast.push(i);
                }
            }
            Message::Piece { index, begin, data } => {
                tracing::trace!(peer = %peer.addr, index, begin, "block");
                self.on_block(key, index, begin, data, local)?
            }
            Message::Extended { id, payload } => self.on_extended(key, id, payload, local)?,
        }
        Ok(())
    }

    fn on_have(&mut self, key: PeerKey, i: u32) -> Result<(), PeerError> {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let Some(meta) = &mut self.meta else {
            if let PeerHave::Pending { haves, .. } = &mut peer.have
                && haves.len() < MAX_PENDING_HAVES
            {
                haves.push(i);
            }
            return Ok(());
        };
        if i >= meta.picker.num_pieces() {
            return Err(PeerError::Protocol("HAVE for a piece past the end"));
        }
        let bits = match &mut peer.have {
            PeerHave::All => return Ok(()),
            PeerHave::Bits(b) => b,
            pending @ PeerHave::Pending { .. } => {
                *pending = PeerHave::Bits(Bitfield::new(meta.picker.num_pieces()));
                let PeerHave::Bits(b) = pending else {
                    unreachable!()
                };
                b
            }
        };
        if bits.set(i) {
            meta.picker.peer_has(i);
            if !peer.am_interested
                && !meta.picker.has_piece(i)
                && meta.picker.priority(i) != crate::picker::PRIORITY_SKIP
                && !self.paused
            {
                peer.am_interested = true;
                peer.outbox.interest_changed = true;
            }
        }
        Ok(())
    }

    fn on_bitfield(&mut self, key: PeerKey, bytes: &[u8]) -> Result<(), PeerError> {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let Some(meta) = &mut self.meta else {
            peer.have = PeerHave::Pending {
                bitfield: Some(bytes.to_vec()),
                have_all: false,
                haves: Vec::new(),
            };
            return Ok(());
        };
        let bits = Bitfield::from_bytes(bytes, meta.picker.num_pieces())
            .map_err(|_| PeerError::Protocol("bitfield does not match the piece count"))?;
        Self::forget_have(&mut meta.picker, &peer.have);
        if bits.all() {
            meta.picker.peer_seed();
            peer.have = PeerHave::All;
        } else {
            meta.picker.peer_bitfield(&bits);
            peer.have = PeerHave::Bits(bits);
        }
        self.update_interest(key);
        Ok(())
    }

    fn on_have_all(&mut self, key: PeerKey) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        match &mut self.meta {
            Some(meta) => {
                Self::forget_have(&mut meta.picker, &peer.have);
                meta.picker.peer_seed();
                peer.have = PeerHave::All;
            }
            None => {
                peer.have = PeerHave::Pending {
                    bitfield: None,
                    have_all: true,
                    haves: Vec::new(),
                }
            }
        }
        self.update_interest(key);
    }

    /// Removes a peer's earlier contribution to availability before it is
    /// replaced (a second BITFIELD, or HAVE_ALL after HAVEs).
    pub(crate) fn forget_have(picker: &mut crate::picker::Picker, have: &PeerHave) {
        match have {
            PeerHave::All => picker.peer_gone(PeerPieces::All),
            PeerHave::Bits(b) => picker.peer_gone(PeerPieces::Some(b)),
            PeerHave::Pending { .. } => {}
        }
    }

    fn on_request(
        &mut self,
        key: PeerKey,
        r: BlockRequest,
        local: &mut PeerLocal,
    ) -> Result<(), PeerError> {
        if r.length == 0 || r.length > MAX_REQUEST_LEN {
            return Err(PeerError::Protocol(
                "request length is zero or over 128 KiB",
            ));
        }
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let servable = self.meta.as_ref().is_some_and(|m| {
            m.picker.has_piece(r.index)
                && u64::from(r.begin) + u64::from(r.length)
                    <= u64::from(m.picker.piece_size(r.index))
        });
        let accept =
            servable && !peer.am_choking && local.uploads.len() < self.config.reqq as usize;
        if accept {
            local.uploads.push_back(r);
        } else if peer.fast {
            local.send(&Message::Reject(r));
        }
        Ok(())
    }

    fn on_block(
        &mut self,
        key: PeerKey,
        index: u32,
        begin: u32,
        data: &[u8],
        local: &mut PeerLocal,
    ) -> Result<(), PeerError> {
        let now = Instant::now();
        let len = data.len() as u32;
        let peer = self.peers.get_mut(&key).expect("caller checked");
        if let Some(pos) = peer
            .outstanding
            .iter()
            .position(|(r, _)| r.index == index && r.begin == begin)
        {
            peer.outstanding.remove(pos);
        } else {
            peer.unanswered_cancels = peer.unanswered_cancels.saturating_sub(1);
        }
        peer.last_block_at = now;
        peer.snubbed = false;
        peer.down.add(u64::from(len));
        if peer.slow_start {
            peer.queue_depth =
                (peer.queue_depth + 1).min(max_depth(self.config.max_requests_per_peer, peer.reqq));
        }
        self.down.add(u64::from(len));
        let Some(meta) = &mut self.meta else {
            self.wasted += u64::from(len);
            return Ok(());
        };
        if self.down.total() == u64::from(len) {
            tracing::debug!(index, begin, "first block received");
        }
        match meta.picker.block_received(key, index, begin, len) {
            BlockArrival::Invalid => {
                self.wasted += u64::from(len);
                return Err(PeerError::Protocol(
                    "PIECE with an invalid offset or length",
                ));
            }
            BlockArrival::NotNeeded => self.wasted += u64::from(len),
            BlockArrival::New { complete, cancel } => {
                let piece_length = meta.picker.piece_size(0) as usize;
                let pool = &mut meta.pool;
                let buf = meta
                    .buffers
                    .entry(index)
                    .or_insert_with(|| pool.pop().unwrap_or_else(|| vec![0u8; piece_length]));
                buf[begin as usize..(begin + len) as usize].copy_from_slice(data);
                meta.ip_of.insert(key, self.peers[&key].addr.ip());
                let r = BlockRequest {
                    index,
                    begin,
                    length: len,
                };
                for other in cancel {
                    if let Some(op) = self.peers.get_mut(&other)
                        && let Some(pos) = op.outstanding.iter().position(|(o, _)| *o == r)
                    {
                        op.outstanding.remove(pos);
                        op.outbox.cancels.push(r);
                        op.wake();
                    }
                }
                if complete {
                    let buf = meta.buffers.remove(&index).expect("buffer just used");
                    local.completed.push((index, buf));
                }
            }
        }
        Ok(())
    }

    fn on_extended(
        &mut self,
        key: PeerKey,
        id: u8,
        payload: &[u8],
        local: &mut PeerLocal,
    ) -> Result<(), PeerError> {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        if id == 0 {
            let Ok(hs) = ExtendedHandshake::decode(payload) else {
                return Err(PeerError::Protocol("malformed extension handshake"));
            };
            // BEP 10: later handshakes update, they do not replace.
            let ext = peer.ext.get_or_insert(ExtState {
                ut_metadata: None,
                ut_pex: None,
                metadata_size: None,
                client: None,
                listen_port: None,
                prefers_encryption: false,
            });
            if let Some(&m) = hs.m.get("ut_metadata") {
                ext.ut_metadata = (m != 0).then_some(m);
            }
            if let Some(&m) = hs.m.get(bt_proto::extension::UT_PEX) {
                ext.ut_pex = (m != 0).then_some(m);
                if ext.ut_pex.is_some() && peer.pex.next_send.is_none() {
                    peer.pex.next_send = Some(Instant::now() + crate::peer_exchange::FIRST_AFTER);
                }
            }
            if hs.p.is_some() {
                ext.listen_port = hs.p;
            }
            if let Some(e) = bt_proto::extension::prefers_encryption(payload) {
                ext.prefers_encryption = e;
            }
            if hs.metadata_size.is_some() {
                ext.metadata_size = hs.metadata_size;
            }
            if hs.v.is_some() {
                ext.client = hs.v.clone();
            }
            if let Some(q) = hs.reqq.filter(|&q| q > 0) {
                peer.reqq = Some(q);
            }
            if let (None, Some(size)) = (&self.meta, ext.metadata_size) {
                self.metadata_size_hint(size);
            }
            return Ok(());
        }
        if id == EXT_UT_PEX {
            self.on_pex(key, payload);
            return Ok(());
        }
        if id != EXT_UT_METADATA {
            return Ok(());
        }
        let msg = MetadataMsg::decode(payload)
            .map_err(|_| PeerError::Protocol("malformed ut_metadata message"))?;
        match msg {
            MetadataMsg::Request { piece } => {
                let their_id = peer.ext.as_ref().and_then(|e| e.ut_metadata);
                let Some(their_id) = their_id else {
                    return Ok(());
                };
                let reply = match &self.meta {
                    Some(meta)
                        if !self.private
                            && (piece as usize) * METADATA_PIECE_SIZE < meta.info_bytes.len() =>
                    {
                        let start = piece as usize * METADATA_PIECE_SIZE;
                        let end = (start + METADATA_PIECE_SIZE).min(meta.info_bytes.len());
                        MetadataMsg::Data {
                            piece,
                            total_size: meta.info_bytes.len() as u32,
                            data: meta.info_bytes[start..end].to_vec(),
                        }
                    }
                    _ => MetadataMsg::Reject { piece },
                };
                local.send(&Message::Extended {
                    id: their_id,
                    payload: &reply.encode(),
                });
            }
            MetadataMsg::Data { piece, data, .. } => {
                peer.metadata_requests.retain(|(p, _)| *p != piece);
                self.metadata_piece(piece, &data);
            }
            MetadataMsg::Reject { piece } => {
                peer.metadata_requests.retain(|(p, _)| *p != piece);
                if let Some(ext) = &mut peer.ext {
                    // It does not have the metadata: stop asking this peer.
                    ext.ut_metadata = None;
                }
                if let Some(f) = &mut self.metadata {
                    f.requested.remove(&piece);
                }
            }
        }
        Ok(())
    }

    /// A `ut_pex` message: new addresses go to the address book. Bad or
    /// unwelcome messages are dropped and counted, never fatal: PEX is a
    /// hint, and a peer that sends junk there may still send good data.
    fn on_pex(&mut self, key: PeerKey, payload: &[u8]) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let now = Instant::now();
        let too_soon = peer
            .pex
            .last_received
            .is_some_and(|t| now.duration_since(t) < crate::peer_exchange::MIN_RECEIVE_GAP);
        if self.private || too_soon {
            self.pex_dropped += 1;
            return;
        }
        peer.pex.last_received = Some(now);
        let from = peer.addr;
        let received = match bt_proto::pex::PexMessage::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(peer = %from, error = %e, "dropping malformed ut_pex message");
                self.pex_dropped += 1;
                return;
            }
        };
        self.pex_dropped += received.ignored as u64;
        let mut learned = 0u64;
        for p in &received.message.added {
            if !crate::peer_exchange::usable(&p.addr) {
                self.pex_dropped += 1;
            } else if self.addrs.add(p.addr) {
                learned += 1;
            }
        }
        self.pex_learned += learned;
        if learned > 0 {
            tracing::debug!(peer = %from, learned, "peers learned through PEX");
        }
    }

    /// Upload data came back from disk.
    pub(crate) fn upload_done(
        &mut self,
        key: PeerKey,
        read: UploadRead,
        local: &mut PeerLocal,
    ) -> Result<(), PeerError> {
        let Some(peer) = self.peers.get_mut(&key) else {
            return Err(PeerError::Closed("unregistered"));
        };
        let data = match read.data {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading upload data failed");
                if peer.fast {
                    for r in &read.requests {
                        local.send(&Message::Reject(*r));
                    }
                }
                return Ok(());
            }
        };
        let mut at = 0usize;
        for r in &read.requests {
            let len = r.length as usize;
            if peer.am_choking {
                if peer.fast {
                    local.send(&Message::Reject(*r));
                }
            } else {
                local.send(&Message::Piece {
                    index: r.index,
                    begin: r.begin,
                    data: &data[at..at + len],
                });
                peer.up.add(len as u64);
                self.up.add(len as u64);
            }
            at += len;
        }
        Ok(())
    }

    /// Turns the peer's outbox and our pipeline needs into bytes to send.
    pub(crate) fn service_peer(
        &mut self,
        key: PeerKey,
        local: &mut PeerLocal,
    ) -> Result<(), PeerError> {
        let Some(peer) = self.peers.get_mut(&key) else {
            return Err(PeerError::Closed("unregistered"));
        };
        if let Some(reason) = peer.outbox.disconnect.take() {
            return Err(PeerError::Closed(reason));
        }
        if std::mem::take(&mut peer.outbox.send_bitfield) {
            send_have_state(
                self.meta.as_ref().map(|m| m.picker.have()),
                peer.fast,
                local,
            );
            peer.haves_sent = self.completed_log.len();
        }
        if std::mem::take(&mut peer.outbox.choke_changed) {
            if peer.am_choking {
                local.send(&Message::Choke);
                for r in local.uploads.drain(..) {
                    if peer.fast {
                        Message::Reject(r).encode(&mut local.wbuf);
                    }
                }
            } else {
                local.send(&Message::Unchoke);
            }
        }
        if std::mem::take(&mut peer.outbox.interest_changed) {
            tracing::debug!(peer = %peer.addr, interested = peer.am_interested, "sending interest");
            local.send(if peer.am_interested {
                &Message::Interested
            } else {
                &Message::NotInterested
            });
        }
        if !peer.outbox.cancels.is_empty() {
            peer.unanswered_cancels += peer.outbox.cancels.len() as u32;
            peer.cancels_sent_at = Instant::now();
        }
        for r in peer.outbox.cancels.drain(..) {
            Message::Cancel(r).encode(&mut local.wbuf);
        }
        if std::mem::take(&mut peer.outbox.keepalive) && local.wbuf.len() == local.wpos {
            local.send(&Message::KeepAlive);
        }
        while peer.haves_sent < self.completed_log.len() {
            let piece = self.completed_log[peer.haves_sent];
            peer.haves_sent += 1;
            Message::Have(piece).encode(&mut local.wbuf);
        }
        if let Some(payload) = peer.outbox.pex.take()
            && let Some(id) = peer.ext.as_ref().and_then(|e| e.ut_pex)
        {
            local.send(&Message::Extended {
                id,
                payload: &payload,
            });
        }
        self.request_metadata(key, local);
        self.fill_requests(key, local);
        Ok(())
    }

    fn fill_requests(&mut self, key: PeerKey, local: &mut PeerLocal) {
        let streaming = self.streams.active();
        let now_ms = self.streams.now_ms();
        let piece_bytes = self
            .meta
            .as_ref()
            .map_or(0, |m| u64::from(m.picker.piece_size(0)));
        // This peer's part of the most urgent piece, and of that piece
        // twice over: the difference is how many blocks it hedges.
        let (share, hedge, eta) = if streaming {
            let (once, eta) = critical_plan(&self.peers, key, piece_bytes);
            let twice = critical_share(&self.peers, key, 2 * piece_bytes);
            let hedge = if once == 0 { twice } else { 0 };
            (once, hedge, eta)
        } else {
            (usize::MAX, 0, None)
        };
        let TorrentState {
            peers,
            meta,
            paused,
            scratch,
            config,
            ..
        } = self;
        let (Some(peer), Some(meta)) = (peers.get_mut(&key), meta.as_mut()) else {
            return;
        };
        if *paused || !peer.am_interested {
            return;
        }
        let choked = peer.peer_choking;
        if choked && peer.allowed_fast.is_empty() {
            return;
        }
        let cap = max_depth(config.max_requests_per_peer, peer.reqq);
        let depth = if peer.snubbed {
            1
        } else if streaming {
            // Short pipes while streaming. A peer serves requests in order
            // and many (libtorrent) read megabytes ahead into their send
            // buffer, where a CANCEL no longer reaches; whatever is queued
            // there delays the block a seek needs. So keep about 100 ms of
            // this peer's rate in flight (more on long round trips), and at
            // least what a rate-limited peer sends in one of its ticks.
            let rtt = peer.rtt.unwrap_or(DEFAULT_RTT).as_secs_f64();
            let rate = peer.down.rate().max(peer.down.last_second());
            // About one bandwidth-delay product: the link stays full, and
            // little waits in the peer's send buffer. Until the rate is
            // known, enough for the first pieces.
            let bytes = if rate == 0 {
                STREAMING_START_PIPE_BYTES
            } else {
                rate as f64 * (1.25 * rtt).max(STREAMING_PIPE_SECS)
            };
            ((bytes / f64::from(BLOCK_SIZE)).ceil() as usize).clamp(1, cap)
        } else {
            peer.queue_depth.min(cap)
        };
        let outstanding = peer.outstanding.len();
        let max = depth.saturating_sub(outstanding);
        // While streaming, pieces nobody waits for get a quarter of the
        // pipe: the rest stays free for the blocks a reader will need next.
        let max_bulk = if streaming {
            let bulk = peer
                .outstanding
                .iter()
                .filter(|(r, _)| meta.picker.deadline(r.index).is_none())
                .count();
            (depth / STREAMING_BULK_SHARE)
                .max(1)
                .saturating_sub(bulk)
                .min(max)
        } else {
            max
        };
        if max == 0 {
            return;
        }
        let view = match &peer.have {
            PeerHave::All => PeerPieces::All,
            PeerHave::Bits(b) => PeerPieces::Some(b),
            PeerHave::Pending { .. } => return,
        };
        let blocks_per_piece = meta.picker.blocks_in(0) as usize;
        let opts = PickOptions {
            allowed: if choked {
                Some(peer.allowed_fast.as_slice())
            } else {
                None
            },
            max,
            max_bulk,
            now_ms,
            critical_until_ms: now_ms.saturating_add(CRITICAL_HORIZON.as_millis() as u32),
            critical_share: share.min(blocks_per_piece),
            hedge,
            dup_after_ms: config.critical_duplicate_after.as_millis() as u32,
            // Unknown rates: expect a block within the fixed grace alone.
            eta_ms: eta.map_or(0, |e| (e * 1000.0) as u32),
        };
        scratch.clear();
        meta.picker.pick(key, view, &opts, scratch);
        if !scratch.is_empty() && tracing::enabled!(tracing::Level::TRACE) {
            let pieces: std::collections::BTreeSet<u32> = scratch.iter().map(|r| r.index).collect();
            tracing::trace!(peer = %peer.addr, n = scratch.len(), outstanding, depth, ?pieces, "requested");
        }
        let now = Instant::now();
        for r in scratch.drain(..) {
            Message::Request(r).encode(&mut local.wbuf);
            peer.outstanding.push_back((r, now));
        }
    }

    fn request_metadata(&mut self, key: PeerKey, local: &mut PeerLocal) {
        let TorrentState {
            peers, metadata, ..
        } = self;
        let (Some(peer), Some(fetch)) = (peers.get_mut(&key), metadata.as_mut()) else {
            return;
        };
        let Some(their_id) = peer.ext.as_ref().and_then(|e| e.ut_metadata) else {
            return;
        };
        let now = Instant::now();
        peer.metadata_requests
            .retain(|(_, at)| now.duration_since(*at) < METADATA_REQUEST_TIMEOUT);
        while peer.metadata_requests.len() < METADATA_REQUESTS_PER_PEER {
            let Some(piece) = fetch.next_request(now) else {
                break;
            };
            peer.metadata_requests.push((piece, now));
            local.send(&Message::Extended {
                id: their_id,
                payload: &MetadataMsg::Request { piece }.encode(),
            });
        }
    }

    /// Returns every request outstanding at `key` to the picker.
    pub(crate) fn drop_outstanding(&mut self, key: PeerKey, keep_allowed_fast: bool) {
        let TorrentState { peers, meta, .. } = self;
        let Some(peer) = peers.get_mut(&key) else {
            return;
        };
        let allowed = std::mem::take(&mut peer.allowed_fast);
        peer.outstanding.retain(|(r, _)| {
            let keep = keep_allowed_fast && allowed.contains(&r.index);
            if !keep && let Some(meta) = meta.as_mut() {
                meta.picker.request_dropped(key, r.index, r.begin, r.length);
            }
            keep
        });
        peer.allowed_fast = allowed;
    }

    /// Recomputes whether we want something from this peer.
    pub(crate) fn update_interest(&mut self, key: PeerKey) {
        let TorrentState {
            peers,
            meta,
            paused,
            ..
        } = self;
        let (Some(peer), Some(meta)) = (peers.get_mut(&key), meta.as_ref()) else {
            return;
        };
        let interesting = !*paused
            && match &peer.have {
                PeerHave::All => meta.picker.is_interesting(PeerPieces::All),
                PeerHave::Bits(b) => meta.picker.is_interesting(PeerPieces::Some(b)),
                PeerHave::Pending { .. } => false,
            };
        if interesting != peer.am_interested {
            peer.am_interested = interesting;
            peer.outbox.interest_changed = true;
            peer.wake();
        }
    }
}

fn send_have_state(have: Option<&Bitfield>, fast: bool, local: &mut PeerLocal) {
    match have {
        Some(h) if h.all() && fast => local.send(&Message::HaveAll),
        Some(h) if !h.none() => local.send(&Message::Bitfield(h.as_bytes())),
        _ if fast => local.send(&Message::HaveNone),
        _ => {}
    }
}

/// Blocks of a time-critical piece that peer `me` should take.
///
/// The piece's blocks are dealt out one at a time to whichever serving peer
/// would deliver its next block earliest: a peer's blocks start arriving one
/// round trip plus its queued bytes after we ask, one block-time apart at
/// its rate. Distant, slow or busy peers get few blocks or none, and the
/// piece is done as early as the swarm allows; stale blocks are duplicated
/// later. Until every rate is known the piece is split evenly.
fn critical_share(peers: &BTreeMap<PeerKey, PeerEntry>, me: PeerKey, piece_bytes: u64) -> usize {
    critical_plan(peers, me, piece_bytes).0
}

/// [`critical_share`], and when a block asked of `me` now should arrive
/// (seconds from now; `None` while rates are unknown).
fn critical_plan(
    peers: &BTreeMap<PeerKey, PeerEntry>,
    me: PeerKey,
    piece_bytes: u64,
) -> (usize, Option<f64>) {
    let block = f64::from(BLOCK_SIZE);
    let now = Instant::now();
    let serving: Vec<(PeerKey, f64, f64)> = peers
        .iter()
        .filter(|(_, p)| p.am_interested && !p.peer_choking && !p.snubbed)
        .map(|(k, p)| {
            // The link's rate: short pipes leave it idle between blocks, so
            // the recent average understates it.
            let rate = p.down.rate().max(p.down.last_second()).max(p.down.peak()) as f64;
            let rtt = p.rtt.unwrap_or(DEFAULT_RTT).as_secs_f64();
            let per_block = block / rate.max(1.0);
            // Cancelled blocks may still be in its send buffer, ahead of ours:
            // a bandwidth-delay product's worth, and at least the 16 KiB of
            // a minimal socket buffer plus the message being written.
            let sndbuf = ((rate * rtt) / block)
                .ceil()
                .clamp(2.0, f64::from(MAX_STALE_BLOCKS));
            let queued = p.outstanding.len() as f64 + f64::from(p.unanswered_cancels).min(sndbuf);
            // A busy peer's queue drains one block-time after another from
            // its last delivery; an idle one answers after a round trip.
            let since_last = now.duration_since(p.last_block_at).as_secs_f64();
            let start = rtt.max(queued * per_block - since_last);
            (*k, start, per_block)
        })
        .collect();
    let blocks = piece_bytes.div_ceil(u64::from(BLOCK_SIZE)) as usize;
    let unknown = peers.values().any(|p| {
        p.am_interested
            && !p.peer_choking
            && !p.snubbed
            && p.down.rate().max(p.down.last_second()) == 0
    });
    let my_eta = serving
        .iter()
        .find(|(k, _, _)| *k == me)
        .map(|(_, start, per)| start + per);
    if unknown || serving.len() <= 1 {
        return (
            blocks.div_ceil(serving.len().max(1)),
            if unknown { None } else { my_eta },
        );
    }
    // Next-block arrival time per peer; deal the blocks greedily.
    let mut next: Vec<f64> = serving.iter().map(|(_, start, per)| start + per).collect();
    let mut mine = 0;
    for _ in 0..blocks {
        let (i, _) = next
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .expect("at least two peers");
        if serving[i].0 == me {
            mine += 1;
        }
        next[i] += serving[i].2;
    }
    (mine, my_eta)
}

/// Pipeline ceiling for a peer: our own cap, and the peer's `reqq`.
pub(crate) fn max_depth(ours: usize, reqq: Option<u32>) -> usize {
    ours.min(reqq.unwrap_or(DEFAULT_PEER_REQQ) as usize).max(1)
}

/// Requests that move `rate` bytes/s for `secs` seconds, as libtorrent sizes
/// its pipeline.
pub(crate) fn depth_for_rate(rate: u64, secs: f64, cap: usize) -> usize {
    let blocks = (rate as f64 * secs / f64::from(BLOCK_SIZE)).ceil() as usize;
    blocks.clamp(2, cap)
}

#[cfg(test)]
mod pex_tests {
    use super::*;
    use crate::config::SessionConfig;
    use bt_proto::pex::{PexFlags, PexMessage, PexPeer};
    use bt_proto::wire::Reserved;
    use std::collections::VecDeque;
    use std::sync::Arc;

    fn state() -> (TorrentState, PeerKey, PeerLocal) {
        let mut st = TorrentState::new(
            bt_proto::InfoHash([3; 20]),
            bt_proto::PeerId([1; 20]),
            Arc::new(SessionConfig::default()),
            6881,
            "t".into(),
            std::env::temp_dir(),
            Vec::new(),
            None,
            false,
            1,
        );
        let (key, _) = st
            .register_peer(
                "127.0.0.2:6881".parse().unwrap(),
                bt_proto::PeerId([2; 20]),
                Reserved::default().with(Reserved::EXTENSION_PROTOCOL),
                false,
                None,
            )
            .unwrap();
        let local = PeerLocal {
            wbuf: Vec::new(),
            wpos: 0,
            uploads: VecDeque::new(),
            completed: Vec::new(),
            last_sent: Instant::now(),
        };
        (st, key, local)
    }

    fn pex(st: &mut TorrentState, key: PeerKey, local: &mut PeerLocal, payload: &[u8]) {
        st.on_message(
            key,
            Message::Extended {
                id: EXT_UT_PEX,
                payload,
            },
            local,
        )
        .expect("PEX input never closes the connection");
    }

    /// As if a minute had passed since the peer's last message.
    fn forget_last_message(st: &mut TorrentState, key: PeerKey) {
        st.peers.get_mut(&key).unwrap().pex.last_received = None;
    }

    fn message(n: u8) -> Vec<u8> {
        PexMessage {
            added: (1..=n)
                .map(|i| PexPeer {
                    addr: std::net::SocketAddr::from(([127, 0, 1, i], 6881)),
                    flags: PexFlags::default(),
                })
                .collect(),
            dropped: Vec::new(),
        }
        .encode()
    }

    #[test]
    fn received_peers_are_bounded_and_junk_is_counted() {
        let (mut st, key, mut local) = state();
        pex(&mut st, key, &mut local, &message(3));
        assert_eq!(st.pex_learned, 3);
        assert_eq!(st.addrs.entries.len(), 3);
        // A second message within the minute is dropped.
        pex(&mut st, key, &mut local, &message(5));
        assert_eq!((st.pex_learned, st.pex_dropped), (3, 1));
        forget_last_message(&mut st, key);
        // Malformed: dropped and counted, the connection stays.
        pex(&mut st, key, &mut local, b"l3:abce");
        assert_eq!((st.pex_learned, st.pex_dropped), (3, 2));
        forget_last_message(&mut st, key);
        // Unusable entries (port 0) are counted, not stored.
        let mut zero_port = b"d5:added12:".to_vec();
        zero_port.extend_from_slice(&[127, 0, 2, 1, 0, 0, 127, 0, 2, 2, 0x1a, 0xe1]);
        zero_port.push(b'e');
        pex(&mut st, key, &mut local, &zero_port);
        assert_eq!((st.pex_learned, st.pex_dropped), (4, 3));
    }

    #[test]
    fn private_torrents_ignore_pex() {
        let (mut st, key, mut local) = state();
        st.private = true;
        pex(&mut st, key, &mut local, &message(3));
        assert_eq!((st.pex_learned, st.pex_dropped), (0, 1));
        assert!(st.addrs.entries.is_empty());
    }
}
