//! Users, groups and one-time tokens: what IKE_AUTH checks.
//!
//! How to drive it: build a [`UserDb`] from a loaded [`Config`] and keep it for the life of the
//! gateway (it holds the per-user failure counters and the last token step used); call
//! [`UserDb::update`] after a configuration reload to keep that state. Every check takes the
//! current Unix time from the caller; nothing here reads a clock.
//!
//! - [`UserDb::verify_mschapv2`]: an EAP-MSCHAPv2 response. A user without a token is checked
//!   against NT-hash(password). A user with an active token is checked against
//!   NT-hash(password ‖ code) for each code valid now (±1 time step) — the seed's "password
//!   immediately followed by the token code"; if only the bare password matches, the answer is
//!   [`FailureReason::TokenNeeded`] so the caller can ask for the code in a second round.
//! - [`UserDb::verify_token_code`]: the code alone (second round, e.g. EAP-GTC).
//! - [`UserDb::verify_password`]: a clear-text password (or password ‖ code).
//! - [`UserDb::group_member`]: group membership.
//!
//! Each code is accepted at most once per user: after a success at time step S, codes of steps
//! up to S are refused (RFC 6238 §5.2). After `auth-lockout-threshold` consecutive failures the
//! user is refused for `auth-lockout-duration` seconds, and the failure says how long is left.
//! User names are matched case-insensitively, as FortiOS does by default.

pub mod mschapv2;
pub mod totp;

use std::collections::{HashMap, HashSet};
use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::config::value::base32_decode;
use crate::config::{Config, Secret, TokenStatus, TotpAlgorithm, TwoFactor};

/// Lock-out after repeated failures (`config user setting`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures that lock a user.
    pub threshold: u32,
    /// Seconds the lock lasts.
    pub duration_secs: u64,
}

/// Why an authentication was refused (for the log; the peer only learns "failed").
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// No such user.
    UnknownUser,
    /// The user is disabled (`set status disable`).
    Disabled,
    /// Too many failures; refused without checking for this many more seconds.
    LockedOut {
        /// Seconds until the lock ends.
        remaining_secs: u64,
    },
    /// Wrong password (or password ‖ code); `locked_for` is set when this failure locked the user.
    BadCredentials {
        /// Seconds of lock-out this failure started.
        locked_for: Option<u64>,
    },
    /// The password is right but the user has a token: the code is needed too.
    TokenNeeded,
    /// The code was right but has been used already.
    CodeReused {
        /// Seconds of lock-out this failure started.
        locked_for: Option<u64>,
    },
    /// The user's token is not activated (or is locked, or missing).
    TokenNotActive,
    /// The user has no token, so a code alone cannot be checked.
    NoToken,
}

/// A refused authentication.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("user {user:?}: {reason}")]
pub struct AuthFailure {
    /// The user name as given.
    pub user: String,
    /// Why.
    pub reason: FailureReason,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lock = |f: &mut fmt::Formatter<'_>, l: &Option<u64>| match l {
            Some(s) => write!(f, "; now locked out for {s} s"),
            None => Ok(()),
        };
        match self {
            FailureReason::UnknownUser => f.write_str("unknown user"),
            FailureReason::Disabled => f.write_str("user is disabled"),
            FailureReason::LockedOut { remaining_secs } => {
                write!(f, "locked out after repeated failures, {remaining_secs} s left")
            }
            FailureReason::BadCredentials { locked_for } => {
                f.write_str("wrong password or token code")?;
                lock(f, locked_for)
            }
            FailureReason::TokenNeeded => f.write_str("two-factor token is needed"),
            FailureReason::CodeReused { locked_for } => {
                f.write_str("token code has already been used")?;
                lock(f, locked_for)
            }
            FailureReason::TokenNotActive => f.write_str("token is not activated"),
            FailureReason::NoToken => f.write_str("user has no token"),
        }
    }
}

/// An accepted EAP-MSCHAPv2 response.
pub struct MsChapSuccess {
    /// The user's canonical name (as configured).
    pub user: String,
    /// `S=` and 40 hex digits, for the MSCHAPv2 Success packet.
    pub authenticator_response: String,
    /// The 64-byte MSK for the IKEv2 AUTH payload.
    pub msk: Zeroizing<[u8; 64]>,
    /// Whether a token code was part of the password.
    pub used_token: bool,
    /// Only the bare password matched for a user with a token (see
    /// [`UserDb::verify_mschapv2_first_factor`]): the code must follow in a second round.
    pub token_needed: bool,
}

