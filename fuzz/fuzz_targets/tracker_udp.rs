//! UDP tracker codecs (BEP 15): no panics; decode(encode(x)) == x.
#![no_main]

use bt_proto::tracker::udp::{UdpRequest, UdpResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = UdpRequest::decode(data) {
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(UdpRequest::decode(&out).as_ref(), Ok(&r));
    }
    for v6 in [false, true] {
        if let Ok(r) = UdpResponse::decode(data, v6) {
            let mut out = Vec::new();
            r.encode(&mut out);
            let out_v6 = matches!(&r, UdpResponse::Announce { peers, .. } if peers.iter().any(|p| p.is_ipv6()));
            assert_eq!(UdpResponse::decode(&out, out_v6).as_ref(), Ok(&r));
        }
    }
});
