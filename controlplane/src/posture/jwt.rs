//! RS256 JSON Web Tokens carrying an endpoint's posture tags (RFC 7519, RFC 7518 §3.3).
//!
//! How to use it: load the posture server's public key once with [`TokenKey::from_pem_or_der`],
//! then call [`verify`] with the token text from the ZTNA_TAG notify, the current Unix time and
//! the UID the client reported in FORTICLIENT_CONNECT. [`decode`] splits and parses a token
//! without checking it (for logs and the fuzz target). [`sign_rs256`] makes tokens (tests, tools).
//!
//! Only `RS256` is accepted. RFC 8725 §2.1/§3.1: the algorithm is fixed by the key, never taken
//! from the token — `none` and every `HS*` are refused before any key is touched, so an RSA
//! public key can never be used as an HMAC secret.

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use serde::Deserialize;

/// Longest token accepted.
pub const MAX_TOKEN: usize = 16 * 1024;
/// Allowed clock difference for `exp` and `iat`, seconds.
pub const DEFAULT_SKEW: u64 = 60;

/// Why a token was refused; each reason is distinct and printable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN`].
    #[error("token too long ({0} bytes)")]
    TooLong(usize),
    /// Not three base64url parts.
    #[error("token malformed: {0}")]
    Malformed(&'static str),
    /// The header or payload is not the expected JSON.
    #[error("token {part} is not valid JSON: {detail}")]
    Json {
        /// `header` or `payload`.
        part: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// `alg: none`.
    #[error("token alg none refused (unsigned)")]
    AlgNone,
    /// An HMAC algorithm (`HS256`…).
    #[error("token alg {0} refused (HMAC is not accepted for posture tokens)")]
    AlgHmac(String),
    /// Any other algorithm than RS256.
    #[error("token alg {0:?} refused (only RS256)")]
    AlgUnsupported(String),
    /// The signature does not verify with the posture server's key.
    #[error("token signature does not verify")]
    BadSignature,
    /// `exp` is in the past (beyond the skew).
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// Our time.
        now: u64,
    },
    /// `iat` is in the future (beyond the skew).
    #[error("token issued in the future at {iat} (now {now})")]
    IssuedInFuture {
        /// The token's `iat`.
        iat: u64,
        /// Our time.
        now: u64,
    },
    /// A required claim is missing.
    #[error("token has no {0}")]
    MissingClaim(&'static str),
    /// `endpoint.uid` differs from the client's UID.
    #[error("token uid {token:?} is not the client's uid {client:?}")]
    WrongUid {
        /// In the token.
        token: String,
        /// In FORTICLIENT_CONNECT.
        client: String,
    },
}

/// A posture server's RSA public key that verifies tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey {
    der: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({} bytes)", self.der.len())
    }
}

/// Why a key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token key: {0}")]
pub struct KeyError(pub String);

impl TokenKey {
    /// Loads a `PUBLIC KEY` (SubjectPublicKeyInfo) or `RSA PUBLIC KEY` (PKCS#1) in PEM, or the
    /// same in DER; only RSA keys of 2048 bits or more are accepted.
    pub fn from_pem_or_der(data: &[u8]) -> Result<Self, KeyError> {
        let der = match std::str::from_utf8(data) {
            Ok(text) if text.contains("-----BEGIN") => pem_body(text)?,
            _ => data.to_vec(),
        };
        let key = aws_lc_rs::rsa::PublicKey::from_der(&der).map_err(|e| KeyError(format!("not an RSA key: {e}")))?;
        let bits = key.as_ref().len() * 8;
        // The PKCS#1 encoding is a little longer than the modulus; 2048-bit keys encode in 270 B.
        if bits < 2048 {
            return Err(KeyError("RSA key shorter than 2048 bits".into()));
        }
        // Kept as PKCS#1 RSAPublicKey whatever the input form, so equal keys compare equal.
        Ok(Self { der: key.as_ref().to_vec() })
    }

    /// The key as DER (PKCS#1 RSAPublicKey).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The key as a `PUBLIC KEY` PEM block (SubjectPublicKeyInfo).
    pub fn to_pem(&self) -> String {
        use aws_lc_rs::encoding::AsDer;
        let spki = aws_lc_rs::rsa::PublicKey::from_der(&self.der)
            .ok()
            .and_then(|k| k.as_der().ok())
            .map(|d| d.as_ref().to_vec())
            .unwrap_or_else(|| self.der.clone());
        pem("PUBLIC KEY", &spki)
    }
}

