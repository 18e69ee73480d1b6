//! Brute-force timing: what an EAP-MSCHAPv2 check costs on each path, so that the time a
//! refusal takes does not tell an attacker which check failed.
//!
//! `UserDb::verify_mschapv2` over `examples/dialgate.conf` (user "Test" with a TOTP token, plus a
//! user without a token), one fresh database per iteration (built outside the timed part):
//! unknown user, disabled user, locked-out user, wrong password, right password without the
//! code, right password with a wrong code, right password ‖ code, a reused code; and for the
//! user without a token a right and a wrong password. Every path hashes and compares the same
//! number of candidates (`auth::CANDIDATES_PER_ATTEMPT`; the tests count them), so the medians
//! should agree within noise; the success path additionally derives the authenticator
//! response and the MSK.
//!
//! Output: criterion statistics, then a table of medians with each path's ratio to the
//! wrong-password path.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use dialgate_controlplane::auth::mschapv2::generate_nt_response;
use dialgate_controlplane::auth::totp::{format_code, totp};
use dialgate_controlplane::auth::UserDb;
use dialgate_controlplane::config::{load_str, value::base32_decode, Config};

const EXAMPLE: &str = include_str!("../../examples/dialgate.conf");
const AC: [u8; 16] = [7; 16];
const PC: [u8; 16] = [9; 16];
const T0: u64 = 1_700_000_010;

fn config() -> Config {
    let text = EXAMPLE.replace(
        "config user group",
        "config user local\n    edit \"plain\"\n        set passwd \"clientPass\"\n    next\n    edit \"off\"\n        set passwd \"x\"\n        set status disable\n    next\nend\nconfig user group",
    );
    load_str(&text, "bench.conf").expect("bench config")
}

fn code(cfg: &Config, now: u64) -> String {
    let t = &cfg.fortitokens[0];
    let seed = base32_decode(t.seed.as_ref().expect("seed").expose()).expect("base32");
    format_code(totp(t.algorithm, &seed, now, u64::from(t.period), t.digits), t.digits)
}

/// One timed case: the user and password sent, and how to prepare the database first.
struct Case {
    name: &'static str,
    user: &'static str,
    password: String,
    prepare: fn(&mut UserDb, &Config),
}

fn nothing(_: &mut UserDb, _: &Config) {}

fn lock_test(db: &mut UserDb, _: &Config) {
    for _ in 0..db.lockout_policy().threshold {
        let nt = generate_nt_response(&AC, &PC, "Test", "guess");
        let _ = db.verify_mschapv2("Test", &AC, &PC, &nt, T0);
    }
    assert!(db.lockout_remaining("Test", T0) > 0);
}

fn use_code(db: &mut UserDb, cfg: &Config) {
    let pw = format!("p@ssw0rd{}", code(cfg, T0));
    let nt = generate_nt_response(&AC, &PC, "Test", &pw);
    assert!(db.verify_mschapv2("Test", &AC, &PC, &nt, T0).is_ok());
}

fn main() {
    let mut crit = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
        .configure_from_args();
    let cfg = config();
    let right = format!("p@ssw0rd{}", code(&cfg, T0));
    let wrong_code = format!("p@ssw0rd{}", if code(&cfg, T0) == "000000" { "111111" } else { "000000" });
    let cases = vec![
        Case { name: "unknown-user", user: "nobody", password: "whatever".into(), prepare: nothing },
        Case { name: "disabled-user", user: "off", password: "x".into(), prepare: nothing },
        Case { name: "locked-out", user: "Test", password: right.clone(), prepare: lock_test },
        Case { name: "wrong-password", user: "Test", password: "wrong-password".into(), prepare: nothing },
        Case { name: "password-no-code", user: "Test", password: "p@ssw0rd".into(), prepare: nothing },
        Case { name: "wrong-code", user: "Test", password: wrong_code, prepare: nothing },
        Case { name: "reused-code", user: "Test", password: right.clone(), prepare: use_code },
        Case { name: "right-password-code", user: "Test", password: right, prepare: nothing },
        Case { name: "no-token-right", user: "plain", password: "clientPass".into(), prepare: nothing },
        Case { name: "no-token-wrong", user: "plain", password: "clientPas".into(), prepare: nothing },
    ];
    let mut g = crit.benchmark_group("auth/verify_mschapv2");
    for c in &cases {
        let nt = generate_nt_response(&AC, &PC, c.user, &c.password);
        g.bench_function(c.name, |b| {
            b.iter_batched(
                || {
                    let mut db = UserDb::from_config(&cfg);
                    (c.prepare)(&mut db, &cfg);
                    db
                },
                |mut db| {
                    let r = db.verify_mschapv2(black_box(c.user), &AC, &PC, black_box(&nt), T0);
                    black_box(r.is_ok());
                    db
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    // Interleaved medians (all cases in turn, many rounds) for the summary table: drift of the
    // machine hits every case alike.
    let rounds = 41;
    let per = 200;
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (i, c) in cases.iter().enumerate() {
            let nt = generate_nt_response(&AC, &PC, c.user, &c.password);
            let mut dbs: Vec<UserDb> = (0..per)
                .map(|_| {
                    let mut db = UserDb::from_config(&cfg);
                    (c.prepare)(&mut db, &cfg);
                    db
                })
                .collect();
            let t = Instant::now();
            for db in &mut dbs {
                black_box(db.verify_mschapv2(black_box(c.user), &AC, &PC, black_box(&nt), T0).is_ok());
            }
            times[i].push(t.elapsed().as_secs_f64() * 1e9 / per as f64);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let meds: Vec<f64> = times.iter_mut().map(median).collect();
    let base = meds[cases.iter().position(|c| c.name == "wrong-password").expect("case")];
    println!("\nverify_mschapv2, median of {rounds} interleaved rounds of {per}:");
    println!("{:<22} {:>10} {:>8}", "path", "ns", "ratio");
    for (c, m) in cases.iter().zip(&meds) {
        println!("{:<22} {:>10.0} {:>8.3}", c.name, m, m / base);
    }
}
