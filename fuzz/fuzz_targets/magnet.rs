//! Magnet parser: no panics, and `to_uri` of a parsed link parses back to it.
#![no_main]

use bt_proto::magnet::{MAX_SELECTED, MAX_URI_LEN, Magnet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    for uri in [
        s.to_string(),
        format!("magnet:?xt=urn:btih:{}&{s}", "a".repeat(40)),
    ] {
        if let Ok(m) = Magnet::parse(&uri) {
            assert!(
                m.select_only
                    .as_ref()
                    .is_none_or(|so| so.len() <= MAX_SELECTED)
            );
            let again = m.to_uri();
            if again.len() <= MAX_URI_LEN {
                assert_eq!(Magnet::parse(&again).as_ref(), Ok(&m));
            }
        }
    }
});
