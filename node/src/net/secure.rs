//! The secure channel between nodes: a Noise XX handshake
//! (`Noise_XX_25519_AESGCM_SHA256`) in which each side proves its libp2p
//! identity key, then AES-256-GCM frames.
//!
//! libp2p's noise upgrade fixes ChaCha20-Poly1305 as its cipher. Every
//! shard a node stores on a peer crosses this channel, sealed on one side
//! and opened on the other, and on CPUs with AES instructions AES-256-GCM
//! does several times the bytes per cycle, so the channel uses it.
//!
//! The handshake is the libp2p noise construction with its own protocol
//! name, prologue and signature prefix: each side sends, inside the
//! encrypted part of its handshake message, its identity public key and a
//! signature by that key over its Noise static key. The peer's identity
//! (its `PeerId`) is therefore proven, and the swarm's allow list then
//! decides whether the connection may stay.
//!
//! Both sides must also hold the cluster secret: a key derived from it is
//! the handshake's pre-shared key (`XXpsk2`: mixed in at the end of the
//! second message, so each side proves it before the handshake ends). A
//! key that was only listed (added to the layout by whoever held the admin
//! API) is not enough to become a peer.
//!
//! After the handshake, the stream is a sequence of frames: a 4-byte
//! big-endian header (the length, and in its top bit the rekey flag), then
//! that many bytes of AES-256-GCM ciphertext with its 16-byte tag; the
//! header is the frame's associated data. Each direction has its own key
//! (the Noise split) and a frame counter as its nonce (32 zero bits, then
//! the counter big-endian, as Noise numbers its messages). A sender moves
//! to a new key, derived one-way from the old, after `REKEY_BYTES` or
//! `REKEY_AFTER`, and flags the first frame under it; the counter starts
//! again. Frames are sealed and opened in place: the only copies are into
//! the write buffer and out of the read buffer.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};
use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, RingResolver};
use zeroize::Zeroize;

/// The protocol name, negotiated by multistream-select before the
/// handshake.
pub const PROTOCOL: &str = "/strata/noise-aes/2";
const PARAMS: &str = "Noise_XXpsk2_25519_AESGCM_SHA256";
/// Where the pre-shared key is mixed in (the end of the second message).
const PSK_LOCATION: u8 = 2;
/// The derivation context of the pre-shared key from the cluster secret.
pub const PSK_CONTEXT: &str = "strata 2026-12 p2p channel psk v1";
/// A direction moves to a new key after this many plaintext bytes...
pub const REKEY_BYTES: u64 = 1 << 30;
/// ...or this long under one key, whichever comes first.
pub const REKEY_AFTER: std::time::Duration = std::time::Duration::from_secs(600);
/// The header bit that says a frame is the first under a new key.
const REKEY_FLAG: u32 = 1 << 31;
const PROLOGUE: &[u8] = b"strata p2p secure channel 1";
/// What an identity key signs: this prefix, then its Noise static key.
const SIGNED_PREFIX: &[u8] = b"strata-noise-static-key:";
/// A peer that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Noise's own bound on a handshake message.
const MAX_HANDSHAKE_MESSAGE: usize = 65535;
const TAG: usize = 16;
const HEADER: usize = 4;
/// Plaintext bytes in one frame, at most.
pub const MAX_PLAINTEXT: usize = 64 * 1024;
/// Ciphertext bytes in one frame, at most.
const MAX_FRAME: usize = MAX_PLAINTEXT + TAG;
/// The read buffer holds two whole frames, so a read from the socket can
/// take in a frame and the start of the next.
const READ_BUFFER: usize = 2 * (HEADER + MAX_FRAME);

