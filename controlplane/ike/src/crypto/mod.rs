//! Cryptographic building blocks for IKEv2: PRFs and prf+ (RFC 7296 §2.13), integrity MACs,
//! encryption transforms for the SK payload, and Diffie-Hellman groups ([`dh`]).
//!
//! How to drive it: pick algorithms from a negotiated proposal with the `from_id` constructors;
//! all randomness comes from an [`Entropy`] the caller injects (the tests use a deterministic
//! one; a gateway uses [`SystemEntropy`]). Secret outputs are `Zeroizing` buffers.

pub mod dh;

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::message::{EncrId, IntegId, PrfId};

/// A source of random bytes, injected by the caller.
pub trait Entropy {
    /// Fills `out` with random bytes.
    fn fill(&mut self, out: &mut [u8]);
}

/// Operating-system randomness (through aws-lc-rs), for the real gateway.
#[derive(Debug, Default)]
pub struct SystemEntropy(aws_lc_rs::rand::SystemRandom);

impl Entropy for SystemEntropy {
    fn fill(&mut self, out: &mut [u8]) {
        use aws_lc_rs::rand::SecureRandom;
        // The system RNG only fails when the OS has no entropy source at all; zero bytes would
        // be catastrophic, so fall back to an explicit abort of the process.
        if self.0.fill(out).is_err() {
            std::process::abort();
        }
    }
}

/// A PRF transform (RFC 7296 §3.3.2 type 2), all HMAC-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prf {
    /// PRF_HMAC_SHA1 (RFC 2104).
    HmacSha1,
    /// PRF_HMAC_SHA2_256 (RFC 4868).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (RFC 4868).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (RFC 4868).
    HmacSha512,
}

impl Prf {
    /// From a transform ID; `None` for PRFs we do not implement.
    pub fn from_id(id: PrfId) -> Option<Self> {
        Some(match id {
            PrfId::PRF_HMAC_SHA1 => Prf::HmacSha1,
            PrfId::PRF_HMAC_SHA2_256 => Prf::HmacSha256,
            PrfId::PRF_HMAC_SHA2_384 => Prf::HmacSha384,
            PrfId::PRF_HMAC_SHA2_512 => Prf::HmacSha512,
            _ => return None,
        })
    }

    /// The transform ID.
    pub fn id(self) -> PrfId {
        match self {
            Prf::HmacSha1 => PrfId::PRF_HMAC_SHA1,
            Prf::HmacSha256 => PrfId::PRF_HMAC_SHA2_256,
            Prf::HmacSha384 => PrfId::PRF_HMAC_SHA2_384,
            Prf::HmacSha512 => PrfId::PRF_HMAC_SHA2_512,
        }
    }

    fn algorithm(self) -> hmac::Algorithm {
        match self {
            Prf::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Prf::HmacSha256 => hmac::HMAC_SHA256,
            Prf::HmacSha384 => hmac::HMAC_SHA384,
            Prf::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    /// Output length in bytes; also the preferred key length of SK_d, SK_pi, SK_pr (§2.14).
    pub fn output_len(self) -> usize {
        match self {
            Prf::HmacSha1 => 20,
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
            Prf::HmacSha512 => 64,
        }
    }

    /// prf(key, data₁ ‖ data₂ ‖ …).
    pub fn prf(self, key: &[u8], data: &[&[u8]]) -> Zeroizing<Vec<u8>> {
        let k = hmac::Key::new(self.algorithm(), key);
        let mut ctx = hmac::Context::with_key(&k);
        for d in data {
            ctx.update(d);
        }
        Zeroizing::new(ctx.sign().as_ref().to_vec())
    }

    /// prf+(key, seed) truncated to `len` bytes (RFC 7296 §2.13):
    /// T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n), at most 255 blocks.
    pub fn prf_plus(self, key: &[u8], seed: &[&[u8]], len: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
        if len > 255 * self.output_len() {
            return Err(Error::Crypto("prf+ output too long"));
        }
        let k = hmac::Key::new(self.algorithm(), key);
        let mut out = Zeroizing::new(Vec::with_capacity(len + self.output_len()));
        let mut prev: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
        let mut n = 1u8;
        while out.len() < len {
            let mut ctx = hmac::Context::with_key(&k);
            ctx.update(&prev);
            for s in seed {
                ctx.update(s);
            }
            ctx.update(&[n]);
            prev = Zeroizing::new(ctx.sign().as_ref().to_vec());
            out.extend_from_slice(&prev);
            n = n.wrapping_add(1);
        }
        out.truncate(len);
        Ok(out)
    }
}

/// An integrity transform (type 3) used with CBC encryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integ {
    /// AUTH_HMAC_SHA1_96 (RFC 2404).
    HmacSha1_96,
    /// AUTH_HMAC_SHA2_256_128 (RFC 4868).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (RFC 4868).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (RFC 4868).
    HmacSha512_256,
}

impl Integ {
    /// From a transform ID; `None` for NONE and unimplemented ones.
    pub fn from_id(id: IntegId) -> Option<Self> {
        Some(match id {
            IntegId::AUTH_HMAC_SHA1_96 => Integ::HmacSha1_96,
            IntegId::AUTH_HMAC_SHA2_256_128 => Integ::HmacSha256_128,
            IntegId::AUTH_HMAC_SHA2_384_192 => Integ::HmacSha384_192,
            IntegId::AUTH_HMAC_SHA2_512_256 => Integ::HmacSha512_256,
            _ => return None,
        })
    }

