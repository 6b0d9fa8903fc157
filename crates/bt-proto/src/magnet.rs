//! Magnet links (BEP 9 `xt`/`dn`/`tr`/`x.pe`, BEP 53 `so`, BEP 52
//! `xt=urn:btmh:` v2 info-hashes).
//!
//! Links are pasted by people and shared by web pages, so parsing is lenient
//! where no meaning is lost (unknown parameters, `tr.1`-style numbered keys,
//! stray `%` signs, upper-case scheme) and strict where a mistake would
//! fetch the wrong torrent (a bad info-hash is an error, never ignored).

use crate::percent;
use crate::{InfoHash, InfoHashV2, ParseInfoHashError};
use std::fmt::Write;

/// Longest accepted URI. Real links with dozens of trackers stay far below.
pub const MAX_URI_LEN: usize = 64 * 1024;
/// Most file indices a `so=` parameter may expand to; `so=0-4294967295`
/// would otherwise allocate 16 GiB.
pub const MAX_SELECTED: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    /// The 20-byte swarm id: the `btih` hash, or for a v2-only link (only
    /// `btmh`) the truncated v2 hash, which is what BEP 52 peers, trackers
    /// and the DHT use.
    pub info_hash: InfoHash,
    pub display_name: Option<String>,
    /// `tr` parameters in the order given, duplicates removed.
    pub trackers: Vec<String>,
    /// `x.pe` peer addresses, `host:port` exactly as given.
    pub peers: Vec<String>,
    /// BEP 53 `so`: file indices to download, ranges expanded, in the
    /// order given.
    pub select_only: Option<Vec<u32>>,
    /// BEP 52 `btmh` (SHA-256 multihash) when the link has one: a v2-only
    /// or hybrid torrent. Metadata fetched for it must hash to this.
    pub info_hash_v2: Option<InfoHashV2>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MagnetError {
    #[error("magnet link is {len} bytes long; the limit is {MAX_URI_LEN}")]
    TooLong { len: usize },
    #[error("not a magnet link (expected it to start with \"magnet:?\")")]
    NotMagnet,
    #[error("magnet link has no BitTorrent info-hash (xt=urn:btih:...)")]
    MissingInfoHash,
    /// No longer returned: links with only a `btmh` hash parse (see
    /// [`Magnet::info_hash_v2`]). Kept so matching code still compiles.
    #[error("v2 magnets not supported yet (the link has only a btmh hash)")]
    V2Only,
    #[error(
        "magnet link has an invalid btmh hash {0:?} (expected 1220 followed by 64 hex characters, a SHA-256 multihash)"
    )]
    BadMultihash(String),
    #[error("magnet link has an invalid info-hash: {0}")]
    BadInfoHash(#[from] ParseInfoHashError),
    #[error("magnet link has an invalid so= file selection {0:?}")]
    BadSelectOnly(String),
    #[error("magnet link selects more than {MAX_SELECTED} files")]
    TooManySelected,
}

impl Magnet {
    /// A magnet for `info_hash` with nothing else set.
    pub fn new(info_hash: InfoHash) -> Self {
        Magnet {
            info_hash,
            display_name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
            select_only: None,
            info_hash_v2: None,
        }
    }

    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        if uri.len() > MAX_URI_LEN {
            return Err(MagnetError::TooLong { len: uri.len() });
        }
        let uri = uri.trim();
        let query = uri
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
            .map(|_| &uri[8..])
            .ok_or(MagnetError::NotMagnet)?;