#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    #[error("i/o during the handshake: {0}")]
    Io(#[from] io::Error),
    #[error("noise handshake: {0}")]
    Noise(#[from] snow::Error),
    #[error("the peer's handshake message is malformed")]
    Malformed,
    #[error("the peer's identity key does not sign its noise key")]
    BadSignature,
    #[error("signing the noise key: {0}")]
    Sign(String),
    #[error("the handshake did not finish within {0:?}")]
    Timeout(std::time::Duration),
}

/// The security upgrade for libp2p's transport builder, in place of
/// `libp2p::noise::Config`.
#[derive(Clone)]
pub struct Config {
    identity: Keypair,
    psk: [u8; 32],
}

impl Config {
    /// For `SwarmBuilder::with_tcp`: the node's identity, and the key
    /// every member derives from the cluster secret.
    pub fn new(identity: &Keypair, psk: [u8; 32]) -> Result<Self, SecureError> {
        Ok(Self {
            identity: identity.clone(),
            psk,
        })
    }
}

impl Config {
    /// The handshake both upgrade directions run, bounded in time.
    fn secure<T>(
        self,
        socket: T,
        initiator: bool,
    ) -> BoxFuture<'static, Result<(PeerId, SecureStream<T>), SecureError>>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Box::pin(bounded(
            HANDSHAKE_TIMEOUT,
            handshake(self.identity, self.psk, socket, initiator),
        ))
    }
}

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once(PROTOCOL)
    }
}

impl<T> InboundConnectionUpgrade<T> for Config
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = (PeerId, SecureStream<T>);
    type Error = SecureError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: T, _: Self::Info) -> Self::Future {
        self.secure(socket, false)
    }
}

impl<T> OutboundConnectionUpgrade<T> for Config
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = (PeerId, SecureStream<T>);
    type Error = SecureError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: T, _: Self::Info) -> Self::Future {
        self.secure(socket, true)
    }
}

async fn bounded<F, T>(limit: std::time::Duration, handshake: F) -> Result<T, SecureError>
where
    F: std::future::Future<Output = Result<T, SecureError>>,
{
    tokio::time::timeout(limit, handshake)
        .await
        .map_err(|_| SecureError::Timeout(limit))?
}

/// Runs the three handshake messages (`-> e`, `<- e, ee, s, es`,
/// `-> s, se`) and returns the proven identity of the peer with the
/// stream that carries the frames.
pub async fn handshake<T>(
    identity: Keypair,
    psk: [u8; 32],
    mut io: T,
    initiator: bool,
) -> Result<(PeerId, SecureStream<T>), SecureError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let params: snow::params::NoiseParams = PARAMS.parse()?;
    let builder = snow::Builder::with_resolver(params, Box::new(Resolver));
    let mut static_key = builder.generate_keypair()?;
    let own = identity_payload(&identity, &static_key.public)?;
    let builder = builder
        .local_private_key(&static_key.private)?
        .psk(PSK_LOCATION, &psk)?
        .prologue(PROLOGUE)?;
    let mut state = if initiator {
        builder.build_initiator()?
    } else {
        builder.build_responder()?
    };
    static_key.private.zeroize();
    let mut message = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let mut payload = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let remote = if initiator {
        let n = state.write_message(&[], &mut message)?;
        send_handshake(&mut io, &message[..n]).await?;
        let received = recv_handshake(&mut io).await?;
        let n = state.read_message(&received, &mut payload)?;
        let remote = verify_payload(&payload[..n], state.get_remote_static())?;
        let n = state.write_message(&own, &mut message)?;
        send_handshake(&mut io, &message[..n]).await?;
        remote
    } else {
        let received = recv_handshake(&mut io).await?;
        // The first message travels before any key is agreed: it carries
        // nothing but the ephemeral key.
        if state.read_message(&received, &mut payload)? != 0 {
            return Err(SecureError::Malformed);
        }
        let n = state.write_message(&own, &mut message)?;
        send_handshake(&mut io, &message[..n]).await?;
        let received = recv_handshake(&mut io).await?;
        let n = state.read_message(&received, &mut payload)?;
        verify_payload(&payload[..n], state.get_remote_static())?
    };
    if !state.is_handshake_finished() {
        return Err(SecureError::Malformed);
    }
    let (mut first, mut second) = state.dangerously_get_raw_split();
    // The split's first key seals what the initiator sends.
    let (seal, open) = if initiator {
        (&first, &second)
    } else {
        (&second, &first)
    };
    let stream = SecureStream::new(io, seal, open);
    first.zeroize();
    second.zeroize();
    Ok((remote.to_peer_id(), stream?))
}

