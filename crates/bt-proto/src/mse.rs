//! Message Stream Encryption / Protocol Encryption (MSE/PE), the
//! obfuscated handshake every mainstream client speaks, as two sans-IO
//! state machines: [`Initiator`] (we connected) and [`Receiver`] (the peer
//! connected to us).
//!
//! ```text
//! 1 A->B: Ya, PadA
//! 2 B->A: Yb, PadB
//! 3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!         ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! 4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
//! 5 A->B: ENCRYPT2(payload)
//! ```
//!
//! `Y` are 768-bit Diffie-Hellman public keys (generator 2, the prime
//! [`DH_PRIME`]), `S` the shared secret, `SKEY` the torrent's info-hash
//! (which both sides must already know, so a passive observer learns
//! nothing), `VC` eight zero bytes. `ENCRYPT` is RC4 keyed with
//! `HASH('keyA', S, SKEY)` (A to B) or `HASH('keyB', S, SKEY)` (B to A),
//! its first 1024 bytes of keystream discarded. `ENCRYPT2` is the method
//! the receiver selected: RC4 continuing the same streams, or plaintext.
//! IA, the initiator's first payload bytes (its BitTorrent handshake), is
//! always RC4-encrypted because A does not know the selection yet.
//!
//! The pads (0 to [`MAX_PAD`] bytes each) hide message lengths, so each
//! side has to *search* for where the other's next message starts: B for
//! `HASH('req1', S)` at most 512 bytes after Ya, A for `ENCRYPT(VC)` at
//! most 512 bytes after Yb. Giving up at exactly those limits (as
//! libtorrent and anacrolix/torrent do) bounds what a peer can make us
//! read: a receiver fed garbage fails after 96 + 532 bytes, an initiator
//! after 96 + 520.
//!
//! This provides obfuscation against traffic shaping, not authentication:
//! anyone who knows the info-hash can complete it. Randomness (the DH
//! private key and the pads) comes from the caller, so tests and the
//! simulator are reproducible.
//!
//! Using a machine: feed every byte read from the socket to `receive`,
//! write whatever `take_output` returns after every call (in order, before
//! anything else), and once `receive` returns [`Established`], use its
//! [`PeerCipher`] for all further traffic and parse
//! [`Established::payload`] as the start of the BitTorrent stream.

use num_bigint::BigUint;
use rc4::consts::U20;
use rc4::{KeyInit, Rc4, StreamCipher};
use sha1::{Digest, Sha1};
use std::sync::OnceLock;

/// The 768-bit safe prime of the MSE specification, big-endian.
pub const DH_PRIME: [u8; DH_KEY_LEN] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x3A, 0x36, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x05, 0x63,
];
/// Length of a public key or shared secret on the wire (big-endian,
/// zero-padded on the left).
pub const DH_KEY_LEN: usize = 96;
/// Longest PadA/B/C/D.
pub const MAX_PAD: usize = 512;
/// RC4 keystream bytes thrown away before use (the spec's RC4-drop1024).
pub const RC4_DISCARD: usize = 1024;
/// Most bytes a receiver reads before it must have found the initiator's
/// sync hash: Ya, PadA, `HASH('req1', S)`.
pub const RECEIVER_SYNC_LIMIT: usize = DH_KEY_LEN + MAX_PAD + 20;
/// Most bytes an initiator reads before it must have found the encrypted
/// verification constant: Yb, PadB, `ENCRYPT(VC)`.
pub const INITIATOR_SYNC_LIMIT: usize = DH_KEY_LEN + MAX_PAD + 8;

const VC: [u8; 8] = [0; 8];
const PROTOCOL_HEADER: &[u8; 20] = b"\x13BitTorrent protocol";

/// The engine's encryption policy, for both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EncryptionMode {
    /// Plain BitTorrent only: no MSE out, incoming MSE refused.
    Disabled,
    /// MSE out offering RC4 and plaintext (the engine retries in plain
    /// BitTorrent when a peer drops the MSE attempt); incoming plain and
    /// MSE accepted, RC4 selected whenever offered.
    #[default]
    Prefer,
    /// RC4 only, both directions: plain handshakes and MSE with the
    /// plaintext method are refused.
    Require,
}

/// A `crypto_provide` / `crypto_select` bit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CryptoMethods(pub u32);

impl CryptoMethods {
    pub const PLAINTEXT: CryptoMethods = CryptoMethods(0x01);
    pub const RC4: CryptoMethods = CryptoMethods(0x02);
    pub const BOTH: CryptoMethods = CryptoMethods(0x03);

    pub fn contains(self, m: CryptoMethod) -> bool {
        self.0 & m.bit() != 0
    }
}

/// The method the receiver selected for everything after the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CryptoMethod {
    /// Only the handshake was obfuscated.
    Plaintext,
    Rc4,
}

impl CryptoMethod {
    fn bit(self) -> u32 {
        match self {
            CryptoMethod::Plaintext => 0x01,
            CryptoMethod::Rc4 => 0x02,
        }
    }
}

impl EncryptionMode {
    /// `crypto_provide` for an outgoing connection; `None` means connect in
    /// plain BitTorrent without MSE.
    pub fn outgoing(self) -> Option<CryptoMethods> {
        match self {
            EncryptionMode::Disabled => None,
            EncryptionMode::Prefer => Some(CryptoMethods::BOTH),
            EncryptionMode::Require => Some(CryptoMethods::RC4),
        }
    }

    /// The receiver's choice among what the initiator provided.
    pub fn select(self, provided: CryptoMethods) -> Option<CryptoMethod> {
        let rc4 = provided.contains(CryptoMethod::Rc4);
        match self {
            EncryptionMode::Disabled => None,
            EncryptionMode::Prefer if rc4 => Some(CryptoMethod::Rc4),
            EncryptionMode::Prefer if provided.contains(CryptoMethod::Plaintext) => {
                Some(CryptoMethod::Plaintext)
            }
            EncryptionMode::Require if rc4 => Some(CryptoMethod::Rc4),
            _ => None,
        }
    }

    /// Whether an incoming plain BitTorrent handshake is accepted.
    pub fn accepts_plain(self) -> bool {
        self != EncryptionMode::Require
    }
}

