//! Applies the syntax tree to the typed [`Config`]: tables, entries, `set`/`unset`/`delete`.
//!
//! `edit` of an existing entry changes it (the seeds edit "Test-Dialup" twice); `unset` restores
//! the FortiOS default; `edit 0` in a numbered table takes the next free id. Every statement is
//! checked on its own and errors carry the position of the token at fault, with the nearest
//! known names for unknown tables and keys. Positions of entries and values are kept in a
//! [`SourceMap`] so that reference errors found later can point at the text too.

use std::collections::HashMap;

use super::objects::{
    AddrGrp, Address, CertLocal, Fctems, FortiToken, IdKind, Interface, LocalUser, Object, Phase1, Phase2, Policy,
    ServiceCustom, StaticRoute, UserGroup, UserSetting,
};
use super::parser::{Block, Item};
use super::value::Val;
use super::{Config, Pos};
use crate::config::lexer::Token;

/// Where entries and their values were written.
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    map: HashMap<(&'static str, String, String), Pos>,
}

impl SourceMap {
    /// Position of `set KEY`'s first value in entry `entry` of `table` (`key` empty: the `edit`).
    pub(crate) fn get(&self, table: &'static str, entry: &str, key: &str) -> Option<Pos> {
        self.map
            .get(&(table, entry.to_string(), key.to_string()))
            .or_else(|| self.map.get(&(table, entry.to_string(), String::new())))
            .copied()
    }

    fn put(&mut self, table: &'static str, entry: &str, key: &str, pos: Pos) {
        self.map.insert((table, entry.to_string(), key.to_string()), pos);
    }
}

/// Every table path dialgate knows, in `show` order.
pub(crate) const TABLES: &[&str] = &[
    Interface::TABLE,
    Fctems::TABLE,
    Address::TABLE,
    AddrGrp::TABLE,
    ServiceCustom::TABLE,
    FortiToken::TABLE,
    UserSetting::TABLE,
    LocalUser::TABLE,
    UserGroup::TABLE,
    CertLocal::TABLE,
    Phase1::TABLE,
    Phase2::TABLE,
    Policy::TABLE,
    StaticRoute::TABLE,
];

/// Levenshtein distance over characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Up to three known names nearest to `got`, as "; did you mean `a`, `b`?" (or empty).
pub(crate) fn suggest<'a>(got: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let limit = (got.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = known
        .into_iter()
        .map(|k| {
            let d = distance(&got.to_ascii_lowercase(), &k.to_ascii_lowercase());
            // A name that contains what was typed (or the reverse) is a good guess too.
            let d = if k.contains(got) || got.contains(k) { d.min(limit) } else { d };
            (d, k)
        })
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    // Only the nearest (ties kept): a farther name is noise next to a near one.
    let best = scored.first().map_or(0, |s| s.0);
    let names: Vec<String> = scored.iter().filter(|s| s.0 == best).take(3).map(|(_, k)| format!("`{k}`")).collect();
    if names.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", names.join(", "))
    }
}

struct Ctx<'a> {
    src: &'a mut SourceMap,
    errs: &'a mut Vec<(Pos, String)>,
}

impl Ctx<'_> {
    fn err(&mut self, pos: Pos, msg: impl Into<String>) {
        self.errs.push((pos, msg.into()));
    }

    /// Refuses documentation placeholders such as `<password>`.
    fn placeholder(&mut self, t: &Token, what: &str) -> bool {
        if t.is_placeholder() {
            let msg =
                format!("placeholder `{}` copied from the documentation: replace it with {what}", t.text.as_str());
            self.err(t.pos, msg);
            return true;
        }
        false
    }
}

/// Applies every block to `cfg`.
pub(crate) fn apply(cfg: &mut Config, blocks: &[Block], src: &mut SourceMap, errs: &mut Vec<(Pos, String)>) {
    let mut ctx = Ctx { src, errs };
    for b in blocks {
        apply_block(cfg, b, &mut ctx);
    }
}

