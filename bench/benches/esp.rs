//! ESP seal/open per transform at 64, 512 and 1420 B, next to the raw cipher call of the same
//! backend on the same number of bytes, measured in the same run.
//!
//! Two outputs: criterion's per-case statistics, then a table (and `target/esp-bench.json`) of
//! interleaved median timings with the ratio ESP throughput / raw throughput — the number that
//! says how much the packet handling costs on top of the crypto. Target for AES-128-GCM at
//! 1420 B: ratio ≥ 0.85.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes::cipher::{block_padding::NoPadding, BlockEncryptMut};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use criterion::{Criterion, Throughput};
use dialgate_dataplane::buf::{HeadroomBuf, PacketBuf};
use dialgate_dataplane::esp::{inbound, outbound, Algorithm, Backend, Transform};
use dialgate_dataplane::sa::{InboundSa, Lifetime, OutboundSa, Tunnel, UdpEncap};
use hmac::Mac;

const SIZES: [usize; 3] = [64, 512, 1420];

/// An inner IPv4 packet of exactly `size` bytes.
fn inner(size: usize) -> Vec<u8> {
    let mut p = vec![0xa5u8; size];
    p[0] = 0x45;
    p[1] = 0;
    p[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    p[4..10].fill(0);
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 40, 40, 2]);
    p[16..20].copy_from_slice(&[10, 50, 0, 9]);
    let mut sum = 0u32;
    for c in p[..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p
}

fn tunnel() -> Tunnel {
    Tunnel {
        local: "192.0.2.1".parse().unwrap(),
        remote: "198.51.100.7".parse().unwrap(),
        encap: Some(UdpEncap { local_port: 4500, remote_port: 4500 }),
    }
}

fn keys(alg: Algorithm) -> (Vec<u8>, Vec<u8>) {
    (vec![0x11; alg.enc_key_len()], vec![0x22; alg.auth_key_len()])
}

/// The raw cipher work ESP does for a packet: the same backend, the same byte count.
enum Raw {
    AwsLc(aws_lc_rs::aead::LessSafeKey),
    RcGcm(Box<aes_gcm::Aes128Gcm>),
    Cbc128Sha1(aes::Aes128, hmac::Hmac<sha1::Sha1>),
    Cbc256Sha1(aes::Aes256, hmac::Hmac<sha1::Sha1>),
    Cbc128Sha256(aes::Aes128, hmac::Hmac<sha2::Sha256>),
    Cbc256Sha256(aes::Aes256, hmac::Hmac<sha2::Sha256>),
}

impl Raw {
    fn new(alg: Algorithm, backend: Backend) -> Raw {
        let (e, a) = keys(alg);
        let k = &e[..e.len() - if alg.is_aead() { 4 } else { 0 }];
        match (alg, backend) {
            (Algorithm::Aes128Gcm, Backend::RustCrypto) => {
                Raw::RcGcm(Box::new(aes_gcm::Aes128Gcm::new_from_slice(k).unwrap()))
            }
            (Algorithm::Aes128Gcm | Algorithm::Aes256Gcm | Algorithm::ChaCha20Poly1305, _) => {
                let a = match alg {
                    Algorithm::Aes128Gcm => &aws_lc_rs::aead::AES_128_GCM,
                    Algorithm::Aes256Gcm => &aws_lc_rs::aead::AES_256_GCM,
                    _ => &aws_lc_rs::aead::CHACHA20_POLY1305,
                };
                Raw::AwsLc(aws_lc_rs::aead::LessSafeKey::new(aws_lc_rs::aead::UnboundKey::new(a, k).unwrap()))
            }
            (Algorithm::Aes128CbcSha1, _) => Raw::Cbc128Sha1(
                aes::Aes128::new_from_slice(k).unwrap(),
                <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(&a).unwrap(),
            ),
            (Algorithm::Aes256CbcSha1, _) => Raw::Cbc256Sha1(
                aes::Aes256::new_from_slice(k).unwrap(),
                <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(&a).unwrap(),
            ),
            (Algorithm::Aes128CbcSha256, _) => Raw::Cbc128Sha256(
                aes::Aes128::new_from_slice(k).unwrap(),
                <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&a).unwrap(),
            ),
            (Algorithm::Aes256CbcSha256, _) => Raw::Cbc256Sha256(
                aes::Aes256::new_from_slice(k).unwrap(),
                <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&a).unwrap(),
            ),
        }
    }

    /// Encrypts and authenticates `buf` in place (the payload + trailer of one packet).
    fn run(&self, buf: &mut [u8], tag: &mut [u8; 16]) {
        let nonce = [7u8; 12];
        let aad = [1u8; 8];
        match self {
            Raw::AwsLc(k) => {
                let t = k
                    .seal_in_place_separate_tag(
                        aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                        aws_lc_rs::aead::Aad::from(&aad),
                        buf,
                    )
                    .unwrap();
                tag.copy_from_slice(t.as_ref());
            }
            Raw::RcGcm(k) => {
                let t = k.encrypt_in_place_detached((&nonce).into(), &aad, buf).unwrap();
                tag.copy_from_slice(&t);
            }
            Raw::Cbc128Sha1(c, m) => cbc_mac::<aes::Aes128, _>(c, m, buf, tag),
            Raw::Cbc256Sha1(c, m) => cbc_mac::<aes::Aes256, _>(c, m, buf, tag),
            Raw::Cbc128Sha256(c, m) => cbc_mac::<aes::Aes128, _>(c, m, buf, tag),
            Raw::Cbc256Sha256(c, m) => cbc_mac::<aes::Aes256, _>(c, m, buf, tag),
        }
    }
}