fn pem_body(text: &str) -> Result<Vec<u8>, KeyError> {
    let mut inside = false;
    let mut b64 = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN PUBLIC KEY-----") || line.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
            inside = true;
        } else if line.starts_with("-----END") && inside {
            return base64_decode(b64.as_bytes(), false).ok_or_else(|| KeyError("bad base64 in PEM".into()));
        } else if inside {
            b64.push_str(line);
        }
    }
    Err(KeyError("no PUBLIC KEY or RSA PUBLIC KEY PEM block".into()))
}

/// A PEM block of `label` around `der`.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der, false);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 (`url`: base64url without padding, RFC 4648 §5).
pub fn base64_encode(data: &[u8], url: bool) -> String {
    let alpha = if url { URL } else { STD };
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        let chars = c.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(alpha[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else if !url {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 (`url`: base64url; `=` padding is accepted at the end either way).
pub fn base64_decode(data: &[u8], url: bool) -> Option<Vec<u8>> {
    let data = match data.iter().position(|&b| b == b'=') {
        Some(p) if data[p..].iter().all(|&b| b == b'=') && data.len() - p <= 2 => &data[..p],
        Some(_) => return None,
        None => data,
    };
    if data.len() % 4 == 1 {
        return None;
    }
    let val = |b: u8| -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' if !url => 62,
            b'/' if !url => 63,
            b'-' if url => 62,
            b'_' if url => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for c in data.chunks(4) {
        let mut n = 0u32;
        for (i, &b) in c.iter().enumerate() {
            n |= val(b)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..c.len()]);
    }
    Some(out)
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
}

/// One tag in `endpoint.tags`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenTag {
    /// Tag name (without connector prefix), e.g. `all_registered_clients`.
    pub name: String,
    /// Tag type as the server numbers them.
    #[serde(rename = "type", default)]
    pub kind: Option<i64>,
    /// Severity level, often null.
    #[serde(default)]
    pub levl: Option<serde_json::Value>,
}

/// `endpoint` of the payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenEndpoint {
    /// The endpoint's UID.
    #[serde(default)]
    pub uid: Option<String>,
    /// Its tags.
    #[serde(default)]
    pub tags: Option<Vec<TokenTag>>,
    /// Serial of the endpoint's ZTNA certificate.
    #[serde(default)]
    pub ztna_cert_sn: Option<String>,
}

/// The payload (claims) of a posture token, as in seed 002.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenClaims {
    /// The endpoint.
    pub endpoint: TokenEndpoint,
    /// Expiry, Unix seconds.
    #[serde(default)]
    pub exp: Option<u64>,
    /// Issue time, Unix seconds.
    #[serde(default)]
    pub iat: Option<u64>,
}

/// A token taken apart, not verified.
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    /// The `alg` of the header.
    pub alg: String,
    /// The claims.
    pub claims: TokenClaims,
    /// `header.payload`, what the signature covers.
    pub signing_input: &'a [u8],
    /// The signature bytes.
    pub signature: Vec<u8>,
}

/// Splits and parses a token without verifying it.
pub fn decode(token: &[u8]) -> Result<Decoded<'_>, TokenError> {
    if token.len() > MAX_TOKEN {
        return Err(TokenError::TooLong(token.len()));
    }
    let token = token.trim_ascii();
    let mut parts = token.split(|&b| b == b'.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };
    let hj = base64_decode(h, true).ok_or(TokenError::Malformed("header is not base64url"))?;
    let pj = base64_decode(p, true).ok_or(TokenError::Malformed("payload is not base64url"))?;
    let signature = base64_decode(s, true).ok_or(TokenError::Malformed("signature is not base64url"))?;
    let header: Header =
        serde_json::from_slice(&hj).map_err(|e| TokenError::Json { part: "header", detail: e.to_string() })?;
    let claims: TokenClaims =
        serde_json::from_slice(&pj).map_err(|e| TokenError::Json { part: "payload", detail: e.to_string() })?;
    let alg = header.alg.ok_or(TokenError::MissingClaim("alg"))?;
    Ok(Decoded { alg, claims, signing_input: &token[..h.len() + 1 + p.len()], signature })
}