impl fmt::Debug for MsChapSuccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsChapSuccess")
            .field("user", &self.user)
            .field("authenticator_response", &self.authenticator_response)
            .field("msk", &"****")
            .field("used_token", &self.used_token)
            .field("token_needed", &self.token_needed)
            .finish()
    }
}

/// A token as the authenticator uses it.
struct TokenRecord {
    seed: Zeroizing<Vec<u8>>,
    algorithm: TotpAlgorithm,
    digits: u32,
    period: u64,
    active: bool,
}

struct UserRecord {
    name: String,
    password: Secret,
    enabled: bool,
    token: Option<TokenRecord>,
    /// Two-factor is configured (even if the token is missing or inactive).
    two_factor: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct UserState {
    failures: u32,
    locked_until: u64,
    last_step: Option<u64>,
}

/// Users, groups and tokens from the configuration, with the authentication state.
pub struct UserDb {
    users: HashMap<String, UserRecord>,
    /// Members by group; a set, so a login in a group of thousands is one lookup.
    groups: HashMap<String, HashSet<String>>,
    state: HashMap<String, UserState>,
    policy: LockoutPolicy,
    candidates_checked: u64,
}

impl fmt::Debug for UserDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserDb")
            .field("users", &self.users.len())
            .field("groups", &self.groups.len())
            .field("policy", &self.policy)
            .finish()
    }
}

/// The candidate time steps for `now`: the current one first, then one step of drift either way
/// (RFC 6238 §5.2 recommends at most one step of network delay).
fn candidate_steps(now: u64, period: u64) -> impl Iterator<Item = u64> {
    let s = totp::time_step(now, period);
    [Some(s), s.checked_sub(1), s.checked_add(1)].into_iter().flatten()
}

enum Check {
    /// `index` is the position of the accepted candidate in the order `matches` saw them.
    Ok {
        step: Option<u64>,
        index: usize,
    },
    Reused,
    /// Only the bare password (at `index`) matched for a user with a token.
    BarePassword {
        index: usize,
    },
    Bad,
}

/// Secrets checked per authentication attempt, whatever its outcome: unknown, disabled and
/// locked-out users, wrong and right passwords all cost the same (a user with a token has three
/// password ‖ code candidates and the bare password; others are padded with dummy candidates).
pub const CANDIDATES_PER_ATTEMPT: usize = 4;

/// What a dummy candidate stands for: never accepted, even when it matches.
const DUMMY_SECRET: &str = "\u{1}dialgate-dummy-candidate";
/// Seed of the dummy token whose codes are computed for users without one (same HOTP work).
const DUMMY_SEED: [u8; 20] = [0x5a; 20];

#[derive(Clone, Copy)]
enum Role {
    Code(u64),
    Bare,
    Dummy,
}

impl UserDb {
    /// Builds the database from a configuration (tokens with a seed that is not base32 are
    /// treated as absent; [`crate::config::load_str`] refuses such seeds anyway).
    pub fn from_config(cfg: &Config) -> Self {
        let mut db = UserDb {
            users: HashMap::new(),
            groups: HashMap::new(),
            state: HashMap::new(),
            policy: LockoutPolicy { threshold: 3, duration_secs: 60 },
            candidates_checked: 0,
        };
        db.update(cfg);
        db
    }

    /// Replaces users, groups and tokens from `cfg`, keeping failure counters, lock-outs and used
    /// codes of users that still exist.
    pub fn update(&mut self, cfg: &Config) {
        self.policy = LockoutPolicy {
            threshold: cfg.user_setting.auth_lockout_threshold.max(1),
            duration_secs: u64::from(cfg.user_setting.auth_lockout_duration),
        };
        self.users.clear();
        for u in &cfg.users {
            let token = (u.two_factor == TwoFactor::Fortitoken)
                .then(|| cfg.fortitokens.iter().find(|t| t.serial == u.fortitoken))
                .flatten()
                .and_then(|t| {
                    let seed = Zeroizing::new(base32_decode(t.seed.as_ref()?.expose())?);
                    Some(TokenRecord {
                        seed,
                        algorithm: t.algorithm,
                        digits: t.digits,
                        period: u64::from(t.period),
                        active: t.status == TokenStatus::Active,
                    })
                });
            let rec = UserRecord {
                name: u.name.clone(),
                password: u.passwd.clone().unwrap_or_default(),
                enabled: u.status.0,
                token,
                two_factor: u.two_factor == TwoFactor::Fortitoken,
            };
            self.users.insert(u.name.to_lowercase(), rec);
        }
        self.state.retain(|k, _| self.users.contains_key(k));
        self.groups = cfg.groups.iter().map(|g| (g.name.clone(), g.member.iter().cloned().collect())).collect();
    }

