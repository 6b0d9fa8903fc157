//! The DHT (BEP 5 KRPC) parser of `mainline`, the crate the engine uses
//! for its DHT. mainline 8 keeps its message codec private
//! (`Message::from_bytes` lives in a private module), so this target drives
//! it the only way a peer can: each input is one UDP datagram sent to a
//! real `mainline::Dht` server on 127.0.0.1, followed by a `ping`. The
//! target fails if mainline panics (libfuzzer-sys aborts on a panic in any
//! thread) or stops answering the ping. Waiting for the pong also makes
//! the datagram's processing finish inside this run, so coverage is
//! attributed to the right input.
//!
//! Run it only inside a fresh network namespace with just loopback
//! (`run.sh` does: `unshare -n`), so nothing a fuzzed message says can make
//! mainline send a packet off the machine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

struct Harness {
    _dht: mainline::Dht,
    node: SocketAddr,
    socket: UdpSocket,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let dht = mainline::Dht::builder()
            .server_mode()
            .no_bootstrap()
            .bind_address(Ipv4Addr::LOCALHOST)
            .port(0)
            .build()
            .expect("start mainline on 127.0.0.1");
        // The blocking `info` is deprecated in favour of the async API,
        // which would need an executor here for one call at start-up.
        #[allow(deprecated)]
        let node = SocketAddr::V4(dht.info().local_addr());
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Harness {
            _dht: dht,
            node,
            socket,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // mainline reads into a 2048-byte buffer; longer datagrams are cut.
    if data.len() > 2048 {
        return;
    }
    let h = harness();
    let _ = h.socket.send_to(data, h.node);

    static TID: AtomicU32 = AtomicU32::new(0);
    let tid = TID.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    let mut ping = b"d1:ad2:id20:".to_vec();
    ping.extend_from_slice(&[0x42; 20]);
    ping.extend_from_slice(b"e1:q4:ping1:t4:");
    ping.extend_from_slice(&tid);
    ping.extend_from_slice(b"1:y1:qe");
    h.socket.send_to(&ping, h.node).unwrap();

    let mut want = b"1:t4:".to_vec();
    want.extend_from_slice(&tid);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "mainline stopped answering pings"
        );
        if let Ok((n, _)) = h.socket.recv_from(&mut buf)
            && buf[..n].windows(want.len()).any(|w| w == want.as_slice())
            && buf[..n].windows(6).any(|w| w == b"1:y1:r")
        {
            break;
        }
    }
});
