//! ESP transforms: one type, `Transform`, that seals and opens an ESP packet in place.
//!
//! The packet code hands a transform the bytes from the SPI to the ICV with the IV already in
//! place; the transform authenticates and encrypts (or verifies and decrypts) them. Which
//! crypto library does the work is a `Backend` choice made when the SA is installed, so a
//! faster backend can be swapped in without touching `inbound`/`outbound`.
//!
//! Default backend: aws-lc-rs for the AEADs. Measured on this machine class (DESIGN.md and
//! `bench/benches/esp.rs`): AES-128-GCM at 1420 B runs ~2.7× faster than RustCrypto's portable
//! build and ChaCha20-Poly1305 ~4× faster; RustCrypto stays available for comparison and for
//! small packets when built with `target-cpu=native`. CBC+HMAC uses RustCrypto's `aes`/`cbc`
//! (AES-NI detected at run time) and `hmac`/`sha1`/`sha2`, keeping a pre-expanded key and
//! pre-keyed HMAC state per SA so no per-packet key setup happens.

use aes::cipher::{BlockDecryptMut, BlockEncrypt, BlockEncryptMut, InnerIvInit, KeyInit};
use aes_gcm::aead::AeadInPlace;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::wire::esp::HEADER_LEN;

/// The ESP algorithms of the seeds' phase2 proposals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// AES-GCM with a 128-bit key, 8-byte IV, 16-byte ICV (RFC 4106).
    Aes128Gcm,
    /// AES-GCM with a 256-bit key (RFC 4106).
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 7634).
    ChaCha20Poly1305,
    /// AES-128-CBC (RFC 3602) with HMAC-SHA1-96 (RFC 2404).
    Aes128CbcSha1,
    /// AES-256-CBC with HMAC-SHA1-96.
    Aes256CbcSha1,
    /// AES-128-CBC with HMAC-SHA-256-128 (RFC 4868).
    Aes128CbcSha256,
    /// AES-256-CBC with HMAC-SHA-256-128.
    Aes256CbcSha256,
}

impl Algorithm {
    /// Every algorithm, in the order of the seed's phase2 proposal.
    pub const ALL: [Algorithm; 7] = [
        Algorithm::Aes128CbcSha1,
        Algorithm::Aes256CbcSha1,
        Algorithm::Aes128CbcSha256,
        Algorithm::Aes256CbcSha256,
        Algorithm::Aes128Gcm,
        Algorithm::Aes256Gcm,
        Algorithm::ChaCha20Poly1305,
    ];

    /// Parses a FortiOS phase2 proposal name (`aes128gcm`, `aes256-sha256`, …).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Some(match name {
            "aes128gcm" => Algorithm::Aes128Gcm,
            "aes256gcm" => Algorithm::Aes256Gcm,
            "chacha20poly1305" => Algorithm::ChaCha20Poly1305,
            "aes128-sha1" => Algorithm::Aes128CbcSha1,
            "aes256-sha1" => Algorithm::Aes256CbcSha1,
            "aes128-sha256" => Algorithm::Aes128CbcSha256,
            "aes256-sha256" => Algorithm::Aes256CbcSha256,
            _ => return None,
        })
    }

    /// The FortiOS proposal name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Aes128Gcm => "aes128gcm",
            Algorithm::Aes256Gcm => "aes256gcm",
            Algorithm::ChaCha20Poly1305 => "chacha20poly1305",
            Algorithm::Aes128CbcSha1 => "aes128-sha1",
            Algorithm::Aes256CbcSha1 => "aes256-sha1",
            Algorithm::Aes128CbcSha256 => "aes128-sha256",
            Algorithm::Aes256CbcSha256 => "aes256-sha256",
        }
    }

    /// Whether this is a combined-mode (AEAD) algorithm.
    pub fn is_aead(self) -> bool {
        matches!(self, Algorithm::Aes128Gcm | Algorithm::Aes256Gcm | Algorithm::ChaCha20Poly1305)
    }

    /// Length of the encryption key material; for AEADs it includes the 4-byte salt
    /// (RFC 4106 §8.1, RFC 7634 §2).
    pub fn enc_key_len(self) -> usize {
        match self {
            Algorithm::Aes128Gcm => 16 + 4,
            Algorithm::Aes256Gcm | Algorithm::ChaCha20Poly1305 => 32 + 4,
            Algorithm::Aes128CbcSha1 | Algorithm::Aes128CbcSha256 => 16,
            Algorithm::Aes256CbcSha1 | Algorithm::Aes256CbcSha256 => 32,
        }
    }

    /// Length of the integrity key (0 for AEADs).
    pub fn auth_key_len(self) -> usize {
        match self {
            Algorithm::Aes128CbcSha1 | Algorithm::Aes256CbcSha1 => 20,
            Algorithm::Aes128CbcSha256 | Algorithm::Aes256CbcSha256 => 32,
            _ => 0,
        }
    }

    /// Length of the explicit IV in each packet.
    pub fn iv_len(self) -> usize {
        if self.is_aead() {
            8
        } else {
            16
        }
    }

    /// Length of the ICV.
    pub fn icv_len(self) -> usize {
        match self {
            Algorithm::Aes128CbcSha1 | Algorithm::Aes256CbcSha1 => 12,
            _ => 16,
        }
    }

    /// The payload + trailer must be a multiple of this (RFC 4303 §2.4: 4 bytes at least;
    /// the cipher block size for CBC).
    pub fn block_len(self) -> usize {
        if self.is_aead() {
            4
        } else {
            16
        }
    }
}

