//! Diffie-Hellman groups for the KE payload: MODP 2048 (group 14, RFC 3526 §3), the NIST
//! curves P-256/384/521 (groups 19/20/21, RFC 5903), Curve25519 (group 31, RFC 8031), and MODP
//! 1024 (group 2, RFC 2409 §6.2) only with the `weak` cargo feature *and* an explicit
//! [`DhGroup::from_id`] `allow_weak` flag.
//!
//! How to drive it: [`DhPrivate::generate`] a key from the injected entropy, send
//! [`DhPrivate::public`] in the KE payload, and call [`DhPrivate::agree`] with the peer's KE
//! data to get g^ir. Wire encodings: MODP public values are big-endian, zero-padded to the
//! prime's length; ECP public values are x ‖ y, each padded to the field size (RFC 5903 §7),
//! and the shared secret is the x coordinate only; Curve25519 values are 32 bytes (RFC 8031 §2).

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey};
use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Encoding, U2048};
use zeroize::Zeroizing;

use super::Entropy;
use crate::error::Error;
use crate::message::DhId;

/// The 2048-bit MODP prime of RFC 3526 §3: 2^2048 - 2^1984 - 1 + 2^64 * ([2^1918 pi] + 124476).
const MODP_2048_P: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879",
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B",
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836",
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804",
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6",
    "955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
);

/// The 1024-bit MODP prime of RFC 2409 §6.2 (group 2), zero-extended to 2048 bits.
const MODP_1024_P: &str = concat!(
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879",
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B",
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
);

/// Private exponent size for MODP groups: 512 bits, twice the ~112-bit strength of group 14.
const MODP_EXPONENT_BITS: usize = 512;

/// A supported key exchange group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// Group 2, 1024-bit MODP: weak, only for old Windows clients.
    Modp1024,
    /// Group 14, 2048-bit MODP.
    Modp2048,
    /// Group 19, 256-bit random ECP (P-256).
    Ecp256,
    /// Group 20, 384-bit random ECP (P-384).
    Ecp384,
    /// Group 21, 521-bit random ECP (P-521).
    Ecp521,
    /// Group 31, Curve25519.
    Curve25519,
}

impl DhGroup {
    /// From a transform ID. Group 2 needs both the `weak` feature and `allow_weak`.
    pub fn from_id(id: DhId, allow_weak: bool) -> Option<Self> {
        Some(match id {
            DhId::MODP_1024 if allow_weak && cfg!(feature = "weak") => DhGroup::Modp1024,
            DhId::MODP_2048 => DhGroup::Modp2048,
            DhId::ECP_256 => DhGroup::Ecp256,
            DhId::ECP_384 => DhGroup::Ecp384,
            DhId::ECP_521 => DhGroup::Ecp521,
            DhId::CURVE25519 => DhGroup::Curve25519,
            _ => return None,
        })
    }

    /// The transform ID.
    pub fn id(self) -> DhId {
        match self {
            DhGroup::Modp1024 => DhId::MODP_1024,
            DhGroup::Modp2048 => DhId::MODP_2048,
            DhGroup::Ecp256 => DhId::ECP_256,
            DhGroup::Ecp384 => DhId::ECP_384,
            DhGroup::Ecp521 => DhId::ECP_521,
            DhGroup::Curve25519 => DhId::CURVE25519,
        }
    }

    /// Length of the KE payload data for this group.
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Modp1024 => 128,
            DhGroup::Modp2048 => 256,
            DhGroup::Ecp256 => 64,
            DhGroup::Ecp384 => 96,
            DhGroup::Ecp521 => 132,
            DhGroup::Curve25519 => 32,
        }
    }

    fn ec_alg(self) -> Option<&'static agreement::Algorithm> {
        match self {
            DhGroup::Ecp256 => Some(&agreement::ECDH_P256),
            DhGroup::Ecp384 => Some(&agreement::ECDH_P384),
            DhGroup::Ecp521 => Some(&agreement::ECDH_P521),
            DhGroup::Curve25519 => Some(&agreement::X25519),
            DhGroup::Modp1024 | DhGroup::Modp2048 => None,
        }
    }

    /// Private scalar length for the elliptic groups.
    fn scalar_len(self) -> usize {
        match self {
            DhGroup::Ecp256 | DhGroup::Curve25519 => 32,
            DhGroup::Ecp384 => 48,
            DhGroup::Ecp521 => 66,
            DhGroup::Modp1024 | DhGroup::Modp2048 => MODP_EXPONENT_BITS / 8,
        }
    }

    fn modulus(self) -> U2048 {
        match self {
            DhGroup::Modp1024 => U2048::from_be_hex(MODP_1024_P),
            _ => U2048::from_be_hex(MODP_2048_P),
        }
    }
}