fn apply_block(cfg: &mut Config, b: &Block, ctx: &mut Ctx<'_>) {
    let path: Vec<&str> = b.path.iter().map(|t| t.text.as_str()).collect();
    let path = path.join(" ");
    let items = &b.items[..];
    match path.as_str() {
        Interface::TABLE => table(&mut cfg.interfaces, items, ctx),
        StaticRoute::TABLE => table(&mut cfg.static_routes, items, ctx),
        Address::TABLE => table(&mut cfg.addresses, items, ctx),
        AddrGrp::TABLE => table(&mut cfg.addrgrps, items, ctx),
        ServiceCustom::TABLE => table(&mut cfg.services, items, ctx),
        Policy::TABLE => table(&mut cfg.policies, items, ctx),
        LocalUser::TABLE => table(&mut cfg.users, items, ctx),
        UserGroup::TABLE => table(&mut cfg.groups, items, ctx),
        FortiToken::TABLE => table(&mut cfg.fortitokens, items, ctx),
        UserSetting::TABLE => settings(&mut cfg.user_setting, items, ctx),
        Phase1::TABLE => table(&mut cfg.phase1, items, ctx),
        Phase2::TABLE => table(&mut cfg.phase2, items, ctx),
        Fctems::TABLE => table(&mut cfg.fctems, items, ctx),
        CertLocal::TABLE => table(&mut cfg.cert_locals, items, ctx),
        _ if path.is_empty() => {}
        _ => {
            let pos = b.path.first().map_or(b.pos, |t| t.pos);
            let hint = suggest(&path, TABLES.iter().copied());
            ctx.err(pos, format!("unknown object `config {path}`{hint}"));
        }
    }
}

fn check_key<T: Object>(key: &Token, ctx: &mut Ctx<'_>) -> bool {
    if T::KEYS.contains(&key.text.as_str()) {
        return true;
    }
    let hint = suggest(key.text.as_str(), T::KEYS.iter().copied());
    ctx.err(key.pos, format!("unknown key `{}` in `config {}`{hint}", key.text.as_str(), T::TABLE));
    false
}

fn set<T: Object>(obj: &mut T, key: &Token, values: &[Token], ctx: &mut Ctx<'_>) {
    if !check_key::<T>(key, ctx) {
        return;
    }
    let mut bad = false;
    for v in values {
        bad |= ctx.placeholder(v, "the real value");
    }
    if bad {
        return;
    }
    let args: Vec<String> = values.iter().map(|t| t.text.to_string()).collect();
    let args = zeroize::Zeroizing::new(args);
    match obj.set(key.text.as_str(), &args) {
        Ok(()) => {
            let pos = values.first().map_or(key.pos, |t| t.pos);
            ctx.src.put(T::TABLE, &obj.key(), key.text.as_str(), pos);
        }
        Err(e) => {
            let pos = values.get(e.arg).or(values.last()).map_or(key.pos, |t| t.pos);
            ctx.err(pos, format!("`set {}`: {}", key.text.as_str(), e.message));
        }
    }
}

fn unset<T: Object>(obj: &mut T, key: &Token, ctx: &mut Ctx<'_>) {
    if !check_key::<T>(key, ctx) {
        return;
    }
    let default = T::with_key(&obj.key());
    let args: Vec<String> = default.get(key.text.as_str()).iter().map(Val::as_arg).collect();
    if let Err(e) = obj.set(key.text.as_str(), &args) {
        ctx.err(key.pos, format!("`unset {}`: {}", key.text.as_str(), e.message));
    }
}

fn entry_items<T: Object>(obj: &mut T, items: &[Item], ctx: &mut Ctx<'_>) {
    for it in items {
        match it {
            Item::Set { key, values } => set(obj, key, values, ctx),
            Item::Unset { key } => unset(obj, key, ctx),
            Item::Config(b) => {
                let pos = b.path.first().map_or(b.pos, |t| t.pos);
                ctx.err(pos, format!("`config {}` has no sub-tables", T::TABLE));
            }
            Item::Edit { name, .. } | Item::Delete { name } => {
                ctx.err(name.pos, "`edit` and `delete` belong directly in a `config` block");
            }
        }
    }
}