/// Which library performs the AEAD operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// aws-lc-rs (the default, fastest measured here at MTU-sized packets).
    #[default]
    AwsLc,
    /// RustCrypto `aes-gcm` / `chacha20poly1305`.
    RustCrypto,
}

/// Why a transform refused to seal or open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Keys of the wrong length for the algorithm.
    #[error("key length does not match the algorithm")]
    KeyLength,
    /// The packet is too short, or the ciphertext is not a whole number of blocks.
    #[error("ESP packet length does not fit the transform")]
    Length,
    /// The ICV did not verify; nothing was decrypted.
    #[error("integrity check failed")]
    Integrity,
}

enum Inner {
    AwsLc(aws_lc_rs::aead::LessSafeKey),
    RcGcm128(Box<aes_gcm::Aes128Gcm>),
    RcGcm256(Box<aes_gcm::Aes256Gcm>),
    RcChaCha(Box<chacha20poly1305::ChaCha20Poly1305>),
    Cbc(Box<CbcHmac>),
}

// Lives behind the `Box` of `Inner::Cbc`, so the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum CbcCipher {
    A128(aes::Aes128),
    A256(aes::Aes256),
}

enum CbcMac {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
}

struct CbcHmac {
    cipher: CbcCipher,
    mac: CbcMac,
    /// Encrypts the sequence number into the IV: unpredictable to anyone without this key
    /// (NIST SP 800-38A Appendix C), without a random-number call per packet.
    iv_key: aes::Aes128,
}

/// Keys and algorithm of one SA direction, ready to seal or open packets.
pub struct Transform {
    alg: Algorithm,
    salt: [u8; 4],
    inner: Inner,
}

impl core::fmt::Debug for Transform {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Keys and salt are secrets: only the algorithm is shown.
        f.debug_struct("Transform").field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl Drop for Transform {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.salt);
    }
}

