//! MSE/PE (message stream encryption) on real connections: drives
//! `bt_proto::mse`'s sans-IO machines over a [`Connection`] and leaves the
//! connection ready for the plain BitTorrent handshake.
//!
//! Receiving is made transparent by [`DecryptingReader`], which decrypts in
//! place in the caller's buffer (no copy, no allocation per read). Sending
//! is not: an `AsyncWrite` wrapper would need its own buffer, because the
//! caller's is borrowed immutably. The connection task encrypts its send
//! buffer in place instead, just before each write (see `peer::drive`).
//!
//! Cancellation: these futures own the connection; dropping one (timeout)
//! drops the socket, so no half-done handshake survives.

use crate::transport::{Connection, PeerReader};
use bt_proto::InfoHash;
use bt_proto::mse::{
    CryptoMethod, CryptoMethods, EncryptionMode, Established, HandshakeRandom, Initiator, MseError,
    PeerCipher, Rc4Stream, Receiver,
};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

/// Bytes read from the socket per step of a handshake; the machines buffer
/// what they do not use yet.
const HANDSHAKE_READ: usize = 1024;

/// The sending half of an established stream's cipher; `None` for plain
/// connections and for MSE that selected plaintext.
pub(crate) type Encryptor = Option<Box<Rc4Stream>>;

/// Why an MSE handshake did not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MseFailure {
    /// The peer closed or reset the connection mid-handshake. libtorrent 2.0
    /// does this in 1 of 256 handshakes it receives (it hashes `S` without
    /// its leading zero bytes), and plain-only clients do it always.
    #[error("peer closed the connection during the MSE handshake")]
    Closed,
    #[error("i/o during the MSE handshake: {0}")]
    Io(io::Error),
    #[error("{0}")]
    Protocol(#[from] MseError),
}

impl From<io::Error> for MseFailure {
    fn from(e: io::Error) -> Self {
        if is_closed(&e) {
            MseFailure::Closed
        } else {
            MseFailure::Io(e)
        }
    }
}

pub(crate) fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Reads the connection's bytes through the receiving half of the cipher,
/// starting with what the handshake machine had already received.
pub(crate) struct DecryptingReader {
    inner: PeerReader,
    /// Already decrypted bytes that came in with the handshake.
    pending: Vec<u8>,
    pos: usize,
    decrypt: Option<Box<Rc4Stream>>,
}

