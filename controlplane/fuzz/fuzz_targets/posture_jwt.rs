//! Fuzz target: the tag-token decoder and verifier never panic on any input, and never accept
//! a token without a valid RS256 signature (the key below signed nothing the fuzzer sees).
//!
//! Run with `cargo +nightly fuzz run posture_jwt` from `controlplane/`.
#![no_main]

use std::sync::OnceLock;

use dialgate_controlplane::posture::jwt::{self, TokenKey};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static TokenKey {
    static K: OnceLock<TokenKey> = OnceLock::new();
    K.get_or_init(|| jwt::generate_key().expect("RSA key").1)
}

fuzz_target!(|data: &[u8]| {
    let _ = jwt::decode(data);
    let _ = jwt::base64_decode(data, true);
    assert!(jwt::verify(data, key(), 1_769_758_000, 60, "F8A6AFF3531843B4972CBDBEEEB30E3C").is_err());
});