impl Transform {
    /// Builds a transform from key material. `enc_key` includes the salt for AEADs;
    /// `auth_key` is empty for AEADs.
    pub fn new(alg: Algorithm, backend: Backend, enc_key: &[u8], auth_key: &[u8]) -> Result<Self, CryptoError> {
        if enc_key.len() != alg.enc_key_len() || auth_key.len() != alg.auth_key_len() {
            return Err(CryptoError::KeyLength);
        }
        let mut salt = [0u8; 4];
        let inner = if alg.is_aead() {
            let (key, s) = enc_key.split_at(enc_key.len() - 4);
            salt.copy_from_slice(s);
            match backend {
                Backend::AwsLc => {
                    let a = match alg {
                        Algorithm::Aes128Gcm => &aws_lc_rs::aead::AES_128_GCM,
                        Algorithm::Aes256Gcm => &aws_lc_rs::aead::AES_256_GCM,
                        _ => &aws_lc_rs::aead::CHACHA20_POLY1305,
                    };
                    let k = aws_lc_rs::aead::UnboundKey::new(a, key).map_err(|_| CryptoError::KeyLength)?;
                    Inner::AwsLc(aws_lc_rs::aead::LessSafeKey::new(k))
                }
                Backend::RustCrypto => match alg {
                    Algorithm::Aes128Gcm => Inner::RcGcm128(Box::new(
                        aes_gcm::Aes128Gcm::new_from_slice(key).map_err(|_| CryptoError::KeyLength)?,
                    )),
                    Algorithm::Aes256Gcm => Inner::RcGcm256(Box::new(
                        aes_gcm::Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::KeyLength)?,
                    )),
                    _ => Inner::RcChaCha(Box::new(
                        chacha20poly1305::ChaCha20Poly1305::new_from_slice(key).map_err(|_| CryptoError::KeyLength)?,
                    )),
                },
            }
        } else {
            let cipher = match enc_key.len() {
                16 => CbcCipher::A128(aes::Aes128::new_from_slice(enc_key).map_err(|_| CryptoError::KeyLength)?),
                _ => CbcCipher::A256(aes::Aes256::new_from_slice(enc_key).map_err(|_| CryptoError::KeyLength)?),
            };
            let mac = Integrity::new(alg, auth_key)?.0;
            let iv_seed: Zeroizing<[u8; 16]> = Zeroizing::new(rand::random());
            let iv_key = aes::Aes128::new_from_slice(&iv_seed[..]).map_err(|_| CryptoError::KeyLength)?;
            Inner::Cbc(Box::new(CbcHmac { cipher, mac, iv_key }))
        };
        Ok(Transform { alg, salt, inner })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Writes the IV for the packet with 64-bit sequence number `seq` into `iv`.
    ///
    /// AEADs use the sequence number itself: unique per key, which is all RFC 4106 §3.1 and
    /// RFC 7634 §2 ask. CBC needs an unpredictable IV (RFC 3602 §2.1): the sequence number
    /// encrypted under a per-SA random key.
    pub fn write_iv(&self, seq: u64, iv: &mut [u8]) {
        match &self.inner {
            Inner::Cbc(c) => {
                let mut block = aes::Block::default();
                block[8..].copy_from_slice(&seq.to_be_bytes());
                c.iv_key.encrypt_block(&mut block);
                let n = iv.len().min(16);
                iv[..n].copy_from_slice(&block[..n]);
            }
            _ => {
                let n = iv.len().min(8);
                iv[..n].copy_from_slice(&seq.to_be_bytes()[..n]);
            }
        }
    }

