//! An in-process tracker: who is in the swarm right now, handed to the
//! engine on a re-announce interval as a tracker response would be.

use bt_engine::TorrentHandle;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Default)]
pub struct MockTracker {
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl MockTracker {
    pub fn register(&self, addr: SocketAddr) {
        let mut p = self.peers.lock();
        if !p.contains(&addr) {
            p.push(addr);
        }
    }

    pub fn unregister(&self, addr: SocketAddr) {
        self.peers.lock().retain(|a| *a != addr);
    }

    pub fn announce(&self) -> Vec<SocketAddr> {
        self.peers.lock().clone()
    }

    /// Announces for `handle` now and every `interval`.
    pub fn attach(&self, handle: TorrentHandle, interval: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                handle.add_peers(&me.announce());
                tokio::time::sleep(interval).await;
            }
        });
    }
}
