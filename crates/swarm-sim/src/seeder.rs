//! A simulated seeder: speaks the peer wire protocol from an in-memory
//! payload, with behaviours a test can script (choking periods, leaving, lying).
//!
//! It serves requests in order like a real client, honours CANCEL for
//! requests it has not written yet, and rejects queued requests when it
//! chokes (fast extension). Its upload rate is whatever its node's link in
//! the [`SimNet`](crate::net::SimNet) allows.

use crate::net::SimNet;
use bt_proto::wire::{self, BlockRequest, Handshake, Message, Reserved};
use bt_proto::{InfoHash, PeerId};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Requests a seeder queues before it rejects more.
const MAX_QUEUE: usize = 2000;

#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Choke every connection for `.1` at the start of every `.0`.
    pub choke_cycle: Option<(Duration, Duration)>,
    /// Close all connections and stop listening at this time after start.
    pub leave_after: Option<Duration>,
    /// Serve every block with its bytes inverted: a peer that lies.
    pub corrupt: bool,
    /// After this many blocks, in the same write as the last of them, send
    /// a PIECE for a piece that does not exist (and nothing more).
    pub malformed_after: Option<usize>,
}

pub struct Content {
    pub info_hash: InfoHash,
    pub data: Arc<Vec<u8>>,
    pub piece_length: u32,
}

/// Starts a seeder listening on `addr`.
pub fn spawn(net: &SimNet, addr: SocketAddr, content: Arc<Content>, behaviour: Behaviour, id: u8) {
    let mut listener = net.listen(addr).expect("seeder address is free");
    let net = net.clone();
    let started = Instant::now();
    tokio::spawn(async move {
        let leave = behaviour.leave_after.map(|d| started + d);
        loop {
            let conn = tokio::select! {
                biased;
                _ = async { tokio::time::sleep_until(leave.expect("guarded")).await }, if leave.is_some() => {
                    net.unlisten(addr);
                    return;
                }
                c = listener.accept() => match c {
                    Ok(c) => c,
                    Err(_) => return,
                },
            };
            tokio::spawn(serve(
                conn,
                content.clone(),
                behaviour.clone(),
                started,
                leave,
                id,
            ));
        }
    });
}

async fn serve(
    mut conn: bt_engine::Connection,
    content: Arc<Content>,
    behaviour: Behaviour,
    started: Instant,
    leave: Option<Instant>,
    id: u8,
) {
    let mut hs = [0u8; wire::HANDSHAKE_LEN];
    if conn.reader.read_exact(&mut hs).await.is_err() {
        return;
    }
    let Ok(theirs) = Handshake::decode(&hs) else {
        return;
    };
    if theirs.info_hash != content.info_hash {
        return;
    }
    let mut peer_id = *b"-SIM001-000000000000";
    peer_id[19] = id;
    let ours = Handshake {
        reserved: Reserved::default().with(Reserved::FAST),
        info_hash: content.info_hash,
        peer_id: PeerId(peer_id),
    };
    let fast = theirs.reserved.has(Reserved::FAST);
    let mut out = ours.encode().to_vec();
    let num_pieces = content.data.len().div_ceil(content.piece_length as usize) as u32;
    if fast {
        Message::HaveAll.encode(&mut out);
    } else {
        let bits = bt_proto::Bitfield::full(num_pieces);
        Message::Bitfield(bits.as_bytes()).encode(&mut out);
    }
    let mut wpos = 0usize;
    let mut rbuf = vec![0u8; 64 * 1024];
    let (mut rstart, mut rend) = (0usize, 0usize);
    let mut queue: VecDeque<BlockRequest> = VecDeque::new();
    let mut interested = false;
    let mut choking = true;
    let mut served = 0usize;
    loop {
        // Choke schedule: are we inside a choked stretch right now?
        let now = Instant::now();
        let (want_choke, next_change) = match behaviour.choke_cycle {
            Some((period, dur)) => {
                let t = now.duration_since(started).as_nanos() % period.as_nanos();
                let inside = t < dur.as_nanos();
                let to_edge = if inside {
                    dur.as_nanos() - t
                } else {
                    period.as_nanos() - t
                };
                (inside, Some(now + Duration::from_nanos(to_edge as u64)))
            }
            None => (false, None),
        };
        let should_choke = want_choke || !interested;
        if should_choke != choking {
            choking = should_choke;
            if choking {
                Message::Choke.encode(&mut out);
                for r in queue.drain(..) {
                    if fast {
                        Message::Reject(r).encode(&mut out);
                    }
                }
            } else {
                Message::Unchoke.encode(&mut out);
            }
        }
        // Keep one block's worth ahead in the send buffer; a liar writes
        // several at once, as libtorrent does, so they reach the engine in
        // one read.
        if wpos == out.len() {
            out.clear();
            wpos = 0;
            let burst = if behaviour.corrupt { 8 } else { 1 };
            for _ in 0..burst {
                let Some(r) = queue.pop_front().filter(|_| !choking) else {
                    break;
                };
                let start = r.index as usize * content.piece_length as usize + r.begin as usize;
                let data = &content.data[start..start + r.length as usize];
                let lie: Vec<u8>;
                let data = if behaviour.corrupt {
                    lie = data.iter().map(|b| !b).collect();
                    &lie[..]
                } else {
                    data
                };
                Message::Piece {
                    index: r.index,
                    begin: r.begin,
                    data,
                }
                .encode(&mut out);
                served += 1;
                if behaviour.malformed_after == Some(served) {
                    Message::Piece {
                        index: num_pieces,
                        begin: 0,
                        data: &[0; 16],
                    }
                    .encode(&mut out);
                }
            }
        }
        let wake = match (next_change, leave) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            biased;
            r = conn.reader.read(&mut rbuf[rend..]) => {
                let Ok(n) = r else { return };
                if n == 0 {
                    return;
                }
                rend += n;
                loop {
                    match wire::decode(&rbuf[rstart..rend], wire::DEFAULT_MAX_FRAME) {
                        Ok(Some((msg, used))) => {
                            rstart += used;
                            match msg {
                                Message::Interested => interested = true,
                                Message::NotInterested => interested = false,
                                Message::Request(r) => {
                                    let valid = r.index < num_pieces
                                        && (r.index as u64 * content.piece_length as u64 + r.begin as u64 + r.length as u64)
                                            <= content.data.len() as u64
                                        && r.length <= wire::MAX_REQUEST_LEN;
                                    if valid && !choking && queue.len() < MAX_QUEUE {
                                        queue.push_back(r);
                                    } else if fast {
                                        Message::Reject(r).encode(&mut out);
                                    }
                                }
                                Message::Cancel(r) => {
                                    if let Some(pos) = queue.iter().position(|q| *q == r) {
                                        queue.remove(pos);
                                        if fast {
                                            Message::Reject(r).encode(&mut out);
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                rbuf.copy_within(rstart..rend, 0);
                rend -= rstart;
                rstart = 0;
            }
            r = conn.writer.write(&out[wpos..]), if wpos < out.len() => {
                match r {
                    Ok(n) => wpos += n,
                    Err(_) => return,
                }
            }
            _ = async { tokio::time::sleep_until(wake.expect("guarded")).await }, if wake.is_some() => {
                if leave.is_some_and(|l| Instant::now() >= l) {
                    let _ = conn.writer.shutdown().await;
                    return;
                }
            }
        }
    }
}