    fn nonce(&self, iv: &[u8]) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(&iv[..8]);
        n
    }

    /// RFC 4106 §5 / RFC 7634 §3: AAD is SPI ‖ seq, or SPI ‖ ESN-high ‖ ESN-low.
    fn aad(esp: &[u8], esn_hi: Option<u32>, out: &mut [u8; 12]) -> usize {
        out[..4].copy_from_slice(&esp[..4]);
        match esn_hi {
            Some(hi) => {
                out[4..8].copy_from_slice(&hi.to_be_bytes());
                out[8..12].copy_from_slice(&esp[4..8]);
                12
            }
            None => {
                out[4..8].copy_from_slice(&esp[4..8]);
                8
            }
        }
    }

    fn check_len(&self, esp: &[u8]) -> Result<(usize, usize), CryptoError> {
        let (iv, icv) = (self.alg.iv_len(), self.alg.icv_len());
        let body = esp.len().checked_sub(HEADER_LEN + iv + icv).ok_or(CryptoError::Length)?;
        if body < 2 || body % self.alg.block_len() != 0 {
            return Err(CryptoError::Length);
        }
        Ok((HEADER_LEN + iv, HEADER_LEN + iv + body))
    }

    /// Encrypts and authenticates `esp` in place.
    ///
    /// `esp` runs from the SPI to the end of the ICV space: header, IV (already written with
    /// `write_iv`), plaintext payload with padding, pad length and next header, then room for
    /// the ICV. `esn_hi` carries the high 32 bits of the sequence number when ESN is on.
    pub fn seal(&self, esp: &mut [u8], esn_hi: Option<u32>) -> Result<(), CryptoError> {
        let (body_start, body_end) = self.check_len(esp)?;
        match &self.inner {
            Inner::Cbc(c) => {
                {
                    let (head, rest) = esp.split_at_mut(body_start);
                    cbc_encrypt(&c.cipher, &head[HEADER_LEN..], &mut rest[..body_end - body_start])?;
                }
                let (authenticated, icv_out) = esp.split_at_mut(body_end);
                c.mac.sign(authenticated, esn_hi, icv_out);
                Ok(())
            }
            aead => {
                let mut aad = [0u8; 12];
                let aad_len = Self::aad(esp, esn_hi, &mut aad);
                let nonce = self.nonce(&esp[HEADER_LEN..body_start]);
                let (_, rest) = esp.split_at_mut(body_start);
                let (body, icv) = rest.split_at_mut(body_end - body_start);
                match aead {
                    Inner::AwsLc(k) => {
                        let tag = k
                            .seal_in_place_separate_tag(
                                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                                aws_lc_rs::aead::Aad::from(&aad[..aad_len]),
                                body,
                            )
                            .map_err(|_| CryptoError::Length)?;
                        icv.copy_from_slice(tag.as_ref());
                    }
                    Inner::RcGcm128(k) => {
                        let tag = k
                            .encrypt_in_place_detached((&nonce).into(), &aad[..aad_len], body)
                            .map_err(|_| CryptoError::Length)?;
                        icv.copy_from_slice(&tag);
                    }
                    Inner::RcGcm256(k) => {
                        let tag = k
                            .encrypt_in_place_detached((&nonce).into(), &aad[..aad_len], body)
                            .map_err(|_| CryptoError::Length)?;
                        icv.copy_from_slice(&tag);
                    }
                    Inner::RcChaCha(k) => {
                        let tag = k
                            .encrypt_in_place_detached((&nonce).into(), &aad[..aad_len], body)
                            .map_err(|_| CryptoError::Length)?;
                        icv.copy_from_slice(&tag);
                    }
                    Inner::Cbc(_) => return Err(CryptoError::Length),
                }
                Ok(())
            }
        }
    }

    /// Verifies and decrypts `esp` in place (same layout as `seal`). On `Err` the payload
    /// may hold unauthenticated bytes and must be dropped.
    pub fn open(&self, esp: &mut [u8], esn_hi: Option<u32>) -> Result<(), CryptoError> {
        let (body_start, body_end) = self.check_len(esp)?;
        match &self.inner {
            Inner::Cbc(c) => {
                let mut expect = [0u8; 32];
                let icv_len = self.alg.icv_len();
                c.mac.sign(&esp[..body_end], esn_hi, &mut expect[..icv_len]);
                // The ICV is verified before anything is decrypted (RFC 4303 §3.4.4.1).
                if !bool::from(expect[..icv_len].ct_eq(&esp[body_end..])) {
                    return Err(CryptoError::Integrity);
                }
                let (head, rest) = esp.split_at_mut(body_start);
                cbc_decrypt(&c.cipher, &head[HEADER_LEN..], &mut rest[..body_end - body_start])
            }
            aead => {
                let mut aad = [0u8; 12];
                let aad_len = Self::aad(esp, esn_hi, &mut aad);
                let nonce = self.nonce(&esp[HEADER_LEN..body_start]);
                let (_, rest) = esp.split_at_mut(body_start);
                match aead {
                    Inner::AwsLc(k) => k
                        .open_in_place(
                            aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                            aws_lc_rs::aead::Aad::from(&aad[..aad_len]),
                            rest,
                        )
                        .map(|_| ())
                        .map_err(|_| CryptoError::Integrity),
                    Inner::RcGcm128(k) => {
                        let (body, icv) = rest.split_at_mut(body_end - body_start);
                        k.decrypt_in_place_detached((&nonce).into(), &aad[..aad_len], body, (&*icv).into())
                            .map_err(|_| CryptoError::Integrity)
                    }
                    Inner::RcGcm256(k) => {
                        let (body, icv) = rest.split_at_mut(body_end - body_start);
                        k.decrypt_in_place_detached((&nonce).into(), &aad[..aad_len], body, (&*icv).into())
                            .map_err(|_| CryptoError::Integrity)
                    }
                    Inner::RcChaCha(k) => {
                        let (body, icv) = rest.split_at_mut(body_end - body_start);
                        k.decrypt_in_place_detached((&nonce).into(), &aad[..aad_len], body, (&*icv).into())
                            .map_err(|_| CryptoError::Integrity)
                    }
                    Inner::Cbc(_) => Err(CryptoError::Length),
                }
            }
        }
    }
}

/// The keyed integrity function of a CBC+HMAC transform (RFC 2404, RFC 4868), on its own:
/// for known-answer tests and tools. The packet path uses it through `Transform`.
pub struct Integrity(CbcMac);

