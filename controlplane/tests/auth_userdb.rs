//! `UserDb`: password ‖ code over MSCHAPv2, one use per code, drift window, lock-out, groups.

use dialgate_controlplane::auth::mschapv2::{authenticator_response, generate_nt_response, msk, nt_password_hash};
use dialgate_controlplane::auth::totp::{format_code, totp};
use dialgate_controlplane::auth::{FailureReason, UserDb};
use dialgate_controlplane::config::{load_str, TotpAlgorithm};

// base32("12345678901234567890"), the RFC 4226/6238 test secret.
const SEED_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const SEED: &[u8] = b"12345678901234567890";
const T0: u64 = 1_700_000_010; // 10 s into a 30 s step

fn conf(token_status: &str) -> String {
    format!(
        r#"
config user fortitoken
    edit "FTKMOB0000000001"
        set status {token_status}
        set seed "{SEED_B32}"
    next
end
config user setting
    set auth-lockout-threshold 3
    set auth-lockout-duration 60
end
config user local
    edit "Test"
        set type password
        set two-factor fortitoken
        set fortitoken "FTKMOB0000000001"
        set passwd "p@ssw0rd"
    next
    edit "plain"
        set passwd "clientPass"
    next
    edit "off"
        set passwd "x"
        set status disable
    next
end
config user group
    edit "VPN_Users"
        set member "Test" "plain"
    next
end
"#
    )
}

fn db(status: &str) -> UserDb {
    UserDb::from_config(&load_str(&conf(status), "t.conf").expect("config loads"))
}

const AC: [u8; 16] = [0x5B, 0x5D, 0x7C, 0x7D, 0x7B, 0x3F, 0x2F, 0x3E, 0x3C, 0x2C, 0x60, 0x21, 0x32, 0x26, 0x26, 0x28];
const PC: [u8; 16] = [0x21, 0x40, 0x23, 0x24, 0x25, 0x5E, 0x26, 0x2A, 0x28, 0x29, 0x5F, 0x2B, 0x3A, 0x33, 0x7C, 0x7E];

fn code_at(t: u64) -> String {
    format_code(totp(TotpAlgorithm::Sha1, SEED, t, 30, 6), 6)
}

fn nt(user: &str, pw: &str) -> [u8; 24] {
    generate_nt_response(&AC, &PC, user, pw)
}

fn reason<T: std::fmt::Debug>(r: Result<T, dialgate_controlplane::auth::AuthFailure>) -> FailureReason {
    r.expect_err("must fail").reason
}

#[test]
fn password_followed_by_code_once() {
    let mut db = db("active");
    let pw = format!("p@ssw0rd{}", code_at(T0));
    let resp = nt("Test", &pw);
    let ok = db.verify_mschapv2("Test", &AC, &PC, &resp, T0).expect("password||code accepted");
    assert!(ok.used_token);
    assert_eq!(ok.user, "Test");
    let h = nt_password_hash(&pw);
    assert_eq!(ok.authenticator_response, authenticator_response(&h, &resp, &PC, &AC, "Test"));
    assert_eq!(&ok.msk[..], &msk(&h, &resp)[..]);
    assert!(!format!("{ok:?}").contains(&hex::encode(&ok.msk[..16])));
    // The same code again, even a few seconds later: refused.
    assert!(matches!(reason(db.verify_mschapv2("Test", &AC, &PC, &resp, T0 + 5)), FailureReason::CodeReused { .. }));
    // The previous step's code is older than the one used: refused too (RFC 6238 §5.2).
    let older = nt("Test", &format!("p@ssw0rd{}", code_at(T0 - 30)));
    assert!(matches!(reason(db.verify_mschapv2("Test", &AC, &PC, &older, T0 + 5)), FailureReason::CodeReused { .. }));
    // The next step's code is fresh.
    let next = nt("Test", &format!("p@ssw0rd{}", code_at(T0 + 30)));
    assert!(db.verify_mschapv2("Test", &AC, &PC, &next, T0 + 31).is_ok());
}

#[test]
fn drift_window_is_one_step() {
    let mut db = db("active");
    for (dt, ok) in [(-30i64, true), (30, true), (60, false), (-60, false)] {
        let mut db2 = self::db("active");
        let t = (T0 as i64 + dt) as u64;
        let r = nt("Test", &format!("p@ssw0rd{}", code_at(t)));
        assert_eq!(db2.verify_mschapv2("Test", &AC, &PC, &r, T0).is_ok(), ok, "drift {dt}");
    }
    // Codes of 8 digits for another token length would not match a 6-digit token.
    let r = nt("Test", &format!("p@ssw0rd{}", format_code(totp(TotpAlgorithm::Sha1, SEED, T0, 30, 8), 8)));
    assert!(db.verify_mschapv2("Test", &AC, &PC, &r, T0).is_err());
}

#[test]
fn bare_password_needs_token_and_is_not_a_failure() {
    let mut db = db("active");
    for _ in 0..5 {
        let r = nt("Test", "p@ssw0rd");
        assert_eq!(reason(db.verify_mschapv2("Test", &AC, &PC, &r, T0)), FailureReason::TokenNeeded);
    }
    assert_eq!(db.lockout_remaining("Test", T0), 0);
    assert!(db.needs_token("test"));
    assert!(!db.needs_token("plain"));
}