/// The identity part of a handshake message: the identity public key
/// (libp2p's protobuf encoding) behind its 2-byte length, then the
/// signature over the Noise static key.
fn identity_payload(identity: &Keypair, static_public: &[u8]) -> Result<Vec<u8>, SecureError> {
    let key = identity.public().encode_protobuf();
    let signature = identity
        .sign(&signed_message(static_public))
        .map_err(|e| SecureError::Sign(e.to_string()))?;
    let key_len = u16::try_from(key.len()).map_err(|_| SecureError::Malformed)?;
    let mut out = Vec::with_capacity(2 + key.len() + signature.len());
    out.extend_from_slice(&key_len.to_be_bytes());
    out.extend_from_slice(&key);
    out.extend_from_slice(&signature);
    Ok(out)
}

fn signed_message(static_public: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNED_PREFIX.len() + static_public.len());
    m.extend_from_slice(SIGNED_PREFIX);
    m.extend_from_slice(static_public);
    m
}

fn verify_payload(payload: &[u8], remote_static: Option<&[u8]>) -> Result<PublicKey, SecureError> {
    let remote_static = remote_static.ok_or(SecureError::Malformed)?;
    let (len, rest) = payload.split_at_checked(2).ok_or(SecureError::Malformed)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let (key, signature) = rest.split_at_checked(len).ok_or(SecureError::Malformed)?;
    let key = PublicKey::try_decode_protobuf(key).map_err(|_| SecureError::Malformed)?;
    if key.verify(&signed_message(remote_static), signature) {
        Ok(key)
    } else {
        Err(SecureError::BadSignature)
    }
}

async fn send_handshake<T: AsyncWrite + Unpin>(io: &mut T, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "handshake message too long"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(message).await?;
    io.flush().await
}

async fn recv_handshake<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    io.read_exact(&mut len).await?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    io.read_exact(&mut message).await?;
    Ok(message)
}

/// snow's ring resolver for the hash, the cipher and the randomness;
/// X25519 from curve25519-dalek (ring has no static Diffie-Hellman keys).
struct Resolver;

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn snow::types::Random>> {
        RingResolver.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn snow::types::Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::<X25519>::default()),
            _ => None,
        }
    }

    fn resolve_hash(
        &self,
        choice: &snow::params::HashChoice,
    ) -> Option<Box<dyn snow::types::Hash>> {
        RingResolver.resolve_hash(choice)
    }

    fn resolve_cipher(
        &self,
        choice: &snow::params::CipherChoice,
    ) -> Option<Box<dyn snow::types::Cipher>> {
        RingResolver.resolve_cipher(choice)
    }
}

#[derive(Default)]
struct X25519 {
    secret: [u8; 32],
    public: [u8; 32],
}

impl Drop for X25519 {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl snow::types::Dh for X25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        32
    }

    fn priv_len(&self) -> usize {
        32
    }

    fn set(&mut self, privkey: &[u8]) {
        if let Some(secret) = privkey.get(..32).and_then(|k| <[u8; 32]>::try_from(k).ok()) {
            self.secret = secret;
            self.public = x25519_dalek::x25519(secret, x25519_dalek::X25519_BASEPOINT_BYTES);
        }
    }

    fn generate(&mut self, rng: &mut dyn snow::types::Random) -> Result<(), snow::Error> {
        let mut secret = [0u8; 32];
        rng.try_fill_bytes(&mut secret)?;
        self.set(&secret);
        secret.zeroize();
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.secret
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        // snow hands over its key buffer, which may be longer than the key.
        let point = pubkey
            .get(..32)
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or(snow::Error::Dh)?;
        let shared = x25519_dalek::x25519(self.secret, point);
        // A low-order point gives all zeros: no key is agreed with it.
        if shared == [0u8; 32] {
            return Err(snow::Error::Dh);
        }
        out.get_mut(..32)
            .ok_or(snow::Error::Dh)?
            .copy_from_slice(&shared);
        Ok(())
    }
}

fn frame_nonce(counter: &mut u64) -> io::Result<Nonce> {
    let n = *counter;
    *counter = n
        .checked_add(1)
        .ok_or_else(|| io::Error::other("frame counter exhausted"))?;
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&n.to_be_bytes());
    Ok(Nonce::assume_unique_for_key(nonce))
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// When a direction moves to a new key.
#[derive(Debug, Clone, Copy)]
pub struct Rekey {
    pub bytes: u64,
    pub after: std::time::Duration,
}