        let mut info_hash = None;
        let mut info_hash_v2 = None;
        let mut display_name = None;
        let mut trackers: Vec<String> = Vec::new();
        // A 64 KiB link can hold ~10^4 `tr` keys; a linear duplicate check
        // would make parsing quadratic.
        let mut seen_trackers = std::collections::HashSet::new();
        let mut peers = Vec::new();
        let mut select_only = None;

        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(raw_key, false);
            // `tr.1`, `xt.2`: numbered variants of a key mean the same.
            let base = match key.split_once('.') {
                Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
                _ => key.as_str(),
            };
            match base {
                "xt" => {
                    let value = percent_decode(raw_value, false);
                    if let Some(h) = strip_prefix_ignore_case(&value, "urn:btih:") {
                        if info_hash.is_none() {
                            info_hash = Some(InfoHash::from_hex_or_base32(h)?);
                        }
                    } else if let Some(h) = strip_prefix_ignore_case(&value, "urn:btmh:")
                        && info_hash_v2.is_none()
                    {
                        info_hash_v2 = Some(parse_btmh(h)?);
                    }
                }
                "dn" => display_name = Some(percent_decode(raw_value, true)),
                "tr" => {
                    let t = percent_decode(raw_value, false);
                    if !t.is_empty() && seen_trackers.insert(t.clone()) {
                        trackers.push(t);
                    }
                }
                "x.pe" => {
                    let p = percent_decode(raw_value, false);
                    if !p.is_empty() {
                        peers.push(p);
                    }
                }
                "so" => select_only = Some(parse_select_only(&percent_decode(raw_value, false))?),
                _ => {}
            }
        }
        let info_hash = match (info_hash, info_hash_v2) {
            (Some(h), _) => h,
            (None, Some(v2)) => v2.truncated(),
            (None, None) => return Err(MagnetError::MissingInfoHash),
        };
        Ok(Magnet {
            info_hash,
            display_name,
            trackers,
            peers,
            select_only,
            info_hash_v2,
        })
    }

    pub fn to_uri(&self) -> String {
        // A v2-only link carries only btmh: a btih of the truncated hash
        // would send v1-only clients after metadata whose SHA-1 never
        // matches.
        let v2_only = self
            .info_hash_v2
            .is_some_and(|v2| v2.truncated() == self.info_hash);
        let mut s = String::from("magnet:?");
        if !v2_only {
            s.push_str("xt=urn:btih:");
            s.push_str(&self.info_hash.to_hex());
        }
        if let Some(v2) = &self.info_hash_v2 {
            if !v2_only {
                s.push('&');
            }
            s.push_str("xt=urn:btmh:1220");
            s.push_str(&v2.to_hex());
        }
        if let Some(dn) = &self.display_name {
            s.push_str("&dn=");
            percent::encode_into(dn.as_bytes(), &mut s);
        }
        for t in &self.trackers {
            s.push_str("&tr=");
            percent::encode_into(t.as_bytes(), &mut s);
        }
        for p in &self.peers {
            s.push_str("&x.pe=");
            percent::encode_into(p.as_bytes(), &mut s);
        }
        if let Some(so) = &self.select_only {
            s.push_str("&so=");
            write_select_only(so, &mut s);
        }
        s
    }
}

/// A `btmh` value: multihash code 0x12 (SHA-256), length 0x20, 32 bytes.
fn parse_btmh(h: &str) -> Result<InfoHashV2, MagnetError> {
    let bad = || MagnetError::BadMultihash(h.chars().take(80).collect());
    let digest = strip_prefix_ignore_case(h, "1220").ok_or_else(bad)?;
    InfoHashV2::from_hex(digest).map_err(|_| bad())
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    String::from_utf8_lossy(&percent::decode(s, plus_is_space)).into_owned()
}