enum Inner {
    Modp { exponent: Box<Zeroizing<[u8; 256]>> },
    Ec(PrivateKey),
}

/// An ephemeral private key of one group, with its public value.
pub struct DhPrivate {
    group: DhGroup,
    inner: Inner,
    public: Vec<u8>,
}

impl std::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhPrivate").field("group", &self.group).finish_non_exhaustive()
    }
}

impl DhPrivate {
    /// A fresh key from the injected entropy.
    pub fn generate(group: DhGroup, rng: &mut dyn Entropy) -> Result<Self, Error> {
        let mut bytes = Zeroizing::new(vec![0u8; group.scalar_len()]);
        // Candidate scalars out of range (zero or >= the curve order) are redrawn; the chance of
        // needing a second draw is below 2^-32 for every curve here.
        for _ in 0..16 {
            rng.fill(&mut bytes);
            if group == DhGroup::Ecp521 {
                bytes[0] &= 0x01;
            }
            if let Ok(k) = Self::from_private(group, &bytes) {
                return Ok(k);
            }
        }
        Err(Error::Crypto("no valid private key drawn"))
    }

    /// A key from given private bytes (EC scalar big-endian, X25519 raw, MODP exponent
    /// big-endian): for known-answer tests and for callers that bring their own randomness.
    pub fn from_private(group: DhGroup, private: &[u8]) -> Result<Self, Error> {
        match group.ec_alg() {
            Some(alg) => {
                let key = PrivateKey::from_private_key(alg, private).map_err(|_| Error::Crypto("bad private key"))?;
                let public = key.compute_public_key().map_err(|_| Error::Crypto("bad private key"))?;
                let public = public.as_ref();
                // aws-lc-rs gives SEC1 uncompressed points (0x04 ‖ x ‖ y); IKE carries x ‖ y.
                let public = if group == DhGroup::Curve25519 { public.to_vec() } else { public[1..].to_vec() };
                Ok(Self { group, inner: Inner::Ec(key), public })
            }
            None => {
                if private.len() > 256 || private.iter().all(|&b| b == 0) {
                    return Err(Error::Crypto("bad private exponent"));
                }
                let mut exponent = Zeroizing::new([0u8; 256]);
                exponent[256 - private.len()..].copy_from_slice(private);
                let x = U2048::from_be_slice(&exponent[..]);
                let params = DynResidueParams::new(&group.modulus());
                let y = DynResidue::new(&U2048::from_u8(2), params).pow_bounded_exp(&x, private.len() * 8).retrieve();
                let full = y.to_be_bytes();
                let public = full[256 - group.public_len()..].to_vec();
                Ok(Self { group, inner: Inner::Modp { exponent: Box::new(exponent) }, public })
            }
        }
    }

