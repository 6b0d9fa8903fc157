//! RFC 3986 percent-encoding, shared by magnet links and tracker URLs.
//!
//! Both carry binary data (info-hashes, peer ids) and text typed by people,
//! so encoding is conservative (everything but unreserved characters) and
//! decoding is forgiving (a stray `%` stays literal, as in browsers).

use std::fmt::Write;

/// Appends `bytes` with everything but `A-Z a-z 0-9 - . _ ~` escaped.
pub(crate) fn encode_into(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Decodes `%XX` escapes into raw bytes. `plus_is_space` applies HTML form
/// encoding, right for query strings written by browsers but wrong for URLs
/// nested inside them.
pub(crate) fn decode(s: &str, plus_is_space: bool) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |i: usize| b.get(i).and_then(|&c| (c as char).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                    out.push((h << 4 | l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64), plus in any::<bool>()) {
            let mut s = String::new();
            encode_into(&bytes, &mut s);
            prop_assert_eq!(decode(&s, plus), bytes);
        }

        #[test]
        fn decode_never_panics(s in ".{0,64}") {
            let _ = decode(&s, true);
        }
    }
}
