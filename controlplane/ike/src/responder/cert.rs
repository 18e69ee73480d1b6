//! The gateway's certificate and private key for AUTH method 14, Digital Signature (RFC 7427):
//! ECDSA P-256 with SHA-256 or RSA PKCS#1 v1.5 with SHA-256, signing the octets of RFC 7296
//! §2.15 (our IKE_SA_INIT response ‖ Ni ‖ prf(SK_pr, IDr')).
//!
//! How to use it: [`GatewayCert::from_pem`] (or [`GatewayCert::from_der`]) once at start-up,
//! put it in [`super::Config::certificate`]; the responder then sends CERT (X.509, encoding 4)
//! payloads with the chain and a signature AUTH instead of the PSK AUTH. Certificates are not
//! parsed: the only check is that the key's public half appears in the leaf certificate.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, RSA_PKCS1_SHA256};

/// AlgorithmIdentifier of ecdsa-with-SHA256 (RFC 7427 appendix A.3.1), DER.
pub const ECDSA_WITH_SHA256: &[u8] = &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// AlgorithmIdentifier of sha256WithRSAEncryption with NULL parameters (RFC 7427 appendix
/// A.1.2), DER.
pub const SHA256_WITH_RSA: &[u8] =
    &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00];

/// Why a certificate or key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// No `CERTIFICATE` block (or DER certificate) found.
    #[error("no certificate found")]
    NoCertificate,
    /// No private key block found, or it is not valid base64.
    #[error("no private key found")]
    NoKey,
    /// The key is neither an ECDSA P-256 nor an RSA key (PKCS#8, SEC1 or PKCS#1).
    #[error("unsupported private key (need ECDSA P-256 or RSA in PKCS#8, SEC1 or PKCS#1)")]
    UnsupportedKey,
    /// The key's public half is not in the (first) certificate.
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
}

enum SigningKey {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// The gateway's certificate chain (DER, leaf first) and its private key.
pub struct GatewayCert {
    chain: Vec<Vec<u8>>,
    key: SigningKey,
}

impl std::fmt::Debug for GatewayCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.key {
            SigningKey::Ecdsa(_) => "ecdsa-p256",
            SigningKey::Rsa(_) => "rsa",
        };
        f.debug_struct("GatewayCert").field("chain_len", &self.chain.len()).field("key", &kind).finish()
    }
}

