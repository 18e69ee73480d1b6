//! Known-answer tests of the authentication primitives against the RFCs' own vectors.

use dialgate_controlplane::auth::mschapv2::*;
use dialgate_controlplane::auth::totp::{dynamic_truncate, hotp, totp};
use dialgate_controlplane::config::TotpAlgorithm;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn a16(s: &str) -> [u8; 16] {
    h(s).try_into().unwrap()
}

// RFC 2759 §9.2 "Sample Data" (the same inputs are used by RFC 3079 §3.5.3).
const USER: &str = "User";
const PASSWORD: &str = "clientPass";
const AUTH_CHALLENGE: &str = "5B5D7C7D7B3F2F3E3C2C602132262628";
const PEER_CHALLENGE: &str = "21402324255E262A28295F2B3A337C7E";

#[test]
fn rfc2759_section_9_2() {
    let auth = a16(AUTH_CHALLENGE);
    let peer = a16(PEER_CHALLENGE);
    assert_eq!(challenge_hash(&peer, &auth, USER).to_vec(), h("D02E4386BCE91226"));
    let hash = nt_password_hash(PASSWORD);
    assert_eq!(hash.to_vec(), h("44EBBA8D5312B8D611474411F56989AE"));
    let nt = generate_nt_response(&auth, &peer, USER, PASSWORD);
    assert_eq!(nt.to_vec(), h("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF"));
    assert_eq!(hash_nt_password_hash(&hash).to_vec(), h("41C00C584BD2D91C4017A2A12FA59F3F"));
    assert_eq!(authenticator_response(&hash, &nt, &peer, &auth, USER), "S=407A5589115FD0D6209F510FE9C04566932CDA56");
    assert!(check_nt_response(&auth, &peer, USER, &hash, &nt));
    let mut bad = nt;
    bad[23] ^= 1;
    assert!(!check_nt_response(&auth, &peer, USER, &hash, &bad));
    // §8.2: the domain is not hashed.
    assert_eq!(challenge_hash(&peer, &auth, "CORP\\User"), challenge_hash(&peer, &auth, USER));
}

#[test]
fn rfc3079_section_3_5_3_128_bit() {
    let hash = nt_password_hash(PASSWORD);
    let phh = hash_nt_password_hash(&hash);
    let nt: [u8; 24] = h("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF").try_into().unwrap();
    let master = master_key(&phh, &nt);
    assert_eq!(master.to_vec(), h("FDECE3717A8C838CB388E527AE3CDD31"));
    // The RFC's SendStartKey128 is the server's send key (Magic3).
    let send = asymmetric_start_key(&master, true, true);
    assert_eq!(send.to_vec(), h("8B7CDC149B993A1BA118CB153F56DCCB"));
    // ... which is the client's receive key.
    assert_eq!(asymmetric_start_key(&master, false, false).to_vec(), send.to_vec());
    assert_eq!(new_key_from_sha(&send, &send).to_vec(), h("405CB2247A7956E6E211007AE27B22D4"));
    // IKEv2 MSK: server receive key || server send key || 32 zero bytes.
    let msk = msk(&hash, &nt);
    assert_eq!(&msk[..16], &asymmetric_start_key(&master, false, true)[..]);
    assert_eq!(&msk[16..32], &send[..]);
    assert_eq!(&msk[32..], &[0u8; 32]);
    assert_ne!(&msk[..16], &msk[16..32]);
}

// RFC 4226 Appendix D: secret "12345678901234567890", counters 0..9.
#[test]
fn rfc4226_appendix_d() {
    let key = b"12345678901234567890";
    // Truncated values (hex) of Appendix D, and the 6-digit HOTP values.
    let expect: [(u32, u32); 10] = [
        (0x4c93cf18, 755224),
        (0x41397eea, 287082),
        (0x82fef30, 359152),
        (0x66ef7655, 969429),
        (0x61c5938a, 338314),
        (0x33c083d4, 254676),
        (0x7256c032, 287922),
        (0x4e5b397, 162583),
        (0x2823443f, 399871),
        (0x2679dc69, 520489),
    ];
    for (c, (trunc, code)) in expect.iter().enumerate() {
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        m.update(&(c as u64).to_be_bytes());
        assert_eq!(dynamic_truncate(&m.finalize().into_bytes()), *trunc, "count {c}");
        assert_eq!(hotp(TotpAlgorithm::Sha1, key, c as u64, 6), *code, "count {c}");
    }
}

// RFC 6238 Appendix B: 8-digit TOTP, 30 s steps, seeds of 20/32/64 bytes.
#[test]
fn rfc6238_appendix_b() {
    let k1 = b"12345678901234567890";
    let k256 = b"12345678901234567890123456789012";
    let k512 = b"1234567890123456789012345678901234567890123456789012345678901234";
    let rows: [(u64, u32, u32, u32); 6] = [
        (59, 94287082, 46119246, 90693936),
        (1111111109, 7081804, 68084774, 25091201),
        (1111111111, 14050471, 67062674, 99943326),
        (1234567890, 89005924, 91819424, 93441116),
        (2000000000, 69279037, 90698825, 38618901),
        (20000000000, 65353130, 77737706, 47863826),
    ];
    for (t, s1, s256, s512) in rows {
        assert_eq!(totp(TotpAlgorithm::Sha1, k1, t, 30, 8), s1, "SHA1 at {t}");
        assert_eq!(totp(TotpAlgorithm::Sha256, k256, t, 30, 8), s256, "SHA256 at {t}");
        assert_eq!(totp(TotpAlgorithm::Sha512, k512, t, 30, 8), s512, "SHA512 at {t}");
    }
    assert_eq!(dialgate_controlplane::auth::totp::format_code(7081804, 8), "07081804");
}
