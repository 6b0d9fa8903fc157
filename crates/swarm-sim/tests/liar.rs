//! A peer that serves corrupt data is banned and the download still
//! completes from the honest ones. Regression: a piece the liar completed
//! in the same read as its ban was never checked and the download hung at
//! 99% (seen in `swarm_corrupt_peer_is_banned` against libtorrent).
//!
//! The liar ends its connection with a malformed message in the same write
//! as blocks that complete pieces, so the batch that ends the connection
//! completes pieces: deterministic on tokio's paused clock.

use std::time::Duration;
use swarm_sim::MockEnvironment;
use swarm_sim::net::NodeSpec;
use swarm_sim::seeder::Behaviour;

async fn run(seed: u64) {
    let mut env = MockEnvironment::new(seed, 4 << 20, 16 * 1024);
    let spec = NodeSpec {
        latency: Duration::from_millis(5),
        rate: 20_000_000,
        loss: 0.0,
        rto: Duration::from_millis(200),
    };
    for _ in 0..3 {
        env.add_seeder(spec, Behaviour::default());
    }
    // The liar is the fastest, so it takes part in many pieces.
    env.add_seeder(
        NodeSpec {
            rate: 60_000_000,
            ..spec
        },
        Behaviour {
            corrupt: true,
            // Its last read both completes pieces and ends the connection.
            malformed_after: Some(2),
            ..Behaviour::default()
        },
    );
    let (_session, handle) = env.start_engine().await;
    let done = tokio::time::timeout(Duration::from_secs(300), handle.wait_complete()).await;
    let stats = handle.stats();
    assert!(
        matches!(done, Ok(Ok(()))),
        "seed {seed}: download did not complete: {done:?}, {} of {} pieces",
        stats.pieces_have,
        stats.num_pieces
    );
    assert_eq!(stats.banned_peers, 1, "seed {seed}: the liar is banned");
    assert!(stats.failed_hashes >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_liar_is_banned_and_the_download_completes() {
    for seed in 1..=4 {
        run(seed).await;
    }
}
