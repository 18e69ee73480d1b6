//! Value types of the configuration and the small parsers that turn `set` arguments into them.
//!
//! Every typed object field is one of these: a keyword enum, a flag (`enable`/`disable`), a
//! ranged integer, an IPv4 address, an address with a mask, a quoted name, a list of names, a
//! [`Secret`], or a proposal list. Parsers take the raw argument strings of one `set` and return
//! a [`ValueError`] that says what is allowed; [`Val`] is the printable form used by `show`.

use std::fmt;
use std::net::Ipv4Addr;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Declares a CLI keyword enum with its keyword table.
macro_rules! keyword_enum {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($(#[$vm:meta])* $var:ident = $kw:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vm])* #[doc = concat!("`", $kw, "`")] $var),+ }
        impl $name {
            /// Every keyword accepted, in canonical order.
            pub const KEYWORDS: &'static [&'static str] = &[$($kw),+];
            /// The CLI keyword of this value.
            pub fn keyword(self) -> &'static str {
                match self { $(Self::$var => $kw),+ }
            }
            /// Parses a CLI keyword (exact, case-sensitive as FortiOS).
            pub fn from_keyword(s: &str) -> Option<Self> {
                match s { $($kw => Some(Self::$var),)+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.keyword())
            }
        }
        impl crate::config::value::FromArgs for $name {
            fn from_args(args: &[String]) -> Result<Self, crate::config::value::ValueError> {
                let s = crate::config::value::one(args)?;
                Self::from_keyword(s).ok_or_else(|| crate::config::value::ValueError::choices(0, s, Self::KEYWORDS))
            }
            fn to_vals(&self) -> Vec<crate::config::value::Val> {
                vec![crate::config::value::Val::Word(self.keyword().to_string())]
            }
        }
    };
}
pub(crate) use keyword_enum;

/// Why the arguments of one `set` were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError {
    /// Index of the offending argument (0 when the problem is the count).
    pub arg: usize,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ValueError {
    /// A free-form complaint about argument `arg`.
    pub fn new(arg: usize, message: impl Into<String>) -> Self {
        Self { arg, message: message.into() }
    }

    /// `got` is not one of `choices`.
    pub fn choices(arg: usize, got: &str, choices: &[&str]) -> Self {
        Self::new(arg, format!("invalid value {got:?}; choose one of: {}", choices.join(" ")))
    }
}

/// One printable value of a `set` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val {
    /// A keyword, number or address: printed bare.
    Word(String),
    /// A name or free text: printed in double quotes with `\` escapes.
    Quoted(String),
    /// A secret: printed masked by `show`, or in clear (quoted) when asked.
    Secret(Zeroizing<String>),
}

impl Val {
    /// The argument string this value parses back from.
    pub fn as_arg(&self) -> String {
        match self {
            Val::Word(s) | Val::Quoted(s) => s.clone(),
            Val::Secret(s) => s.to_string(),
        }
    }
}

/// Conversion between `set` arguments and a field type.
pub trait FromArgs: Sized {
    /// Parses the arguments of one `set`.
    fn from_args(args: &[String]) -> Result<Self, ValueError>;
    /// The printable values (the inverse of `from_args`).
    fn to_vals(&self) -> Vec<Val>;
}

/// Exactly one argument.
pub(crate) fn one(args: &[String]) -> Result<&str, ValueError> {
    match args {
        [a] => Ok(a.as_str()),
        [] => Err(ValueError::new(0, "a value is required")),
        _ => Err(ValueError::new(1, format!("takes one value, got {}", args.len()))),
    }
}

/// `enable` / `disable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flag(pub bool);

impl FromArgs for Flag {
    fn from_args(args: &[String]) -> Result<Self, ValueError> {
        match one(args)? {
            "enable" => Ok(Flag(true)),
            "disable" => Ok(Flag(false)),
            s => Err(ValueError::choices(0, s, &["enable", "disable"])),
        }
    }
    fn to_vals(&self) -> Vec<Val> {
        vec![Val::Word(if self.0 { "enable" } else { "disable" }.into())]
    }
}