impl AsyncRead for DecryptingReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.pending.len() {
            let n = buf.remaining().min(this.pending.len() - this.pos);
            buf.put_slice(&this.pending[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.pending.len() {
                this.pending = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        // Decrypting only on completion keeps the read cancel-safe: a read
        // that is dropped while pending consumed no keystream.
        if let Some(d) = &mut this.decrypt {
            d.apply(&mut buf.filled_mut()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

/// Puts the handshake's leftovers and the receiving cipher in front of the
/// connection's reader; returns the sending half.
fn install(conn: Connection, est: Established) -> (Connection, Encryptor) {
    let (encrypt, decrypt) = match est.cipher {
        PeerCipher::Plaintext => (None, None),
        PeerCipher::Rc4 { encrypt, decrypt } => (Some(encrypt), Some(decrypt)),
    };
    let Connection {
        reader,
        writer,
        remote,
    } = conn;
    let reader = DecryptingReader {
        inner: reader,
        pending: est.payload,
        pos: 0,
        decrypt,
    };
    let conn = Connection {
        reader: Box::new(reader),
        writer,
        remote,
    };
    (conn, encrypt)
}

/// Our side of an outgoing MSE handshake for `info_hash`, offering
/// `provide`; `our_handshake` (the plain BitTorrent handshake) rides along
/// as the initial payload, so the caller must not send it again.
pub(crate) async fn initiate(
    mut conn: Connection,
    info_hash: &InfoHash,
    provide: CryptoMethods,
    our_handshake: &[u8],
    random: HandshakeRandom,
) -> Result<(Connection, Encryptor, CryptoMethod), MseFailure> {
    let mut machine = Initiator::new(info_hash.0, provide, our_handshake, random)?;
    conn.writer.write_all(&machine.take_output()).await?;
    let mut buf = [0u8; HANDSHAKE_READ];
    loop {
        let n = conn.reader.read(&mut buf).await?;
        if n == 0 {
            return Err(MseFailure::Closed);
        }
        let done = machine.receive(&buf[..n])?;
        let out = machine.take_output();
        if !out.is_empty() {
            conn.writer.write_all(&out).await?;
        }
        if let Some(est) = done {
            let method = est.method;
            let (conn, enc) = install(conn, est);
            return Ok((conn, enc, method));
        }
    }
}

/// What an incoming connection turned out to be.
pub(crate) struct Accepted {
    pub conn: Connection,
    pub encrypt: Encryptor,
    /// The torrent an MSE initiator asked for; `None` for a plain handshake.
    pub skey: Option<[u8; 20]>,
    pub method: Option<CryptoMethod>,
}

/// Tells a plain BitTorrent handshake from MSE by its first bytes and, for
/// MSE, answers it. `lookup` maps `HASH('req2', SKEY)` to one of our
/// info-hashes.
pub(crate) async fn accept(
    mut conn: Connection,
    mode: EncryptionMode,
    random: HandshakeRandom,
    lookup: impl Fn(&[u8; 20]) -> Option<[u8; 20]>,
) -> Result<Accepted, MseFailure> {
    let mut machine = Receiver::new(mode, random)?;
    let mut buf = [0u8; HANDSHAKE_READ];
    loop {
        let n = conn.reader.read(&mut buf).await?;
        if n == 0 {
            return Err(MseFailure::Closed);
        }
        let done = machine.receive(&buf[..n], &lookup)?;
        let out = machine.take_output();
        if !out.is_empty() {
            conn.writer.write_all(&out).await?;
        }
        if let Some(est) = done {
            let skey = est.skey;
            let method = skey.map(|_| est.method);
            let (conn, encrypt) = install(conn, est);
            return Ok(Accepted {
                conn,
                encrypt,
                skey,
                method,
            });
        }
    }
}

/// Fresh randomness for one handshake: a DH key and pads of random length
/// (the pads are what hide the handshake's message sizes).
pub(crate) fn handshake_random(rng: &mut impl rand::Rng) -> HandshakeRandom {
    let mut private_key: [u8; 20] = rng.random();
    // A zero key is refused by the machines; make that impossible.
    private_key[19] |= 1;
    let pad_len = rng.random_range(0..=bt_proto::mse::MAX_PAD);
    let mut clear_pad = vec![0u8; pad_len];
    rng.fill_bytes(&mut clear_pad);
    HandshakeRandom {
        private_key,
        clear_pad,
        encrypted_pad_len: rng.random_range(0..=bt_proto::mse::MAX_PAD as u16),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn pair() -> (Connection, Connection) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let addr = "127.0.0.1:1".parse().unwrap();
        (
            Connection {
                reader: Box::new(ar),
                writer: Box::new(aw),
                remote: addr,
            },
            Connection {
                reader: Box::new(br),
                writer: Box::new(bw),
                remote: addr,
            },
        )
    }

    /// Both sides of the engine's MSE agree on RC4 and the streams carry
    /// bytes both ways after the handshake.
    #[tokio::test]
    async fn initiate_and_accept_agree() {
        let ih = InfoHash([7; 20]);
        let skey_hash = bt_proto::mse::skey_hash(&ih.0);
        let (a, b) = pair();
        let mut rng = StdRng::seed_from_u64(1);
        let ra = handshake_random(&mut rng);
        let rb = handshake_random(&mut rng);
        let out = tokio::spawn(async move {
            initiate(a, &ih, CryptoMethods::BOTH, b"hello, bittorrent", ra).await
        });
        let acc = accept(b, EncryptionMode::Require, rb, |h| {
            (*h == skey_hash).then_some(ih.0)
        })
        .await
        .unwrap();
        let (mut a, mut enc_a, method) = out.await.unwrap().unwrap();
        assert_eq!(method, CryptoMethod::Rc4);
        assert_eq!(acc.method, Some(CryptoMethod::Rc4));
        assert_eq!(acc.skey, Some(ih.0));
        let mut b = acc.conn;
        let mut enc_b = acc.encrypt;
        let mut ia = [0u8; 17];
        b.reader.read_exact(&mut ia).await.unwrap();
        assert_eq!(&ia, b"hello, bittorrent");
        for round in 0..3u8 {
            let mut msg = vec![round; 5000];
            enc_b.as_mut().unwrap().apply(&mut msg);
            b.writer.write_all(&msg).await.unwrap();
            let mut got = vec![0u8; 5000];
            a.reader.read_exact(&mut got).await.unwrap();
            assert!(got.iter().all(|&x| x == round));
            let mut msg = vec![round + 100; 3000];
            enc_a.as_mut().unwrap().apply(&mut msg);
            a.writer.write_all(&msg).await.unwrap();
            let mut got = vec![0u8; 3000];
            b.reader.read_exact(&mut got).await.unwrap();
            assert!(got.iter().all(|&x| x == round + 100));
        }
    }

    #[tokio::test]
    async fn require_refuses_plain_handshake() {
        let (mut a, b) = pair();
        let mut rng = StdRng::seed_from_u64(2);
        a.writer
            .write_all(b"\x13BitTorrent protocol\0\0\0\0\0\0\0\0")
            .await
            .unwrap();
        let r = accept(
            b,
            EncryptionMode::Require,
            handshake_random(&mut rng),
            |_| None,
        )
        .await;
        assert!(matches!(
            r,
            Err(MseFailure::Protocol(MseError::PlainRefused))
        ));
    }

    #[tokio::test]
    async fn prefer_passes_plain_handshake_through() {
        let (mut a, b) = pair();
        let mut rng = StdRng::seed_from_u64(3);
        let hs = b"\x13BitTorrent protocol\0\0\0\0\0\0\0\0rest";
        a.writer.write_all(hs).await.unwrap();
        let mut acc = accept(
            b,
            EncryptionMode::Prefer,
            handshake_random(&mut rng),
            |_| None,
        )
        .await
        .unwrap();
        assert!(acc.skey.is_none() && acc.encrypt.is_none());
        let mut got = [0u8; 32];
        acc.conn.reader.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, hs);
    }

    #[tokio::test]
    async fn unknown_torrent_is_refused() {
        let ih = InfoHash([9; 20]);
        let (a, b) = pair();
        let mut rng = StdRng::seed_from_u64(4);
        let ra = handshake_random(&mut rng);
        let rb = handshake_random(&mut rng);
        let out = tokio::spawn(async move { initiate(a, &ih, CryptoMethods::RC4, b"x", ra).await });
        let r = accept(b, EncryptionMode::Prefer, rb, |_| None).await;
        assert!(matches!(
            r,
            Err(MseFailure::Protocol(MseError::UnknownTorrent))
        ));
        drop(r);
        // The initiator sees the connection close mid-handshake: the case
        // the engine retries.
        assert!(matches!(out.await.unwrap(), Err(MseFailure::Closed)));
    }
}
