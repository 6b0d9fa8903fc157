//! Bencode decoder: no panics, and whatever decodes re-encodes canonically.
#![no_main]

use bt_proto::bencode::{self, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(v) = bencode::decode(data) {
        let enc = bencode::encode(&v);
        let back =
            bencode::decode_strict(&enc, &limits).expect("canonical encoding decodes strictly");
        assert_eq!(back, v);
        assert_eq!(bencode::encode(&back), enc);
    }
    if let Ok(v) = bencode::decode_strict(data, &limits) {
        // Strict input is canonical input.
        assert_eq!(bencode::encode(&v), data);
    }
    if let Ok((v, used)) = bencode::decode_prefix(data, &limits) {
        assert!(used <= data.len());
        assert_eq!(bencode::decode(&data[..used]).as_ref(), Ok(&v));
    }
    if let Ok(Some(span)) = bencode::find_raw(data, b"info") {
        let whole = bencode::decode(data).expect("find_raw implies a valid dict");
        assert_eq!(
            bencode::decode(&data[span]).ok().as_ref(),
            whole.get(b"info")
        );
    }
});