    /// Secrets hashed and compared so far by [`UserDb::verify_mschapv2`] and
    /// [`UserDb::verify_password`]: [`CANDIDATES_PER_ATTEMPT`] per call, whatever the outcome
    /// (the structural check that failure and success paths do the same work).
    pub fn candidates_checked(&self) -> u64 {
        self.candidates_checked
    }

    /// The lock-out policy in force.
    pub fn lockout_policy(&self) -> LockoutPolicy {
        self.policy
    }

    /// Whether `user` is a member of `group`.
    pub fn group_member(&self, group: &str, user: &str) -> bool {
        let Some(rec) = self.users.get(&user.to_lowercase()) else { return false };
        self.groups.get(group).is_some_and(|m| m.contains(&rec.name))
    }

    /// Whether `user` must give a token code.
    pub fn needs_token(&self, user: &str) -> bool {
        self.users.get(&user.to_lowercase()).is_some_and(|u| u.two_factor)
    }

    /// Seconds of lock-out left for `user` at `now` (0 when not locked).
    pub fn lockout_remaining(&self, user: &str, now_unix: u64) -> u64 {
        self.state.get(&user.to_lowercase()).map_or(0, |s| s.locked_until.saturating_sub(now_unix))
    }

    /// Checks a user exists, is enabled and not locked out; returns its key.
    fn precheck(&self, user: &str, now: u64) -> Result<String, AuthFailure> {
        let key = user.to_lowercase();
        let fail = |reason| Err(AuthFailure { user: user.to_string(), reason });
        let Some(rec) = self.users.get(&key) else { return fail(FailureReason::UnknownUser) };
        if !rec.enabled {
            return fail(FailureReason::Disabled);
        }
        let remaining = self.lockout_remaining(user, now);
        if remaining > 0 {
            return fail(FailureReason::LockedOut { remaining_secs: remaining });
        }
        Ok(key)
    }

    /// Counts a failure; returns the lock-out it started, if any.
    fn failed(&mut self, key: &str, now: u64) -> Option<u64> {
        let policy = self.policy;
        let st = self.state.entry(key.to_string()).or_default();
        st.failures += 1;
        if st.failures >= policy.threshold {
            st.failures = 0;
            st.locked_until = now.saturating_add(policy.duration_secs);
            return Some(policy.duration_secs);
        }
        None
    }

    fn succeeded(&mut self, key: &str, step: Option<u64>) {
        let st = self.state.entry(key.to_string()).or_default();
        st.failures = 0;
        if step.is_some() {
            st.last_step = step;
        }
    }

