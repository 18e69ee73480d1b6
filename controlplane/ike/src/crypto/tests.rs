use super::*;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}

#[test]
fn hmac_rfc4231_case1() {
    // RFC 4231 §4.2 Test Case 1: key = 0x0b * 20, data = "Hi There".
    let key = [0x0b; 20];
    let d: &[&[u8]] = &[b"Hi There"];
    assert_eq!(
        Prf::HmacSha256.prf(&key, d).to_vec(),
        h("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    );
    assert_eq!(
        Prf::HmacSha384.prf(&key, d).to_vec(),
        h("afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6")
    );
    assert_eq!(
        Prf::HmacSha512.prf(&key, d).to_vec(),
        h("87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854")
    );
}

#[test]
fn hmac_rfc4231_case2_split_input() {
    // RFC 4231 §4.3 Test Case 2: key = "Jefe", data = "what do ya want for nothing?",
    // fed in two pieces to check concatenation.
    let d: &[&[u8]] = &[b"what do ya want ", b"for nothing?"];
    assert_eq!(
        Prf::HmacSha256.prf(b"Jefe", d).to_vec(),
        h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
}

#[test]
fn hmac_sha1_rfc2202_case2() {
    // RFC 2202 §3 test case 2 (HMAC-SHA-1).
    let d: &[&[u8]] = &[b"what do ya want for nothing?"];
    assert_eq!(Prf::HmacSha1.prf(b"Jefe", d).to_vec(), h("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"));
    // AUTH_HMAC_SHA1_96 is its first 12 bytes (RFC 2404 §2).
    assert_eq!(Integ::HmacSha1_96.mac(b"Jefe", d), h("effcdf6ae5eb2fa2d27416d5"));
}

#[test]
fn prf_plus_definition() {
    // RFC 7296 §2.13: T1 = prf(K, S|0x01), T2 = prf(K, T1|S|0x02).
    let k = b"key";
    let s: &[u8] = b"seed";
    let t1 = Prf::HmacSha256.prf(k, &[s, &[1]]);
    let t2 = Prf::HmacSha256.prf(k, &[&t1, s, &[2]]);
    let out = Prf::HmacSha256.prf_plus(k, &[s], 40).unwrap();
    assert_eq!(&out[..32], &t1[..]);
    assert_eq!(&out[32..], &t2[..8]);
    assert!(Prf::HmacSha256.prf_plus(k, &[s], 255 * 32 + 1).is_err());
}

#[test]
fn icv_lengths() {
    // RFC 4868 §2.3 truncation lengths.
    assert_eq!(Integ::HmacSha1_96.icv_len(), 12);
    assert_eq!(Integ::HmacSha256_128.icv_len(), 16);
    assert_eq!(Integ::HmacSha384_192.icv_len(), 24);
    assert_eq!(Integ::HmacSha512_256.icv_len(), 32);
}
