//! Issue 9, point 6: in simulated swarms of 1, 4 and 30 peers with 20–200 ms
//! latency and 1% of segments delayed by a retransmission timeout, a film
//! streamed at half the swarm's capacity plays without a single underrun
//! after start-up, and seeks are served within 1.5× the physical floor.
//!
//! These are deterministic tests on tokio's paused clock (see the crate
//! docs); they assert timings because simulated time does not depend on how
//! busy the machine is.

use std::time::Duration;
use swarm_sim::MockEnvironment;
use swarm_sim::net::NodeSpec;
use swarm_sim::player::{Segment, SegmentReport, play};
use swarm_sim::seeder::Behaviour;

const PIECE: u32 = 256 * 1024;
const SIZE: usize = 256 << 20;
/// Sum of the seeders' upload rates.
const CAPACITY: u64 = 2_000_000;

struct Outcome {
    reports: Vec<SegmentReport>,
}

/// Builds a swarm of `n` seeders with latencies spread over 20–200 ms, runs
/// a viewing session (start, then three seeks) and returns what happened.
async fn run(seed: u64, n: usize, troublemakers: bool) -> Outcome {
    if let Ok(filter) = std::env::var("SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .with_ansi(false)
            .with_timer(swarm_sim::SimClock::default())
            .try_init();
    }
    let mut env = MockEnvironment::new(seed, SIZE, PIECE);
    for i in 0..n {
        let latency_ms = if n == 1 {
            100
        } else {
            20 + (180 * i / (n - 1)) as u64
        };
        let latency = Duration::from_millis(latency_ms);
        let spec = NodeSpec {
            latency,
            rate: CAPACITY / n as u64,
            loss: 0.01,
            rto: Duration::from_millis(200) + 2 * latency,
        };
        let behaviour = match (troublemakers, i) {
            // One seeder chokes us for 2 s every 10 s; another leaves after 20 s.
            (true, 1) => Behaviour {
                choke_cycle: Some((Duration::from_secs(10), Duration::from_secs(2))),
                ..Behaviour::default()
            },
            (true, 2) => Behaviour {
                leave_after: Some(Duration::from_secs(20)),
                ..Behaviour::default()
            },
            _ => Behaviour::default(),
        };
        env.add_seeder(spec, behaviour);
    }
    let (_session, handle) = env.start_engine().await;
    let bitrate = env.capacity() / 2;
    let size = SIZE as u64;
    let mut segments = vec![Segment {
        offset: 0,
        play: Duration::from_secs(12),
    }];
    for percent in [
        55, 85, 30, 70, 95, 45, 15, 62, 78, 38, 90, 22, 50, 66, 8, 97, 42, 74,
    ] {
        segments.push(Segment {
            offset: size * percent / 100 + 12_345,
            play: Duration::from_secs(3),
        });
    }
    let reports = play(
        &handle,
        0,
        bitrate,
        Duration::from_secs(2),
        &segments,
        &env.content.data,
        || env.floor(u64::from(PIECE)),
    )
    .await;
    Outcome { reports }
}

/// The run's seed: `SIM_SEED` replays another swarm than the default one.
fn seed(default: u64) -> u64 {
    std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn check(name: &str, o: &Outcome) {
    for r in &o.reports {
        eprintln!(
            "{name}: offset {:>10}{} first byte {:>6.0} ms (floor {:.0} ms) startup {:>6.0} ms stalls {} ({:.1} s)",
            r.offset,
            if r.was_available { " (had it)" } else { "" },
            r.first_byte.as_secs_f64() * 1e3,
            r.floor.as_secs_f64() * 1e3,
            r.startup.as_secs_f64() * 1e3,
            r.stalls,
            r.stalled_for.as_secs_f64()
        );
    }
    for r in &o.reports {
        assert!(r.data_ok, "{name}: wrong bytes at offset {}", r.offset);
        assert_eq!(
            r.stalls, 0,
            "{name}: playback stalled after start-up at offset {}",
            r.offset
        );
    }
    // Seeks to data already downloaded are instant and say nothing.
    let mut ratios: Vec<f64> = o.reports[1..]
        .iter()
        .filter(|r| !r.was_available)
        .map(|r| r.first_byte.as_secs_f64() / r.floor.as_secs_f64())
        .collect();
    assert!(
        ratios.len() >= 3,
        "{name}: too few seeks to data not yet downloaded"
    );
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    eprintln!("{name}: seek latency / floor, sorted: {ratios:.2?}");
    assert!(
        median <= 1.5,
        "{name}: median seek latency is {median:.2}x the floor"
    );
}

#[tokio::test(start_paused = true)]
async fn one_peer() {
    let o = run(seed(1), 1, false).await;
    check("1 peer", &o);
}

#[tokio::test(start_paused = true)]
async fn four_peers_one_choking_one_leaving() {
    let o = run(seed(4), 4, true).await;
    check("4 peers", &o);
}

#[tokio::test(start_paused = true)]
async fn thirty_peers_one_choking_one_leaving() {
    let o = run(seed(30), 30, true).await;
    check("30 peers", &o);
}

/// The same seed gives the same run, to the microsecond.
#[tokio::test(start_paused = true)]
async fn runs_are_reproducible() {
    let a = run(7, 4, true).await;
    let b = run(7, 4, true).await;
    let key = |o: &Outcome| {
        o.reports
            .iter()
            .map(|r| (r.first_byte, r.startup, r.stalls))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&a), key(&b));
}