impl Integrity {
    /// HMAC keyed with `key` (any length; RFC 2104 hashes long keys) for `alg`'s hash.
    pub fn new(alg: Algorithm, key: &[u8]) -> Result<Self, CryptoError> {
        Ok(Integrity(match alg {
            Algorithm::Aes128CbcSha1 | Algorithm::Aes256CbcSha1 => {
                CbcMac::Sha1(<Hmac<sha1::Sha1> as Mac>::new_from_slice(key).map_err(|_| CryptoError::KeyLength)?)
            }
            Algorithm::Aes128CbcSha256 | Algorithm::Aes256CbcSha256 => {
                CbcMac::Sha256(<Hmac<sha2::Sha256> as Mac>::new_from_slice(key).map_err(|_| CryptoError::KeyLength)?)
            }
            _ => return Err(CryptoError::KeyLength),
        }))
    }

    /// Writes the first `out.len()` bytes of HMAC(key, data) (at most the full hash length).
    pub fn compute(&self, data: &[u8], out: &mut [u8]) {
        let n = out.len().min(match self.0 {
            CbcMac::Sha1(_) => 20,
            CbcMac::Sha256(_) => 32,
        });
        self.0.sign(data, None, &mut out[..n]);
    }
}

impl core::fmt::Debug for Integrity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Integrity { .. }")
    }
}

impl CbcMac {
    /// HMAC over the ESP header, IV and ciphertext, then the ESN high bits when in use
    /// (RFC 4303 §2.2.1: appended for the computation only), truncated into `out`.
    fn sign(&self, data: &[u8], esn_hi: Option<u32>, out: &mut [u8]) {
        match self {
            CbcMac::Sha1(m) => {
                let mut m = m.clone();
                m.update(data);
                if let Some(hi) = esn_hi {
                    m.update(&hi.to_be_bytes());
                }
                let full = m.finalize().into_bytes();
                out.copy_from_slice(&full[..out.len()]);
            }
            CbcMac::Sha256(m) => {
                let mut m = m.clone();
                m.update(data);
                if let Some(hi) = esn_hi {
                    m.update(&hi.to_be_bytes());
                }
                let full = m.finalize().into_bytes();
                out.copy_from_slice(&full[..out.len()]);
            }
        }
    }
}

fn cbc_encrypt(c: &CbcCipher, iv: &[u8], body: &mut [u8]) -> Result<(), CryptoError> {
    use aes::cipher::block_padding::NoPadding;
    let n = body.len();
    let r = match c {
        CbcCipher::A128(k) => cbc::Encryptor::<aes::Aes128>::inner_iv_slice_init(k.clone(), iv)
            .map_err(|_| CryptoError::Length)?
            .encrypt_padded_mut::<NoPadding>(body, n)
            .map(|_| ()),
        CbcCipher::A256(k) => cbc::Encryptor::<aes::Aes256>::inner_iv_slice_init(k.clone(), iv)
            .map_err(|_| CryptoError::Length)?
            .encrypt_padded_mut::<NoPadding>(body, n)
            .map(|_| ()),
    };
    r.map_err(|_| CryptoError::Length)
}