/// Parses an integer in `lo..=hi`.
pub(crate) fn int_in(args: &[String], lo: u64, hi: u64) -> Result<u64, ValueError> {
    let s = one(args)?;
    match s.parse::<u64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(ValueError::new(0, format!("invalid value {s:?}; enter an integer from {lo} to {hi}"))),
    }
}

/// Parses an integer that must be one of `allowed`.
pub(crate) fn int_of(args: &[String], allowed: &[u64]) -> Result<u64, ValueError> {
    let s = one(args)?;
    match s.parse::<u64>() {
        Ok(v) if allowed.contains(&v) => Ok(v),
        _ => {
            let list: Vec<String> = allowed.iter().map(u64::to_string).collect();
            Err(ValueError::new(0, format!("invalid value {s:?}; choose one of: {}", list.join(" "))))
        }
    }
}

/// Prints an integer.
pub(crate) fn int_val(v: impl fmt::Display) -> Vec<Val> {
    vec![Val::Word(v.to_string())]
}

/// Parses one IPv4 address in dotted-quad form.
pub(crate) fn parse_ipv4(arg: usize, s: &str) -> Result<Ipv4Addr, ValueError> {
    s.parse().map_err(|_| ValueError::new(arg, format!("invalid IPv4 address {s:?}; expected a.b.c.d")))
}

impl FromArgs for Ipv4Addr {
    fn from_args(args: &[String]) -> Result<Self, ValueError> {
        parse_ipv4(0, one(args)?)
    }
    fn to_vals(&self) -> Vec<Val> {
        vec![Val::Word(self.to_string())]
    }
}

/// An IPv4 address with a contiguous netmask (`set ip 10.0.0.1 255.255.255.0` or `10.0.0.1/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpMask {
    /// The address as given (host bits kept for interface addresses).
    pub addr: Ipv4Addr,
    /// Prefix length 0..=32.
    pub prefix_len: u8,
}

impl Default for IpMask {
    fn default() -> Self {
        IpMask::ANY
    }
}

impl IpMask {
    /// `0.0.0.0 0.0.0.0`.
    pub const ANY: IpMask = IpMask { addr: Ipv4Addr::UNSPECIFIED, prefix_len: 0 };

    /// The netmask as an address.
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix_len))
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & prefix_mask(self.prefix_len))
    }

    /// Whether `ip` is inside this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = prefix_mask(self.prefix_len);
        u32::from(ip) & m == u32::from(self.addr) & m
    }
}

fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

fn mask_to_prefix(arg: usize, s: &str) -> Result<u8, ValueError> {
    let m = u32::from(parse_ipv4(arg, s)?);
    let len = m.leading_ones();
    if m.checked_shl(len).unwrap_or(0) != 0 {
        return Err(ValueError::new(arg, format!("netmask {s} is not contiguous")));
    }
    // leading_ones() of a u32 is at most 32, so it fits a u8.
    Ok(len as u8)
}

impl FromArgs for IpMask {
    fn from_args(args: &[String]) -> Result<Self, ValueError> {
        match args {
            [a] => {
                let (ip, len) = a.split_once('/').ok_or_else(|| {
                    ValueError::new(0, "expected an address and a netmask (a.b.c.d m.m.m.m or a.b.c.d/len)")
                })?;
                let addr = parse_ipv4(0, ip)?;
                let prefix_len = match len.parse::<u8>() {
                    Ok(l) if l <= 32 => l,
                    _ => return Err(ValueError::new(0, format!("invalid prefix length {len:?}; 0 to 32"))),
                };
                Ok(IpMask { addr, prefix_len })
            }
            [a, m] => Ok(IpMask { addr: parse_ipv4(0, a)?, prefix_len: mask_to_prefix(1, m)? }),
            [] => Err(ValueError::new(0, "a value is required")),
            _ => Err(ValueError::new(2, "takes an address and a netmask")),
        }
    }
    fn to_vals(&self) -> Vec<Val> {
        vec![Val::Word(self.addr.to_string()), Val::Word(self.mask().to_string())]
    }
}

