//! Upload slot allocation (choking), BEP 3 tit-for-tat with optimistic
//! unchoke.
//!
//! Every rechoke period the interested peers are ranked — by what they gave
//! us while we download, by how fast they take while we seed — and the best
//! `slots - 1` are unchoked, plus one optimistic slot that rotates every
//! third period to a random choked peer (new peers weighted 3×) so that
//! newcomers can bootstrap. Peers on the local network or loopback are
//! always unchoked and do not use a slot, as libtorrent does: bandwidth
//! there is not scarce.

use crate::picker::PeerKey;
use rand::Rng;

/// What the choker needs to know about one connection.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub key: PeerKey,
    pub interested: bool,
    pub local: bool,
    /// Bytes/s received from the peer (payload).
    pub down_rate: u64,
    /// Bytes/s sent to the peer (payload).
    pub up_rate: u64,
    pub unchoked: bool,
    /// Connected within the last optimistic period.
    pub new: bool,
}

#[derive(Debug)]
pub struct Choker {
    slots: usize,
    optimistic: Option<PeerKey>,
    rounds_since_optimistic: u32,
}

/// Optimistic unchoke rotates every this many rechoke rounds (3 × 10 s).
const OPTIMISTIC_ROUNDS: u32 = 3;

impl Choker {
    pub fn new(slots: usize) -> Self {
        Choker {
            slots: slots.max(1),
            optimistic: None,
            rounds_since_optimistic: OPTIMISTIC_ROUNDS,
        }
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Returns the keys that should be unchoked after this round; everyone
    /// else should be choked.
    pub fn rechoke(
        &mut self,
        peers: &[Candidate],
        seeding: bool,
        rng: &mut impl Rng,
    ) -> Vec<PeerKey> {
        let mut unchoke: Vec<PeerKey> = peers
            .iter()
            .filter(|p| p.local && p.interested)
            .map(|p| p.key)
            .collect();

        let mut ranked: Vec<&Candidate> =
            peers.iter().filter(|p| !p.local && p.interested).collect();
        // Ties go to peers already unchoked, to avoid needless flapping.
        ranked.sort_by_key(|p| {
            let rate = if seeding { p.up_rate } else { p.down_rate };
            (std::cmp::Reverse(rate), !p.unchoked)
        });
        let regular = self.slots.saturating_sub(1);
        unchoke.extend(ranked.iter().take(regular).map(|p| p.key));

        self.rounds_since_optimistic += 1;
        let still_there = self
            .optimistic
            .is_some_and(|o| ranked.iter().skip(regular).any(|p| p.key == o));
        if self.rounds_since_optimistic >= OPTIMISTIC_ROUNDS || !still_there {
            self.rounds_since_optimistic = 0;
            let pool: Vec<&Candidate> = ranked.iter().skip(regular).copied().collect();
            let weight = |p: &Candidate| if p.new { 3 } else { 1 };
            let total: u32 = pool.iter().map(|p| weight(p)).sum();
            self.optimistic = if total == 0 {
                None
            } else {
                let mut pick = rng.random_range(0..total);
                pool.iter()
                    .find(|p| {
                        let w = weight(p);
                        if pick < w {
                            true
                        } else {
                            pick -= w;
                            false
                        }
                    })
                    .map(|p| p.key)
            };
        }
        if let Some(o) = self.optimistic
            && !unchoke.contains(&o)
        {
            unchoke.push(o);
        }
        unchoke
    }

    /// Whether a peer that just became interested may be unchoked at once
    /// rather than waiting for the next round.
    pub fn has_free_slot(&self, unchoked_remote: usize) -> bool {
        unchoked_remote < self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn peer(key: PeerKey, down: u64, up: u64) -> Candidate {
        Candidate {
            key,
            interested: true,
            local: false,
            down_rate: down,
            up_rate: up,
            unchoked: false,
            new: false,
        }
    }

    #[test]
    fn leeching_rewards_the_best_uploaders() {
        let mut c = Choker::new(3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let peers: Vec<_> = (0..6).map(|k| peer(k, u64::from(k) * 100, 0)).collect();
        let u = c.rechoke(&peers, false, &mut rng);
        assert_eq!(u.len(), 3);
        assert!(u.contains(&5) && u.contains(&4), "{u:?}");
        let optimistic = u[2];
        assert!(optimistic < 4);
    }

    #[test]
    fn seeding_ranks_by_upload() {
        let mut c = Choker::new(2);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let peers = vec![peer(1, 0, 10), peer(2, 0, 500), peer(3, 0, 20)];
        let u = c.rechoke(&peers, true, &mut rng);
        assert_eq!(u[0], 2);
        assert_eq!(u.len(), 2);
    }

    #[test]
    fn local_peers_are_always_unchoked_and_uninterested_never() {
        let mut c = Choker::new(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut a = peer(1, 0, 0);
        a.local = true;
        let mut b = peer(2, 0, 0);
        b.local = true;
        let mut idle = peer(3, 1000, 1000);
        idle.interested = false;
        let u = c.rechoke(&[a, b, idle], false, &mut rng);
        assert_eq!(u, vec![1, 2]);
    }

    #[test]
    fn optimistic_slot_rotates() {
        let mut c = Choker::new(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let peers: Vec<_> = (0..20).map(|k| peer(k, 0, 0)).collect();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..30 {
            let u = c.rechoke(&peers, false, &mut rng);
            assert_eq!(u.len(), 1);
            seen.insert(u[0]);
        }
        assert!(seen.len() > 3, "optimistic unchoke should rotate: {seen:?}");
    }
}