fn cbc_decrypt(c: &CbcCipher, iv: &[u8], body: &mut [u8]) -> Result<(), CryptoError> {
    use aes::cipher::block_padding::NoPadding;
    let r = match c {
        CbcCipher::A128(k) => cbc::Decryptor::<aes::Aes128>::inner_iv_slice_init(k.clone(), iv)
            .map_err(|_| CryptoError::Length)?
            .decrypt_padded_mut::<NoPadding>(body)
            .map(|_| ()),
        CbcCipher::A256(k) => cbc::Decryptor::<aes::Aes256>::inner_iv_slice_init(k.clone(), iv)
            .map_err(|_| CryptoError::Length)?
            .decrypt_padded_mut::<NoPadding>(body)
            .map(|_| ()),
    };
    r.map_err(|_| CryptoError::Length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(alg: Algorithm, body: usize) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN + alg.iv_len() + body + alg.icv_len()];
        p[..8].copy_from_slice(&[0, 0, 0x10, 0x01, 0, 0, 0, 7]);
        for (i, b) in p[HEADER_LEN + alg.iv_len()..][..body].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    fn keys(alg: Algorithm) -> (Vec<u8>, Vec<u8>) {
        ((0..alg.enc_key_len() as u8).collect(), (100..100 + alg.auth_key_len() as u8).collect())
    }

    #[test]
    fn seal_open_round_trip_every_algorithm_and_backend() {
        for alg in Algorithm::ALL {
            for backend in [Backend::AwsLc, Backend::RustCrypto] {
                let (ek, ak) = keys(alg);
                let t = Transform::new(alg, backend, &ek, &ak).unwrap();
                for esn in [None, Some(3u32)] {
                    let mut p = packet(alg, 32);
                    let plain = p.clone();
                    let ivl = alg.iv_len();
                    t.write_iv(7, &mut p[8..8 + ivl]);
                    t.seal(&mut p, esn).unwrap();
                    let body = 8 + ivl..8 + ivl + 32;
                    assert_ne!(p[body.clone()], plain[body.clone()], "{alg:?} {backend:?}");
                    let sealed = p.clone();
                    t.open(&mut p, esn).unwrap();
                    assert_eq!(p[body.clone()], plain[body], "{alg:?} {backend:?}");
                    // One flipped bit anywhere authenticated must fail.
                    for at in [0, 5, 8, sealed.len() - 1] {
                        let mut bad = sealed.clone();
                        bad[at] ^= 0x40;
                        assert_eq!(t.open(&mut bad, esn), Err(CryptoError::Integrity), "{alg:?} byte {at}");
                    }
                    // The ESN high bits are authenticated although they are not sent.
                    let mut other = sealed.clone();
                    assert_eq!(t.open(&mut other, Some(esn.unwrap_or(0) + 1)), Err(CryptoError::Integrity));
                }
            }
        }
    }

    #[test]
    fn backends_agree_byte_for_byte() {
        for alg in [Algorithm::Aes128Gcm, Algorithm::Aes256Gcm, Algorithm::ChaCha20Poly1305] {
            let (ek, ak) = keys(alg);
            let a = Transform::new(alg, Backend::AwsLc, &ek, &ak).unwrap();
            let b = Transform::new(alg, Backend::RustCrypto, &ek, &ak).unwrap();
            let mut pa = packet(alg, 64);
            a.write_iv(99, &mut pa[8..16]);
            let mut pb = pa.clone();
            a.seal(&mut pa, None).unwrap();
            b.seal(&mut pb, None).unwrap();
            assert_eq!(pa, pb, "{alg:?}");
        }
    }

    #[test]
    fn refuses_bad_lengths() {
        let alg = Algorithm::Aes128CbcSha256;
        let (ek, ak) = keys(alg);
        assert_eq!(Transform::new(alg, Backend::AwsLc, &ek[1..], &ak).err(), Some(CryptoError::KeyLength));
        let t = Transform::new(alg, Backend::AwsLc, &ek, &ak).unwrap();
        let mut p = packet(alg, 17);
        assert_eq!(t.seal(&mut p, None), Err(CryptoError::Length), "not a whole block");
        let mut short = vec![0u8; 20];
        assert_eq!(t.open(&mut short, None), Err(CryptoError::Length));
    }

    #[test]
    fn cbc_ivs_are_unpredictable_but_aead_ivs_are_the_sequence() {
        let (ek, ak) = keys(Algorithm::Aes128CbcSha1);
        let t1 = Transform::new(Algorithm::Aes128CbcSha1, Backend::AwsLc, &ek, &ak).unwrap();
        let t2 = Transform::new(Algorithm::Aes128CbcSha1, Backend::AwsLc, &ek, &ak).unwrap();
        let (mut a, mut b, mut c) = ([0u8; 16], [0u8; 16], [0u8; 16]);
        t1.write_iv(1, &mut a);
        t1.write_iv(2, &mut b);
        t2.write_iv(1, &mut c);
        assert_ne!(a, b);
        assert_ne!(a, c, "IV key is random per SA");
        let (ek, _) = keys(Algorithm::Aes128Gcm);
        let g = Transform::new(Algorithm::Aes128Gcm, Backend::AwsLc, &ek, &[]).unwrap();
        let mut iv = [0u8; 8];
        g.write_iv(0x0102, &mut iv);
        assert_eq!(iv, [0, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn debug_hides_keys() {
        let (ek, _) = keys(Algorithm::Aes128Gcm);
        let t = Transform::new(Algorithm::Aes128Gcm, Backend::AwsLc, &ek, &[]).unwrap();
        let s = format!("{t:?}");
        assert!(s.contains("Aes128Gcm") && !s.contains("salt"));
    }
}