    /// The transform ID.
    pub fn id(self) -> IntegId {
        match self {
            Integ::HmacSha1_96 => IntegId::AUTH_HMAC_SHA1_96,
            Integ::HmacSha256_128 => IntegId::AUTH_HMAC_SHA2_256_128,
            Integ::HmacSha384_192 => IntegId::AUTH_HMAC_SHA2_384_192,
            Integ::HmacSha512_256 => IntegId::AUTH_HMAC_SHA2_512_256,
        }
    }

    fn prf(self) -> Prf {
        match self {
            Integ::HmacSha1_96 => Prf::HmacSha1,
            Integ::HmacSha256_128 => Prf::HmacSha256,
            Integ::HmacSha384_192 => Prf::HmacSha384,
            Integ::HmacSha512_256 => Prf::HmacSha512,
        }
    }

    /// Key length in bytes (the hash output length).
    pub fn key_len(self) -> usize {
        self.prf().output_len()
    }

    /// Truncated ICV length in bytes.
    pub fn icv_len(self) -> usize {
        self.key_len() / 2 + usize::from(self == Integ::HmacSha1_96) * 2
    }

    /// The truncated MAC of `data`.
    pub fn mac(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        let mut m = self.prf().prf(key, data).to_vec();
        m.truncate(self.icv_len());
        m
    }
}

/// An encryption transform (type 1) for the SK payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encr {
    /// ENCR_AES_CBC (RFC 3602) with a 128/192/256-bit key; needs an [`Integ`].
    AesCbc {
        /// Key length in bytes.
        key_len: usize,
    },
    /// ENCR_AES_GCM_16 (RFC 5282) with a 128- or 256-bit key; combined mode.
    AesGcm16 {
        /// Key length in bytes (salt not included).
        key_len: usize,
    },
    /// ENCR_CHACHA20_POLY1305 (RFC 7634); combined mode.
    ChaCha20Poly1305,
}

impl Encr {
    /// From a transform ID and key length attribute (bits).
    pub fn from_id(id: EncrId, key_bits: Option<u16>) -> Option<Self> {
        Some(match (id, key_bits) {
            (EncrId::ENCR_AES_CBC, Some(b @ (128 | 192 | 256))) => Encr::AesCbc { key_len: b as usize / 8 },
            (EncrId::ENCR_AES_GCM_16, Some(b @ (128 | 256))) => Encr::AesGcm16 { key_len: b as usize / 8 },
            (EncrId::ENCR_CHACHA20_POLY1305, None) => Encr::ChaCha20Poly1305,
            _ => return None,
        })
    }

    /// The transform ID and key length attribute (bits) to put on the wire.
    pub fn id(self) -> (EncrId, Option<u16>) {
        match self {
            Encr::AesCbc { key_len } => (EncrId::ENCR_AES_CBC, Some(key_len as u16 * 8)),
            Encr::AesGcm16 { key_len } => (EncrId::ENCR_AES_GCM_16, Some(key_len as u16 * 8)),
            Encr::ChaCha20Poly1305 => (EncrId::ENCR_CHACHA20_POLY1305, None),
        }
    }

    /// True for combined-mode (AEAD) ciphers, which take no integrity transform.
    pub fn is_aead(self) -> bool {
        !matches!(self, Encr::AesCbc { .. })
    }

    /// Keying material length: the key plus, for AEADs, the 4-byte salt
    /// (RFC 5282 §7.1, RFC 7634 §4).
    pub fn keymat_len(self) -> usize {
        match self {
            Encr::AesCbc { key_len } => key_len,
            Encr::AesGcm16 { key_len } => key_len + 4,
            Encr::ChaCha20Poly1305 => 36,
        }
    }

    /// IV length carried in the payload.
    pub fn iv_len(self) -> usize {
        match self {
            Encr::AesCbc { .. } => 16,
            _ => 8,
        }
    }
}

#[cfg(test)]
mod tests;