/// The caller's random choices for one handshake. Use a CSPRNG in
/// production (the DH key is what keeps `S` secret from an observer) and a
/// seeded one in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeRandom {
    /// The DH private key (Xa or Xb). The spec recommends 160 bits; libtorrent
    /// uses 96 random bytes, which buys nothing over 160 bits here.
    pub private_key: [u8; 20],
    /// PadA or PadB, sent in the clear after the public key, so it must be
    /// random bytes. At most [`MAX_PAD`].
    pub clear_pad: Vec<u8>,
    /// Length of PadC or PadD, at most [`MAX_PAD`]; sent encrypted, so its
    /// contents are zeros.
    pub encrypted_pad_len: u16,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MseError {
    #[error("MSE pad of {0} bytes exceeds the {MAX_PAD}-byte limit")]
    PadTooLong(usize),
    #[error("MSE initial payload of {0} bytes does not fit its 16-bit length")]
    InitialPayloadTooLong(usize),
    #[error("MSE private key is zero")]
    ZeroPrivateKey,
    #[error("peer sent a plain BitTorrent handshake, but encryption is required")]
    PlainRefused,
    #[error("peer started an encrypted handshake, but encryption is disabled")]
    EncryptionDisabled,
    #[error("peer's Diffie-Hellman public key is out of range")]
    BadPublicKey,
    #[error(
        "no MSE sync hash within {RECEIVER_SYNC_LIMIT} bytes: not an encrypted BitTorrent peer"
    )]
    SyncHashNotFound,
    #[error(
        "no MSE verification constant within {INITIATOR_SYNC_LIMIT} bytes: the peer does not speak MSE or has another torrent"
    )]
    VcNotFound,
    #[error("peer asked for a torrent we do not have (unknown MSE stream key)")]
    UnknownTorrent,
    #[error("MSE verification constant does not decrypt to zeros")]
    BadVerificationConstant,
    #[error("peer offered MSE methods {provided:#x}, none of which our encryption mode allows")]
    NoCommonMethod { provided: u32 },
    #[error("peer selected MSE method {selected:#x}, which we did not offer")]
    BadSelect { selected: u32 },
    #[error("MSE handshake already finished or failed")]
    Finished,
}

/// What a finished handshake hands to the connection.
pub struct Established {
    /// The stream key: the info-hash (a v2 torrent's truncated SHA-256) the
    /// initiator asked for. `None` when the peer sent a plain BitTorrent
    /// handshake and no MSE happened.
    pub skey: Option<[u8; 20]>,
    pub method: CryptoMethod,
    /// Encrypts what we send and decrypts what we receive from now on.
    pub cipher: PeerCipher,
    /// Bytes already received after the handshake, decrypted: for a
    /// receiver IA (normally the initiator's BitTorrent handshake) and
    /// whatever followed; for an initiator the start of the receiver's
    /// BitTorrent stream. Parse these before reading the socket again.
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for Established {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Established")
            .field("skey", &self.skey)
            .field("method", &self.method)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// The per-connection cipher after the handshake.
pub enum PeerCipher {
    Plaintext,
    Rc4 {
        encrypt: Box<Rc4Stream>,
        decrypt: Box<Rc4Stream>,
    },
}

impl PeerCipher {
    /// Encrypts bytes about to be sent, in place.
    pub fn encrypt(&mut self, data: &mut [u8]) {
        if let PeerCipher::Rc4 { encrypt, .. } = self {
            encrypt.apply(data);
        }
    }

    /// Decrypts bytes just received, in place.
    pub fn decrypt(&mut self, data: &mut [u8]) {
        if let PeerCipher::Rc4 { decrypt, .. } = self {
            decrypt.apply(data);
        }
    }
}

/// One direction's RC4 keystream, 1024 bytes already discarded.
pub struct Rc4Stream(Rc4<U20>);

impl Rc4Stream {
    /// The stream for `HASH(label, S, SKEY)`.
    fn new(label: &[u8; 4], secret: &[u8; DH_KEY_LEN], skey: &[u8; 20]) -> Self {
        let key: [u8; 20] = Sha1::new()
            .chain_update(label)
            .chain_update(secret)
            .chain_update(skey)
            .finalize()
            .into();
        let mut rc4 = Rc4::<U20>::new(&key.into());
        rc4.apply_keystream(&mut [0u8; RC4_DISCARD]);
        Rc4Stream(rc4)
    }

    /// XORs the next `data.len()` keystream bytes into `data`.
    pub fn apply(&mut self, data: &mut [u8]) {
        self.0.apply_keystream(data);
    }
}

/// `HASH('req2', SKEY)`: what a receiver's lookup is asked about. The
/// engine can keep a map from this to each torrent's info-hash(es).
pub fn skey_hash(skey: &[u8; 20]) -> [u8; 20] {
    Sha1::new()
        .chain_update(b"req2")
        .chain_update(skey)
        .finalize()
        .into()
}

fn prime() -> &'static BigUint {
    static P: OnceLock<BigUint> = OnceLock::new();
    P.get_or_init(|| BigUint::from_bytes_be(&DH_PRIME))
}

/// `G^X mod P` for our private key; `Y` as 96 big-endian bytes.
fn public_key(private: &BigUint) -> [u8; DH_KEY_LEN] {
    export(&BigUint::from(2u32).modpow(private, prime()))
}

/// `Y^X mod P`; refuses `Y` outside `[2, P-2]`, which would make the
/// shared secret guessable (0, 1 or ±1).
fn shared_secret(peer_public: &[u8], private: &BigUint) -> Result<[u8; DH_KEY_LEN], MseError> {
    let y = BigUint::from_bytes_be(peer_public);
    let p = prime();
    if y < BigUint::from(2u32) || y >= p - 1u32 {
        return Err(MseError::BadPublicKey);
    }
    Ok(export(&y.modpow(private, p)))
}

fn export(n: &BigUint) -> [u8; DH_KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; DH_KEY_LEN];
    out[DH_KEY_LEN - bytes.len()..].copy_from_slice(&bytes);
    out
}

fn hash2(label: &[u8; 4], data: &[u8]) -> [u8; 20] {
    Sha1::new()
        .chain_update(label)
        .chain_update(data)
        .finalize()
        .into()
}

fn check_random(r: &HandshakeRandom) -> Result<BigUint, MseError> {
    if r.clear_pad.len() > MAX_PAD {
        return Err(MseError::PadTooLong(r.clear_pad.len()));
    }
    if usize::from(r.encrypted_pad_len) > MAX_PAD {
        return Err(MseError::PadTooLong(r.encrypted_pad_len.into()));
    }
    let x = BigUint::from_bytes_be(&r.private_key);
    if x == BigUint::ZERO {
        return Err(MseError::ZeroPrivateKey);
    }
    Ok(x)
}

/// Position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn u16_at(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

