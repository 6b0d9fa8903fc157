//! The simulator itself: latency, bandwidth, in-order delivery, and the
//! seeder's protocol behaviour, on the paused clock.

use bt_proto::wire::{self, BlockRequest, Handshake, Message, Reserved};
use bt_proto::{InfoHash, PeerId};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use swarm_sim::net::{NodeSpec, SimNet};
use swarm_sim::seeder::{self, Behaviour, Content};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

async fn read_msg(conn: &mut bt_engine::Connection, buf: &mut Vec<u8>) -> Vec<u8> {
    loop {
        if let Some(len) = wire::peek_frame_len(buf)
            && buf.len() >= len
        {
            let frame: Vec<u8> = buf.drain(..len).collect();
            return frame;
        }
        let mut chunk = [0u8; 4096];
        let n = conn.reader.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One block from a seeder with 20 ms latency and 64 KiB/s takes one round
/// trip plus the block's transfer time.
#[tokio::test(start_paused = true)]
async fn one_block_takes_a_round_trip_plus_its_transfer_time() {
    let net = SimNet::new(1);
    let me = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    net.add_node(me, NodeSpec::ideal());
    let seed_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)), 6881);
    let rate = 64 * 1024;
    net.add_node(
        seed_addr.ip(),
        NodeSpec {
            latency: Duration::from_millis(20),
            rate,
            loss: 0.0,
            rto: Duration::from_millis(200),
        },
    );
    let data = Arc::new(vec![7u8; 1 << 20]);
    let info_hash = InfoHash([1; 20]);
    seeder::spawn(
        &net,
        seed_addr,
        Arc::new(Content {
            info_hash,
            data,
            piece_length: 256 * 1024,
        }),
        Behaviour::default(),
        1,
    );
    let started = Instant::now();
    let mut conn = net.dial(me, seed_addr).await.unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(40),
        "connect costs one round trip"
    );
    let hs = Handshake {
        reserved: Reserved::default().with(Reserved::FAST),
        info_hash,
        peer_id: PeerId([2; 20]),
    };
    conn.writer.write_all(&hs.encode()).await.unwrap();
    let mut out = Vec::new();
    Message::Interested.encode(&mut out);
    conn.writer.write_all(&out).await.unwrap();
    let mut theirs = [0u8; 68];
    conn.reader.read_exact(&mut theirs).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_msg(&mut conn, &mut buf).await[4], 14, "HAVE_ALL");
    assert_eq!(read_msg(&mut conn, &mut buf).await[4], 1, "UNCHOKE");
    let asked = Instant::now();
    let mut out = Vec::new();
    Message::Request(BlockRequest {
        index: 0,
        begin: 0,
        length: 16384,
    })
    .encode(&mut out);
    conn.writer.write_all(&out).await.unwrap();
    let piece = read_msg(&mut conn, &mut buf).await;
    assert_eq!(piece[4], 7);
    let took = asked.elapsed().as_secs_f64();
    let expected = 0.040 + (16384.0 + 13.0) / rate as f64;
    assert!(
        (took - expected).abs() < 0.002,
        "took {took:.4} s, expected {expected:.4} s"
    );
}
