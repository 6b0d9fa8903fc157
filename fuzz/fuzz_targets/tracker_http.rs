//! HTTP tracker codecs: no panics; parsed responses survive a re-encode.
#![no_main]

use bt_proto::tracker::http;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = http::parse_announce_response(data) {
        let mut back = http::parse_announce_response(&http::encode_announce_response(&r))
            .expect("own encoding parses");
        // The compact form groups IPv4 before IPv6; dict peers may not.
        r.peers.sort();
        back.peers.sort();
        assert_eq!(back, r);
    }
    if let Ok(s) = http::parse_scrape_response(data) {
        assert_eq!(
            http::parse_scrape_response(&http::encode_scrape_response(&s)).as_ref(),
            Ok(&s)
        );
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(req) = http::parse_announce_query(&text) {
        let url = http::announce_url("http://127.0.0.1/announce", &req);
        let query = url.split_once('?').expect("has a query").1;
        assert_eq!(http::parse_announce_query(query).as_ref(), Ok(&req));
    }
    let _ = http::scrape_url(&text, &[]);
});