/// A free-text or name value, printed quoted.
pub(crate) fn string_from(args: &[String], max_len: usize) -> Result<String, ValueError> {
    let s = one(args)?;
    if s.chars().count() > max_len {
        return Err(ValueError::new(0, format!("too long: at most {max_len} characters")));
    }
    Ok(s.to_string())
}

/// A quoted string value.
pub(crate) fn string_val(s: &str) -> Vec<Val> {
    vec![Val::Quoted(s.to_string())]
}

/// A list of names (`set member "a" "b"`); empty only through `unset`.
pub(crate) fn names_from(args: &[String], max_len: usize) -> Result<Vec<String>, ValueError> {
    let mut out: Vec<String> = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        if a.is_empty() {
            return Err(ValueError::new(i, "empty name in list"));
        }
        if a.chars().count() > max_len {
            return Err(ValueError::new(i, format!("name too long: at most {max_len} characters")));
        }
        if out.contains(a) {
            return Err(ValueError::new(i, format!("{a:?} is listed twice")));
        }
        out.push(a.clone());
    }
    Ok(out)
}

/// Prints a list of names.
pub(crate) fn names_val(v: &[String]) -> Vec<Val> {
    v.iter().map(|s| Val::Quoted(s.clone())).collect()
}

/// A password, pre-shared key or token seed: zeroized on drop, compared in constant time, never
/// printed by `Debug`.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret string.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(Zeroizing::new(s.into()))
    }

    /// The secret in clear; callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        // Lengths may differ; `ct_eq` on slices of different length is false without leaking
        // where the contents differ.
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// Parses an optional secret; `ENC …` (a masked or vendor-encrypted value) is refused.
pub(crate) fn secret_from(args: &[String]) -> Result<Option<Secret>, ValueError> {
    match args {
        [] => Ok(None),
        [e, ..] if e == "ENC" => {
            Err(ValueError::new(0, "encrypted or masked secrets (ENC …) cannot be loaded; give the secret in clear"))
        }
        [s] if s.is_empty() => Err(ValueError::new(0, "empty secret; use unset to remove it")),
        [s] if s.len() > 128 => Err(ValueError::new(0, "secret too long: at most 128 characters")),
        [s] => Ok(Some(Secret::new(s.clone()))),
        _ => Err(ValueError::new(1, format!("takes one value, got {} (quote secrets with spaces)", args.len()))),
    }
}

/// Prints an optional secret.
pub(crate) fn secret_val(s: &Option<Secret>) -> Vec<Val> {
    match s {
        Some(s) => vec![Val::Secret(Zeroizing::new(s.expose().to_string()))],
        None => Vec::new(),
    }
}

keyword_enum! {
    /// An encryption transform name as used in proposals.
    pub enum Cipher {
        /// AES-128-CBC.
        Aes128 = "aes128",
        /// AES-192-CBC.
        Aes192 = "aes192",
        /// AES-256-CBC.
        Aes256 = "aes256",
        /// AES-128-GCM (16-byte ICV).
        Aes128Gcm = "aes128gcm",
        /// AES-256-GCM (16-byte ICV).
        Aes256Gcm = "aes256gcm",
        /// ChaCha20-Poly1305.
        ChaCha20Poly1305 = "chacha20poly1305",
        /// ESP NULL encryption (phase 2 only).
        Null = "null",
    }
}

impl Cipher {
    /// Whether this is an AEAD (no separate integrity transform).
    pub fn is_aead(self) -> bool {
        matches!(self, Cipher::Aes128Gcm | Cipher::Aes256Gcm | Cipher::ChaCha20Poly1305)
    }
}