fn u32_at(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Received bytes not yet consumed by a handshake step.
#[derive(Default)]
struct Inbox(Vec<u8>);

impl Inbox {
    /// Removes and returns the first `n` bytes, if that many arrived.
    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        (self.0.len() >= n).then(|| self.0.drain(..n).collect())
    }
}

enum InitiatorState {
    ReadYb,
    SyncVc {
        expected: [u8; 8],
        encrypt: Box<Rc4Stream>,
        decrypt: Box<Rc4Stream>,
    },
    ReadSelect {
        encrypt: Box<Rc4Stream>,
        decrypt: Box<Rc4Stream>,
    },
    ReadPadD {
        len: usize,
        method: CryptoMethod,
        encrypt: Box<Rc4Stream>,
        decrypt: Box<Rc4Stream>,
    },
    Finished,
}

/// The side that opened the connection.
pub struct Initiator {
    state: InitiatorState,
    private: BigUint,
    skey: [u8; 20],
    provide: CryptoMethods,
    initial_payload: Vec<u8>,
    encrypted_pad_len: usize,
    inbox: Inbox,
    out: Vec<u8>,
}

impl Initiator {
    /// Starts a handshake for the torrent `skey` (its info-hash), offering
    /// `provide` (see [`EncryptionMode::outgoing`]). `initial_payload` is
    /// IA, sent with step 3: pass our BitTorrent handshake to save a round
    /// trip (at most 65535 bytes; libtorrent reads the length as signed, so
    /// keep it under 32 KiB). Step 1 is queued at once.
    pub fn new(
        skey: [u8; 20],
        provide: CryptoMethods,
        initial_payload: &[u8],
        random: HandshakeRandom,
    ) -> Result<Initiator, MseError> {
        let private = check_random(&random)?;
        if initial_payload.len() > usize::from(u16::MAX) {
            return Err(MseError::InitialPayloadTooLong(initial_payload.len()));
        }
        let mut out = Vec::with_capacity(DH_KEY_LEN + random.clear_pad.len());
        out.extend_from_slice(&public_key(&private));
        out.extend_from_slice(&random.clear_pad);
        Ok(Initiator {
            state: InitiatorState::ReadYb,
            private,
            skey,
            provide,
            initial_payload: initial_payload.to_vec(),
            encrypted_pad_len: random.encrypted_pad_len.into(),
            inbox: Inbox::default(),
            out,
        })
    }

    /// Bytes to send now, in order.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Feeds bytes received from the peer. `Ok(None)`: keep reading.
    /// After `Ok(Some(_))` or an error the machine is spent; drop the
    /// connection on an error.
    pub fn receive(&mut self, data: &[u8]) -> Result<Option<Established>, MseError> {
        if matches!(self.state, InitiatorState::Finished) {
            return Err(MseError::Finished);
        }
        self.inbox.0.extend_from_slice(data);
        let result = self.step();
        if !matches!(result, Ok(None)) {
            self.state = InitiatorState::Finished;
        }
        result
    }

    fn step(&mut self) -> Result<Option<Established>, MseError> {
        loop {
            match std::mem::replace(&mut self.state, InitiatorState::Finished) {
                InitiatorState::ReadYb => {
                    let Some(yb) = self.inbox.take(DH_KEY_LEN) else {
                        self.state = InitiatorState::ReadYb;
                        return Ok(None);
                    };
                    let s = shared_secret(&yb, &self.private)?;
                    let mut encrypt = Box::new(Rc4Stream::new(b"keyA", &s, &self.skey));
                    let mut decrypt = Box::new(Rc4Stream::new(b"keyB", &s, &self.skey));
                    // Step 3.
                    self.out.extend_from_slice(&hash2(b"req1", &s));
                    let req2 = skey_hash(&self.skey);
                    let req3 = hash2(b"req3", &s);
                    self.out.extend(req2.iter().zip(req3).map(|(a, b)| a ^ b));
                    let start = self.out.len();
                    self.out.extend_from_slice(&VC);
                    self.out.extend_from_slice(&self.provide.0.to_be_bytes());
                    self.out
                        .extend_from_slice(&(self.encrypted_pad_len as u16).to_be_bytes());
                    self.out.resize(self.out.len() + self.encrypted_pad_len, 0);
                    self.out
                        .extend_from_slice(&(self.initial_payload.len() as u16).to_be_bytes());
                    self.out.extend_from_slice(&self.initial_payload);
                    encrypt.apply(&mut self.out[start..]);
                    // B's first encrypted bytes are VC, all zeros, so
                    // ENCRYPT(VC) is the first 8 bytes of B's keystream;
                    // producing them also moves `decrypt` past them.
                    let mut expected = VC;
                    decrypt.apply(&mut expected);
                    self.state = InitiatorState::SyncVc {
                        expected,
                        encrypt,
                        decrypt,
                    };
                }
                InitiatorState::SyncVc {
                    expected,
                    encrypt,
                    decrypt,
                } => {
                    let window = &self.inbox.0[..self.inbox.0.len().min(MAX_PAD + 8)];
                    match find(window, &expected) {
                        Some(at) => {
                            self.inbox.0.drain(..at + 8);
                            self.state = InitiatorState::ReadSelect { encrypt, decrypt };
                        }
                        None if self.inbox.0.len() >= MAX_PAD + 8 => {
                            return Err(MseError::VcNotFound);
                        }
                        None => {
                            self.state = InitiatorState::SyncVc {
                                expected,
                                encrypt,
                                decrypt,
                            };
                            return Ok(None);
                        }
                    }
                }
                InitiatorState::ReadSelect {
                    encrypt,
                    mut decrypt,
                } => {
                    let Some(mut b) = self.inbox.take(6) else {
                        self.state = InitiatorState::ReadSelect { encrypt, decrypt };
                        return Ok(None);
                    };
                    decrypt.apply(&mut b);
                    let selected = u32_at(&b);
                    let method = match selected {
                        0x01 => CryptoMethod::Plaintext,
                        0x02 => CryptoMethod::Rc4,
                        _ => return Err(MseError::BadSelect { selected }),
                    };
                    if !self.provide.contains(method) {
                        return Err(MseError::BadSelect { selected });
                    }
                    let len = u16_at(&b[4..]);
                    if len > MAX_PAD {
                        return Err(MseError::PadTooLong(len));
                    }
                    self.state = InitiatorState::ReadPadD {
                        len,
                        method,
                        encrypt,
                        decrypt,
                    };
                }
                InitiatorState::ReadPadD {
                    len,
                    method,
                    encrypt,
                    mut decrypt,
                } => {
                    let Some(mut pad) = self.inbox.take(len) else {
                        self.state = InitiatorState::ReadPadD {
                            len,
                            method,
                            encrypt,
                            decrypt,
                        };
                        return Ok(None);
                    };
                    decrypt.apply(&mut pad);
                    let mut cipher = match method {
                        CryptoMethod::Plaintext => PeerCipher::Plaintext,
                        CryptoMethod::Rc4 => PeerCipher::Rc4 { encrypt, decrypt },
                    };
                    let mut payload = std::mem::take(&mut self.inbox.0);
                    cipher.decrypt(&mut payload);
                    return Ok(Some(Established {
                        skey: Some(self.skey),
                        method,
                        cipher,
                        payload,
                    }));
                }
                InitiatorState::Finished => return Err(MseError::Finished),
            }
        }
    }
}

