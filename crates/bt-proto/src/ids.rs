//! The two 20-byte identifiers of the protocol.

use std::fmt;

/// SHA-1 of the bencoded `info` dictionary (BEP 3, v1 torrents).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

/// SHA-256 of the bencoded `info` dictionary (BEP 52, v2 and hybrid
/// torrents).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHashV2(pub [u8; 32]);

/// A peer's self-chosen identifier, sent in the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub [u8; 20]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseInfoHashError {
    #[error("info-hash must be 40 hex or 32 base32 characters, got {0}")]
    BadLength(usize),
    #[error("info-hash contains a character that is not hex or base32")]
    BadCharacter,
    #[error("v2 info-hash must be 64 hex characters, got {0}")]
    BadV2Length(usize),
}

impl InfoHash {
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// Lower-case hex, as used in magnet links and URLs.
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// Parses 40 hex characters or 32 base32 (RFC 4648, as in old magnet links).
    pub fn from_hex_or_base32(s: &str) -> Result<Self, ParseInfoHashError> {
        match s.len() {
            40 => {
                let mut out = [0u8; 20];
                for (i, pair) in s.as_bytes().chunks(2).enumerate() {
                    let hi = hex_val(pair[0]).ok_or(ParseInfoHashError::BadCharacter)?;
                    let lo = hex_val(pair[1]).ok_or(ParseInfoHashError::BadCharacter)?;
                    out[i] = (hi << 4) | lo;
                }
                Ok(InfoHash(out))
            }
            32 => {
                let mut out = [0u8; 20];
                let mut acc: u64 = 0;
                let mut bits = 0;
                let mut pos = 0;
                for c in s.bytes() {
                    let v = match c {
                        b'A'..=b'Z' => c - b'A',
                        b'a'..=b'z' => c - b'a',
                        b'2'..=b'7' => c - b'2' + 26,
                        _ => return Err(ParseInfoHashError::BadCharacter),
                    };
                    acc = (acc << 5) | u64::from(v);
                    bits += 5;
                    if bits >= 8 {
                        bits -= 8;
                        out[pos] = (acc >> bits) as u8;
                        pos += 1;
                    }
                }
                Ok(InfoHash(out))
            }
            n => Err(ParseInfoHashError::BadLength(n)),
        }
    }
}

impl InfoHashV2 {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 20 bytes: what BEP 52 puts wherever 20 bytes are expected
    /// (peer handshake, trackers, DHT, MSE's SKEY, a v2-only torrent's
    /// `btih`-sized swarm id).
    pub fn truncated(&self) -> InfoHash {
        let mut out = [0u8; 20];
        out.copy_from_slice(&self.0[..20]);
        InfoHash(out)
    }

    /// Lower-case hex (64 characters).
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, ParseInfoHashError> {
        if s.len() != 64 {
            return Err(ParseInfoHashError::BadV2Length(s.len()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or(ParseInfoHashError::BadCharacter)?;
            let lo = hex_val(pair[1]).ok_or(ParseInfoHashError::BadCharacter)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(InfoHashV2(out))
    }
}

impl fmt::Display for InfoHashV2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHashV2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHashV2({})", self.to_hex())
    }
}

impl PeerId {
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Peer ids are usually an ASCII client tag followed by random bytes.
        let printable: String = self
            .0
            .iter()
            .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
            .collect();
        write!(f, "PeerId({printable})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base32_agree() {
        let hex = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
        let b32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK";
        let a = InfoHash::from_hex_or_base32(hex).unwrap();
        let b = InfoHash::from_hex_or_base32(b32).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_hex(), hex);
    }

    #[test]
    fn v2_hash_hex_and_truncation() {
        let hex = "edf3f3c59c1d7d6d3d6fed64a0e605c808f3868b2e5b8f69551bc7f1b7273111";
        let h = InfoHashV2::from_hex(hex).unwrap();
        assert_eq!(h.to_hex(), hex);
        assert_eq!(
            h.truncated().to_hex(),
            "edf3f3c59c1d7d6d3d6fed64a0e605c808f3868b"
        );
        assert_eq!(
            InfoHashV2::from_hex(&hex[..40]),
            Err(ParseInfoHashError::BadV2Length(40))
        );
        assert_eq!(
            InfoHashV2::from_hex(&"x".repeat(64)),
            Err(ParseInfoHashError::BadCharacter)
        );
    }

    #[test]
    fn bad_info_hash_is_an_error() {
        assert_eq!(
            InfoHash::from_hex_or_base32("abc"),
            Err(ParseInfoHashError::BadLength(3))
        );
        assert_eq!(
            InfoHash::from_hex_or_base32(&"g".repeat(40)),
            Err(ParseInfoHashError::BadCharacter)
        );
    }
}
