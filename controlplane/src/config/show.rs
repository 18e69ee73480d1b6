//! The canonical printer: FortiOS `show` form, only values that differ from the default.
//!
//! Names and free text are always quoted (so a name such as `end` or `#x` reads back as a
//! value), keywords and numbers are bare, and secrets print as `ENC ********` unless revealed.
//! Loading the revealed output gives back an equal [`Config`].

use std::fmt::Write as _;

use super::build::{suggest, TABLES};
use super::objects::{
    AddrGrp, Address, CertLocal, Fctems, FortiToken, IdKind, Interface, LocalUser, Object, Phase1, Phase2, Policy,
    ServiceCustom, StaticRoute, UserGroup, UserSetting,
};
use super::value::Val;
use super::Config;

/// Quotes a string for the reader: `"` and `\` escaped, newline and tab as `\n`, `\t`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn vals(out: &mut String, vs: &[Val], reveal: bool) {
    for v in vs {
        out.push(' ');
        match v {
            Val::Word(w) => out.push_str(w),
            Val::Quoted(q) => out.push_str(&quote(q)),
            Val::Secret(s) if reveal => out.push_str(&quote(s)),
            Val::Secret(_) => out.push_str("ENC ********"),
        }
    }
}

fn body<T: Object>(out: &mut String, e: &T, indent: &str, reveal: bool) {
    let default = T::with_key(&e.key());
    for key in T::KEYS {
        let cur = e.get(key);
        if cur != default.get(key) {
            let _ = write!(out, "{indent}set {key}");
            vals(out, &cur, reveal);
            out.push('\n');
        }
    }
}

fn table<T: Object>(out: &mut String, list: &[T], only: Option<&str>, always: bool, reveal: bool) {
    let entries: Vec<&T> = list.iter().filter(|e| only.is_none_or(|k| e.key() == k)).collect();
    if entries.is_empty() && !always {
        return;
    }
    let _ = writeln!(out, "config {}", T::TABLE);
    for e in entries {
        match T::ID {
            IdKind::Numeric => {
                let _ = writeln!(out, "    edit {}", e.key());
            }
            _ => {
                let _ = writeln!(out, "    edit {}", quote(&e.key()));
            }
        }
        body(out, e, "        ", reveal);
        out.push_str("    next\n");
    }
    out.push_str("end\n");
}

fn settings<T: Object>(out: &mut String, s: &T, always: bool, reveal: bool) {
    let mut inner = String::new();
    body(&mut inner, s, "    ", reveal);
    if inner.is_empty() && !always {
        return;
    }
    let _ = writeln!(out, "config {}", T::TABLE);
    out.push_str(&inner);
    out.push_str("end\n");
}

/// Prints the whole configuration, or the part selected by `path` (a table path, optionally
/// followed by an entry name). Errors name the nearest table or entry.
pub(crate) fn show(cfg: &Config, path: &[&str], reveal: bool) -> Result<String, String> {
    let want = path.join(" ");
    let mut out = String::new();
    let mut matched = false;
    for t in TABLES {
        let (print, only) = if want.is_empty() || *t == want || t.starts_with(&format!("{want} ")) {
            (true, None)
        } else if let Some(name) = want.strip_prefix(&format!("{t} ")) {
            (true, Some(name))
        } else {
            (false, None)
        };
        if !print {
            continue;
        }
        matched = true;
        let always = !want.is_empty();
        if let Some(name) = only {
            let keys = keys_of(cfg, t);
            if !keys.iter().any(|k| k == name) {
                let hint = suggest(name, keys.iter().map(String::as_str));
                return Err(format!("no entry {name:?} in `config {t}`{hint}"));
            }
        }
        match *t {
            Interface::TABLE => table(&mut out, &cfg.interfaces, only, always, reveal),
            Fctems::TABLE => table(&mut out, &cfg.fctems, only, always, reveal),
            CertLocal::TABLE => table(&mut out, &cfg.cert_locals, only, always, reveal),
            Address::TABLE => table(&mut out, &cfg.addresses, only, always, reveal),
            AddrGrp::TABLE => table(&mut out, &cfg.addrgrps, only, always, reveal),
            ServiceCustom::TABLE => table(&mut out, &cfg.services, only, always, reveal),
            FortiToken::TABLE => table(&mut out, &cfg.fortitokens, only, always, reveal),
            UserSetting::TABLE => settings(&mut out, &cfg.user_setting, always, reveal),
            LocalUser::TABLE => table(&mut out, &cfg.users, only, always, reveal),
            UserGroup::TABLE => table(&mut out, &cfg.groups, only, always, reveal),
            Phase1::TABLE => table(&mut out, &cfg.phase1, only, always, reveal),
            Phase2::TABLE => table(&mut out, &cfg.phase2, only, always, reveal),
            Policy::TABLE => table(&mut out, &cfg.policies, only, always, reveal),
            StaticRoute::TABLE => table(&mut out, &cfg.static_routes, only, always, reveal),
            _ => {}
        }
    }
    if !matched {
        let hint = suggest(&want, TABLES.iter().copied());
        return Err(format!("unknown path `{want}`{hint}"));
    }
    Ok(out)
}

fn keys_of(cfg: &Config, table: &str) -> Vec<String> {
    fn k<T: Object>(l: &[T]) -> Vec<String> {
        l.iter().map(Object::key).collect()
    }
    match table {
        Interface::TABLE => k(&cfg.interfaces),
        Fctems::TABLE => k(&cfg.fctems),
        CertLocal::TABLE => k(&cfg.cert_locals),
        Address::TABLE => k(&cfg.addresses),
        AddrGrp::TABLE => k(&cfg.addrgrps),
        ServiceCustom::TABLE => k(&cfg.services),
        FortiToken::TABLE => k(&cfg.fortitokens),
        LocalUser::TABLE => k(&cfg.users),
        UserGroup::TABLE => k(&cfg.groups),
        Phase1::TABLE => k(&cfg.phase1),
        Phase2::TABLE => k(&cfg.phase2),
        Policy::TABLE => k(&cfg.policies),
        StaticRoute::TABLE => k(&cfg.static_routes),
        _ => Vec::new(),
    }
}