enum ReceiverState {
    /// Waiting to see whether the first 20 bytes are a plain handshake.
    Detect,
    ReadYa,
    SyncReq1 {
        secret: Box<[u8; DH_KEY_LEN]>,
        req1: [u8; 20],
    },
    ReadSkey {
        secret: Box<[u8; DH_KEY_LEN]>,
    },
    ReadProvide {
        skey: [u8; 20],
        encrypt: Box<Rc4Stream>,
        decrypt: Box<Rc4Stream>,
    },
    ReadPadC {
        skey: [u8; 20],
        len: usize,
        method: CryptoMethod,
        encrypt: Box<Rc4Stream>,
        decrypt: Box<Rc4Stream>,
    },
    ReadIa {
        skey: [u8; 20],
        len: usize,
        method: CryptoMethod,
        encrypt: Box<Rc4Stream>,
        decrypt: Box<Rc4Stream>,
    },
    Finished,
}

/// The side that accepted the connection.
pub struct Receiver {
    state: ReceiverState,
    mode: EncryptionMode,
    private: BigUint,
    random: HandshakeRandom,
    inbox: Inbox,
    out: Vec<u8>,
}

impl Receiver {
    /// Waits for the peer's first bytes; nothing is sent until they show
    /// whether this is MSE or a plain handshake.
    pub fn new(mode: EncryptionMode, random: HandshakeRandom) -> Result<Receiver, MseError> {
        let private = check_random(&random)?;
        Ok(Receiver {
            state: ReceiverState::Detect,
            mode,
            private,
            random,
            inbox: Inbox::default(),
            out: Vec::new(),
        })
    }

    /// Bytes to send now, in order.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// `S` for the initiator's `Ya`, with a first byte that is not zero.
    ///
    /// libtorrent 2.0 hashes `S` for its `req3` mask as exported without
    /// leading zero bytes (`dh_key_exchange::compute_secret`), so as an
    /// initiator it cannot be understood in the 1 of 256 handshakes whose
    /// `S` starts with a zero. We pick our key after seeing `Ya`, so we
    /// pick another (derived from the first, as secret as it) until `S`
    /// does not. Pure chance for the peer; no other client is affected.
    fn secret_without_leading_zero(&mut self, ya: &[u8]) -> Result<[u8; DH_KEY_LEN], MseError> {
        let mut secret = shared_secret(ya, &self.private)?;
        for _ in 0..64 {
            if secret[0] != 0 {
                break;
            }
            let next: [u8; 20] = Sha1::new()
                .chain_update(b"riptide mse key")
                .chain_update(self.private.to_bytes_be())
                .finalize()
                .into();
            self.private = BigUint::from_bytes_be(&next);
            secret = shared_secret(ya, &self.private)?;
        }
        Ok(secret)
    }

    /// Feeds bytes received from the peer. `lookup` is asked once, with
    /// `HASH('req2', SKEY)` (see [`skey_hash`]), for the SKEY of one of our
    /// torrents; `None` ends the handshake with [`MseError::UnknownTorrent`].
    /// `Ok(None)`: keep reading. After `Ok(Some(_))` or an error the
    /// machine is spent.
    pub fn receive(
        &mut self,
        data: &[u8],
        lookup: impl FnOnce(&[u8; 20]) -> Option<[u8; 20]>,
    ) -> Result<Option<Established>, MseError> {
        if matches!(self.state, ReceiverState::Finished) {
            return Err(MseError::Finished);
        }
        self.inbox.0.extend_from_slice(data);
        let result = self.step(lookup);
        if !matches!(result, Ok(None)) {
            self.state = ReceiverState::Finished;
        }
        result
    }

