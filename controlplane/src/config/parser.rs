//! Statement parser: tokens to a syntax tree of `config` blocks.
//!
//! Grammar (keywords are bare words only; a quoted `"end"` is a value):
//! ```text
//! file  := block*
//! block := config WORD+ item* end
//! item  := edit NAME (set | unset | block)* (next | end) | set KEY VALUE+ | unset KEY
//!        | delete NAME | block
//! ```
//! The values of a `set` run until the next keyword, which is what makes the flattened text
//! parse. Errors are collected and the parser skips to the next keyword to go on.

use super::lexer::Token;
use super::Pos;

/// Words that end a value list and start a statement.
pub(crate) const KEYWORDS: &[&str] = &["config", "edit", "set", "unset", "next", "end", "delete"];

/// A `config PATH … end` block.
#[derive(Debug)]
pub(crate) struct Block {
    /// The path words (`vpn ipsec phase1-interface`).
    pub(crate) path: Vec<Token>,
    /// Position of the `config` keyword.
    pub(crate) pos: Pos,
    /// Statements inside.
    pub(crate) items: Vec<Item>,
}

/// One statement inside a block or an `edit`.
#[derive(Debug)]
pub(crate) enum Item {
    /// `edit NAME … next`.
    Edit {
        /// The entry name or id.
        name: Token,
        /// Statements inside.
        items: Vec<Item>,
    },
    /// `set KEY VALUE…`.
    Set {
        /// The key.
        key: Token,
        /// The values (at least one).
        values: Vec<Token>,
    },
    /// `unset KEY`.
    Unset {
        /// The key.
        key: Token,
    },
    /// `delete NAME`.
    Delete {
        /// The entry to remove.
        name: Token,
    },
    /// A nested `config` block.
    Config(Block),
}

struct Parser<'t> {
    toks: &'t [Token],
    i: usize,
    errs: Vec<(Pos, String)>,
    eof: Pos,
}

fn is_kw(t: &Token) -> bool {
    KEYWORDS.iter().any(|k| t.is_word(k))
}

