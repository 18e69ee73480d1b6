//! One-time codes: HOTP (RFC 4226) and TOTP (RFC 6238).
//!
//! Pure functions of (key, counter or time): the caller passes the time in, nothing here reads a
//! clock. Codes are numbers; [`format_code`] pads them to the token's digit count.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use crate::config::TotpAlgorithm;

fn hmac_digest(alg: TotpAlgorithm, key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length (RFC 2104 §2), so `new_from_slice` cannot fail; the empty
    // digest on the impossible path makes `truncate` yield 0, never a valid-looking code.
    match alg {
        TotpAlgorithm::Sha1 => Hmac::<Sha1>::new_from_slice(key).map(|mut m| {
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }),
        TotpAlgorithm::Sha256 => Hmac::<Sha256>::new_from_slice(key).map(|mut m| {
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }),
        TotpAlgorithm::Sha512 => Hmac::<Sha512>::new_from_slice(key).map(|mut m| {
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }),
    }
    .unwrap_or_default()
}

/// RFC 4226 §5.3 dynamic truncation of an HMAC value to a 31-bit number.
pub fn dynamic_truncate(hs: &[u8]) -> u32 {
    let Some(last) = hs.last() else { return 0 };
    let off = usize::from(last & 0x0f);
    match hs.get(off..off + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a & 0x7f, b, c, d]),
        _ => 0,
    }
}

/// HOTP(K, C) = Truncate(HMAC(K, C)) mod 10^digits (RFC 4226 §5.3; §5.4 uses SHA-1).
pub fn hotp(alg: TotpAlgorithm, key: &[u8], counter: u64, digits: u32) -> u32 {
    let hs = hmac_digest(alg, key, &counter.to_be_bytes());
    dynamic_truncate(&hs) % 10u32.pow(digits.min(9))
}

/// The TOTP time step of `unix_time` (RFC 6238 §4.2: T = (now - T0) / X with T0 = 0).
pub fn time_step(unix_time: u64, period: u64) -> u64 {
    unix_time / period.max(1)
}

/// TOTP(K, T) = HOTP(K, T) (RFC 6238 §4.2).
pub fn totp(alg: TotpAlgorithm, key: &[u8], unix_time: u64, period: u64, digits: u32) -> u32 {
    hotp(alg, key, time_step(unix_time, period), digits)
}

/// A code as the user types it: zero-padded to `digits`.
pub fn format_code(code: u32, digits: u32) -> String {
    format!("{code:0width$}", width = digits as usize)
}
