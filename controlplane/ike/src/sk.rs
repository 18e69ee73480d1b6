//! The Encrypted (SK) payload, RFC 7296 §3.14, and Encrypted Fragment (SKF) payload, RFC 7383.
//!
//! How to drive it: build one [`SkCipher`] per direction from the IKE keys
//! ([`SkCipher::outbound`] uses the responder's keys SK_er/SK_ar for a responder, and
//! [`SkCipher::inbound`] the initiator's). [`SkCipher::seal`] turns a header and the inner
//! payloads into a datagram (or, with a fragment size, into SKF datagrams); [`SkCipher::open`]
//! checks the integrity of a received datagram before decrypting it and returns the inner
//! payloads, or one fragment for reassembly by [`Reassembly`].
//!
//! AEAD transforms (AES-GCM-16, RFC 5282 §5; ChaCha20-Poly1305, RFC 7634 §2) use
//! nonce = salt ‖ IV and authenticate the IKE header and the SK/SKF header as associated data.
//! AES-CBC is followed by an HMAC over the whole message up to the ICV.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codec::Codec;
use crate::crypto::{Encr, Entropy, Integ};
use crate::error::{DecodeError, Error};
use crate::keymat::IkeKeys;
use crate::message::{decode_chain, encode_chain, Header, Message, Payload, PayloadType, HEADER_LEN};

/// Keys and transforms for one direction of an IKE SA.
pub struct SkCipher {
    encr: Encr,
    integ: Option<Integ>,
    encr_key: Zeroizing<Vec<u8>>,
    integ_key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkCipher").field("encr", &self.encr).field("integ", &self.integ).finish_non_exhaustive()
    }
}

/// A decrypted message: either complete, or one fragment to be reassembled.
#[derive(Debug)]
pub enum Opened {
    /// A complete SK message.
    Complete(Header, Vec<Payload>),
    /// One verified SKF fragment (RFC 7383 §2.6).
    Fragment {
        /// The header of the fragment message.
        header: Header,
        /// First inner payload type (meaningful in fragment 1 only).
        first: PayloadType,
        /// Fragment number.
        number: u16,
        /// Total fragments.
        total: u16,
        /// Decrypted fragment content.
        plain: Vec<u8>,
    },
}

impl SkCipher {
    /// A cipher from explicit keys (encryption key with salt for AEADs, integrity key for CBC).
    pub fn new(encr: Encr, integ: Option<Integ>, encr_key: &[u8], integ_key: &[u8]) -> Result<Self, Error> {
        if encr_key.len() != encr.keymat_len() || integ.map_or(0, Integ::key_len) != integ_key.len() {
            return Err(Error::Crypto("SK key length"));
        }
        if encr.is_aead() == integ.is_some() {
            return Err(Error::Crypto("AEAD with integrity, or CBC without"));
        }
        Ok(Self {
            encr,
            integ,
            encr_key: Zeroizing::new(encr_key.to_vec()),
            integ_key: Zeroizing::new(integ_key.to_vec()),
        })
    }

    /// Our sending direction: responder keys when `responder`, initiator keys otherwise.
    pub fn outbound(keys: &IkeKeys, responder: bool) -> Result<Self, Error> {
        if responder {
            Self::new(keys.encr, keys.integ, &keys.sk_er, &keys.sk_ar)
        } else {
            Self::new(keys.encr, keys.integ, &keys.sk_ei, &keys.sk_ai)
        }
    }

    /// Our receiving direction.
    pub fn inbound(keys: &IkeKeys, responder: bool) -> Result<Self, Error> {
        Self::outbound(keys, !responder)
    }

    fn icv_len(&self) -> usize {
        self.integ.map_or(16, Integ::icv_len)
    }

    /// Bytes added around a plaintext of `len` bytes (IV, padding, pad length, ICV).
    pub fn overhead(&self, len: usize) -> usize {
        self.encr.iv_len() + self.pad_len(len) + 1 + self.icv_len()
    }

    fn pad_len(&self, len: usize) -> usize {
        match self.encr {
            Encr::AesCbc { .. } => (16 - (len + 1) % 16) % 16,
            _ => 0,
        }
    }

    fn aead_key(&self) -> Result<(LessSafeKey, [u8; 4]), Error> {
        let (alg, klen) = match self.encr {
            Encr::AesGcm16 { key_len: 16 } => (&aead::AES_128_GCM, 16),
            Encr::AesGcm16 { key_len: 32 } => (&aead::AES_256_GCM, 32),
            Encr::ChaCha20Poly1305 => (&aead::CHACHA20_POLY1305, 32),
            _ => return Err(Error::Crypto("not an AEAD")),
        };
        let key = UnboundKey::new(alg, &self.encr_key[..klen]).map_err(|_| Error::Crypto("AEAD key"))?;
        let mut salt = [0u8; 4];
        salt.copy_from_slice(&self.encr_key[klen..klen + 4]);
        Ok((LessSafeKey::new(key), salt))
    }