fn parse_select_only(s: &str) -> Result<Vec<u32>, MagnetError> {
    let bad = || MagnetError::BadSelectOnly(s.chars().take(64).collect());
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (part, part),
        };
        let lo: u32 = lo.trim().parse().map_err(|_| bad())?;
        let hi: u32 = hi.trim().parse().map_err(|_| bad())?;
        if hi < lo {
            return Err(bad());
        }
        // Checked before pushing so a huge range never allocates.
        if (hi - lo) as usize >= MAX_SELECTED - out.len().min(MAX_SELECTED) {
            return Err(MagnetError::TooManySelected);
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

/// Writes indices back in `so=` form, folding consecutive runs into ranges.
fn write_select_only(indices: &[u32], out: &mut String) {
    let mut i = 0;
    let mut first = true;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && end != u32::MAX && indices[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        if !first {
            out.push(',');
        }
        first = false;
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}-{end}");
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn typical_link() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=Big+Buck%20Bunny&tr=udp%3A%2F%2F127.0.0.1%3A6969&tr=http://127.0.0.1/announce?a=1%26b=2&x.pe=127.0.0.1:6881&foo=bar"
        ))
        .unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.display_name.as_deref(), Some("Big Buck Bunny"));
        assert_eq!(
            m.trackers,
            ["udp://127.0.0.1:6969", "http://127.0.0.1/announce?a=1&b=2"]
        );
        assert_eq!(m.peers, ["127.0.0.1:6881"]);
        assert_eq!(m.select_only, None);
        assert_eq!(Magnet::parse(&m.to_uri()).unwrap(), m);
    }

    #[test]
    fn base32_numbered_keys_and_select_only() {
        let m = Magnet::parse(
            "MAGNET:?xt.1=urn:BTIH:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK&tr.1=udp://a:1&tr.2=udp://b:2&tr.3=udp://a:1&so=0,2,4-6",
        )
        .unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.trackers, ["udp://a:1", "udp://b:2"]);
        assert_eq!(m.select_only, Some(vec![0, 2, 4, 5, 6]));
        assert!(m.to_uri().ends_with("&so=0,2,4-6"));
    }

    #[test]
    fn errors_are_clear() {
        assert_eq!(Magnet::parse("http://x"), Err(MagnetError::NotMagnet));
        assert_eq!(
            Magnet::parse("magnet:?dn=x"),
            Err(MagnetError::MissingInfoHash)
        );
        assert!(matches!(
            Magnet::parse("magnet:?xt=urn:btmh:1114caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa"),
            Err(MagnetError::BadMultihash(_))
        ));
        assert!(matches!(
            Magnet::parse("magnet:?xt=urn:btmh:1220caf1"),
            Err(MagnetError::BadMultihash(_))
        ));
        assert!(matches!(
            Magnet::parse("magnet:?xt=urn:btih:abc"),
            Err(MagnetError::BadInfoHash(_))
        ));
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&so=0-4294967295")),
            Err(MagnetError::TooManySelected)
        );
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&so=5-2")),
            Err(MagnetError::BadSelectOnly(_))
        ));
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&so=a")),
            Err(MagnetError::BadSelectOnly(_))
        ));
        let long = format!("magnet:?xt=urn:btih:{HEX}&dn={}", "a".repeat(MAX_URI_LEN));
        assert!(matches!(
            Magnet::parse(&long),
            Err(MagnetError::TooLong { .. })
        ));
    }

    #[test]
    fn v2_and_hybrid_links() {
        let v2hex = "caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e";
        let v2 = format!("magnet:?xt=urn:btmh:1220{v2hex}&dn=x");
        let m = Magnet::parse(&v2).unwrap();
        assert_eq!(m.info_hash_v2.unwrap().to_hex(), v2hex);
        assert_eq!(m.info_hash.to_hex(), &v2hex[..40]);
        assert_eq!(m.to_uri(), v2);
        assert_eq!(Magnet::parse(&m.to_uri()).unwrap(), m);
        // Hybrid: btih is the swarm id, btmh kept beside it.
        let h = Magnet::parse(&format!("{v2}&xt=urn:btih:{HEX}")).unwrap();
        assert_eq!(h.info_hash.to_hex(), HEX);
        assert_eq!(h.info_hash_v2, m.info_hash_v2);
        assert_eq!(
            h.to_uri(),
            format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:1220{v2hex}&dn=x")
        );
        assert_eq!(Magnet::parse(&h.to_uri()).unwrap(), h);
    }

    #[test]
    fn select_only_cap_counts_across_parts() {
        let ok = format!("magnet:?xt=urn:btih:{HEX}&so=0-49999,50000-99999");
        assert_eq!(
            Magnet::parse(&ok).unwrap().select_only.unwrap().len(),
            100_000
        );
        let over = format!("magnet:?xt=urn:btih:{HEX}&so=0-49999,50000-100000");
        assert_eq!(Magnet::parse(&over), Err(MagnetError::TooManySelected));
    }

    #[test]
    fn many_trackers_parse_quickly() {
        let mut uri = format!("magnet:?xt=urn:btih:{HEX}");
        let mut i = 0;
        while uri.len() < MAX_URI_LEN - 16 {
            uri.push_str(&format!("&tr={i}"));
            i += 1;
        }
        let start = std::time::Instant::now();
        let m = Magnet::parse(&uri).unwrap();
        assert_eq!(m.trackers.len(), i);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn stray_percent_signs_survive() {
        let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=100%&tr=%zz")).unwrap();
        assert_eq!(m.display_name.as_deref(), Some("100%"));
        assert_eq!(m.trackers, ["%zz"]);
    }

    proptest! {
        #[test]
        fn round_trip(
            hash in any::<[u8; 20]>(),
            dn in proptest::option::of(".{0,20}"),
            trackers in proptest::collection::btree_set(".{1,20}", 0..4),
            peers in proptest::collection::vec("[a-z0-9.:]{1,20}", 0..3),
            so in proptest::option::of(proptest::collection::vec(0u32..50, 0..10)),
            v2 in proptest::option::of(any::<[u8; 32]>()),
            v2_only in any::<bool>(),
        ) {
            let info_hash_v2 = v2.map(InfoHashV2);
            let m = Magnet {
                info_hash: match info_hash_v2 {
                    Some(v2) if v2_only => v2.truncated(),
                    _ => InfoHash(hash),
                },
                info_hash_v2,
                display_name: dn,
                trackers: trackers.into_iter().filter(|t| !t.trim().is_empty()).collect(),
                peers,
                select_only: so,
            };
            let back = Magnet::parse(&m.to_uri()).unwrap();
            // Leading/trailing whitespace of the whole URI is trimmed; our
            // encoder escapes spaces, so nothing is lost.
            prop_assert_eq!(back, m);
        }

        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = Magnet::parse(&s);
            let _ = Magnet::parse(&format!("magnet:?{s}"));
        }

        #[test]
        fn parse_magnet_shaped_never_panics(
            parts in proptest::collection::vec(prop_oneof![
                Just("xt=urn:btih:".to_string()), Just("&".to_string()), Just("=".to_string()),
                Just("%".to_string()), Just("so=".to_string()), Just("-".to_string()),
                Just(",".to_string()), "[0-9a-fA-F]{1,40}", Just("tr.1=".to_string()),
            ], 0..20)
        ) {
            let _ = Magnet::parse(&format!("magnet:?{}", parts.concat()));
        }
    }
}