keyword_enum! {
    /// A hash used as integrity and/or PRF in proposals.
    pub enum Hash {
        /// SHA-1 (HMAC-SHA1-96 / PRF-HMAC-SHA1).
        Sha1 = "sha1",
        /// SHA-256.
        Sha256 = "sha256",
        /// SHA-384.
        Sha384 = "sha384",
        /// SHA-512.
        Sha512 = "sha512",
    }
}

/// A phase-1 (IKE SA) proposal: `aes128-sha256` (CBC, hash is integrity and PRF) or
/// `aes128gcm-prfsha256` (AEAD with its PRF).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Phase1Proposal {
    /// Encryption.
    pub cipher: Cipher,
    /// Integrity and PRF for CBC; PRF only for AEAD.
    pub hash: Hash,
}

/// A phase-2 (Child SA) proposal: `aes128-sha1`, `null-sha256` or an AEAD alone (`aes128gcm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Phase2Proposal {
    /// Encryption.
    pub cipher: Cipher,
    /// Integrity; `None` exactly when the cipher is an AEAD.
    pub integrity: Option<Hash>,
}

const P1_HINT: &str = "phase1 proposals are CIPHER-HASH (aes128 aes192 aes256 with sha1 sha256 sha384 sha512) \
or AEAD-prfHASH (aes128gcm aes256gcm chacha20poly1305 with prfsha1 prfsha256 prfsha384 prfsha512)";
const P2_HINT: &str = "phase2 proposals are CIPHER-HASH (aes128 aes192 aes256 null with sha1 sha256 sha384 sha512) \
or an AEAD alone (aes128gcm aes256gcm chacha20poly1305)";

impl fmt::Display for Phase1Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cipher.is_aead() {
            write!(f, "{}-prf{}", self.cipher, self.hash)
        } else {
            write!(f, "{}-{}", self.cipher, self.hash)
        }
    }
}

impl Phase1Proposal {
    /// Parses one phase-1 proposal name.
    pub fn parse(s: &str) -> Option<Self> {
        let (c, h) = s.split_once('-')?;
        let cipher = Cipher::from_keyword(c)?;
        if cipher == Cipher::Null {
            return None;
        }
        let hash = if cipher.is_aead() { Hash::from_keyword(h.strip_prefix("prf")?)? } else { Hash::from_keyword(h)? };
        Some(Phase1Proposal { cipher, hash })
    }
}

impl fmt::Display for Phase2Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.integrity {
            Some(h) => write!(f, "{}-{}", self.cipher, h),
            None => write!(f, "{}", self.cipher),
        }
    }
}

impl Phase2Proposal {
    /// Parses one phase-2 proposal name.
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once('-') {
            None => {
                let cipher = Cipher::from_keyword(s)?;
                cipher.is_aead().then_some(Phase2Proposal { cipher, integrity: None })
            }
            Some((c, h)) => {
                let cipher = Cipher::from_keyword(c)?;
                if cipher.is_aead() {
                    return None;
                }
                Some(Phase2Proposal { cipher, integrity: Some(Hash::from_keyword(h)?) })
            }
        }
    }
}

fn proposals_from<T: PartialEq>(
    args: &[String],
    parse: impl Fn(&str) -> Option<T>,
    hint: &str,
) -> Result<Vec<T>, ValueError> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let p = parse(a).ok_or_else(|| ValueError::new(i, format!("invalid proposal {a:?}; {hint}")))?;
        if out.contains(&p) {
            return Err(ValueError::new(i, format!("proposal {a:?} is listed twice")));
        }
        out.push(p);
    }
    Ok(out)
}

/// Parses a phase-1 proposal list.
pub(crate) fn p1_proposals(args: &[String]) -> Result<Vec<Phase1Proposal>, ValueError> {
    proposals_from(args, Phase1Proposal::parse, P1_HINT)
}