    /// Runs `matches(secret)` over exactly [`CANDIDATES_PER_ATTEMPT`] secrets: the password
    /// alone for a user without a token, password ‖ code for each valid code and the bare
    /// password for a user with one, dummies for the rest (and for everything when `key` is
    /// `None`: unknown, disabled or locked-out users). Every candidate is tried even after a
    /// match, and as many HOTP codes are computed for every user, so the time taken does not
    /// tell which check failed.
    fn check(
        &self,
        key: Option<&str>,
        now: u64,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Result<Check, FailureReason> {
        let rec = key.and_then(|k| self.users.get(k));
        let pw = rec.map_or(DUMMY_SECRET, |r| r.password.expose());
        let tok = rec.filter(|r| r.two_factor).and_then(|r| r.token.as_ref()).filter(|t| t.active);
        let (seed, alg, digits, period): (&[u8], _, _, _) = match tok {
            Some(t) => (&t.seed, t.algorithm, t.digits, t.period),
            None => (&DUMMY_SEED, TotpAlgorithm::Sha1, 6, 30),
        };
        let mut cands: Vec<(Zeroizing<String>, Role)> = Vec::with_capacity(CANDIDATES_PER_ATTEMPT);
        for step in candidate_steps(now, period) {
            let code = totp::format_code(totp::hotp(alg, seed, step, digits), digits);
            if tok.is_some() {
                let mut c = Zeroizing::new(String::with_capacity(pw.len() + code.len()));
                c.push_str(pw);
                c.push_str(&code);
                cands.push((c, Role::Code(step)));
            }
        }
        if rec.is_some() {
            cands.push((Zeroizing::new(pw.to_string()), Role::Bare));
        }
        while cands.len() < CANDIDATES_PER_ATTEMPT {
            cands.push((Zeroizing::new(DUMMY_SECRET.to_string()), Role::Dummy));
        }
        // No short circuit: every candidate is hashed and compared.
        let hits: Vec<bool> = cands.iter().map(|(c, _)| matches(c)).collect();
        let Some(rec) = rec else { return Err(FailureReason::UnknownUser) };
        let bare = cands.iter().zip(&hits).any(|((_, r), &h)| h && matches!(r, Role::Bare));
        if !rec.two_factor {
            let index = cands.iter().position(|(_, r)| matches!(r, Role::Bare)).unwrap_or(0);
            return Ok(if bare { Check::Ok { step: None, index } } else { Check::Bad });
        }
        if tok.is_none() {
            // Only tell "not activated" to someone who knows the password.
            return if bare { Err(FailureReason::TokenNotActive) } else { Ok(Check::Bad) };
        }
        let last = key.and_then(|k| self.state.get(k)).and_then(|s| s.last_step);
        let mut reused = false;
        for (index, ((_, role), &hit)) in cands.iter().zip(&hits).enumerate() {
            if let (Role::Code(step), true) = (role, hit) {
                if last.is_some_and(|l| *step <= l) {
                    reused = true;
                } else {
                    return Ok(Check::Ok { step: Some(*step), index });
                }
            }
        }
        if reused {
            return Ok(Check::Reused);
        }
        let index = cands.iter().position(|(_, r)| matches!(r, Role::Bare)).unwrap_or(0);
        Ok(if bare { Check::BarePassword { index } } else { Check::Bad })
    }

    /// Turns a check into the result, updating counters.
    fn settle(
        &mut self,
        user: &str,
        key: &str,
        now: u64,
        r: Result<Check, FailureReason>,
    ) -> Result<bool, AuthFailure> {
        let reason = match r {
            Ok(Check::Ok { step, .. }) => {
                self.succeeded(key, step);
                return Ok(step.is_some());
            }
            Ok(Check::Bad) => FailureReason::BadCredentials { locked_for: self.failed(key, now) },
            Ok(Check::Reused) => FailureReason::CodeReused { locked_for: self.failed(key, now) },
            // The password was right: not a guessing failure, so not counted.
            Ok(Check::BarePassword { .. }) => FailureReason::TokenNeeded,
            Err(reason) => reason,
        };
        Err(AuthFailure { user: user.to_string(), reason })
    }

    /// Verifies an EAP-MSCHAPv2 response (RFC 2759) from `user` (the name in the Response packet).
    pub fn verify_mschapv2(
        &mut self,
        user: &str,
        auth_challenge: &[u8; 16],
        peer_challenge: &[u8; 16],
        nt_response: &[u8; 24],
        now_unix: u64,
    ) -> Result<MsChapSuccess, AuthFailure> {
        self.mschapv2(user, auth_challenge, peer_challenge, nt_response, now_unix, false)
    }

    /// Like [`UserDb::verify_mschapv2`], but when only the bare password of a user with a token
    /// matched, succeeds with [`MsChapSuccess::token_needed`] set instead of failing with
    /// [`FailureReason::TokenNeeded`]: the caller must then get the code in a second round
    /// ([`UserDb::verify_token_code`]) before letting the user in.
    pub fn verify_mschapv2_first_factor(
        &mut self,
        user: &str,
        auth_challenge: &[u8; 16],
        peer_challenge: &[u8; 16],
        nt_response: &[u8; 24],
        now_unix: u64,
    ) -> Result<MsChapSuccess, AuthFailure> {
        self.mschapv2(user, auth_challenge, peer_challenge, nt_response, now_unix, true)
    }

    fn mschapv2(
        &mut self,
        user: &str,
        auth_challenge: &[u8; 16],
        peer_challenge: &[u8; 16],
        nt_response: &[u8; 24],
        now_unix: u64,
        first_factor: bool,
    ) -> Result<MsChapSuccess, AuthFailure> {
        // The precheck's verdict waits until the candidates were tried: refusing an unknown,
        // disabled or locked-out user early would be faster than checking a password.
        let pre = self.precheck(user, now_unix);
        let mut hashes: Vec<Zeroizing<[u8; 16]>> = Vec::with_capacity(CANDIDATES_PER_ATTEMPT);
        let r = self.check(pre.as_deref().ok(), now_unix, |secret| {
            let h = mschapv2::nt_password_hash(secret);
            let ok = mschapv2::check_nt_response(auth_challenge, peer_challenge, user, &h, nt_response);
            hashes.push(h);
            ok
        });
        self.candidates_checked += hashes.len() as u64;
        let key = pre?;
        let winner = match &r {
            Ok(Check::Ok { index, .. } | Check::BarePassword { index }) => hashes.get(*index).cloned(),
            _ => None,
        };
        // `winner` holds the bare password's hash when the result is TokenNeeded: only a
        // first-factor success below uses it.
        let (used_token, token_needed) = match self.settle(user, &key, now_unix, r) {
            Ok(used) => (used, false),
            Err(AuthFailure { reason: FailureReason::TokenNeeded, .. }) if first_factor => (false, true),
            Err(e) => return Err(e),
        };
        let Some(hash) = winner else {
            return Err(AuthFailure {
                user: user.to_string(),
                reason: FailureReason::BadCredentials { locked_for: None },
            });
        };
        let name = self.users.get(&key).map_or_else(|| user.to_string(), |u| u.name.clone());
        Ok(MsChapSuccess {
            user: name,
            authenticator_response: mschapv2::authenticator_response(
                &hash,
                nt_response,
                peer_challenge,
                auth_challenge,
                user,
            ),
            msk: mschapv2::msk(&hash, nt_response),
            used_token,
            token_needed,
        })
    }

    /// Verifies a clear-text password (password ‖ code for a user with a token); returns whether a
    /// code was used.
    pub fn verify_password(&mut self, user: &str, password: &str, now_unix: u64) -> Result<bool, AuthFailure> {
        let pre = self.precheck(user, now_unix);
        let mut n = 0u64;
        let r = self.check(pre.as_deref().ok(), now_unix, |secret| {
            n += 1;
            bool::from(secret.as_bytes().ct_eq(password.as_bytes()))
        });
        self.candidates_checked += n;
        let key = pre?;
        self.settle(user, &key, now_unix, r)
    }

    /// Verifies a token code alone (after the password was verified in an earlier round).
    pub fn verify_token_code(&mut self, user: &str, code: &str, now_unix: u64) -> Result<(), AuthFailure> {
        let key = self.precheck(user, now_unix)?;
        let fail = |reason| AuthFailure { user: user.to_string(), reason };
        let (seed, alg, digits, period) = match self.users.get(&key) {
            Some(UserRecord { two_factor: false, .. }) | None => return Err(fail(FailureReason::NoToken)),
            Some(UserRecord { token: Some(t), .. }) if t.active => (t.seed.clone(), t.algorithm, t.digits, t.period),
            Some(_) => return Err(fail(FailureReason::TokenNotActive)),
        };
        let last = self.state.get(&key).and_then(|s| s.last_step);
        let mut result = Check::Bad;
        for step in candidate_steps(now_unix, period) {
            let want = totp::format_code(totp::hotp(alg, &seed, step, digits), digits);
            // No early exit: every step is compared, matched or not; a fresh match wins.
            if bool::from(want.as_bytes().ct_eq(code.as_bytes())) && !matches!(result, Check::Ok { .. }) {
                result = if last.is_some_and(|l| step <= l) {
                    Check::Reused
                } else {
                    Check::Ok { step: Some(step), index: 0 }
                };
            }
        }
        self.settle(user, &key, now_unix, Ok(result)).map(|_| ())
    }
}
