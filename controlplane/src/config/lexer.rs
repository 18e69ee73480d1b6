//! Tokenizer of the FortiOS CLI text.
//!
//! The text is a stream of whitespace-separated tokens, so one statement a line and the
//! flattened one-line form lex alike. A token is a bare word (`\` escapes the next character) or
//! a double-quoted string (`\"`, `\\`, `\n`, `\t` escapes). `#` at the start of a token begins a
//! comment to the end of the line. Errors are collected with their position and lexing goes on,
//! so one bad quote does not hide the rest of the file.

use zeroize::Zeroizing;

use super::Pos;

/// Whether a token was quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A bare word: keywords are only recognised in this form.
    Word,
    /// A double-quoted string.
    Quoted,
}

/// One token with its position.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    /// Bare or quoted.
    pub(crate) kind: Kind,
    /// The unescaped text (zeroized on drop: it may be a secret).
    pub(crate) text: Zeroizing<String>,
    /// Where the token starts.
    pub(crate) pos: Pos,
}

impl Token {
    /// A bare word equal to `kw`.
    pub(crate) fn is_word(&self, kw: &str) -> bool {
        self.kind == Kind::Word && self.text.as_str() == kw
    }

    /// A bare `<…>` word: a placeholder copied from documentation.
    pub(crate) fn is_placeholder(&self) -> bool {
        self.kind == Kind::Word && self.text.len() >= 2 && self.text.starts_with('<') && self.text.ends_with('>')
    }
}

/// A lexing error: position and message.
pub(crate) type LexError = (Pos, String);

struct Cursor {
    chars: Vec<char>,
    i: usize,
    line: u32,
    col: u32,
}

impl Cursor {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn pos(&self) -> Pos {
        Pos { line: self.line, col: self.col }
    }

    fn save(&self) -> (usize, u32, u32) {
        (self.i, self.line, self.col)
    }

    fn restore(&mut self, s: (usize, u32, u32)) {
        (self.i, self.line, self.col) = s;
    }
}

fn unescape(c: char) -> char {
    match c {
        'n' => '\n',
        't' => '\t',
        other => other,
    }
}

/// Splits `src` into tokens; errors are returned alongside the tokens that could be read.
pub(crate) fn lex(src: &str) -> (Vec<Token>, Vec<LexError>) {
    let mut cur = Cursor { chars: src.chars().collect(), i: 0, line: 1, col: 1 };
    let mut toks = Vec::new();
    let mut errs = Vec::new();
    while let Some(c) = cur.peek() {
        if c.is_whitespace() {
            cur.bump();
            continue;
        }
        let start = cur.pos();
        if c == '#' {
            while let Some(c) = cur.bump() {
                if c == '\n' {
                    break;
                }
            }
            continue;
        }
        if c == '"' {
            let saved = cur.save();
            cur.bump();
            let mut text = Zeroizing::new(String::new());
            let mut closed = false;
            while let Some(c) = cur.bump() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => {
                        if let Some(e) = cur.bump() {
                            text.push(unescape(e));
                        }
                    }
                    c => text.push(c),
                }
            }
            if !closed {
                errs.push((start, "unterminated quoted string (missing closing `\"`)".to_string()));
                // Recover by treating the opening quote as stray and reading on after it.
                cur.restore(saved);
                cur.bump();
                continue;
            }
            match cur.peek() {
                Some(n) if !n.is_whitespace() && n != '#' => {
                    // `""name"`: the first quote closes at once and the value runs on. The first
                    // quote is the stray one; reading again just after it recovers `"name"`.
                    errs.push((
                        start,
                        format!(
                            "stray `\"`: the quoted string ending at column {} is followed by `{n}`; \
                             remove the extra quote",
                            cur.col - 1
                        ),
                    ));
                    cur.restore(saved);
                    cur.bump();
                }
                _ => toks.push(Token { kind: Kind::Quoted, text, pos: start }),
            }
            continue;
        }
        let mut text = Zeroizing::new(String::new());
        while let Some(c) = cur.peek() {
            if c.is_whitespace() {
                break;
            }
            if c == '"' {
                errs.push((cur.pos(), "`\"` inside an unquoted value; quote the whole value".to_string()));
                break;
            }
            cur.bump();
            if c == '\\' {
                if let Some(e) = cur.bump() {
                    text.push(e);
                }
            } else {
                text.push(c);
            }
        }
        // Every pass of the loop above consumed at least one character (the first one is not
        // whitespace, `#` or `"`), so lexing always progresses; a lone trailing `\` yields nothing.
        if !text.is_empty() {
            toks.push(Token { kind: Kind::Word, text, pos: start });
        }
    }
    (toks, errs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<String> {
        lex(src).0.iter().map(|t| t.text.to_string()).collect()
    }

    #[test]
    fn words_quotes_comments() {
        assert_eq!(
            texts("config user local # c\n edit \"Te st\" set a\\ b"),
            ["config", "user", "local", "edit", "Te st", "set", "a b"]
        );
        assert_eq!(texts(r#""a\"b\\c\n""#), ["a\"b\\c\n"]);
        let (t, e) = lex("a#b");
        assert!(e.is_empty());
        assert_eq!(t[0].text.as_str(), "a#b");
    }

    #[test]
    fn stray_quote_position_and_recovery() {
        let (t, e) = lex("set dstaddr \"\"VPN-v2_split\" set action accept");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, Pos { line: 1, col: 13 });
        let v: Vec<&str> = t.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(v, ["set", "dstaddr", "VPN-v2_split", "set", "action", "accept"]);
    }

    #[test]
    fn unterminated_reports() {
        let (_, e) = lex("set a \"abc");
        assert_eq!(e[0].0, Pos { line: 1, col: 7 });
    }
}