/// A verified token: the endpoint's UID, tag names and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `endpoint.uid`.
    pub uid: String,
    /// `endpoint.tags[].name`.
    pub tags: Vec<String>,
    /// `exp`.
    pub exp: u64,
    /// `endpoint.ztna_cert_sn`.
    pub cert_sn: Option<String>,
}

/// Verifies an RS256 token with `key` at `now` (± `skew` seconds) for the client `uid`.
pub fn verify(token: &[u8], key: &TokenKey, now: u64, skew: u64, uid: &str) -> Result<VerifiedToken, TokenError> {
    let d = decode(token)?;
    // RFC 8725 §3.1: the algorithm comes from our policy; refuse the rest before any crypto.
    match d.alg.as_str() {
        "RS256" => {}
        a if a.eq_ignore_ascii_case("none") => return Err(TokenError::AlgNone),
        a if a.starts_with("HS") => return Err(TokenError::AlgHmac(a.to_string())),
        a => return Err(TokenError::AlgUnsupported(a.chars().take(20).collect())),
    }
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, key.der())
        .verify(d.signing_input, &d.signature)
        .map_err(|_| TokenError::BadSignature)?;
    let exp = d.claims.exp.ok_or(TokenError::MissingClaim("exp"))?;
    if now > exp.saturating_add(skew) {
        return Err(TokenError::Expired { exp, now });
    }
    if let Some(iat) = d.claims.iat {
        if iat > now.saturating_add(skew) {
            return Err(TokenError::IssuedInFuture { iat, now });
        }
    }
    let e = d.claims.endpoint;
    let token_uid = e.uid.ok_or(TokenError::MissingClaim("endpoint.uid"))?;
    if !token_uid.eq_ignore_ascii_case(uid) {
        return Err(TokenError::WrongUid { token: token_uid.chars().take(64).collect(), client: uid.to_string() });
    }
    let tags = e.tags.unwrap_or_default().into_iter().map(|t| t.name).collect();
    Ok(VerifiedToken { uid: token_uid, tags, exp, cert_sn: e.ztna_cert_sn })
}

/// Signs `claims` (JSON) as an RS256 token with a PKCS#8 RSA private key.
pub fn sign_rs256(claims_json: &[u8], pkcs8: &[u8]) -> Result<String, KeyError> {
    let kp = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).map_err(|e| KeyError(format!("private key: {e}")))?;
    let mut input = base64_encode(br#"{"alg":"RS256","typ":"JWT"}"#, true);
    input.push('.');
    input.push_str(&base64_encode(claims_json, true));
    let mut sig = vec![0u8; kp.public_modulus_len()];
    kp.sign(&signature::RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), input.as_bytes(), &mut sig)
        .map_err(|_| KeyError("signing failed".into()))?;
    input.push('.');
    input.push_str(&base64_encode(&sig, true));
    Ok(input)
}