    /// The group.
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// The public value as carried in the KE payload.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// The shared secret g^ir from the peer's KE data, after validating it.
    pub fn agree(&self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        if peer.len() != self.group.public_len() {
            return Err(Error::Crypto("KE data length"));
        }
        match &self.inner {
            Inner::Ec(key) => {
                let alg = self.group.ec_alg().ok_or(Error::Crypto("group"))?;
                let encoded: Vec<u8> = if self.group == DhGroup::Curve25519 {
                    peer.to_vec()
                } else {
                    let mut v = Vec::with_capacity(peer.len() + 1);
                    v.push(0x04);
                    v.extend_from_slice(peer);
                    v
                };
                // aws-lc-rs checks that an ECP point lies on the curve (RFC 5903 §7 / RFC 6989).
                let secret = agreement::agree(
                    key,
                    UnparsedPublicKey::new(alg, &encoded),
                    Error::Crypto("bad peer public value"),
                    |s| Ok(Zeroizing::new(s.to_vec())),
                )?;
                // RFC 8031 §2.3: an all-zero Curve25519 result MUST be rejected.
                if secret.iter().all(|&b| b == 0) {
                    return Err(Error::Crypto("all-zero shared secret"));
                }
                Ok(secret)
            }
            Inner::Modp { exponent } => {
                let p = self.group.modulus();
                let mut padded = [0u8; 256];
                padded[256 - peer.len()..].copy_from_slice(peer);
                let y = U2048::from_be_slice(&padded);
                // RFC 6989 §2.1: the peer's value must satisfy 1 < y < p-1.
                let p_minus_1 = p.wrapping_sub(&U2048::ONE);
                if y <= U2048::ONE || y >= p_minus_1 {
                    return Err(Error::Crypto("MODP public value out of range"));
                }
                let x = U2048::from_be_slice(&exponent[..]);
                let params = DynResidueParams::new(&p);
                let s = DynResidue::new(&y, params)
                    .pow_bounded_exp(&x, MODP_EXPONENT_BITS.max(bits_used(&exponent[..])))
                    .retrieve();
                let full = Zeroizing::new(s.to_be_bytes());
                // RFC 7296 §2.14: g^ir is padded with zeros to the length of the prime.
                Ok(Zeroizing::new(full[256 - self.group.public_len()..].to_vec()))
            }
        }
    }
}

