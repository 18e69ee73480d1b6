//! Test-only MS-CHAPv2 (RFC 2759) and MPPE master keys (RFC 3079), for the in-memory initiator
//! and the test user verifier. The gateway's real verifier lives in the controlplane.

use des::cipher::{BlockEncrypt, KeyInit};
use md4::{Digest as _, Md4};
use sha1::Sha1;

pub fn nt_hash(password: &str) -> [u8; 16] {
    let utf16: Vec<u8> = password.encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
    Md4::digest(&utf16).into()
}

pub fn challenge_hash(peer: &[u8; 16], auth: &[u8; 16], user: &str) -> [u8; 8] {
    let mut h = Sha1::new();
    h.update(peer);
    h.update(auth);
    h.update(user.as_bytes());
    let d = h.finalize();
    d[..8].try_into().unwrap()
}

fn des_key(k7: &[u8]) -> [u8; 8] {
    // Spread 56 key bits over 8 bytes; the parity bit is ignored by DES.
    let mut k = [0u8; 8];
    let bits = u64::from_be_bytes([0, k7[0], k7[1], k7[2], k7[3], k7[4], k7[5], k7[6]]);
    for (i, b) in k.iter_mut().enumerate() {
        *b = (((bits >> (49 - 7 * i)) & 0x7f) as u8) << 1;
    }
    k
}

pub fn nt_response(auth: &[u8; 16], peer: &[u8; 16], user: &str, password: &str) -> [u8; 24] {
    let ch = challenge_hash(peer, auth, user);
    let mut z = [0u8; 21];
    z[..16].copy_from_slice(&nt_hash(password));
    let mut out = [0u8; 24];
    for i in 0..3 {
        let c = des::Des::new_from_slice(&des_key(&z[7 * i..7 * i + 7])).unwrap();
        let mut block = des::cipher::generic_array::GenericArray::clone_from_slice(&ch);
        c.encrypt_block(&mut block);
        out[8 * i..8 * i + 8].copy_from_slice(&block);
    }
    out
}

const MAGIC1: &[u8] = b"Magic server to client signing constant";
const MAGIC2: &[u8] = b"Pad to make it do more than one iteration";

pub fn authenticator_response(password: &str, nt: &[u8; 24], peer: &[u8; 16], auth: &[u8; 16], user: &str) -> String {
    let hh: [u8; 16] = Md4::digest(nt_hash(password)).into();
    let mut h = Sha1::new();
    h.update(hh);
    h.update(nt);
    h.update(MAGIC1);
    let d = h.finalize();
    let mut h = Sha1::new();
    h.update(d);
    h.update(challenge_hash(peer, auth, user));
    h.update(MAGIC2);
    format!("S={}", hex::encode_upper(h.finalize()))
}

const MPPE1: &[u8] = b"This is the MPPE Master Key";
const MPPE2: &[u8] = b"On the client side, this is the send key; on the server side, it is the receive key.";
const MPPE3: &[u8] = b"On the client side, this is the receive key; on the server side, it is the send key.";

pub fn master_key(password: &str, nt: &[u8; 24]) -> [u8; 16] {
    let hh: [u8; 16] = Md4::digest(nt_hash(password)).into();
    let mut h = Sha1::new();
    h.update(hh);
    h.update(nt);
    h.update(MPPE1);
    h.finalize()[..16].try_into().unwrap()
}

pub fn start_key(master: &[u8; 16], is_send: bool, is_server: bool) -> [u8; 16] {
    let magic = if is_send == is_server { MPPE3 } else { MPPE2 };
    let mut h = Sha1::new();
    h.update(master);
    h.update([0u8; 40]);
    h.update(magic);
    h.update([0xf2u8; 40]);
    h.finalize()[..16].try_into().unwrap()
}

/// MSK as seen from the server: MasterReceiveKey ‖ MasterSendKey ‖ 32 zeros.
pub fn msk(password: &str, nt: &[u8; 24]) -> [u8; 64] {
    let m = master_key(password, nt);
    let mut out = [0u8; 64];
    out[..16].copy_from_slice(&start_key(&m, false, true));
    out[16..32].copy_from_slice(&start_key(&m, true, true));
    out
}

#[test]
fn rfc2759_9_2_and_rfc3079_3_5_3() {
    // RFC 2759 §9.2 sample data.
    let auth = hex::decode("5B5D7C7D7B3F2F3E3C2C602132262628").unwrap().try_into().unwrap();
    let peer = hex::decode("21402324255E262A28295F2B3A337C7E").unwrap().try_into().unwrap();
    assert_eq!(hex::encode_upper(challenge_hash(&peer, &auth, "User")), "D02E4386BCE91226");
    assert_eq!(hex::encode_upper(nt_hash("clientPass")), "44EBBA8D5312B8D611474411F56989AE");
    let nt = nt_response(&auth, &peer, "User", "clientPass");
    assert_eq!(hex::encode_upper(nt), "82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF");
    assert_eq!(
        authenticator_response("clientPass", &nt, &peer, &auth, "User"),
        "S=407A5589115FD0D6209F510FE9C04566932CDA56"
    );
    // RFC 3079 §3.5.3 (128-bit keys from the same exchange).
    let m = master_key("clientPass", &nt);
    assert_eq!(hex::encode_upper(m), "FDECE3717A8C838CB388E527AE3CDD31");
    // The RFC derives the sample send key as the server (IsSend = IsServer = TRUE).
    assert_eq!(hex::encode_upper(start_key(&m, true, true)), "8B7CDC149B993A1BA118CB153F56DCCB");
}