    /// Seals `inner` under `header` into one SK datagram, or into SKF fragments whose IKE
    /// messages are at most `fragment_len` bytes when the whole would exceed it (RFC 7383 §2.5).
    pub fn seal(
        &self,
        header: &Header,
        inner: &[Payload],
        fragment_len: Option<usize>,
        rng: &mut dyn Entropy,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let mut plain = Vec::new();
        let first = encode_chain(inner, &mut plain);
        let whole = HEADER_LEN + 4 + plain.len() + self.overhead(plain.len());
        match fragment_len {
            Some(max) if whole > max => {
                // Room for plaintext in each fragment: max minus header, SKF header (8), IV,
                // pad length byte, worst-case padding and ICV.
                let fixed = HEADER_LEN + 8 + self.encr.iv_len() + 1 + 15 + self.icv_len();
                let room =
                    max.checked_sub(fixed).filter(|r| *r >= 16).ok_or(Error::Crypto("fragment size too small"))?;
                let chunks: Vec<&[u8]> = plain.chunks(room).collect();
                let total = u16::try_from(chunks.len()).map_err(|_| Error::Crypto("too many fragments"))?;
                let mut out = Vec::with_capacity(chunks.len());
                for (i, c) in chunks.iter().enumerate() {
                    let number = i as u16 + 1;
                    // RFC 7383 §2.5: Next Payload is the first inner payload in fragment 1, zero in the others.
                    let np = if number == 1 { first } else { PayloadType::NONE };
                    let mut prefix = Vec::with_capacity(4);
                    prefix.extend_from_slice(&number.to_be_bytes());
                    prefix.extend_from_slice(&total.to_be_bytes());
                    out.push(self.seal_one(header, PayloadType::SKF, np, &prefix, c, rng)?);
                }
                Ok(out)
            }
            _ => Ok(vec![self.seal_one(header, PayloadType::SK, first, &[], &plain, rng)?]),
        }
    }

    fn seal_one(
        &self,
        header: &Header,
        ty: PayloadType,
        first: PayloadType,
        prefix: &[u8],
        plain: &[u8],
        rng: &mut dyn Entropy,
    ) -> Result<Vec<u8>, Error> {
        let pad = self.pad_len(plain.len());
        let iv_len = self.encr.iv_len();
        let icv_len = self.icv_len();
        let body_len = 4 + prefix.len() + iv_len + plain.len() + pad + 1 + icv_len;
        let mut h = header.clone();
        h.next_payload = ty;
        h.length = u32::try_from(HEADER_LEN + body_len).map_err(|_| Error::Crypto("message too long"))?;
        let mut out = Vec::with_capacity(HEADER_LEN + body_len);
        h.encode(&mut out);
        out.push(first.0);
        out.push(0);
        out.extend_from_slice(&u16::try_from(body_len).map_err(|_| Error::Crypto("payload too long"))?.to_be_bytes());
        out.extend_from_slice(prefix);
        let aad_end = out.len();
        let mut iv = vec![0u8; iv_len];
        rng.fill(&mut iv);
        out.extend_from_slice(&iv);
        let ct_start = out.len();
        out.extend_from_slice(plain);
        // Padding content is arbitrary (RFC 7296 §3.14); zeros are fine.
        out.extend(std::iter::repeat_n(0u8, pad));
        out.push(pad as u8);
        match self.integ {
            None => {
                let (key, salt) = self.aead_key()?;
                let nonce = aead_nonce(salt, &iv)?;
                let (aad, rest) = out.split_at_mut(ct_start);
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::from(&aad[..aad_end]), rest)
                    .map_err(|_| Error::Crypto("AEAD seal"))?;
                out.extend_from_slice(tag.as_ref());
            }
            Some(integ) => {
                cbc_apply(&self.encr_key, &iv, &mut out[ct_start..], true)?;
                let icv = integ.mac(&self.integ_key, &[&out]);
                out.extend_from_slice(&icv);
            }
        }
        Ok(out)
    }

    /// Verifies and decrypts an SK or SKF datagram. Integrity failures are [`Error::IntegrityFailed`].
    pub fn open(&self, datagram: &[u8]) -> Result<Opened, Error> {
        let msg = Message::parse(datagram)?;
        let (first, frag, data_len) = match msg.payloads.last() {
            Some(Payload::Sk { first, data }) => (*first, None, data.len()),
            Some(Payload::Skf { first, number, total, data }) => (*first, Some((*number, *total)), data.len()),
            _ => return Err(Error::Protocol("no encrypted payload")),
        };
        let data_start = datagram.len() - data_len;
        let iv_len = self.encr.iv_len();
        let icv_len = self.icv_len();
        if data_len < iv_len + icv_len + 1 {
            return Err(DecodeError::BadLength("encrypted payload").into());
        }
        let iv = &datagram[data_start..data_start + iv_len];
        let ct_end = datagram.len() - icv_len;
        let mut buf = Zeroizing::new(datagram[data_start + iv_len..].to_vec());
        let plain_len = match self.integ {
            None => {
                let (key, salt) = self.aead_key()?;
                let nonce = aead_nonce(salt, iv)?;
                key.open_in_place(nonce, Aad::from(&datagram[..data_start]), &mut buf)
                    .map_err(|_| Error::IntegrityFailed)?
                    .len()
            }
            Some(integ) => {
                let want = integ.mac(&self.integ_key, &[&datagram[..ct_end]]);
                if !bool::from(want.ct_eq(&datagram[ct_end..])) {
                    return Err(Error::IntegrityFailed);
                }
                let n = buf.len() - icv_len;
                if !n.is_multiple_of(16) {
                    return Err(DecodeError::BadLength("CBC ciphertext").into());
                }
                cbc_apply(&self.encr_key, iv, &mut buf[..n], false)?;
                n
            }
        };
        let pad = buf[plain_len - 1] as usize;
        if pad + 1 > plain_len {
            return Err(DecodeError::BadLength("SK padding").into());
        }
        let plain = buf[..plain_len - 1 - pad].to_vec();
        match frag {
            None => Ok(Opened::Complete(msg.header, decode_inner(first, &plain)?)),
            Some((number, total)) => Ok(Opened::Fragment { header: msg.header, first, number, total, plain }),
        }
    }
}