fn cbc_mac<C, M>(c: &C, m: &M, buf: &mut [u8], tag: &mut [u8; 16])
where
    C: aes::cipher::BlockEncryptMut + aes::cipher::BlockCipher + aes::cipher::BlockEncrypt + Clone,
    M: Mac + Clone,
{
    use aes::cipher::InnerIvInit;
    let iv = [3u8; 16];
    let n = buf.len();
    cbc::Encryptor::<C>::inner_iv_slice_init(c.clone(), &iv).unwrap().encrypt_padded_mut::<NoPadding>(buf, n).unwrap();
    let mut m = m.clone();
    m.update(&[0u8; 24]);
    m.update(buf);
    let out = m.finalize().into_bytes();
    let k = out.len().min(16);
    tag[..k].copy_from_slice(&out[..k]);
}

/// Bytes the raw cipher processes for an inner packet of `size` bytes (payload + pad + 2).
fn cipher_len(alg: Algorithm, size: usize) -> usize {
    let b = alg.block_len();
    size + 2 + (b - (size + 2) % b) % b
}

struct Case {
    alg: Algorithm,
    backend: Backend,
    size: usize,
    plain: Vec<u8>,
    out: OutboundSa,
    inb: InboundSa,
    sealed: Vec<u8>,
    raw: Raw,
    buf: HeadroomBuf,
    raw_buf: Vec<u8>,
}

impl Case {
    fn new(alg: Algorithm, backend: Backend, size: usize) -> Case {
        let (e, a) = keys(alg);
        let out =
            OutboundSa::new(1, Transform::new(alg, backend, &e, &a).unwrap(), tunnel(), false, Lifetime::default());
        let inb = InboundSa::new(1, Transform::new(alg, backend, &e, &a).unwrap(), false, 64, Lifetime::default());
        let plain = inner(size);
        let mut buf = HeadroomBuf::with_capacity(128, 2048);
        buf.reset(&plain);
        outbound::encap(&out, &mut buf).unwrap();
        let sealed = buf.data().to_vec();
        Case {
            alg,
            backend,
            size,
            plain,
            out,
            inb,
            sealed,
            raw: Raw::new(alg, backend),
            buf,
            raw_buf: vec![0x5a; cipher_len(alg, size)],
        }
    }

    fn seal(&mut self) {
        self.buf.reset(&self.plain);
        black_box(outbound::encap(&self.out, &mut self.buf).is_ok());
    }

    fn open(&mut self) {
        self.buf.reset(&self.sealed);
        self.inb.replay.reset();
        let loc = inbound::parse(self.buf.data()).unwrap();
        assert!(inbound::decap(&mut self.inb, &mut self.buf, &loc).is_ok());
    }

    fn raw(&mut self) {
        // Copy the bytes in like `reset` does for ESP, so both sides pay for one copy.
        self.raw_buf[..self.size].copy_from_slice(&self.plain);
        let mut tag = [0u8; 16];
        self.raw.run(&mut self.raw_buf, &mut tag);
        black_box(tag);
    }
}

fn time<F: FnMut()>(iters: u32, mut f: F) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut crit = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(700))
        .sample_size(20)
        .configure_from_args();
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut cases = Vec::new();
    for alg in Algorithm::ALL {
        for size in SIZES {
            cases.push(Case::new(alg, Backend::AwsLc, size));
        }
    }
    for size in SIZES {
        cases.push(Case::new(Algorithm::Aes128Gcm, Backend::RustCrypto, size));
    }
    let mut rows = Vec::new();
    for c in &mut cases {
        let id = format!("{}/{:?}/{}", c.alg.name(), c.backend, c.size);
        if filter.as_deref().is_some_and(|f| !id.contains(f)) {
            continue;
        }
        let mut g = crit.benchmark_group(&id);
        g.throughput(Throughput::Bytes(c.size as u64));
        g.bench_function("seal", |b| b.iter(|| c.seal()));
        g.bench_function("open", |b| b.iter(|| c.open()));
        g.bench_function("raw", |b| b.iter(|| c.raw()));
        g.finish();
        // Interleaved rounds so a noisy neighbour hits all three alike.
        let iters = (2_000_000 / (c.size as u32 + 100)).max(2000);
        let (mut s, mut o, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..9 {
            s.push(time(iters, || c.seal()));
            o.push(time(iters, || c.open()));
            r.push(time(iters, || c.raw()));
        }
        rows.push((id, c.size, median(s), median(o), median(r)));
    }
    println!(
        "\n{:<34} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8} {:>8}",
        "case", "seal ns", "open ns", "raw ns", "seal Gb/s", "open Gb/s", "seal/raw", "open/raw"
    );
    let mut json = String::from("[\n");
    for (i, (id, size, s, o, r)) in rows.iter().enumerate() {
        let gbps = |ns: f64| *size as f64 * 8.0 / ns;
        println!(
            "{:<34} {:>9.1} {:>9.1} {:>9.1} {:>10.2} {:>10.2} {:>8.2} {:>8.2}",
            id,
            s,
            o,
            r,
            gbps(*s),
            gbps(*o),
            r / s,
            r / o
        );
        json.push_str(&format!(
            "  {{\"case\":\"{id}\",\"size\":{size},\"seal_ns\":{s:.1},\"open_ns\":{o:.1},\"raw_ns\":{r:.1},\"seal_ratio\":{:.3},\"open_ratio\":{:.3}}}{}\n",
            r / s,
            r / o,
            if i + 1 < rows.len() { "," } else { "" }
        ));
    }
    json.push(']');
    let _ = std::fs::create_dir_all("target");
    let _ = std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/esp-bench.json"), json);
    crit.final_summary();
}
