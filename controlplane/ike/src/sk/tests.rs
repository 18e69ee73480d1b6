use super::*;
use crate::message::{ExchangeType, FLAG_RESPONSE};

/// Returns the same bytes (0x10, 0x11, …) every time: a fixed IV for known answers.
struct FixedIv;
impl Entropy for FixedIv {
    fn fill(&mut self, out: &mut [u8]) {
        for (i, b) in out.iter_mut().enumerate() {
            *b = 0x10 + i as u8;
        }
    }
}

/// A counter, so successive IVs differ.
struct Counter(u8);
impl Entropy for Counter {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
    }
}

fn header() -> Header {
    Header {
        spi_i: 0x0001020304050607,
        spi_r: 0x08090a0b0c0d0e0f,
        next_payload: PayloadType::NONE,
        version: 0x20,
        exchange: ExchangeType::IKE_AUTH,
        flags: FLAG_RESPONSE,
        message_id: 1,
        length: 0,
    }
}

fn inner() -> Vec<Payload> {
    vec![Payload::VendorId(b"dialgate".to_vec())]
}

fn key(n: usize, start: u8) -> Vec<u8> {
    (0..n).map(|i| start.wrapping_add(i as u8)).collect()
}

fn aead_key(n: usize) -> Vec<u8> {
    let mut k = key(n, 0);
    k.extend_from_slice(&[0xa0, 0xa1, 0xa2, 0xa3]);
    k
}

// Reference datagrams from tests/fixtures/gen_vectors.py (Python `cryptography`), built from
// RFC 7296 §3.14, RFC 5282 §5 and RFC 7634 §2 independently of this crate.
const GCM128: &str = "000102030405060708090a0b0c0d0e0f2e20232000000001000000452b00002910111213141516175992ea1d9372fac345caa65419be459d834a64d3a89a2e48c3e2b5f73b";
const CHACHA: &str = "000102030405060708090a0b0c0d0e0f2e20232000000001000000452b0000291011121314151617a33a9ad0245e8dabbed76a1b7d27708acfbb80936c9811b6d33e27026a";
const CBC_SHA256: &str = "000102030405060708090a0b0c0d0e0f2e20232000000001000000502b000034101112131415161718191a1b1c1d1e1f4783b07b95d994db2a864aa68a32c81c52ec5999188985e2e272accd53105406";

fn check(c: &SkCipher, want: &str) {
    let out = c.seal(&header(), &inner(), None, &mut FixedIv).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(hex::encode(&out[0]), want);
    match c.open(&out[0]).unwrap() {
        Opened::Complete(h, p) => {
            assert_eq!(h.message_id, 1);
            assert_eq!(p, inner());
        }
        Opened::Fragment { .. } => panic!("not a fragment"),
    }
    // Any flipped bit, in the header (AAD / MAC input) or the ciphertext, fails integrity.
    for i in [3usize, 30, out[0].len() - 20, out[0].len() - 1] {
        let mut bad = out[0].clone();
        bad[i] ^= 0x01;
        assert!(matches!(c.open(&bad), Err(Error::IntegrityFailed | Error::Decode(_))), "byte {i}");
    }
}

#[test]
fn aes_gcm_16_128_known_answer() {
    let c = SkCipher::new(Encr::AesGcm16 { key_len: 16 }, None, &aead_key(16), &[]).unwrap();
    check(&c, GCM128);
}

#[test]
fn chacha20_poly1305_known_answer() {
    let c = SkCipher::new(Encr::ChaCha20Poly1305, None, &aead_key(32), &[]).unwrap();
    check(&c, CHACHA);
}

#[test]
fn aes_cbc_hmac_sha256_known_answer() {
    let c =
        SkCipher::new(Encr::AesCbc { key_len: 16 }, Some(Integ::HmacSha256_128), &key(16, 0), &key(32, 0x40)).unwrap();
    check(&c, CBC_SHA256);
}

#[test]
fn every_suite_round_trips() {
    let suites: [(Encr, Option<Integ>); 8] = [
        (Encr::AesCbc { key_len: 16 }, Some(Integ::HmacSha1_96)),
        (Encr::AesCbc { key_len: 24 }, Some(Integ::HmacSha256_128)),
        (Encr::AesCbc { key_len: 32 }, Some(Integ::HmacSha256_128)),
        (Encr::AesCbc { key_len: 32 }, Some(Integ::HmacSha384_192)),
        (Encr::AesCbc { key_len: 32 }, Some(Integ::HmacSha512_256)),
        (Encr::AesGcm16 { key_len: 16 }, None),
        (Encr::AesGcm16 { key_len: 32 }, None),
        (Encr::ChaCha20Poly1305, None),
    ];
    let mut rng = Counter(0);
    for (e, i) in suites {
        let c = SkCipher::new(e, i, &key(e.keymat_len(), 1), &key(i.map_or(0, Integ::key_len), 2)).unwrap();
        for n in 0..20 {
            let payloads = vec![Payload::Nonce(vec![7; n])];
            let out = c.seal(&header(), &payloads, None, &mut rng).unwrap();
            match c.open(&out[0]).unwrap() {
                Opened::Complete(_, p) => assert_eq!(p, payloads, "{e:?} {n}"),
                Opened::Fragment { .. } => panic!("fragment"),
            }
        }
        // Keys of the other direction do not open it.
        let other = SkCipher::new(e, i, &key(e.keymat_len(), 9), &key(i.map_or(0, Integ::key_len), 2)).unwrap();
        let out = c.seal(&header(), &inner(), None, &mut rng).unwrap();
        assert!(other.open(&out[0]).is_err());
    }
}

#[test]
fn wrong_key_lengths_refused() {
    assert!(SkCipher::new(Encr::AesGcm16 { key_len: 16 }, None, &key(16, 0), &[]).is_err());
    assert!(SkCipher::new(Encr::AesCbc { key_len: 16 }, None, &key(16, 0), &[]).is_err());
}

#[test]
fn fragments_reassemble_in_any_order() {
    // RFC 7383 §2.5-§2.6: a large message split into SKF fragments, each protected alone.
    let c =
        SkCipher::new(Encr::AesCbc { key_len: 16 }, Some(Integ::HmacSha256_128), &key(16, 0), &key(32, 0x40)).unwrap();
    let big = vec![
        Payload::Cert(crate::message::CertPayload { encoding: 4, data: vec![0x5a; 3000] }),
        Payload::VendorId(b"x".to_vec()),
    ];
    let frags = c.seal(&header(), &big, Some(576), &mut Counter(0)).unwrap();
    assert!(frags.len() > 5);
    assert!(frags.iter().all(|f| f.len() <= 576));
    let mut r = Reassembly::default();
    let mut done = None;
    for f in frags.iter().rev() {
        match c.open(f).unwrap() {
            Opened::Fragment { header, first, number, total, plain } => {
                assert_eq!(total as usize, frags.len());
                if let Some(p) = r.add(header.message_id, first, number, total, plain).unwrap() {
                    done = Some(p);
                }
            }
            Opened::Complete(..) => panic!("expected fragments"),
        }
    }
    assert_eq!(done.unwrap(), big);
    // Small messages are not fragmented.
    assert_eq!(c.seal(&header(), &inner(), Some(576), &mut Counter(0)).unwrap().len(), 1);
}