#[test]
fn first_factor_then_token_code_in_a_second_round() {
    let mut db = db("active");
    let r = nt("Test", "p@ssw0rd");
    let ok = db.verify_mschapv2_first_factor("Test", &AC, &PC, &r, T0).unwrap();
    assert!(ok.token_needed && !ok.used_token);
    // The MSK is the bare password's (the client typed only that).
    assert_eq!(ok.msk, db.verify_mschapv2_first_factor("Test", &AC, &PC, &r, T0).unwrap().msk);
    let wrong = nt("Test", "wrong");
    assert!(db.verify_mschapv2_first_factor("Test", &AC, &PC, &wrong, T0).is_err());
    let code = code_at(T0);
    db.verify_token_code("Test", &code, T0).unwrap();
    assert!(matches!(reason(db.verify_token_code("Test", &code, T0)), FailureReason::CodeReused { .. }));
    // password ‖ code needs no second round.
    let r = nt("Test", &format!("p@ssw0rd{}", code_at(T0 + 30)));
    let ok = db.verify_mschapv2_first_factor("Test", &AC, &PC, &r, T0 + 30).unwrap();
    assert!(!ok.token_needed && ok.used_token);
}

#[test]
fn inactive_token_refused() {
    let mut db = db("new");
    let r = nt("Test", "p@ssw0rd");
    assert_eq!(reason(db.verify_mschapv2("Test", &AC, &PC, &r, T0)), FailureReason::TokenNotActive);
    let r = nt("Test", &format!("p@ssw0rd{}", code_at(T0)));
    assert!(db.verify_mschapv2("Test", &AC, &PC, &r, T0).is_err());
    assert_eq!(reason(db.verify_token_code("Test", &code_at(T0), T0)), FailureReason::TokenNotActive);
}

#[test]
fn lockout_after_threshold_with_time_left() {
    let mut db = db("active");
    let bad = nt("Test", "wrong123456");
    assert_eq!(
        reason(db.verify_mschapv2("Test", &AC, &PC, &bad, T0)),
        FailureReason::BadCredentials { locked_for: None }
    );
    assert_eq!(
        reason(db.verify_mschapv2("Test", &AC, &PC, &bad, T0)),
        FailureReason::BadCredentials { locked_for: None }
    );
    assert_eq!(
        reason(db.verify_mschapv2("Test", &AC, &PC, &bad, T0)),
        FailureReason::BadCredentials { locked_for: Some(60) }
    );
    // Right credentials while locked: refused with the time left.
    let good = nt("Test", &format!("p@ssw0rd{}", code_at(T0 + 20)));
    let f = db.verify_mschapv2("Test", &AC, &PC, &good, T0 + 20).unwrap_err();
    assert_eq!(f.reason, FailureReason::LockedOut { remaining_secs: 40 });
    assert_eq!(f.to_string(), "user \"Test\": locked out after repeated failures, 40 s left");
    // After the lock ends the same credentials pass.
    let good = nt("Test", &format!("p@ssw0rd{}", code_at(T0 + 60)));
    assert!(db.verify_mschapv2("Test", &AC, &PC, &good, T0 + 60).is_ok());
}

#[test]
fn plain_user_rfc2759_vector() {
    let mut db = db("active");
    // RFC 2759 §9.2: user "User", password "clientPass"; our user is "plain" with that password.
    let r = nt("plain", "clientPass");
    let ok = db.verify_mschapv2("plain", &AC, &PC, &r, T0).expect("plain password");
    assert!(!ok.used_token);
    assert!(ok.authenticator_response.starts_with("S=") && ok.authenticator_response.len() == 42);
    // Names are matched case-insensitively; the hash uses the name as sent.
    let r = nt("PLAIN", "clientPass");
    assert_eq!(db.verify_mschapv2("PLAIN", &AC, &PC, &r, T0).unwrap().user, "plain");
    assert_eq!(reason(db.verify_mschapv2("nobody", &AC, &PC, &r, T0)), FailureReason::UnknownUser);
    assert_eq!(reason(db.verify_mschapv2("off", &AC, &PC, &nt("off", "x"), T0)), FailureReason::Disabled);
    assert_eq!(reason(db.verify_token_code("plain", "123456", T0)), FailureReason::NoToken);
}

#[test]
fn code_alone_and_clear_password() {
    let mut db = db("active");
    assert!(db.verify_token_code("Test", &code_at(T0), T0).is_ok());
    assert!(matches!(reason(db.verify_token_code("Test", &code_at(T0), T0)), FailureReason::CodeReused { .. }));
    assert!(matches!(reason(db.verify_token_code("Test", "000000x", T0 + 30)), FailureReason::BadCredentials { .. }));
    let mut db = self::db("active");
    assert_eq!(db.verify_password("Test", &format!("p@ssw0rd{}", code_at(T0)), T0), Ok(true));
    assert_eq!(reason(db.verify_password("Test", "p@ssw0rd", T0)), FailureReason::TokenNeeded);
    assert_eq!(db.verify_password("plain", "clientPass", T0), Ok(false));
}

#[test]
fn groups_and_reload_keep_state() {
    let mut db = db("active");
    assert!(db.group_member("VPN_Users", "Test"));
    assert!(db.group_member("VPN_Users", "test"));
    assert!(!db.group_member("VPN_Users", "off"));
    assert!(!db.group_member("Other", "Test"));
    let r = nt("Test", &format!("p@ssw0rd{}", code_at(T0)));
    db.verify_mschapv2("Test", &AC, &PC, &r, T0).unwrap();
    db.update(&load_str(&conf("active"), "t.conf").unwrap());
    // The used code stays used across a reload.
    assert!(db.verify_mschapv2("Test", &AC, &PC, &r, T0).is_err());
}