impl Default for Rekey {
    fn default() -> Self {
        Self {
            bytes: REKEY_BYTES,
            after: REKEY_AFTER,
        }
    }
}

/// One direction's key: the raw bytes (to derive the next one) and the
/// AEAD key made from them.
struct DirectionKey {
    raw: [u8; 32],
    aead: LessSafeKey,
}

impl DirectionKey {
    fn new(raw: &[u8; 32]) -> Result<Self, SecureError> {
        let aead = UnboundKey::new(&AES_256_GCM, raw)
            .map(LessSafeKey::new)
            .map_err(|_| SecureError::Malformed)?;
        Ok(Self { raw: *raw, aead })
    }

    /// The next key: one-way from this one, which is then forgotten.
    fn advance(&mut self) -> io::Result<()> {
        let mut next = blake3::derive_key("strata p2p channel rekey v1", &self.raw);
        *self = Self::new(&next).map_err(|_| io::Error::other("rekey"))?;
        next.zeroize();
        Ok(())
    }
}

impl Drop for DirectionKey {
    fn drop(&mut self) {
        self.raw.zeroize();
    }
}

/// The stream after the handshake: AES-256-GCM frames both ways.
pub struct SecureStream<T> {
    io: T,
    seal: DirectionKey,
    open: DirectionKey,
    sealed: u64,
    opened: u64,
    rekey: Rekey,
    /// Plaintext bytes sealed under the current key, and since when.
    sealed_bytes: u64,
    key_since: std::time::Instant,
    /// Keys each side has moved past (for tests and logs).
    rekeys: (u64, u64),
    /// The frame being filled (header, then plaintext) or, once sealed,
    /// being written (header, ciphertext, tag).
    write: Vec<u8>,
    /// Bytes of the sealed frame already written; `None` while filling.
    written: Option<usize>,
    read: Box<[u8]>,
    /// Received bytes not opened yet: `read[start..end]`.
    start: usize,
    end: usize,
    /// Opened plaintext not yet handed out: `read[plain..plain_end]`.
    plain: usize,
    plain_end: usize,
    /// A frame failed to open: nothing more is read from this stream.
    broken: bool,
}

impl<T> SecureStream<T> {
    fn new(io: T, seal: &[u8; 32], open: &[u8; 32]) -> Result<Self, SecureError> {
        let mut write = Vec::with_capacity(HEADER + MAX_FRAME);
        write.resize(HEADER, 0);
        Ok(Self {
            io,
            seal: DirectionKey::new(seal)?,
            open: DirectionKey::new(open)?,
            sealed: 0,
            opened: 0,
            rekey: Rekey::default(),
            sealed_bytes: 0,
            key_since: std::time::Instant::now(),
            rekeys: (0, 0),
            write,
            written: None,
            read: vec![0u8; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            plain: 0,
            plain_end: 0,
            broken: false,
        })
    }

    /// Changes when this stream's directions move to new keys.
    pub fn with_rekey(mut self, rekey: Rekey) -> Self {
        self.rekey = rekey;
        self
    }

    /// How many times (sent, received) the keys moved on.
    pub fn rekeys(&self) -> (u64, u64) {
        self.rekeys
    }

    /// Seals the plaintext gathered so far into a frame to be written.
    fn seal_frame(&mut self) -> io::Result<()> {
        let len = self.write.len() - HEADER;
        let mut header = u32::try_from(len + TAG).map_err(|_| invalid("frame too long"))?;
        if self.sealed_bytes >= self.rekey.bytes || self.key_since.elapsed() >= self.rekey.after {
            self.seal.advance()?;
            self.sealed = 0;
            self.sealed_bytes = 0;
            self.key_since = std::time::Instant::now();
            self.rekeys.0 += 1;
            header |= REKEY_FLAG;
        }
        let header = header.to_be_bytes();
        let nonce = frame_nonce(&mut self.sealed)?;
        let tag = self
            .seal
            .aead
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut self.write[HEADER..])
            .map_err(|_| io::Error::other("sealing a frame failed"))?;
        self.write.extend_from_slice(tag.as_ref());
        self.write[..HEADER].copy_from_slice(&header);
        self.sealed_bytes += len as u64;
        self.written = Some(0);
        Ok(())
    }

