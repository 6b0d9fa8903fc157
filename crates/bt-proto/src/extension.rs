//! BEP 10 extension handshake: the bencoded payload of
//! `Message::Extended { id: 0, .. }`.
//!
//! IDs in `m` are chosen by the *sender* of a handshake: to send a peer an
//! extension message, use the ID the peer advertised. ID 0 means the peer
//! disabled that extension. Peers send junk here (strings as IDs, huge
//! numbers), so malformed entries are skipped rather than failing the whole
//! handshake; only a payload that is not a bencoded dictionary is an error.

use crate::bencode::{self, BencodeError, Limits, Value};
use std::collections::BTreeMap;

/// Extension handshake ID on the wire (`Message::Extended { id: 0 }`).
pub const HANDSHAKE_ID: u8 = 0;
pub const UT_METADATA: &str = "ut_metadata";
pub const UT_PEX: &str = "ut_pex";

/// Handshakes are a few hundred bytes; this leaves room for long client
/// names and many extensions while bounding what a peer can make us parse.
const LIMITS: Limits = Limits {
    max_depth: 8,
    max_input: 64 * 1024,
    max_items: 4096,
};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtendedHandshake {
    /// Extension name to the sender's message ID (0 = disabled).
    pub m: BTreeMap<String, u8>,
    /// Client name and version.
    pub v: Option<String>,
    /// The sender's listen port.
    pub p: Option<u16>,
    /// How many outstanding requests the sender accepts (0 is ignored).
    pub reqq: Option<u32>,
    /// BEP 9: size of the info dictionary in bytes.
    pub metadata_size: Option<u32>,
    /// Our address as the sender sees it: 4 or 16 bytes.
    pub yourip: Option<Vec<u8>>,
    /// BEP 21: the sender will not download.
    pub upload_only: bool,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExtensionError {
    #[error("extension handshake is not valid bencode: {0}")]
    Bencode(#[from] BencodeError),
    #[error("extension handshake is not a bencoded dictionary")]
    NotADict,
}

impl ExtendedHandshake {
    pub fn decode(payload: &[u8]) -> Result<Self, ExtensionError> {
        let v = bencode::decode_with(payload, &LIMITS)?;
        if v.as_dict().is_none() {
            return Err(ExtensionError::NotADict);
        }
        let m = v
            .get(b"m")
            .and_then(Value::as_dict)
            .map(|m| {
                m.iter()
                    .filter_map(|(name, id)| {
                        let name = std::str::from_utf8(name).ok()?;
                        let id = u8::try_from(id.as_int()?).ok()?;
                        Some((name.to_owned(), id))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let int = |key: &[u8]| v.get(key).and_then(Value::as_int);
        Ok(ExtendedHandshake {
            m,
            v: v.get(b"v")
                .and_then(Value::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            p: int(b"p")
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0),
            reqq: int(b"reqq")
                .and_then(|r| u32::try_from(r).ok())
                .filter(|r| *r != 0),
            metadata_size: int(b"metadata_size").and_then(|s| u32::try_from(s).ok()),
            yourip: v
                .get(b"yourip")
                .and_then(Value::as_bytes)
                .filter(|b| b.len() == 4 || b.len() == 16)
                .map(<[u8]>::to_vec),
            upload_only: int(b"upload_only").is_some_and(|u| u != 0),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut d = Value::dict();
        let m: BTreeMap<Vec<u8>, Value> = self
            .m
            .iter()
            .map(|(k, id)| (k.as_bytes().to_vec(), Value::Int(i64::from(*id))))
            .collect();
        d.insert("m", Value::Dict(m));
        if let Some(v) = &self.v {
            d.insert("v", v.as_str());
        }
        if let Some(p) = self.p {
            d.insert("p", i64::from(p));
        }
        if let Some(r) = self.reqq {
            d.insert("reqq", i64::from(r));
        }
        if let Some(s) = self.metadata_size {
            d.insert("metadata_size", i64::from(s));
        }
        if let Some(ip) = &self.yourip {
            d.insert("yourip", ip.as_slice());
        }
        if self.upload_only {
            d.insert("upload_only", 1);
        }
        bencode::encode(&d)
    }

    /// [`encode`](Self::encode) plus BEP 10's `e` key: 1 when we prefer
    /// encrypted (MSE) connections, what peers copy into the PEX flag
    /// [`crate::pex::PexFlags::ENCRYPTION`]. A separate method so the
    /// struct (built with literals elsewhere) keeps its fields.
    pub fn encode_with_encryption(&self, prefers_encryption: bool) -> Vec<u8> {
        let mut d = bencode::decode_with(&self.encode(), &LIMITS).expect("own encoding decodes");
        if prefers_encryption {
            d.insert("e", 1);
        }
        bencode::encode(&d)
    }

    /// The sender's ID for `extension`, if it supports it (0 = disabled).
    pub fn id_of(&self, extension: &str) -> Option<u8> {
        self.m.get(extension).copied().filter(|id| *id != 0)
    }

    /// Applies a re-sent handshake: `m` updates are additive (an ID of 0
    /// disables an extension), other fields are replaced when present.
    pub fn update(&mut self, newer: ExtendedHandshake) {
        self.m.extend(newer.m);
        self.v = newer.v.or(self.v.take());
        self.p = newer.p.or(self.p);
        self.reqq = newer.reqq.or(self.reqq);
        self.metadata_size = newer.metadata_size.or(self.metadata_size);
        self.yourip = newer.yourip.or(self.yourip.take());
        self.upload_only = newer.upload_only;
    }
}

/// BEP 10's `e` from a raw handshake payload: `Some(true)` when the sender
/// prefers encrypted connections, `None` when the key is absent or the
/// payload is not a handshake. Kept beside [`ExtendedHandshake`] rather
/// than in it so the struct's fields stay as they are.
pub fn prefers_encryption(payload: &[u8]) -> Option<bool> {
    let v = bencode::decode_with(payload, &LIMITS).ok()?;
    v.get(b"e").and_then(Value::as_int).map(|e| e != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_preference_round_trips() {
        let h = ExtendedHandshake {
            v: Some("Riptide 0.1".into()),
            ..Default::default()
        };
        let with = h.encode_with_encryption(true);
        assert_eq!(prefers_encryption(&with), Some(true));
        assert_eq!(ExtendedHandshake::decode(&with).unwrap(), h);
        assert_eq!(prefers_encryption(&h.encode_with_encryption(false)), None);
        assert_eq!(prefers_encryption(b"d1:ei0ee"), Some(false));
        assert_eq!(prefers_encryption(b"not bencode"), None);
    }
    use proptest::prelude::*;

    #[test]
    fn bep10_example() {
        // The example from BEP 10 plus BEP 9's metadata_size.
        let h = ExtendedHandshake::decode(
            b"d1:md11:LT_metadatai1e6:ut_pexi2ee1:pi6881e1:v13:\xc2\xb5Torrent 1.2e",
        )
        .unwrap();
        assert_eq!(h.m.get("LT_metadata"), Some(&1));
        assert_eq!(h.id_of(UT_PEX), Some(2));
        assert_eq!(h.p, Some(6881));
        assert_eq!(h.v.as_deref(), Some("µTorrent 1.2"));
        assert_eq!(ExtendedHandshake::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn junk_entries_are_ignored() {
        let h = ExtendedHandshake::decode(
            b"d1:md11:ut_metadatai0e6:ut_pex3:abc4:hugei300ee4:reqqi0e1:pi70000e6:yourip3:abc13:metadata_sizei-5e11:upload_onlyi1ee",
        )
        .unwrap();
        assert_eq!(h.m.len(), 1);
        assert_eq!(h.id_of(UT_METADATA), None);
        assert_eq!(h.m.get(UT_METADATA), Some(&0));
        assert_eq!(h.reqq, None);
        assert_eq!(h.p, None);
        assert_eq!(h.yourip, None);
        assert_eq!(h.metadata_size, None);
        assert!(h.upload_only);
        assert_eq!(
            ExtendedHandshake::decode(b"de").unwrap(),
            ExtendedHandshake::default()
        );
        assert_eq!(
            ExtendedHandshake::decode(b"le"),
            Err(ExtensionError::NotADict)
        );
        assert!(matches!(
            ExtendedHandshake::decode(b"d1:m"),
            Err(ExtensionError::Bencode(_))
        ));
    }

    #[test]
    fn resent_handshake_is_additive() {
        let mut h = ExtendedHandshake::decode(b"d1:md11:ut_metadatai3e6:ut_pexi1eee").unwrap();
        h.update(ExtendedHandshake::decode(b"d1:md6:ut_pexi0eee").unwrap());
        assert_eq!(h.id_of(UT_METADATA), Some(3));
        assert_eq!(h.id_of(UT_PEX), None);
    }

    proptest! {
        #[test]
        fn round_trip(
            m in proptest::collection::btree_map(".{0,12}", any::<u8>(), 0..6),
            v in proptest::option::of(".{0,20}"),
            p in proptest::option::of(1u16..),
            reqq in proptest::option::of(1u32..),
            metadata_size in proptest::option::of(any::<u32>()),
            yourip in proptest::option::of(prop_oneof![
                proptest::collection::vec(any::<u8>(), 4),
                proptest::collection::vec(any::<u8>(), 16),
            ]),
            upload_only in any::<bool>(),
        ) {
            let h = ExtendedHandshake { m, v, p, reqq, metadata_size, yourip, upload_only };
            prop_assert_eq!(ExtendedHandshake::decode(&h.encode()).unwrap(), h);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = ExtendedHandshake::decode(&bytes);
        }

        #[test]
        fn decode_arbitrary_dicts_never_panics(v in crate::bencode::tests::arb_value()) {
            let mut d = Value::dict();
            d.insert("m", v.clone());
            d.insert("p", v.clone());
            d.insert("yourip", v);
            let _ = ExtendedHandshake::decode(&bencode::encode(&d));
        }
    }
}