fn bits_used(be: &[u8]) -> usize {
    match be.iter().position(|&b| b != 0) {
        Some(i) => (be.len() - i) * 8,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    fn check_ecp(group: DhGroup, i: &str, gi: &str, r: &str, gr: &str, shared: &str) {
        let ki = DhPrivate::from_private(group, &h(i)).unwrap();
        let kr = DhPrivate::from_private(group, &h(r)).unwrap();
        if !gi.is_empty() {
            assert_eq!(ki.public(), &h(gi)[..]);
            assert_eq!(kr.public(), &h(gr)[..]);
        }
        assert_eq!(ki.agree(kr.public()).unwrap().to_vec(), h(shared));
        assert_eq!(kr.agree(ki.public()).unwrap().to_vec(), h(shared));
    }

    #[test]
    fn ecp256_rfc5903_8_1() {
        // RFC 5903 §8.1: i, g^i = gix ‖ giy, r, g^r = grx ‖ gry, g^ir = girx.
        check_ecp(
            DhGroup::Ecp256,
            "C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433",
            "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180
             5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
            "C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53",
            "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63
             56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
            "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE",
        );
    }

    #[test]
    fn ecp384_rfc5903_8_2() {
        // RFC 5903 §8.2.
        check_ecp(
            DhGroup::Ecp384,
            "099F3C7034D4A2C699884D73A375A67F7624EF7C6B3C0F160647B67414DCE655E35B538041E649EE3FAEF896783AB194",
            "667842D7D180AC2CDE6F74F37551F55755C7645C20EF73E31634FE72B4C55EE6DE3AC808ACB4BDB4C88732AEE95F41AA
             9482ED1FC0EEB9CAFC4984625CCFC23F65032149E0E144ADA024181535A0F38EEB9FCFF3C2C947DAE69B4C634573A81C",
            "41CB0779B4BDB85D47846725FBEC3C9430FAB46CC8DC5060855CC9BDA0AA2942E0308312916B8ED2960E4BD55A7448FC",
            "E558DBEF53EECDE3D3FCCFC1AEA08A89A987475D12FD950D83CFA41732BC509D0D1AC43A0336DEF96FDA41D0774A3571
             DCFBEC7AACF3196472169E838430367F66EEBE3C6E70C416DD5F0C68759DD1FFF83FA40142209DFF5EAAD96DB9E6386C",
            "11187331C279962D93D604243FD592CB9D0A926F422E47187521287E7156C5C4D603135569B9E9D09CF5D4A270F59746",
        );
    }

    #[test]
    fn ecp521_rfc5903_8_3() {
        // RFC 5903 §8.3 (private keys and g^ir; public values checked by the agreement).
        check_ecp(
            DhGroup::Ecp521,
            "0037ADE9319A89F4DABDB3EF411AACCCA5123C61ACAB57B5393DCE47608172A095AA85A30FE1C2952C6771D937BA9777F5957B2639BAB072462F68C27A57382D4A52",
            "",
            "0145BA99A847AF43793FDD0E872E7CDFA16BE30FDC780F97BCCC3F078380201E9C677D600B343757A3BDBF2A3163E4C2F869CCA7458AA4A4EFFC311F5CB151685EB9",
            "",
            "01144C7D79AE6956BC8EDB8E7C787C4521CB086FA64407F97894E5E6B2D79B04D1427E73CA4BAA240A34786859810C06B3C715A3A8CC3151F2BEE417996D19F3DDEA",
        );
    }

    #[test]
    fn x25519_rfc7748_6_1() {
        // RFC 7748 §6.1 (as used for IKEv2 by RFC 8031).
        check_ecp(
            DhGroup::Curve25519,
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
        );
    }

    #[test]
    fn ecp_rejects_off_curve_and_bad_length() {
        let k = DhPrivate::from_private(DhGroup::Ecp256, &[7u8; 32]).unwrap();
        let mut bad = k.public().to_vec();
        bad[63] ^= 1;
        assert!(k.agree(&bad).is_err());
        assert!(k.agree(&bad[..63]).is_err());
        // RFC 8031 §2.3: a low-order point giving an all-zero secret is refused.
        let x = DhPrivate::from_private(DhGroup::Curve25519, &[9u8; 32]).unwrap();
        assert!(x.agree(&[0u8; 32]).is_err());
    }

    #[test]
    fn modp2048_small_exponent_and_range() {
        // RFC 3526 §3 group 14, generator 2: exponent 1 gives g itself, exponent 11 gives 2^11.
        let k = DhPrivate::from_private(DhGroup::Modp2048, &[1]).unwrap();
        let mut two = vec![0u8; 256];
        two[255] = 2;
        assert_eq!(k.public(), &two[..]);
        let k11 = DhPrivate::from_private(DhGroup::Modp2048, &[11]).unwrap();
        assert_eq!(&k11.public()[254..], &[0x08, 0x00]);
        // g^(1*11) from either side.
        assert_eq!(k.agree(k11.public()).unwrap()[254..], [0x08, 0x00]);
        // RFC 6989 §2.1 range check: 0, 1 and p-1 are refused.
        let mut p_minus_1 = h(MODP_2048_P);
        p_minus_1[255] -= 1;
        assert!(k.agree(&vec![0u8; 256]).is_err());
        let mut one = vec![0u8; 256];
        one[255] = 1;
        assert!(k.agree(&one).is_err());
        assert!(k.agree(&p_minus_1).is_err());
    }

    #[test]
    fn modp2048_random_agreement() {
        struct XorShift(u64);
        impl Entropy for XorShift {
            fn fill(&mut self, out: &mut [u8]) {
                for b in out {
                    self.0 ^= self.0 << 13;
                    self.0 ^= self.0 >> 7;
                    self.0 ^= self.0 << 17;
                    *b = self.0 as u8;
                }
            }
        }
        let mut rng = XorShift(0x9e3779b97f4a7c15);
        let a = DhPrivate::generate(DhGroup::Modp2048, &mut rng).unwrap();
        let b = DhPrivate::generate(DhGroup::Modp2048, &mut rng).unwrap();
        assert_ne!(a.public(), b.public());
        assert_eq!(a.agree(b.public()).unwrap(), b.agree(a.public()).unwrap());
        for g in [DhGroup::Ecp256, DhGroup::Ecp384, DhGroup::Ecp521, DhGroup::Curve25519] {
            let a = DhPrivate::generate(g, &mut rng).unwrap();
            let b = DhPrivate::generate(g, &mut rng).unwrap();
            assert_eq!(a.public().len(), g.public_len());
            assert_eq!(a.agree(b.public()).unwrap(), b.agree(a.public()).unwrap());
        }
    }

    #[test]
    fn group2_only_when_weak_allowed() {
        assert_eq!(DhGroup::from_id(DhId::MODP_1024, false), None);
        assert_eq!(DhGroup::from_id(DhId::MODP_1024, true).is_some(), cfg!(feature = "weak"));
        assert_eq!(DhGroup::from_id(DhId::ECP_384, false), Some(DhGroup::Ecp384));
    }
}
