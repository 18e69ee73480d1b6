//! MS-CHAPv2 primitives (RFC 2759) and MPPE key derivation (RFC 3079).
//!
//! Only the arithmetic: the EAP framing lives with the EAP code. Given the two challenges, the
//! user name and the password (or its NT hash), these compute the NT-Response the peer must
//! send, the authenticator response `S=…` the server returns, and the 64-byte MSK IKEv2 uses.

use des::cipher::{BlockEncrypt, KeyInit};
use des::Des;
use md4::{Digest, Md4};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// RFC 2759 §8.7 Magic1.
const AUTH_MAGIC1: &[u8] = b"Magic server to client signing constant";
/// RFC 2759 §8.7 Magic2.
const AUTH_MAGIC2: &[u8] = b"Pad to make it do more than one iteration";
/// RFC 3079 §3.4 GetMasterKey Magic1.
const MPPE_MAGIC1: &[u8] = b"This is the MPPE Master Key";
/// RFC 3079 §3.4 GetAsymmetricStartKey Magic2.
const MPPE_MAGIC2: &[u8] = b"On the client side, this is the send key; on the server side, it is the receive key.";
/// RFC 3079 §3.4 GetAsymmetricStartKey Magic3.
const MPPE_MAGIC3: &[u8] = b"On the client side, this is the receive key; on the server side, it is the send key.";
const SHS_PAD1: [u8; 40] = [0; 40];
const SHS_PAD2: [u8; 40] = [0xf2; 40];

/// NtPasswordHash (RFC 2759 §8.3): MD4 of the UTF-16LE password.
pub fn nt_password_hash(password: &str) -> Zeroizing<[u8; 16]> {
    let mut unicode = Zeroizing::new(Vec::with_capacity(password.len() * 2));
    for u in password.encode_utf16() {
        unicode.extend_from_slice(&u.to_le_bytes());
    }
    Zeroizing::new(Md4::digest(&unicode[..]).into())
}

/// HashNtPasswordHash (RFC 2759 §8.4): MD4 of the NT hash.
pub fn hash_nt_password_hash(hash: &[u8; 16]) -> Zeroizing<[u8; 16]> {
    Zeroizing::new(Md4::digest(hash).into())
}

/// The user name as hashed: "excluding any prepended domain name" (RFC 2759 §8.2).
pub fn strip_domain(user: &str) -> &str {
    user.rsplit('\\').next().unwrap_or(user)
}

/// ChallengeHash (RFC 2759 §8.2): the first 8 bytes of SHA1(peer ‖ authenticator ‖ user).
pub fn challenge_hash(peer_challenge: &[u8; 16], auth_challenge: &[u8; 16], user: &str) -> [u8; 8] {
    let mut h = Sha1::new();
    h.update(peer_challenge);
    h.update(auth_challenge);
    h.update(strip_domain(user).as_bytes());
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// Spreads 7 key bytes over 8 (the low bit of each byte is DES parity, ignored).
fn des_key(k7: &[u8]) -> [u8; 8] {
    let mut v: u64 = 0;
    for &b in k7.iter().take(7) {
        v = (v << 8) | u64::from(b);
    }
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (((v >> (49 - 7 * i)) & 0x7f) as u8) << 1;
    }
    out
}

/// ChallengeResponse (RFC 2759 §8.5): three DES encryptions of the challenge under the zero-padded
/// 21-byte hash.
pub fn challenge_response(challenge: &[u8; 8], password_hash: &[u8; 16]) -> [u8; 24] {
    let mut z = Zeroizing::new([0u8; 21]);
    z[..16].copy_from_slice(password_hash);
    let mut out = [0u8; 24];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        let key = Zeroizing::new(des_key(&z[i * 7..i * 7 + 7]));
        let cipher = Des::new(&(*key).into());
        let mut block = (*challenge).into();
        cipher.encrypt_block(&mut block);
        chunk.copy_from_slice(&block);
    }
    out
}

/// GenerateNTResponse (RFC 2759 §8.1) from the NT hash.
pub fn generate_nt_response_from_hash(
    auth_challenge: &[u8; 16],
    peer_challenge: &[u8; 16],
    user: &str,
    password_hash: &[u8; 16],
) -> [u8; 24] {
    challenge_response(&challenge_hash(peer_challenge, auth_challenge, user), password_hash)
}

/// GenerateNTResponse (RFC 2759 §8.1) from the password.
pub fn generate_nt_response(
    auth_challenge: &[u8; 16],
    peer_challenge: &[u8; 16],
    user: &str,
    password: &str,
) -> [u8; 24] {
    generate_nt_response_from_hash(auth_challenge, peer_challenge, user, &nt_password_hash(password))
}