/// Checks an entry name or id; returns the canonical key.
fn entry_key<T: Object>(list: &[T], name: &Token, ctx: &mut Ctx<'_>) -> Option<String> {
    let raw = name.text.as_str();
    match T::ID {
        IdKind::Numeric => {
            if ctx.placeholder(name, "a policy or route number (0 picks the next free one)") {
                return None;
            }
            match raw.parse::<u32>() {
                Ok(0) => {
                    let max = list.iter().filter_map(|e| e.key().parse::<u32>().ok()).max().unwrap_or(0);
                    Some(max.saturating_add(1).to_string())
                }
                Ok(n) if n < u32::MAX => Some(n.to_string()),
                _ => {
                    let msg = format!(
                        "`edit {raw}`: `config {}` entries are numbered; enter an integer from 0 to 4294967294 \
                         (0 picks the next free one)",
                        T::TABLE
                    );
                    ctx.err(name.pos, msg);
                    None
                }
            }
        }
        IdKind::Name(max) => {
            if ctx.placeholder(name, "a name") {
                return None;
            }
            if raw.is_empty() {
                ctx.err(name.pos, "empty name");
                return None;
            }
            if raw.chars().count() > max {
                ctx.err(
                    name.pos,
                    format!("name {raw:?} is too long: `config {}` names have at most {max} characters", T::TABLE),
                );
                return None;
            }
            Some(raw.to_string())
        }
        IdKind::Settings => None,
    }
}

fn table<T: Object>(list: &mut Vec<T>, items: &[Item], ctx: &mut Ctx<'_>) {
    for it in items {
        match it {
            Item::Edit { name, items } => {
                let Some(key) = entry_key(list, name, ctx) else {
                    // Still check the statements, against a throw-away entry.
                    let mut scratch = T::with_key("");
                    entry_items(&mut scratch, items, ctx);
                    continue;
                };
                let idx = match list.iter().position(|e| e.key() == key) {
                    Some(i) => i,
                    None => {
                        list.push(T::with_key(&key));
                        ctx.src.put(T::TABLE, &key, "", name.pos);
                        list.len() - 1
                    }
                };
                if let Some(obj) = list.get_mut(idx) {
                    entry_items(obj, items, ctx);
                }
            }
            Item::Delete { name } => {
                let before = list.len();
                list.retain(|e| e.key() != name.text.as_str());
                if list.len() == before {
                    let keys: Vec<String> = list.iter().map(Object::key).collect();
                    let hint = suggest(name.text.as_str(), keys.iter().map(String::as_str));
                    ctx.err(name.pos, format!("`delete {}`: no such entry{hint}", name.text.as_str()));
                }
            }
            Item::Set { key, .. } | Item::Unset { key } => {
                ctx.err(key.pos, format!("`config {}` is a table: write `edit NAME` before `set`", T::TABLE));
            }
            Item::Config(b) => {
                let pos = b.path.first().map_or(b.pos, |t| t.pos);
                ctx.err(pos, format!("`config {}` has no sub-tables; missing `end`?", T::TABLE));
            }
        }
    }
}

fn settings<T: Object>(obj: &mut T, items: &[Item], ctx: &mut Ctx<'_>) {
    for it in items {
        match it {
            Item::Edit { name, .. } | Item::Delete { name } => {
                ctx.err(name.pos, format!("`config {}` holds settings: use `set` without `edit`", T::TABLE));
            }
            other => entry_items(obj, std::slice::from_ref(other), ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(suggest("negotiate-timout", Phase1::KEYS.iter().copied()), "; did you mean `negotiate-timeout`?");
        assert_eq!(suggest("zzzzzz", ["a", "b"]), "");
    }
}