/// Parses a phase-2 proposal list.
pub(crate) fn p2_proposals(args: &[String]) -> Result<Vec<Phase2Proposal>, ValueError> {
    proposals_from(args, Phase2Proposal::parse, P2_HINT)
}

/// Prints a proposal list.
pub(crate) fn display_vals<T: fmt::Display>(v: &[T]) -> Vec<Val> {
    v.iter().map(|p| Val::Word(p.to_string())).collect()
}

/// Diffie-Hellman groups FortiOS accepts in `dhgrp`.
pub const DH_GROUPS: &[u64] = &[1, 2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 27, 28, 29, 30, 31, 32];

/// Parses a `dhgrp` list.
pub(crate) fn dh_groups(args: &[String]) -> Result<Vec<u16>, ValueError> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let g = a.parse::<u64>().ok().filter(|g| DH_GROUPS.contains(g)).ok_or_else(|| {
            let list: Vec<String> = DH_GROUPS.iter().map(u64::to_string).collect();
            ValueError::new(i, format!("invalid DH group {a:?}; choose from: {}", list.join(" ")))
        })?;
        // DH_GROUPS entries are all below 65536.
        let g = g as u16;
        if out.contains(&g) {
            return Err(ValueError::new(i, format!("DH group {g} is listed twice")));
        }
        out.push(g);
    }
    Ok(out)
}

/// Decodes RFC 4648 base32 (case-insensitive, `=` padding and spaces ignored).
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for c in s.chars() {
        let v = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u64 - 'A' as u64,
            c @ '2'..='7' => c as u64 - '2' as u64 + 26,
            '=' | ' ' | '-' => continue,
            _ => return None,
        };
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Encodes bytes as RFC 4648 base32 without padding.
pub fn base32_encode(data: &[u8]) -> String {
    const ALPHA: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHA[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHA[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ipmask_forms() {
        let m = IpMask::from_args(&a(&["10.50.0.0", "255.255.255.0"])).unwrap();
        assert_eq!(m.prefix_len, 24);
        assert_eq!(IpMask::from_args(&a(&["10.50.0.0/24"])).unwrap(), m);
        assert!(IpMask::from_args(&a(&["10.0.0.0", "255.0.255.0"])).is_err());
        assert!(m.contains("10.50.0.9".parse().unwrap()));
        assert!(!m.contains("10.51.0.9".parse().unwrap()));
    }

    #[test]
    fn proposals_round_trip() {
        for s in ["aes128-sha256", "aes256gcm-prfsha384", "chacha20poly1305-prfsha256"] {
            assert_eq!(Phase1Proposal::parse(s).unwrap().to_string(), s);
        }
        for s in ["aes128-sha1", "aes128gcm", "chacha20poly1305", "null-sha256"] {
            assert_eq!(Phase2Proposal::parse(s).unwrap().to_string(), s);
        }
        assert!(Phase1Proposal::parse("aes128gcm").is_none());
        assert!(Phase2Proposal::parse("aes128gcm-sha1").is_none());
        assert!(Phase1Proposal::parse("des-md5").is_none());
    }

    #[test]
    fn base32_rfc4648_vectors() {
        // RFC 4648 §10 test vectors.
        for (plain, enc) in [
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(plain.as_bytes()), enc);
            assert_eq!(base32_decode(enc).unwrap(), plain.as_bytes());
        }
        assert_eq!(base32_decode("mzxw6ytboi======").unwrap(), b"foobar");
        assert!(base32_decode("MZ1").is_none());
    }

    #[test]
    fn secret_debug_masked() {
        let s = Secret::new("p@ssw0rd");
        assert_eq!(format!("{s:?}"), "Secret(****)");
        assert_eq!(s, Secret::new("p@ssw0rd"));
        assert_ne!(s, Secret::new("p@ssw0rD"));
    }
}
