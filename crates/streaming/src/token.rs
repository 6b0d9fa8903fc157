//! Signed, expiring stream tokens.
//!
//! Players such as VLC, ffmpeg or a TV cannot send the session cookie, so a
//! stream URL carries `?token=<expiry>.<mac>`, where the MAC is
//! HMAC-SHA256 over the path and the expiry. The secret never leaves the
//! server; a token works for exactly one path until it expires.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("stream token is malformed")]
    Malformed,
    #[error("stream token has expired; reload the page for a new link")]
    Expired,
    #[error("stream token does not match this URL")]
    BadSignature,
}

#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// `secret` should be at least 32 random bytes.
    pub fn new(secret: &[u8]) -> Self {
        Signer {
            key: secret.to_vec(),
        }
    }

    fn mac(&self, path: &str, expires: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// A token for `path` valid until `expires` (Unix seconds).
    pub fn sign(&self, path: &str, expires: u64) -> String {
        let tag = self.mac(path, expires).finalize().into_bytes();
        let mut s = format!("{expires}.");
        for b in tag {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Checks `token` for `path` at time `now` (Unix seconds), in constant
    /// time over the MAC.
    pub fn verify(&self, path: &str, token: &str, now: u64) -> Result<(), TokenError> {
        let (exp, hex) = token.split_once('.').ok_or(TokenError::Malformed)?;
        if exp.len() > 20 || hex.len() != 64 {
            return Err(TokenError::Malformed);
        }
        let expires: u64 = exp.parse().map_err(|_| TokenError::Malformed)?;
        let mut tag = [0u8; 32];
        for (i, out) in tag.iter_mut().enumerate() {
            *out = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or(TokenError::Malformed)?, 16)
                .map_err(|_| TokenError::Malformed)?;
        }
        self.mac(path, expires)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        if now > expires {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sign_and_verify() {
        let s = Signer::new(b"0123456789abcdef0123456789abcdef");
        let t = s.sign("/stream/abc/0", 1000);
        assert_eq!(s.verify("/stream/abc/0", &t, 999), Ok(()));
        assert_eq!(
            s.verify("/stream/abc/0", &t, 1001),
            Err(TokenError::Expired)
        );
        assert_eq!(
            s.verify("/stream/abc/1", &t, 999),
            Err(TokenError::BadSignature)
        );
        let forged = t.replacen("1000", "9999", 1);
        assert_eq!(
            s.verify("/stream/abc/0", &forged, 999),
            Err(TokenError::BadSignature)
        );
        let other = Signer::new(b"another secret, just as long....");
        assert_eq!(
            other.verify("/stream/abc/0", &t, 999),
            Err(TokenError::BadSignature)
        );
        assert_eq!(s.verify("/x", "garbage", 0), Err(TokenError::Malformed));
        assert_eq!(s.verify("/x", "1.zz", 0), Err(TokenError::Malformed));
    }

    proptest! {
        #[test]
        fn arbitrary_tokens_never_verify_or_panic(token in ".{0,120}") {
            let s = Signer::new(b"k");
            prop_assert!(s.verify("/p", &token, 0).is_err());
        }
    }
}