/// The base64 value of one character, or `None`.
fn b64(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        acc = (acc << 6) | b64(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The blocks of a PEM text as (label, DER) in order (RFC 7468); undecodable blocks are skipped.
pub fn pem_blocks(text: &[u8]) -> Vec<(String, Vec<u8>)> {
    let text = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    let mut rest: &str = &text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else { break };
        let label = after[..label_end].to_string();
        let body = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body.find(&end_marker) else { break };
        if let Some(der) = base64_decode(&body[..end]) {
            out.push((label, der));
        }
        rest = &body[end + end_marker.len()..];
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

impl GatewayCert {
    /// From DER: `chain` leaf first, the key as PKCS#8, SEC1 (EC) or PKCS#1 (RSA).
    pub fn from_der(chain: Vec<Vec<u8>>, key: &[u8]) -> Result<Self, CertError> {
        let leaf = chain.first().ok_or(CertError::NoCertificate)?;
        let key = if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key) {
            SigningKey::Ecdsa(k)
        } else if let Ok(k) = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, key) {
            SigningKey::Ecdsa(k)
        } else if let Ok(k) = RsaKeyPair::from_pkcs8(key) {
            SigningKey::Rsa(k)
        } else if let Ok(k) = RsaKeyPair::from_der(key) {
            SigningKey::Rsa(k)
        } else {
            return Err(CertError::UnsupportedKey);
        };
        let public = match &key {
            SigningKey::Ecdsa(k) => contains(leaf, k.public_key().as_ref()),
            SigningKey::Rsa(k) => contains(leaf, k.public_key().as_ref()),
        };
        if !public {
            return Err(CertError::KeyMismatch);
        }
        Ok(Self { chain, key })
    }

    /// From PEM texts (or DER): every `CERTIFICATE` block of `certs` in order (leaf first), the
    /// first private key block of `key` (`PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY`).
    pub fn from_pem(certs: &[u8], key: &[u8]) -> Result<Self, CertError> {
        let chain: Vec<Vec<u8>> = if certs.first() == Some(&0x30) {
            vec![certs.to_vec()]
        } else {
            pem_blocks(certs).into_iter().filter(|(l, _)| l == "CERTIFICATE").map(|(_, d)| d).collect()
        };
        if chain.is_empty() {
            return Err(CertError::NoCertificate);
        }
        let key_der = if key.first() == Some(&0x30) {
            zeroize::Zeroizing::new(key.to_vec())
        } else {
            let mut blocks = pem_blocks(key);
            let i = blocks
                .iter()
                .position(|(l, _)| matches!(l.as_str(), "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY"))
                .ok_or(CertError::NoKey)?;
            let der = zeroize::Zeroizing::new(std::mem::take(&mut blocks[i].1));
            for (_, d) in &mut blocks {
                zeroize::Zeroize::zeroize(d);
            }
            der
        };
        Self::from_der(chain, &key_der)
    }

    /// The chain, DER, leaf first.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The AlgorithmIdentifier this key signs with (RFC 7427 appendix A).
    pub fn algorithm_identifier(&self) -> &'static [u8] {
        match self.key {
            SigningKey::Ecdsa(_) => ECDSA_WITH_SHA256,
            SigningKey::Rsa(_) => SHA256_WITH_RSA,
        }
    }

    /// The AUTH payload data for method 14 (RFC 7427 §3): length of the AlgorithmIdentifier,
    /// the AlgorithmIdentifier, the signature of `octets`. `None` if signing failed.
    pub fn auth_data(&self, octets: &[u8]) -> Option<Vec<u8>> {
        let rng = SystemRandom::new();
        let sig = match &self.key {
            SigningKey::Ecdsa(k) => k.sign(&rng, octets).ok()?.as_ref().to_vec(),
            SigningKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, octets, &mut sig).ok()?;
                sig
            }
        };
        let alg = self.algorithm_identifier();
        let mut out = Vec::with_capacity(1 + alg.len() + sig.len());
        out.push(u8::try_from(alg.len()).ok()?);
        out.extend_from_slice(alg);
        out.extend_from_slice(&sig);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_pem() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8h").unwrap(), b"hello!");
        assert!(base64_decode("a*b").is_none());
        let pem = b"junk\n-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n-----BEGIN X-----\nAQ==\n-----END X-----\n";
        assert_eq!(pem_blocks(pem), vec![("CERTIFICATE".into(), vec![0x30, 0]), ("X".into(), vec![1])]);
        assert!(pem_blocks(b"-----BEGIN A-----\nAAAA").is_empty());
    }

    #[test]
    fn keys_are_checked_against_the_certificate() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let k = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let mut fake_cert = vec![0x30, 0x82, 0, 0];
        fake_cert.extend_from_slice(k.public_key().as_ref());
        let c = GatewayCert::from_der(vec![fake_cert], pkcs8.as_ref()).unwrap();
        let auth = c.auth_data(b"octets").unwrap();
        assert_eq!(usize::from(auth[0]), ECDSA_WITH_SHA256.len());
        assert_eq!(&auth[1..13], ECDSA_WITH_SHA256);
        let pk = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            k.public_key().as_ref().to_vec(),
        );
        pk.verify(b"octets", &auth[13..]).unwrap();
        assert_eq!(GatewayCert::from_der(vec![vec![0x30, 1, 2]], pkcs8.as_ref()).unwrap_err(), CertError::KeyMismatch);
        assert_eq!(GatewayCert::from_der(vec![vec![0x30]], b"nope").unwrap_err(), CertError::UnsupportedKey);
        assert_eq!(GatewayCert::from_pem(b"", b"").unwrap_err(), CertError::NoCertificate);
    }
}