    fn step(
        &mut self,
        lookup: impl FnOnce(&[u8; 20]) -> Option<[u8; 20]>,
    ) -> Result<Option<Established>, MseError> {
        let mut lookup = Some(lookup);
        loop {
            match std::mem::replace(&mut self.state, ReceiverState::Finished) {
                ReceiverState::Detect => {
                    let seen = &self.inbox.0[..self.inbox.0.len().min(PROTOCOL_HEADER.len())];
                    if seen != &PROTOCOL_HEADER[..seen.len()] {
                        if self.mode == EncryptionMode::Disabled {
                            return Err(MseError::EncryptionDisabled);
                        }
                        self.state = ReceiverState::ReadYa;
                    } else if seen.len() < PROTOCOL_HEADER.len() {
                        self.state = ReceiverState::Detect;
                        return Ok(None);
                    } else if !self.mode.accepts_plain() {
                        return Err(MseError::PlainRefused);
                    } else {
                        return Ok(Some(Established {
                            skey: None,
                            method: CryptoMethod::Plaintext,
                            cipher: PeerCipher::Plaintext,
                            payload: std::mem::take(&mut self.inbox.0),
                        }));
                    }
                }
                ReceiverState::ReadYa => {
                    let Some(ya) = self.inbox.take(DH_KEY_LEN) else {
                        self.state = ReceiverState::ReadYa;
                        return Ok(None);
                    };
                    let secret = Box::new(self.secret_without_leading_zero(&ya)?);
                    // Step 2 goes out at once: the initiator waits for Yb
                    // before it sends step 3.
                    self.out.extend_from_slice(&public_key(&self.private));
                    self.out.extend_from_slice(&self.random.clear_pad);
                    let req1 = hash2(b"req1", &secret[..]);
                    self.state = ReceiverState::SyncReq1 { secret, req1 };
                }
                ReceiverState::SyncReq1 { secret, req1 } => {
                    let window = &self.inbox.0[..self.inbox.0.len().min(MAX_PAD + 20)];
                    match find(window, &req1) {
                        Some(at) => {
                            self.inbox.0.drain(..at + 20);
                            self.state = ReceiverState::ReadSkey { secret };
                        }
                        None if self.inbox.0.len() >= MAX_PAD + 20 => {
                            return Err(MseError::SyncHashNotFound);
                        }
                        None => {
                            self.state = ReceiverState::SyncReq1 { secret, req1 };
                            return Ok(None);
                        }
                    }
                }
                ReceiverState::ReadSkey { secret } => {
                    let Some(obfuscated) = self.inbox.take(20) else {
                        self.state = ReceiverState::ReadSkey { secret };
                        return Ok(None);
                    };
                    let req3 = hash2(b"req3", &secret[..]);
                    let mut req2 = [0u8; 20];
                    for (i, b) in req2.iter_mut().enumerate() {
                        *b = obfuscated[i] ^ req3[i];
                    }
                    let lookup = lookup.take().ok_or(MseError::Finished)?;
                    let skey = lookup(&req2).ok_or(MseError::UnknownTorrent)?;
                    // A lookup that returns a key for another hash would
                    // only produce garbage later; catch it here.
                    if skey_hash(&skey) != req2 {
                        return Err(MseError::UnknownTorrent);
                    }
                    self.state = ReceiverState::ReadProvide {
                        skey,
                        encrypt: Box::new(Rc4Stream::new(b"keyB", &secret, &skey)),
                        decrypt: Box::new(Rc4Stream::new(b"keyA", &secret, &skey)),
                    };
                }
                ReceiverState::ReadProvide {
                    skey,
                    encrypt,
                    mut decrypt,
                } => {
                    let Some(mut b) = self.inbox.take(8 + 4 + 2) else {
                        self.state = ReceiverState::ReadProvide {
                            skey,
                            encrypt,
                            decrypt,
                        };
                        return Ok(None);
                    };
                    decrypt.apply(&mut b);
                    if b[..8] != VC {
                        return Err(MseError::BadVerificationConstant);
                    }
                    let provided = CryptoMethods(u32_at(&b[8..]));
                    let method = self.mode.select(provided).ok_or(MseError::NoCommonMethod {
                        provided: provided.0,
                    })?;
                    let len = u16_at(&b[12..]);
                    if len > MAX_PAD {
                        return Err(MseError::PadTooLong(len));
                    }
                    self.state = ReceiverState::ReadPadC {
                        skey,
                        len,
                        method,
                        encrypt,
                        decrypt,
                    };
                }
                ReceiverState::ReadPadC {
                    skey,
                    len,
                    method,
                    mut encrypt,
                    mut decrypt,
                } => {
                    let Some(mut b) = self.inbox.take(len + 2) else {
                        self.state = ReceiverState::ReadPadC {
                            skey,
                            len,
                            method,
                            encrypt,
                            decrypt,
                        };
                        return Ok(None);
                    };
                    decrypt.apply(&mut b);
                    let ia_len = u16_at(&b[len..]);
                    // Step 4.
                    let start = self.out.len();
                    self.out.extend_from_slice(&VC);
                    self.out.extend_from_slice(&method.bit().to_be_bytes());
                    self.out
                        .extend_from_slice(&self.random.encrypted_pad_len.to_be_bytes());
                    self.out.resize(
                        self.out.len() + usize::from(self.random.encrypted_pad_len),
                        0,
                    );
                    encrypt.apply(&mut self.out[start..]);
                    self.state = ReceiverState::ReadIa {
                        skey,
                        len: ia_len,
                        method,
                        encrypt,
                        decrypt,
                    };
                }
                ReceiverState::ReadIa {
                    skey,
                    len,
                    method,
                    encrypt,
                    mut decrypt,
                } => {
                    if self.inbox.0.len() < len {
                        self.state = ReceiverState::ReadIa {
                            skey,
                            len,
                            method,
                            encrypt,
                            decrypt,
                        };
                        return Ok(None);
                    }
                    // IA is always RC4; what follows it uses the selected
                    // method.
                    let mut payload = std::mem::take(&mut self.inbox.0);
                    decrypt.apply(&mut payload[..len]);
                    let mut cipher = match method {
                        CryptoMethod::Plaintext => PeerCipher::Plaintext,
                        CryptoMethod::Rc4 => PeerCipher::Rc4 { encrypt, decrypt },
                    };
                    cipher.decrypt(&mut payload[len..]);
                    return Ok(Some(Established {
                        skey: Some(skey),
                        method,
                        cipher,
                        payload,
                    }));
                }
                ReceiverState::Finished => return Err(MseError::Finished),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Generated by tests/fixtures/mse_kat.py (CPython pow/hashlib and a
    // textbook RC4): an implementation that shares no code with this one.
    const STEP1: &str = include_str!("../tests/fixtures/mse_kat/step1.hex");
    const STEP2: &str = include_str!("../tests/fixtures/mse_kat/step2.hex");
    const STEP3: &str = include_str!("../tests/fixtures/mse_kat/step3.hex");
    const STEP4: &str = include_str!("../tests/fixtures/mse_kat/step4.hex");
    const STEP4_PAYLOAD: &str = include_str!("../tests/fixtures/mse_kat/step4_payload.hex");

    const SKEY: [u8; 20] = [
        0xb8, 0x2b, 0x24, 0x50, 0xd0, 0x55, 0x99, 0xf9, 0x97, 0x73, 0x09, 0x7e, 0x46, 0x06, 0xe1,
        0x41, 0x98, 0x89, 0xe6, 0x5a,
    ];

    fn random(key_seed: u8, clear_pad: Vec<u8>, encrypted_pad_len: u16) -> HandshakeRandom {
        let mut private_key = [0u8; 20];
        for (i, b) in private_key.iter_mut().enumerate() {
            *b = key_seed.wrapping_add(i as u8);
        }
        HandshakeRandom {
            private_key,
            clear_pad,
            encrypted_pad_len,
        }
    }

    #[test]
    fn receiver_avoids_a_shared_secret_with_a_leading_zero() {
        // An initiator key whose S with the receiver's first key starts
        // with a zero byte (about 1 in 256).
        let r = random(9, vec![], 0);
        let ours = BigUint::from_bytes_be(&r.private_key);
        let ya = (2u32..)
            .map(|a| public_key(&BigUint::from(a)))
            .find(|ya| shared_secret(ya, &ours).unwrap()[0] == 0)
            .unwrap();
        let mut rx = Receiver::new(EncryptionMode::Require, r).unwrap();
        assert!(rx.receive(&ya, |_| None).unwrap().is_none());
        assert_ne!(rx.private, ours, "a new key was chosen");
        assert_ne!(shared_secret(&ya, &rx.private).unwrap()[0], 0);
        // And Yb is the new key's.
        assert_eq!(
            &rx.take_output()[..DH_KEY_LEN],
            &public_key(&rx.private)[..]
        );
    }

    fn bt_handshake() -> Vec<u8> {
        let mut ia = b"\x13BitTorrent protocol".to_vec();
        ia.extend_from_slice(&[0u8; 8]);
        ia.extend_from_slice(&SKEY);
        ia.extend_from_slice(b"-RT0001-abcdefghijkl");
        ia
    }

    fn lookup_skey(h: &[u8; 20]) -> Option<[u8; 20]> {
        (*h == skey_hash(&SKEY)).then_some(SKEY)
    }

    #[test]
    fn known_answer_transcript() {
        let ia = bt_handshake();
        let mut a =
            Initiator::new(SKEY, CryptoMethods::BOTH, &ia, random(1, vec![0xA5; 7], 5)).unwrap();
        let mut b = Receiver::new(EncryptionMode::Prefer, random(101, vec![0x5A; 3], 2)).unwrap();

        let step1 = a.take_output();
        assert_eq!(step1, unhex(STEP1.trim()));
        assert!(b.receive(&step1, lookup_skey).unwrap().is_none());
        let step2 = b.take_output();
        assert_eq!(step2, unhex(STEP2.trim()));
        assert!(a.receive(&step2).unwrap().is_none());
        let step3 = a.take_output();
        assert_eq!(step3, unhex(STEP3.trim()));

        let mut at_b = b.receive(&step3, lookup_skey).unwrap().unwrap();
        assert_eq!(at_b.skey, Some(SKEY));
        assert_eq!(at_b.method, CryptoMethod::Rc4);
        assert_eq!(at_b.payload, ia);
        let mut step4 = b.take_output();
        assert_eq!(step4, unhex(STEP4.trim()));
        let mut hello = b"hello from B".to_vec();
        at_b.cipher.encrypt(&mut hello);
        assert_eq!(hello, unhex(STEP4_PAYLOAD.trim()));

        step4.extend_from_slice(&hello);
        let at_a = a.receive(&step4).unwrap().unwrap();
        assert_eq!(at_a.method, CryptoMethod::Rc4);
        assert_eq!(at_a.payload, b"hello from B");
        assert_eq!(a.receive(b"x").unwrap_err(), MseError::Finished);
    }

    /// Runs both machines against each other, delivering each side's
    /// bytes in chunks of `chunk` bytes.
    fn run(
        mut a: Initiator,
        mut b: Receiver,
        chunk: usize,
    ) -> (
        Result<Option<Established>, MseError>,
        Result<Option<Established>, MseError>,
    ) {
        let mut to_b = a.take_output();
        let mut to_a = Vec::new();
        let (mut ra, mut rb) = (Ok(None), Ok(None));
        for _ in 0..10_000 {
            if matches!(rb, Ok(None)) && !to_b.is_empty() {
                let n = chunk.min(to_b.len());
                rb = b.receive(&to_b[..n], lookup_skey);
                to_b.drain(..n);
                to_a.extend(b.take_output());
            } else if matches!(ra, Ok(None)) && !to_a.is_empty() {
                let n = chunk.min(to_a.len());
                ra = a.receive(&to_a[..n]);
                to_a.drain(..n);
                to_b.extend(a.take_output());
            } else {
                break;
            }
        }
        (ra, rb)
    }

    #[test]
    fn largest_pads_and_empty_ia() {
        let a = Initiator::new(
            SKEY,
            CryptoMethods::RC4,
            b"",
            random(9, vec![7; MAX_PAD], MAX_PAD as u16),
        )
        .unwrap();
        let b = Receiver::new(
            EncryptionMode::Require,
            random(3, vec![8; MAX_PAD], MAX_PAD as u16),
        )
        .unwrap();
        let (ra, rb) = run(a, b, 1);
        let (mut ea, mut eb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
        assert!(ea.payload.is_empty() && eb.payload.is_empty());
        let mut msg = bt_handshake();
        ea.cipher.encrypt(&mut msg);
        assert_ne!(msg, bt_handshake());
        eb.cipher.decrypt(&mut msg);
        assert_eq!(msg, bt_handshake());
    }

    #[test]
    fn plain_handshake_detection() {
        let hs = bt_handshake();
        for mode in [EncryptionMode::Prefer, EncryptionMode::Disabled] {
            let mut b = Receiver::new(mode, random(1, vec![], 0)).unwrap();
            assert!(b.receive(&hs[..1], lookup_skey).unwrap().is_none());
            assert!(b.receive(&hs[1..19], lookup_skey).unwrap().is_none());
            let e = b.receive(&hs[19..], lookup_skey).unwrap().unwrap();
            assert_eq!((e.skey, e.method), (None, CryptoMethod::Plaintext));
            assert_eq!(e.payload, hs);
            assert!(b.take_output().is_empty());
        }
        let mut b = Receiver::new(EncryptionMode::Require, random(1, vec![], 0)).unwrap();
        assert_eq!(
            b.receive(&hs, lookup_skey).unwrap_err().to_string(),
            "peer sent a plain BitTorrent handshake, but encryption is required"
        );
        // A public key that happens to start like the header is still MSE
        // once a byte differs.
        let mut b = Receiver::new(EncryptionMode::Disabled, random(1, vec![], 0)).unwrap();
        assert!(b.receive(&hs[..5], lookup_skey).unwrap().is_none());
        assert_eq!(
            b.receive(b"X", lookup_skey).unwrap_err(),
            MseError::EncryptionDisabled
        );
    }

    #[test]
    fn policy_mismatches_fail_clearly() {
        // We require RC4, the initiator offers only plaintext.
        let a = Initiator::new(SKEY, CryptoMethods::PLAINTEXT, b"", random(5, vec![], 0)).unwrap();
        let b = Receiver::new(EncryptionMode::Require, random(6, vec![], 0)).unwrap();
        let (ra, rb) = run(a, b, 64);
        assert_eq!(rb.unwrap_err(), MseError::NoCommonMethod { provided: 1 });
        assert!(matches!(ra, Ok(None)));

        // Prefer selects RC4 when both are offered, plaintext when only it is.
        assert_eq!(
            EncryptionMode::Prefer.select(CryptoMethods::BOTH),
            Some(CryptoMethod::Rc4)
        );
        let a =
            Initiator::new(SKEY, CryptoMethods::PLAINTEXT, b"ia", random(5, vec![], 0)).unwrap();
        let b = Receiver::new(EncryptionMode::Prefer, random(6, vec![], 0)).unwrap();
        let (ra, rb) = run(a, b, 64);
        let (ea, eb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
        assert_eq!(
            (ea.method, eb.method),
            (CryptoMethod::Plaintext, CryptoMethod::Plaintext)
        );
        assert_eq!(eb.payload, b"ia");
        assert_eq!(EncryptionMode::Disabled.outgoing(), None);

        // Unknown torrent.
        let mut a =
            Initiator::new([9; 20], CryptoMethods::BOTH, b"", random(5, vec![], 0)).unwrap();
        let mut b = Receiver::new(EncryptionMode::Prefer, random(6, vec![], 0)).unwrap();
        b.receive(&a.take_output(), lookup_skey).unwrap();
        a.receive(&b.take_output()).unwrap();
        assert_eq!(
            b.receive(&a.take_output(), lookup_skey).unwrap_err(),
            MseError::UnknownTorrent
        );
        // A lookup that answers with the wrong key is caught too.
        let mut a =
            Initiator::new([9; 20], CryptoMethods::BOTH, b"", random(5, vec![], 0)).unwrap();
        let mut b = Receiver::new(EncryptionMode::Prefer, random(6, vec![], 0)).unwrap();
        b.receive(&a.take_output(), lookup_skey).unwrap();
        a.receive(&b.take_output()).unwrap();
        assert_eq!(
            b.receive(&a.take_output(), |_| Some(SKEY)).unwrap_err(),
            MseError::UnknownTorrent
        );
    }

    #[test]
    fn bad_randomness_is_refused() {
        assert_eq!(
            Receiver::new(EncryptionMode::Prefer, random(1, vec![0; MAX_PAD + 1], 0)).err(),
            Some(MseError::PadTooLong(MAX_PAD + 1))
        );
        assert_eq!(
            Initiator::new(SKEY, CryptoMethods::RC4, b"", random(1, vec![], 513)).err(),
            Some(MseError::PadTooLong(513))
        );
        let zero = HandshakeRandom {
            private_key: [0; 20],
            clear_pad: vec![],
            encrypted_pad_len: 0,
        };
        assert_eq!(
            Receiver::new(EncryptionMode::Prefer, zero).err(),
            Some(MseError::ZeroPrivateKey)
        );
        assert_eq!(
            Initiator::new(
                SKEY,
                CryptoMethods::RC4,
                &vec![0; 70_000],
                random(1, vec![], 0)
            )
            .err(),
            Some(MseError::InitialPayloadTooLong(70_000))
        );
    }

    #[test]
    fn out_of_range_public_keys_are_refused() {
        let p_minus_1 = {
            let mut p = DH_PRIME;
            p[95] -= 1;
            p
        };
        let mut one = [0u8; 96];
        one[95] = 1;
        for y in [[0u8; 96], one, p_minus_1, DH_PRIME, [0xff; 96]] {
            let mut a =
                Initiator::new(SKEY, CryptoMethods::RC4, b"", random(1, vec![], 0)).unwrap();
            assert_eq!(a.receive(&y).unwrap_err(), MseError::BadPublicKey);
            let mut b = Receiver::new(EncryptionMode::Prefer, random(1, vec![], 0)).unwrap();
            assert_eq!(
                b.receive(&y, lookup_skey).unwrap_err(),
                MseError::BadPublicKey
            );
        }
    }

    /// Completes steps 1 and 2, then gives the initiator a step 4 built by
    /// hand from the receiver's keys.
    fn initiator_with_step4(provide: CryptoMethods, select: u32, pad_len: u16) -> MseError {
        let mut a = Initiator::new(SKEY, provide, b"", random(1, vec![], 0)).unwrap();
        let rb = random(2, vec![], 0);
        let xb = BigUint::from_bytes_be(&rb.private_key);
        let ya = a.take_output();
        let s = shared_secret(&ya, &xb).unwrap();
        a.receive(&public_key(&xb)).unwrap();
        let mut enc = Rc4Stream::new(b"keyB", &s, &SKEY);
        let mut step4 = VC.to_vec();
        step4.extend_from_slice(&select.to_be_bytes());
        step4.extend_from_slice(&pad_len.to_be_bytes());
        enc.apply(&mut step4);
        a.receive(&step4).unwrap_err()
    }

    #[test]
    fn bad_step4_fields() {
        assert_eq!(
            initiator_with_step4(CryptoMethods::BOTH, 3, 0),
            MseError::BadSelect { selected: 3 }
        );
        assert_eq!(
            initiator_with_step4(CryptoMethods::RC4, 1, 0),
            MseError::BadSelect { selected: 1 }
        );
        assert_eq!(
            initiator_with_step4(CryptoMethods::RC4, 2, 513),
            MseError::PadTooLong(513)
        );
    }

    /// Builds step 3 by hand with a chosen VC and PadC length.
    fn receiver_with_step3(vc: [u8; 8], pad_len: u16) -> MseError {
        let mut b = Receiver::new(EncryptionMode::Prefer, random(2, vec![], 0)).unwrap();
        let xa = BigUint::from_bytes_be(&random(1, vec![], 0).private_key);
        b.receive(&public_key(&xa), lookup_skey).unwrap();
        let s = shared_secret(&b.take_output(), &xa).unwrap();
        let mut step3 = hash2(b"req1", &s).to_vec();
        let req3 = hash2(b"req3", &s);
        step3.extend(skey_hash(&SKEY).iter().zip(req3).map(|(x, y)| x ^ y));
        let mut enc = Rc4Stream::new(b"keyA", &s, &SKEY);
        let mut tail = vc.to_vec();
        tail.extend_from_slice(&3u32.to_be_bytes());
        tail.extend_from_slice(&pad_len.to_be_bytes());
        enc.apply(&mut tail);
        step3.extend(tail);
        b.receive(&step3, lookup_skey).unwrap_err()
    }

    #[test]
    fn bad_step3_fields() {
        assert_eq!(
            receiver_with_step3([0, 0, 0, 0, 0, 0, 0, 1], 0),
            MseError::BadVerificationConstant
        );
        assert_eq!(receiver_with_step3(VC, 513), MseError::PadTooLong(513));
    }

    #[test]
    fn sync_limits_are_exact() {
        // A receiver reads Ya and then at most 512 + 20 bytes looking for
        // the sync hash.
        let xa = BigUint::from_bytes_be(&[3; 20]);
        let mut b = Receiver::new(EncryptionMode::Prefer, random(2, vec![], 0)).unwrap();
        assert!(b.receive(&public_key(&xa), lookup_skey).unwrap().is_none());
        assert!(
            b.receive(&[0u8; MAX_PAD + 19], lookup_skey)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            b.receive(&[0u8], lookup_skey).unwrap_err(),
            MseError::SyncHashNotFound
        );
        let mut a = Initiator::new(SKEY, CryptoMethods::RC4, b"", random(1, vec![], 0)).unwrap();
        assert!(a.receive(&public_key(&xa)).unwrap().is_none());
        assert!(a.receive(&[0u8; MAX_PAD + 7]).unwrap().is_none());
        assert_eq!(a.receive(&[0u8]).unwrap_err(), MseError::VcNotFound);
        assert_eq!(a.receive(&[0u8]).unwrap_err(), MseError::Finished);
    }

    fn arb_random() -> impl Strategy<Value = HandshakeRandom> {
        (
            any::<[u8; 20]>().prop_filter("non-zero", |k| k.iter().any(|&b| b != 0)),
            proptest::collection::vec(any::<u8>(), 0..=MAX_PAD),
            0..=MAX_PAD as u16,
        )
            .prop_map(
                |(private_key, clear_pad, encrypted_pad_len)| HandshakeRandom {
                    private_key,
                    clear_pad,
                    encrypted_pad_len,
                },
            )
    }

    fn arb_mode() -> impl Strategy<Value = EncryptionMode> {
        prop_oneof![Just(EncryptionMode::Prefer), Just(EncryptionMode::Require)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn initiator_and_receiver_agree(
            ra in arb_random(),
            rb in arb_random(),
            mode_a in arb_mode(),
            mode_b in arb_mode(),
            ia in proptest::collection::vec(any::<u8>(), 0..200),
            chunk in 1usize..700,
            a_data in proptest::collection::vec(any::<u8>(), 1..100),
            b_data in proptest::collection::vec(any::<u8>(), 1..100),
        ) {
            let provide = mode_a.outgoing().unwrap();
            let a = Initiator::new(SKEY, provide, &ia, ra).unwrap();
            let b = Receiver::new(mode_b, rb).unwrap();
            let (ra, rb) = run(a, b, chunk);
            let (mut ea, mut eb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
            prop_assert_eq!(ea.method, eb.method);
            let expected = if mode_a == EncryptionMode::Prefer && mode_b == EncryptionMode::Prefer
                || mode_a == EncryptionMode::Require || mode_b == EncryptionMode::Require
            {
                CryptoMethod::Rc4
            } else {
                CryptoMethod::Plaintext
            };
            prop_assert_eq!(ea.method, expected);
            prop_assert_eq!(&eb.payload, &ia);
            prop_assert!(ea.payload.is_empty());
            prop_assert_eq!(eb.skey, Some(SKEY));
            // Traffic both ways after the handshake.
            let mut m = a_data.clone();
            ea.cipher.encrypt(&mut m);
            eb.cipher.decrypt(&mut m);
            prop_assert_eq!(&m, &a_data);
            let mut m = b_data.clone();
            eb.cipher.encrypt(&mut m);
            ea.cipher.decrypt(&mut m);
            prop_assert_eq!(&m, &b_data);
        }

        #[test]
        fn receiver_fails_on_garbage_within_the_limit(
            rb in arb_random(),
            mode in arb_mode(),
            first in 0u8..=255,
            rest in proptest::collection::vec(any::<u8>(), RECEIVER_SYNC_LIMIT..RECEIVER_SYNC_LIMIT + 100),
            chunk in 1usize..300,
        ) {
            prop_assume!(first != 19);
            let mut data = vec![first];
            data.extend(rest);
            let mut b = Receiver::new(mode, rb).unwrap();
            let mut fed = 0;
            let mut outcome = Ok(None);
            for c in data.chunks(chunk) {
                outcome = b.receive(c, lookup_skey);
                fed += c.len();
                if outcome.is_err() { break; }
            }
            prop_assert!(outcome.is_err(), "no error after {} bytes", fed);
            prop_assert!(fed < RECEIVER_SYNC_LIMIT + chunk);
        }

        #[test]
        fn initiator_fails_on_garbage_within_the_limit(
            ra in arb_random(),
            data in proptest::collection::vec(any::<u8>(), INITIATOR_SYNC_LIMIT..INITIATOR_SYNC_LIMIT + 100),
            chunk in 1usize..300,
        ) {
            let mut a = Initiator::new(SKEY, CryptoMethods::BOTH, b"", ra).unwrap();
            let mut fed = 0;
            let mut outcome = Ok(None);
            for c in data.chunks(chunk) {
                outcome = a.receive(c);
                fed += c.len();
                if outcome.is_err() { break; }
            }
            prop_assert!(outcome.is_err(), "no error after {} bytes", fed);
            prop_assert!(fed < INITIATOR_SYNC_LIMIT + chunk);
        }

        #[test]
        fn tampered_handshakes_never_panic(
            seed_a in 1u8..=255,
            seed_b in 1u8..=255,
            flip_at in 0usize..1400,
            flip in 1u8..=255,
            to_receiver in any::<bool>(),
        ) {
            let mut a = Initiator::new(SKEY, CryptoMethods::BOTH, b"ia", random(seed_a, vec![1; 40], 30)).unwrap();
            let mut b = Receiver::new(EncryptionMode::Prefer, random(seed_b, vec![2; 50], 20)).unwrap();
            let mut sent_a = 0;
            let mut sent_b = 0;
            let tamper = |buf: &mut Vec<u8>, sent: &mut usize, active: bool| {
                if active && flip_at >= *sent && flip_at < *sent + buf.len() {
                    buf[flip_at - *sent] ^= flip;
                }
                *sent += buf.len();
            };
            let mut out = a.take_output();
            tamper(&mut out, &mut sent_a, to_receiver);
            let _ = b.receive(&out, lookup_skey);
            let mut out = b.take_output();
            tamper(&mut out, &mut sent_b, !to_receiver);
            let _ = a.receive(&out);
            let mut out = a.take_output();
            tamper(&mut out, &mut sent_a, to_receiver);
            let _ = b.receive(&out, lookup_skey);
            let mut out = b.take_output();
            tamper(&mut out, &mut sent_b, !to_receiver);
            let _ = a.receive(&out);
        }
    }
}
