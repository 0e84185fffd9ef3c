//! Just enough of Groovy's lexical structure to see a Jenkinsfile as nested statements: strings
//! (with their quote style), identifiers, punctuation and `{ }` blocks; comments dropped. Syntax
//! errors are Groovy's own business (the `groovy` parse in `super::check`); this reader only has
//! to be right about well-formed files.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Ident(String),
    /// A string literal's raw text; `double` for `"..."` and `"""..."""` (GStrings, which Groovy
    /// interpolates), false for `'...'` and `'''...'''`.
    Str {
        text: String,
        double: bool,
    },
    Punct(char),
}

/// One statement: its tokens (for `name(args) { ... }`, the part before the block) and its block.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub tokens: Vec<Tok>,
    pub block: Option<Vec<Stmt>>,
    pub line: usize,
}

impl Stmt {
    /// The first identifier: the step or directive name (`stage`, `sh`, `withCredentials`).
    pub fn head(&self) -> Option<&str> {
        match self.tokens.first() {
            Some(Tok::Ident(name)) => Some(name),
            _ => None,
        }
    }

    /// The first string literal, as `(text, double)`.
    pub fn first_string(&self) -> Option<(&str, bool)> {
        self.tokens.iter().find_map(|t| match t {
            Tok::Str { text, double } => Some((text.as_str(), *double)),
            _ => None,
        })
    }

    pub fn children(&self) -> &[Stmt] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// The first statement of the block with this head.
    pub fn child(&self, head: &str) -> Option<&Stmt> {
        self.children().iter().find(|s| s.head() == Some(head))
    }

    /// The string values of `key: '...'` arguments among the tokens.
    pub fn named_strings<'a>(&'a self, key: impl Fn(&str) -> bool + 'a) -> Vec<&'a str> {
        self.tokens
            .windows(3)
            .filter_map(|w| match w {
                [Tok::Ident(k), Tok::Punct(':'), Tok::Str { text, .. }] if key(k) => {
                    Some(text.as_str())
                }
                _ => None,
            })
            .collect()
    }
}

enum Lexeme {
    Tok(Tok),
    Newline,
}

pub fn parse(source: &str) -> Result<Vec<Stmt>, String> {
    let lexemes = lex(source)?;
    let mut pos = 0;
    let stmts = block(&lexemes, &mut pos, false)?;
    Ok(stmts)
}

fn block(lexemes: &[(Lexeme, usize)], pos: &mut usize, nested: bool) -> Result<Vec<Stmt>, String> {
    let mut stmts = Vec::new();
    let mut tokens: Vec<Tok> = Vec::new();
    let mut line = 0;
    let mut depth = 0usize;
    let flush = |tokens: &mut Vec<Tok>, stmts: &mut Vec<Stmt>, line: usize| {
        if !tokens.is_empty() {
            stmts.push(Stmt {
                tokens: std::mem::take(tokens),
                block: None,
                line,
            });
        }
    };
    while let Some((lexeme, at)) = lexemes.get(*pos) {
        *pos += 1;
        match lexeme {
            Lexeme::Newline if depth == 0 => flush(&mut tokens, &mut stmts, line),
            Lexeme::Newline => {}
            Lexeme::Tok(Tok::Punct(';')) if depth == 0 => flush(&mut tokens, &mut stmts, line),
            Lexeme::Tok(Tok::Punct('{')) => {
                let inner = block(lexemes, pos, true)?;
                let head_line = if tokens.is_empty() { *at } else { line };
                stmts.push(Stmt {
                    tokens: std::mem::take(&mut tokens),
                    block: Some(inner),
                    line: head_line,
                });
            }
            Lexeme::Tok(Tok::Punct('}')) => {
                if !nested {
                    return Err(format!("line {at}: `}}` without a matching `{{`"));
                }
                flush(&mut tokens, &mut stmts, line);
                return Ok(stmts);
            }
            Lexeme::Tok(tok) => {
                match tok {
                    Tok::Punct('(' | '[') => depth += 1,
                    Tok::Punct(')' | ']') => depth = depth.saturating_sub(1),
                    _ => {}
                }
                if tokens.is_empty() {
                    line = *at;
                }
                tokens.push(tok.clone());
            }
        }
    }
    if nested {
        return Err("end of file inside a `{` block".to_string());
    }
    flush(&mut tokens, &mut stmts, line);
    Ok(stmts)
}

fn lex(source: &str) -> Result<Vec<(Lexeme, usize)>, String> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            out.push((Lexeme::Newline, line));
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
            i += 2;
        } else if c == '\'' || c == '"' {
            let start_line = line;
            let triple = next == Some(c) && chars.get(i + 2) == Some(&c);
            i += if triple { 3 } else { 1 };
            let mut text = String::new();
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err(format!("line {start_line}: unterminated string"));
                };
                if ch == '\\' {
                    text.push(ch);
                    if let Some(&escaped) = chars.get(i + 1) {
                        text.push(escaped);
                    }
                    i += 2;
                    continue;
                }
                if ch == c
                    && (!triple || (chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c)))
                {
                    i += if triple { 3 } else { 1 };
                    break;
                }
                if ch == '\n' {
                    if !triple {
                        return Err(format!("line {start_line}: unterminated string"));
                    }
                    line += 1;
                }
                text.push(ch);
                i += 1;
            }
            out.push((
                Lexeme::Tok(Tok::Str {
                    text,
                    double: c == '"',
                }),
                start_line,
            ));
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push((
                Lexeme::Tok(Tok::Ident(chars[start..i].iter().collect())),
                line,
            ));
        } else {
            out.push((Lexeme::Tok(Tok::Punct(c)), line));
            i += 1;
        }
    }
    Ok(out)
}