    /// Opens the frame at `start` if all of it has arrived; otherwise
    /// returns how many bytes from `start` it needs.
    fn open_frame(&mut self) -> io::Result<Result<(), usize>> {
        let have = self.end - self.start;
        if have < HEADER {
            return Ok(Err(HEADER));
        }
        let mut header = [0u8; HEADER];
        header.copy_from_slice(&self.read[self.start..self.start + HEADER]);
        let word = u32::from_be_bytes(header);
        let len = (word & !REKEY_FLAG) as usize;
        if !(TAG..=MAX_FRAME).contains(&len) {
            self.broken = true;
            return Err(invalid("frame length out of bounds"));
        }
        if have < HEADER + len {
            return Ok(Err(HEADER + len));
        }
        if word & REKEY_FLAG != 0 {
            self.open.advance()?;
            self.opened = 0;
            self.rekeys.1 += 1;
        }
        let body = self.start + HEADER;
        let nonce = frame_nonce(&mut self.opened)?;
        let opened = self.open.aead.open_in_place(
            nonce,
            Aad::from(header),
            &mut self.read[body..body + len],
        );
        if opened.is_err() {
            self.broken = true;
            return Err(invalid("frame fails authentication"));
        }
        self.plain = body;
        self.plain_end = body + len - TAG;
        self.start = body + len;
        Ok(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> SecureStream<T> {
    /// Writes out the sealed frame, if there is one.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(done) = self.written {
            if done == self.write.len() {
                self.write.truncate(HEADER);
                self.written = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.write[done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written = Some(done + n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SecureStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if this.broken {
                return Poll::Ready(Err(invalid("the stream failed authentication")));
            }
            if this.plain < this.plain_end {
                let n = buf.len().min(this.plain_end - this.plain);
                buf[..n].copy_from_slice(&this.read[this.plain..this.plain + n]);
                this.plain += n;
                return Poll::Ready(Ok(n));
            }
            let need = match this.open_frame() {
                Ok(Ok(())) => continue,
                Ok(Err(need)) => need,
                Err(e) => return Poll::Ready(Err(e)),
            };
            // All plaintext is handed out, so the buffer may move: start
            // afresh when it is empty, and move a partial frame to the
            // front when the rest of it would not fit behind it.
            if this.start == this.end {
                this.start = 0;
                this.end = 0;
            } else if this.start + need > this.read.len() {
                this.read.copy_within(this.start..this.end, 0);
                this.end -= this.start;
                this.start = 0;
            }
            let n = ready!(Pin::new(&mut this.io).poll_read(cx, &mut this.read[this.end..]))?;
            if n == 0 {
                return Poll::Ready(if this.start == this.end {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                });
            }
            this.end += n;
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SecureStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let room = MAX_PLAINTEXT - (this.write.len() - HEADER);
        let n = room.min(buf.len());
        this.write.extend_from_slice(&buf[..n]);
        if this.write.len() - HEADER == MAX_PLAINTEXT {
            this.seal_frame()?;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if this.write.len() > HEADER {
            this.seal_frame()?;
            ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().io).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::compat::TokioAsyncReadCompatExt;

    type Pipe = tokio_util::compat::Compat<tokio::io::DuplexStream>;

    const PSK: [u8; 32] = [42; 32];

    fn pipe() -> (Pipe, Pipe) {
        let (a, b) = tokio::io::duplex(1 << 16);
        (a.compat(), b.compat())
    }

    async fn connect(
        a_key: &Keypair,
        b_key: &Keypair,
    ) -> ((PeerId, SecureStream<Pipe>), (PeerId, SecureStream<Pipe>)) {
        let (a, b) = pipe();
        let (x, y) = tokio::join!(
            handshake(a_key.clone(), PSK, a, true),
            handshake(b_key.clone(), PSK, b, false)
        );
        match (x, y) {
            (Ok(x), Ok(y)) => (x, y),
            (x, y) => panic!("handshake: {:?} / {:?}", x.err(), y.err()),
        }
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn each_side_learns_the_others_identity_and_bytes_cross_intact() {
        let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let ((peer_b, mut a), (peer_a, mut b)) = connect(&ka, &kb).await;
        assert_eq!(peer_b, kb.public().to_peer_id());
        assert_eq!(peer_a, ka.public().to_peer_id());
        // Several frames' worth one way, odd sizes both ways, interleaved
        // with flushes mid-frame.
        let big = data(3 * MAX_PLAINTEXT + 12_345);
        let small = data(7);
        let send = async {
            a.write_all(&small).await.expect("write");
            a.flush().await.expect("flush");
            a.write_all(&big).await.expect("write");
            a.close().await.expect("close");
        };
        let recv = async {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.expect("read");
            got
        };
        let (_, got) = tokio::join!(send, recv);
        assert_eq!(got.len(), small.len() + big.len());
        assert_eq!(&got[..7], &small[..]);
        assert!(got[7..] == big[..], "bytes differ after the round trip");

        b.write_all(b"answer").await.expect("write back");
        b.close().await.expect("close");
        let mut back = Vec::new();
        a.read_to_end(&mut back).await.expect("read back");
        assert_eq!(back, b"answer");
    }

    /// The bytes a sender with `key` puts on the wire for `frames`, each
    /// flushed as one frame.
    async fn wire(key: &[u8; 32], frames: &[&[u8]]) -> Vec<u8> {
        let (raw, mut far) = pipe();
        let mut sender = SecureStream::new(raw, key, &[0u8; 32]).expect("keys");
        for f in frames {
            sender.write_all(f).await.expect("write");
            sender.flush().await.expect("flush");
        }
        drop(sender);
        let mut out = Vec::new();
        far.read_to_end(&mut out).await.expect("read the wire");
        out
    }

    /// What a receiver with `key` reads from `wire`.
    async fn receive(key: &[u8; 32], wire: &[u8]) -> io::Result<Vec<u8>> {
        let (raw, mut far) = pipe();
        let mut receiver = SecureStream::new(raw, &[0u8; 32], key).expect("keys");
        let feed = async {
            far.write_all(wire).await.expect("feed");
            far.close().await.expect("close");
        };
        let read = async {
            let mut got = Vec::new();
            receiver.read_to_end(&mut got).await.map(|_| got)
        };
        tokio::join!(feed, read).1
    }

    #[tokio::test]
    async fn tampered_reordered_or_cut_frames_fail_the_stream() {
        let key = [9u8; 32];
        let (one, two) = (data(1000), data(300));
        let good = wire(&key, &[&one, &two]).await;
        assert_eq!(good.len(), 2 * (HEADER + TAG) + 1000 + 300);
        let mut both = one.clone();
        both.extend_from_slice(&two);
        assert_eq!(receive(&key, &good).await.expect("intact"), both);

        // Another key opens nothing.
        let e = receive(&[8u8; 32], &good).await.expect_err("wrong key");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // One flipped bit in the ciphertext, or in the tag.
        for at in [HEADER, HEADER + 500, HEADER + 1000 + TAG - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            let e = receive(&key, &bad).await.expect_err("tampered");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "flip at {at}");
        }
        // The two frames swapped: the second's nonce does not match.
        let first = HEADER + 1000 + TAG;
        let mut swapped = good[first..].to_vec();
        swapped.extend_from_slice(&good[..first]);
        let e = receive(&key, &swapped).await.expect_err("reordered");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // A frame replayed: the same.
        let mut replayed = good[..first].to_vec();
        replayed.extend_from_slice(&good[..first]);
        assert!(receive(&key, &replayed).await.is_err());
        // Cut in the middle of a frame: an unexpected end, not a short read.
        let e = receive(&key, &good[..first + 100]).await.expect_err("cut");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // A length beyond the largest frame is refused before anything is
        // buffered for it.
        let mut huge = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0u8; 64]);
        let e = receive(&key, &huge).await.expect_err("too long");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_times_out() {
        let (a, _silent) = pipe();
        let limit = std::time::Duration::from_millis(50);
        let r = bounded(limit, handshake(Keypair::generate_ed25519(), PSK, a, true)).await;
        assert!(matches!(r, Err(SecureError::Timeout(_))));
    }

    #[tokio::test]
    async fn garbage_instead_of_a_handshake_is_an_error() {
        let (a, mut b) = pipe();
        let responder = handshake(Keypair::generate_ed25519(), PSK, a, false);
        let feed = async {
            // A first message that is not a bare ephemeral key, then a
            // second one of noise.
            // The responder may give up at any point: writes may fail.
            let _ = b.write_all(&[0, 40]).await;
            let _ = b.write_all(&[0x55; 40]).await;
            let _ = b.write_all(&[0, 200]).await;
            let _ = b.write_all(&[0xaa; 200]).await;
            let _ = b.close().await;
            let mut sink = Vec::new();
            let _ = b.read_to_end(&mut sink).await;
        };
        let (r, _) = tokio::join!(responder, feed);
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn a_key_that_does_not_sign_its_noise_key_is_refused() {
        let ka = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let payload = identity_payload(&ka, &[7u8; 32]).expect("payload");
        // The signature is over another static key.
        assert!(matches!(
            verify_payload(&payload, Some(&[8u8; 32])),
            Err(SecureError::BadSignature)
        ));
        assert_eq!(
            verify_payload(&payload, Some(&[7u8; 32]))
                .expect("verifies")
                .to_peer_id(),
            ka.public().to_peer_id()
        );
        // Another key presented with this signature.
        let mut forged = Vec::new();
        let key = other.public().encode_protobuf();
        forged.extend_from_slice(&(key.len() as u16).to_be_bytes());
        forged.extend_from_slice(&key);
        forged.extend_from_slice(&payload[2 + ka.public().encode_protobuf().len()..]);
        assert!(matches!(
            verify_payload(&forged, Some(&[7u8; 32])),
            Err(SecureError::BadSignature)
        ));
        for cut in [0, 1, 2, 10] {
            assert!(matches!(
                verify_payload(&payload[..cut], Some(&[7u8; 32])),
                Err(SecureError::Malformed)
            ));
        }
    }

    #[tokio::test]
    async fn a_listed_key_without_the_cluster_secret_is_refused() {
        let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        for (a_psk, b_psk) in [(PSK, [7u8; 32]), ([7u8; 32], PSK)] {
            let (a, b) = pipe();
            let (x, y) = tokio::join!(
                handshake(ka.clone(), a_psk, a, true),
                handshake(kb.clone(), b_psk, b, false)
            );
            // Both sides find out within the handshake.
            assert!(x.is_err(), "initiator accepted a peer without the secret");
            assert!(y.is_err(), "responder accepted a peer without the secret");
        }
    }

    #[tokio::test]
    async fn keys_move_on_by_volume_and_by_time_and_bytes_stay_intact() {
        let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let ((_, a), (_, b)) = connect(&ka, &kb).await;
        let mut a = a.with_rekey(Rekey {
            bytes: 200_000,
            after: std::time::Duration::from_secs(3600),
        });
        let mut b = b.with_rekey(Rekey {
            bytes: u64::MAX,
            after: std::time::Duration::from_millis(1),
        });
        let big = data(5_000_000);
        let send = async {
            a.write_all(&big).await.expect("write");
            a.flush().await.expect("flush");
            a
        };
        let recv = async {
            let mut got = vec![0u8; big.len()];
            b.read_exact(&mut got).await.expect("read");
            (b, got)
        };
        let (mut a, (mut b, got)) = tokio::join!(send, recv);
        assert!(got == big, "bytes differ across rekeys");
        // 5 MB in frames of 64 KiB, a new key past every 200 kB.
        // (a new key every fourth 64 KiB frame: 76 frames, 19 keys).
        assert!(a.rekeys().0 >= 18, "{:?}", a.rekeys());
        assert_eq!(b.rekeys().1, a.rekeys().0);
        // By time: b's key is older than a millisecond at its next frame.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        b.write_all(b"later").await.expect("write");
        b.flush().await.expect("flush");
        let mut back = [0u8; 5];
        a.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"later");
        assert_eq!(b.rekeys().0, 1);
        assert_eq!(a.rekeys().1, 1);
    }

    #[tokio::test]
    async fn a_forged_rekey_flag_fails_the_stream() {
        let key = [9u8; 32];
        let good = wire(&key, &[&data(100)]).await;
        let mut bad = good.clone();
        bad[0] ^= 0x80;
        let e = receive(&key, &bad).await.expect_err("flag flipped");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