/// Decodes the payloads of an SK payload that passed its integrity check.
fn decode_inner(first: PayloadType, plain: &[u8]) -> Result<Vec<Payload>, Error> {
    decode_chain(first, plain).map_err(|e| match e {
        DecodeError::UnsupportedCritical(t) => Error::UnsupportedCriticalInside(t),
        other => Error::Decode(other),
    })
}

fn aead_nonce(salt: [u8; 4], iv: &[u8]) -> Result<Nonce, Error> {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&salt);
    n[4..].copy_from_slice(iv);
    Nonce::try_assume_unique_for_key(&n).map_err(|_| Error::Crypto("nonce"))
}

fn cbc_apply(key: &[u8], iv: &[u8], buf: &mut [u8], encrypt: bool) -> Result<(), Error> {
    macro_rules! run {
        ($aes:ty) => {{
            if encrypt {
                cbc::Encryptor::<$aes>::new_from_slices(key, iv)
                    .map_err(|_| Error::Crypto("CBC key"))?
                    .encrypt_padded_mut::<NoPadding>(buf, buf.len())
                    .map(|_| ())
                    .map_err(|_| Error::Crypto("CBC block"))
            } else {
                cbc::Decryptor::<$aes>::new_from_slices(key, iv)
                    .map_err(|_| Error::Crypto("CBC key"))?
                    .decrypt_padded_mut::<NoPadding>(buf)
                    .map(|_| ())
                    .map_err(|_| Error::Crypto("CBC block"))
            }
        }};
    }
    match key.len() {
        16 => run!(aes::Aes128),
        24 => run!(aes::Aes192),
        32 => run!(aes::Aes256),
        _ => Err(Error::Crypto("CBC key length")),
    }
}

/// Collects SKF fragments of one message (RFC 7383 §2.6) until all have arrived.
#[derive(Debug, Default)]
pub struct Reassembly {
    message_id: Option<u32>,
    total: u16,
    first: PayloadType,
    parts: Vec<Option<Vec<u8>>>,
}

/// Most fragments accepted for one message; bounds memory a peer can make us hold.
pub const MAX_FRAGMENTS: u16 = 64;

impl Reassembly {
    /// Adds one verified fragment; returns the inner payloads once every fragment is in.
    pub fn add(
        &mut self,
        message_id: u32,
        first: PayloadType,
        number: u16,
        total: u16,
        plain: Vec<u8>,
    ) -> Result<Option<Vec<Payload>>, Error> {
        if total > MAX_FRAGMENTS {
            return Err(Error::Protocol("too many fragments"));
        }
        if self.message_id != Some(message_id) || total > self.total {
            // RFC 7383 §2.6.1: a fragment with a higher Total Fragments restarts reassembly.
            *self = Self {
                message_id: Some(message_id),
                total,
                first: PayloadType::NONE,
                parts: vec![None; total as usize],
            };
        } else if total < self.total {
            return Ok(None);
        }
        if number == 1 {
            self.first = first;
        }
        let slot = self.parts.get_mut(number as usize - 1).ok_or(Error::Protocol("fragment number"))?;
        *slot = Some(plain);
        if self.parts.iter().all(Option::is_some) {
            let mut all = Vec::new();
            for p in self.parts.iter().flatten() {
                all.extend_from_slice(p);
            }
            let first = self.first;
            *self = Self::default();
            return Ok(Some(decode_inner(first, &all)?));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
