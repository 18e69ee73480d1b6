#![allow(dead_code, unreachable_pub, missing_docs, clippy::type_complexity)]
pub mod initiator;
pub mod mschap;

use std::collections::HashMap;
use std::net::Ipv4Addr;

use dialgate_ike::crypto::Entropy;
use dialgate_ike::responder::{AddressPool, AuthReject, MsChapOk, UserVerifier};
use zeroize::Zeroizing;

/// Deterministic xorshift64 randomness.
pub struct TestRng(pub u64);

impl Entropy for TestRng {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0 >> 24) as u8;
        }
    }
}

/// Users with clear-text passwords, checked with real MS-CHAPv2; the third field holds token
/// codes of users with a token.
pub struct TestUsers(pub HashMap<String, String>, pub Vec<u64>, pub Tokens);

/// Valid token codes per user, and the codes already used.
#[derive(Default)]
pub struct Tokens {
    pub codes: HashMap<String, Vec<String>>,
    pub used: Vec<String>,
}

impl UserVerifier for TestUsers {
    fn verify_mschapv2(
        &mut self,
        user: &str,
        auth_challenge: &[u8; 16],
        peer_challenge: &[u8; 16],
        nt_response: &[u8; 24],
        now_unix: u64,
    ) -> Result<MsChapOk, AuthReject> {
        self.1.push(now_unix);
        let pw = self.0.get(user).ok_or(AuthReject { reason: "unknown user".into() })?.clone();
        let mut token_needed = false;
        let mut pw = pw;
        if let Some(codes) = self.2.codes.get(user) {
            let fresh = codes.iter().filter(|c| !self.2.used.contains(c));
            match fresh
                .map(|c| format!("{pw}{c}"))
                .find(|full| mschap::nt_response(auth_challenge, peer_challenge, user, full) == *nt_response)
            {
                Some(full) => {
                    self.2.used.push(full[pw.len()..].to_string());
                    pw = full;
                }
                None => token_needed = true,
            }
        }
        let pw = &pw;
        if mschap::nt_response(auth_challenge, peer_challenge, user, pw) != *nt_response {
            return Err(AuthReject { reason: "bad credentials".into() });
        }
        Ok(MsChapOk {
            token_needed,
            authenticator_response: mschap::authenticator_response(
                pw,
                nt_response,
                peer_challenge,
                auth_challenge,
                user,
            ),
            msk: Zeroizing::new(mschap::msk(pw, nt_response)),
        })
    }

    fn verify_token(&mut self, user: &str, code: &str, now_unix: u64) -> Result<(), AuthReject> {
        self.1.push(now_unix);
        let Some(codes) = self.2.codes.get(user) else { return Err(AuthReject { reason: "user has no token".into() }) };
        if !codes.iter().any(|c| c == code) {
            return Err(AuthReject { reason: "wrong token code".into() });
        }
        if self.2.used.iter().any(|c| c == code) {
            return Err(AuthReject { reason: "token code has already been used".into() });
        }
        self.2.used.push(code.to_string());
        Ok(())
    }
}

/// A contiguous pool like `ipv4-start-ip`/`ipv4-end-ip`.
pub struct TestPool {
    pub free: Vec<Ipv4Addr>,
    pub used: Vec<Ipv4Addr>,
}

impl TestPool {
    pub fn range(start: Ipv4Addr, end: Ipv4Addr) -> Self {
        let free = (u32::from(start)..=u32::from(end)).rev().map(Ipv4Addr::from).collect();
        Self { free, used: vec![] }
    }
}

impl AddressPool for TestPool {
    fn allocate(&mut self, _user: &str) -> Option<Ipv4Addr> {
        let a = self.free.pop()?;
        self.used.push(a);
        Some(a)
    }
    fn release(&mut self, addr: Ipv4Addr) {
        self.used.retain(|a| *a != addr);
        self.free.push(addr);
    }
}