/// Whether `nt_response` is right for `password_hash`, compared in constant time.
pub fn check_nt_response(
    auth_challenge: &[u8; 16],
    peer_challenge: &[u8; 16],
    user: &str,
    password_hash: &[u8; 16],
    nt_response: &[u8; 24],
) -> bool {
    let expect = generate_nt_response_from_hash(auth_challenge, peer_challenge, user, password_hash);
    expect.ct_eq(nt_response).into()
}

/// GenerateAuthenticatorResponse (RFC 2759 §8.7): the 20-byte digest.
pub fn authenticator_digest(
    password_hash: &[u8; 16],
    nt_response: &[u8; 24],
    peer_challenge: &[u8; 16],
    auth_challenge: &[u8; 16],
    user: &str,
) -> [u8; 20] {
    let phh = hash_nt_password_hash(password_hash);
    let mut h = Sha1::new();
    h.update(&phh[..]);
    h.update(nt_response);
    h.update(AUTH_MAGIC1);
    let d1 = h.finalize();
    let ch = challenge_hash(peer_challenge, auth_challenge, user);
    let mut h = Sha1::new();
    h.update(d1);
    h.update(ch);
    h.update(AUTH_MAGIC2);
    h.finalize().into()
}

/// The authenticator response as sent: `S=` and 40 upper-case hex digits (RFC 2759 §8.7).
pub fn authenticator_response(
    password_hash: &[u8; 16],
    nt_response: &[u8; 24],
    peer_challenge: &[u8; 16],
    auth_challenge: &[u8; 16],
    user: &str,
) -> String {
    let d = authenticator_digest(password_hash, nt_response, peer_challenge, auth_challenge, user);
    format!("S={}", hex::encode_upper(d))
}

/// GetMasterKey (RFC 3079 §3.4): 16 bytes of SHA1(PasswordHashHash ‖ NT-Response ‖ Magic1).
pub fn master_key(password_hash_hash: &[u8; 16], nt_response: &[u8; 24]) -> Zeroizing<[u8; 16]> {
    let mut h = Sha1::new();
    h.update(password_hash_hash);
    h.update(nt_response);
    h.update(MPPE_MAGIC1);
    let d: Zeroizing<[u8; 20]> = Zeroizing::new(h.finalize().into());
    let mut out = Zeroizing::new([0u8; 16]);
    out.copy_from_slice(&d[..16]);
    out
}

/// GetAsymmetricStartKey (RFC 3079 §3.4) for a 128-bit key.
pub fn asymmetric_start_key(master: &[u8; 16], is_send: bool, is_server: bool) -> Zeroizing<[u8; 16]> {
    let magic = if is_send == is_server { MPPE_MAGIC3 } else { MPPE_MAGIC2 };
    let mut h = Sha1::new();
    h.update(master);
    h.update(SHS_PAD1);
    h.update(magic);
    h.update(SHS_PAD2);
    let d: Zeroizing<[u8; 20]> = Zeroizing::new(h.finalize().into());
    let mut out = Zeroizing::new([0u8; 16]);
    out.copy_from_slice(&d[..16]);
    out
}

/// GetNewKeyFromSHA (RFC 3079 §3.3, 128-bit): the initial session key from the start key.
pub fn new_key_from_sha(start_key: &[u8; 16], session_key: &[u8; 16]) -> Zeroizing<[u8; 16]> {
    let mut h = Sha1::new();
    h.update(start_key);
    h.update(SHS_PAD1);
    h.update(session_key);
    h.update(SHS_PAD2);
    let d: Zeroizing<[u8; 20]> = Zeroizing::new(h.finalize().into());
    let mut out = Zeroizing::new([0u8; 16]);
    out.copy_from_slice(&d[..16]);
    out
}

/// The 64-byte MSK of EAP-MSCHAPv2 as IKEv2 uses it, from the server's side: MasterReceiveKey ‖
/// MasterSendKey ‖ 32 zero bytes. (The peer computes the same bytes: its send key is the
/// server's receive key.)
pub fn msk(password_hash: &[u8; 16], nt_response: &[u8; 24]) -> Zeroizing<[u8; 64]> {
    let phh = hash_nt_password_hash(password_hash);
    let master = master_key(&phh, nt_response);
    let recv = asymmetric_start_key(&master, false, true);
    let send = asymmetric_start_key(&master, true, true);
    let mut out = Zeroizing::new([0u8; 64]);
    out[..16].copy_from_slice(&recv[..]);
    out[16..32].copy_from_slice(&send[..]);
    out
}