fn describe(t: Option<&Token>) -> String {
    match t {
        Some(t) => format!("`{}`", t.text.as_str()),
        None => "the end of the file".to_string(),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.i).cloned();
        if t.is_some() {
            self.i += 1;
        }
        t
    }

    fn pos_here(&self) -> Pos {
        self.peek().map_or(self.eof, |t| t.pos)
    }

    fn err(&mut self, pos: Pos, msg: impl Into<String>) {
        self.errs.push((pos, msg.into()));
    }

    /// Skips non-keyword tokens.
    fn skip_to_keyword(&mut self) {
        while let Some(t) = self.peek() {
            if is_kw(t) {
                break;
            }
            self.i += 1;
        }
    }

    fn file(&mut self) -> Vec<Block> {
        let mut blocks = Vec::new();
        while let Some(t) = self.next() {
            if t.is_word("config") {
                blocks.push(self.block(t.pos));
            } else {
                self.err(t.pos, format!("expected `config`, found `{}`", t.text.as_str()));
                while let Some(t) = self.peek() {
                    if t.is_word("config") {
                        break;
                    }
                    self.i += 1;
                }
            }
        }
        blocks
    }

    /// After `config`: the path, the items, `end`.
    fn block(&mut self, pos: Pos) -> Block {
        let mut path = Vec::new();
        while let Some(t) = self.peek() {
            if is_kw(t) {
                break;
            }
            let t = t.clone();
            self.i += 1;
            path.push(t);
        }
        if path.is_empty() {
            let here = self.pos_here();
            self.err(here, "`config` needs an object path, such as `config user local`");
        }
        let mut items = Vec::new();
        loop {
            let Some(t) = self.next() else {
                self.err(self.eof, format!("missing `end` for the `config` at line {}, column {}", pos.line, pos.col));
                break;
            };
            match t.text.as_str() {
                _ if !is_kw(&t) => {
                    self.err(t.pos, format!("expected `edit`, `set`, `unset` or `end`, found `{}`", t.text.as_str()));
                    self.skip_to_keyword();
                }
                "end" => break,
                "next" => self.err(t.pos, "`next` without `edit`"),
                "edit" => {
                    let (item, ended) = self.edit(&t);
                    items.extend(item);
                    if ended {
                        break;
                    }
                }
                _ => items.extend(self.statement(&t)),
            }
        }
        Block { path, pos, items }
    }

    /// After `edit`: returns the entry and whether an `end` closed the enclosing block too.
    fn edit(&mut self, kw: &Token) -> (Option<Item>, bool) {
        let name = match self.peek() {
            Some(t) if !is_kw(t) => self.next(),
            other => {
                let msg = format!("`edit` needs a name or id, found {}", describe(other));
                self.err(kw.pos, msg);
                None
            }
        };
        let mut items = Vec::new();
        let mut ended = false;
        loop {
            let Some(t) = self.next() else {
                self.err(
                    self.eof,
                    format!("missing `next` and `end` for the `edit` at line {}, column {}", kw.pos.line, kw.pos.col),
                );
                ended = true;
                break;
            };
            match t.text.as_str() {
                _ if !is_kw(&t) => {
                    self.err(t.pos, format!("expected `set`, `unset`, `next` or `end`, found `{}`", t.text.as_str()));
                    self.skip_to_keyword();
                }
                "next" => break,
                "end" => {
                    ended = true;
                    break;
                }
                "edit" => {
                    self.err(t.pos, "missing `next` before this `edit`");
                    self.i -= 1;
                    break;
                }
                "delete" => {
                    self.err(t.pos, "`delete` belongs outside `edit … next`");
                    self.skip_to_keyword_after(1);
                }
                _ => items.extend(self.statement(&t)),
            }
        }
        (name.map(|name| Item::Edit { name, items }), ended)
    }

    fn skip_to_keyword_after(&mut self, n: usize) {
        self.i = (self.i + n).min(self.toks.len());
        self.skip_to_keyword();
    }

    /// `set`, `unset`, `delete` or a nested `config`.
    fn statement(&mut self, kw: &Token) -> Option<Item> {
        match kw.text.as_str() {
            "config" => Some(Item::Config(self.block(kw.pos))),
            "set" | "unset" | "delete" => {
                let what = if kw.is_word("delete") { "a name" } else { "a key" };
                let key = match self.peek() {
                    Some(t) if !is_kw(t) => self.next()?,
                    other => {
                        let msg = format!("`{}` needs {what}, found {}", kw.text.as_str(), describe(other));
                        self.err(kw.pos, msg);
                        return None;
                    }
                };
                let mut values = Vec::new();
                while let Some(t) = self.peek() {
                    if is_kw(t) {
                        break;
                    }
                    values.push(t.clone());
                    self.i += 1;
                }
                match kw.text.as_str() {
                    "set" if values.is_empty() => {
                        let msg = format!(
                            "`set {}` needs a value (use `unset {}` to clear it)",
                            key.text.as_str(),
                            key.text.as_str()
                        );
                        self.err(key.pos, msg);
                        None
                    }
                    "set" => Some(Item::Set { key, values }),
                    _ if !values.is_empty() => {
                        let msg = format!(
                            "`{}` takes only {what}; unexpected `{}`",
                            kw.text.as_str(),
                            values[0].text.as_str()
                        );
                        self.err(values[0].pos, msg);
                        None
                    }
                    "unset" => Some(Item::Unset { key }),
                    _ => Some(Item::Delete { name: key }),
                }
            }
            _ => None,
        }
    }
}

/// Parses tokens into blocks; `eof` is the position just past the text.
pub(crate) fn parse(toks: &[Token], eof: Pos) -> (Vec<Block>, Vec<(Pos, String)>) {
    let mut p = Parser { toks, i: 0, errs: Vec::new(), eof };
    let blocks = p.file();
    (blocks, p.errs)
}