/// A fresh 2048-bit RSA key pair: (PKCS#8 private key DER, public [`TokenKey`]).
pub fn generate_key() -> Result<(Vec<u8>, TokenKey), KeyError> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair as _;
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| KeyError("RSA key generation failed".into()))?;
    let pkcs8 = kp.as_der().map_err(|_| KeyError("PKCS#8 encoding failed".into()))?.as_ref().to_vec();
    let public = TokenKey::from_pem_or_der(kp.public_key().as_ref())?;
    Ok((pkcs8, public))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// The token of seed 002, Example 2 (signed by a key we do not have).
    const SEED_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJlbmRwb2ludCI6eyJ1aWQiOiJGOEE2QUZGMzUzMTg0M0I0OTcyQ0JEQkVFRUIzMEUzQyIsInRhZ3MiOlt7Im5hbWUiOiJhIiwidHlwZSI6MSwibGV2bCI6bnVsbH0seyJuYW1lIjoiYWxsX3JlZ2lzdGVyZWRfY2xpZW50cyIsInR5cGUiOjEsImxldmwiOm51bGx9LHsibmFtZSI6IkxvdyIsInR5cGUiOjMsImxldmwiOm51bGx9XSwibndpZnMiOm51bGwsInp0bmFfY2VydF9zbiI6IkIwOUQ5NzE3ODEyMUI1ODhFRDMwNTUxMzc1Nzc1MjJDN0I2ODlCNzkiLCJvd25lciI6bnVsbH0sImV4cCI6MTc2OTc2MTM4NywiaWF0IjoxNzY5NzU3Nzg3fQ.GT4B2wuDJcVKn1LCb6UW1by0pXxvW5vdQD2DzvCmRxODoy-gk9-XKaXZtvlRyFVAVG6BGDOZR0UIW--Eduhps4zCr0PdQhy2cFnhsKu7tygdxSEEHpm_ESXi6t3EcIbxPb5y4xQflb1ny4TscB-OVN68pXT_BwgfuszBcYON2ZzgEiRbcJmfwzAkmjThfHik59EZBOOC_lQv1pkQ3-IQHJVSq0QhBIPx8seYhSIMtto9vJwIEciaZ8DPGbHtJ1WlOtm7SKbkoIDer4xSDVhKO03McJ0hlxFQpjc7AufONrN1jbgW3ydJJ03u3tQHbWETufayz3-eN9GlufTpidUBgQ";
    const UID: &str = "F8A6AFF3531843B4972CBDBEEEB30E3C";
    const NOW: u64 = 1_769_758_000;

    fn keys() -> &'static (Vec<u8>, TokenKey) {
        static K: OnceLock<(Vec<u8>, TokenKey)> = OnceLock::new();
        K.get_or_init(|| generate_key().unwrap())
    }

    fn claims(uid: &str, exp: u64, iat: u64) -> Vec<u8> {
        format!(
            r#"{{"endpoint":{{"uid":"{uid}","tags":[{{"name":"a","type":1,"levl":null}},{{"name":"all_registered_clients","type":1,"levl":null}}],"nwifs":null,"ztna_cert_sn":"B09D97","owner":null}},"exp":{exp},"iat":{iat}}}"#
        )
        .into_bytes()
    }

    fn good() -> String {
        sign_rs256(&claims(UID, NOW + 3600, NOW - 10), &keys().0).unwrap()
    }

    #[test]
    fn base64_roundtrips() {
        for n in 0..40u8 {
            let d: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            for url in [false, true] {
                assert_eq!(base64_decode(base64_encode(&d, url).as_bytes(), url).unwrap(), d);
            }
        }
        assert_eq!(base64_encode(b"foob", false), "Zm9vYg==");
        assert_eq!(base64_decode(b"Zm9vYg", false).unwrap(), b"foob");
        assert!(base64_decode(b"Zm9v=Yg", false).is_none());
        assert!(base64_decode(b"Z", true).is_none());
        assert!(base64_decode(b"a+b/", true).is_none(), "standard alphabet refused in url mode");
    }

    #[test]
    fn seed_token_payload_parses() {
        let d = decode(SEED_TOKEN.as_bytes()).unwrap();
        assert_eq!(d.alg, "RS256");
        assert_eq!(d.claims.endpoint.uid.as_deref(), Some(UID));
        let tags: Vec<&str> = d.claims.endpoint.tags.as_ref().unwrap().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(tags, ["a", "all_registered_clients", "Low"]);
        assert_eq!(d.claims.endpoint.tags.as_ref().unwrap()[2].kind, Some(3));
        assert_eq!(d.claims.endpoint.ztna_cert_sn.as_deref(), Some("B09D97178121B588ED3055137577522C7B689B79"));
        assert_eq!((d.claims.exp, d.claims.iat), (Some(1_769_761_387), Some(1_769_757_787)));
        assert_eq!(d.signature.len(), 256);
        // Signed by the seed's server, not ours.
        assert_eq!(verify(SEED_TOKEN.as_bytes(), &keys().1, NOW, 60, UID), Err(TokenError::BadSignature));
    }

    #[test]
    fn valid_token_is_accepted() {
        let v = verify(good().as_bytes(), &keys().1, NOW, DEFAULT_SKEW, UID).unwrap();
        assert_eq!(v.tags, ["a", "all_registered_clients"]);
        assert_eq!(v.exp, NOW + 3600);
        // UIDs compare without regard to case (clients print them either way).
        assert!(verify(good().as_bytes(), &keys().1, NOW, 60, &UID.to_lowercase()).is_ok());
        // The key round-trips through PEM.
        let k2 = TokenKey::from_pem_or_der(keys().1.to_pem().as_bytes()).unwrap();
        assert!(verify(good().as_bytes(), &k2, NOW, 60, UID).is_ok());
    }

    #[test]
    fn each_bad_token_has_its_reason() {
        let key = &keys().1;
        let t = good();
        let parts: Vec<&str> = t.split('.').collect();

        // Tampered payload: other tags, same signature.
        let mut forged = claims(UID, NOW + 3600, NOW - 10);
        forged.extend_from_slice(b" ");
        let tampered = format!("{}.{}.{}", parts[0], base64_encode(&forged, true), parts[2]);
        assert_eq!(verify(tampered.as_bytes(), key, NOW, 60, UID), Err(TokenError::BadSignature));

        // Expired, beyond the skew; within the skew still accepted.
        let old = sign_rs256(&claims(UID, NOW - 61, NOW - 3600), &keys().0).unwrap();
        assert_eq!(verify(old.as_bytes(), key, NOW, 60, UID), Err(TokenError::Expired { exp: NOW - 61, now: NOW }));
        let edge = sign_rs256(&claims(UID, NOW - 59, NOW - 3600), &keys().0).unwrap();
        assert!(verify(edge.as_bytes(), key, NOW, 60, UID).is_ok());
        let future = sign_rs256(&claims(UID, NOW + 9000, NOW + 600), &keys().0).unwrap();
        assert!(matches!(verify(future.as_bytes(), key, NOW, 60, UID), Err(TokenError::IssuedInFuture { .. })));

        // Another endpoint's token.
        let other = sign_rs256(&claims("0000AAAA", NOW + 3600, NOW), &keys().0).unwrap();
        assert!(matches!(verify(other.as_bytes(), key, NOW, 60, UID), Err(TokenError::WrongUid { .. })));

        // alg none, with or without a signature part.
        let none_h = base64_encode(br#"{"alg":"none","typ":"JWT"}"#, true);
        let none = format!("{none_h}.{}.", parts[1]);
        assert_eq!(verify(none.as_bytes(), key, NOW, 60, UID), Err(TokenError::AlgNone));

        // HS256 "signed" with the RSA public key as the HMAC secret (the classic confusion).
        let hs_h = base64_encode(br#"{"alg":"HS256","typ":"JWT"}"#, true);
        let input = format!("{hs_h}.{}", parts[1]);
        let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.to_pem().as_bytes());
        let mac = aws_lc_rs::hmac::sign(&k, input.as_bytes());
        let hs = format!("{input}.{}", base64_encode(mac.as_ref(), true));
        assert_eq!(verify(hs.as_bytes(), key, NOW, 60, UID), Err(TokenError::AlgHmac("HS256".into())));

        let es_h = base64_encode(br#"{"alg":"ES256"}"#, true);
        let es = format!("{es_h}.{}.{}", parts[1], parts[2]);
        assert_eq!(verify(es.as_bytes(), key, NOW, 60, UID), Err(TokenError::AlgUnsupported("ES256".into())));

        // Structure.
        assert!(matches!(verify(b"abc", key, NOW, 60, UID), Err(TokenError::Malformed(_))));
        assert!(matches!(verify(b"a.b.c.d", key, NOW, 60, UID), Err(TokenError::Malformed(_))));
        assert!(matches!(verify(b"!!.a.b", key, NOW, 60, UID), Err(TokenError::Malformed(_))));
        let notjson = format!("{}.{}.{}", base64_encode(b"{", true), parts[1], parts[2]);
        assert!(matches!(verify(notjson.as_bytes(), key, NOW, 60, UID), Err(TokenError::Json { part: "header", .. })));
        let no_exp = sign_rs256(format!(r#"{{"endpoint":{{"uid":"{UID}"}}}}"#).as_bytes(), &keys().0).unwrap();
        assert_eq!(verify(no_exp.as_bytes(), key, NOW, 60, UID), Err(TokenError::MissingClaim("exp")));
        assert!(matches!(verify(&vec![b'a'; MAX_TOKEN + 1], key, NOW, 60, UID), Err(TokenError::TooLong(_))));
    }

    #[test]
    fn keys_are_checked() {
        assert!(TokenKey::from_pem_or_der(b"junk").is_err());
        assert!(TokenKey::from_pem_or_der(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
        let pem = keys().1.to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(TokenKey::from_pem_or_der(pem.as_bytes()).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = verify(&data, &keys().1, NOW, 60, UID);
        }
    }
}
