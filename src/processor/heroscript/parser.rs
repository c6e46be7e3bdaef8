//! HeroScript text → actions, to the letter of `heroscript.md` (the contract beside the
//! brief): lines, action kinds, names, parameter lines, quoted and multi-line values,
//! positional arguments and comments. Also the inverse, [`render`], used to check that
//! parse → render → parse is stable.

use super::params::Params;
use crate::names::name_fix;

/// Action kinds by the number of `!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `!`
    Dal,
    /// `!!`
    Sal,
    /// `!!!`
    Macro,
    /// `!!!!`
    Wal,
}

impl Kind {
    fn bangs(self) -> &'static str {
        match self {
            Kind::Dal => "!",
            Kind::Sal => "!!",
            Kind::Macro => "!!!",
            Kind::Wal => "!!!!",
        }
    }
}

/// One parsed action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Its kind.
    pub kind: Kind,
    /// Actor name (name-fixed; `core` when the script gave none).
    pub actor: String,
    /// Action name (name-fixed).
    pub name: String,
    /// Parameters.
    pub params: Params,
    /// Comments directly before it, joined by newlines.
    pub comments: String,
    /// 1-based line of the action in the script.
    pub line: usize,
}

impl Action {
    /// `actor.action`.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.actor, self.name)
    }
}

/// A script that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

fn err(line: usize, reason: impl Into<String>) -> ParseError {
    ParseError {
        line,
        reason: reason.into(),
    }
}

/// A multi-line value being read.
struct Open {
    key: String,
    quote: char,
    lines: Vec<String>,
    start: usize,
}

/// Builds one action from its lines.
struct Builder {
    action: Action,
    open: Option<Open>,
}

/// Parses a script into actions. A script with no action is an error.
pub fn parse(script: &str) -> Result<Vec<Action>, ParseError> {
    let mut actions = Vec::new();
    let mut current: Option<Builder> = None;
    let mut comments: Vec<String> = Vec::new();
    let mut last_line = 0;
    for (idx, raw) in script.lines().enumerate() {
        let line_no = idx + 1;
        last_line = line_no;
        let line = raw.replace('\t', "    ");
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        // Inside a multi-line value every line belongs to it until the closing quote.
        if let Some(b) = current.as_mut() {
            if let Some(open) = b.open.as_mut() {
                if trimmed.len() == 1 && trimmed.starts_with(open.quote) {
                    let open = b
                        .open
                        .take()
                        .ok_or_else(|| err(line_no, "internal: no open value"))?;
                    let value = dedent(&open.lines);
                    set_value(&mut b.action.params, open.key, value);
                } else {
                    open.lines.push(line.clone());
                }
                continue;
            }
            let is_action = trimmed.starts_with('!') && !trimmed.starts_with("![");
            if line.starts_with("  ") && !is_action {
                parse_params(trimmed, line_no, b)?;
                continue;
            }
            // Any other line ends the action and is read again as a top-level line.
            if let Some(done) = current.take() {
                actions.push(done.action);
            }
        }
        if trimmed.starts_with('!') && !trimmed.starts_with("![") {
            let b = start_action(trimmed, line_no, std::mem::take(&mut comments))?;
            current = Some(b);
        } else if let Some(c) = trimmed.strip_prefix("//") {
            comments.push(c.trim_start_matches('/').trim().to_string());
        } else {
            // Other top-level text is ignored, and separates comments from the next action.
            comments.clear();
        }
    }
    if let Some(b) = current {
        if let Some(open) = b.open {
            return Err(err(
                open.start,
                format!(
                    "multi-line value of {:?} opened with {} is never closed (a line holding only {} ends it; script ends at line {last_line})",
                    open.key, open.quote, open.quote
                ),
            ));
        }
        actions.push(b.action);
    }
    if actions.is_empty() {
        return Err(err(last_line.max(1), "no actions found in script"));
    }
    Ok(actions)
}

fn start_action(trimmed: &str, line: usize, comments: Vec<String>) -> Result<Builder, ParseError> {
    let bangs = trimmed.chars().take_while(|c| *c == '!').count();
    let kind = match bangs {
        1 => Kind::Dal,
        2 => Kind::Sal,
        3 => Kind::Macro,
        4 => Kind::Wal,
        n => return Err(err(line, format!("{n} `!` before an action name; at most 4 (`!` DAL, `!!` SAL, `!!!` macro, `!!!!` WAL)"))),
    };
    let rest = &trimmed[bangs..];
    let (name, params) = match rest.find(' ') {
        Some(i) => (&rest[..i], rest[i + 1..].trim()),
        None => (rest, ""),
    };
    let parts: Vec<&str> = name.split('.').collect();
    let (actor, action) = match parts.as_slice() {
        [a] => ("core".to_string(), name_fix(a)),
        [a, b] => (name_fix(a), name_fix(b)),
        _ => {
            return Err(err(
                line,
                format!(
                    "action name {name:?} has {} parts; expected `action` or `actor.action`",
                    parts.len()
                ),
            ))
        }
    };
    if actor.is_empty() || action.is_empty() {
        return Err(err(
            line,
            format!("action name {name:?} has an empty actor or action"),
        ));
    }
    let mut b = Builder {
        action: Action {
            kind,
            params: Params {
                action: format!("{actor}.{action}"),
                ..Params::default()
            },
            actor,
            name: action,
            comments: comments.join("\n"),
            line,
        },
        open: None,
    };
    if !params.is_empty() {
        parse_params(params, line, &mut b)?;
    }
    Ok(b)
}

fn set_value(p: &mut Params, key: String, value: String) {
    if key == "id" {
        return; // reserved
    }
    p.values.insert(key, value);
}

/// Removes the common indentation of `lines` and trims the result. Counted in characters,
/// not bytes: leading whitespace may be multi-byte.
fn dedent(lines: &[String]) -> String {
    let lead = |l: &str| l.chars().take_while(|c| c.is_whitespace()).count();
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| lead(l))
        .min()
        .unwrap_or(0);
    let body: Vec<String> = lines
        .iter()
        .map(|l| l.chars().skip(indent.min(lead(l))).collect())
        .collect();
    body.join("\n").trim().to_string()
}

/// Reads `key:value` pairs and positional words from one line of parameters.
fn parse_params(text: &str, line: usize, b: &mut Builder) -> Result<(), ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let n = chars.len();
    while i < n {
        while i < n && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= n {
            break;
        }
        if chars[i] == '\'' || chars[i] == '"' {
            // A quoted positional argument.
            let (value, next) = read_quoted(&chars, i, line)?;
            b.action.params.args.push(value);
            i = next;
            continue;
        }
        let start = i;
        while i < n && !chars[i].is_whitespace() && chars[i] != ':' {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        if i >= n || chars[i] != ':' {
            b.action.params.args.push(word);
            continue;
        }
        let key = name_fix(&word);
        i += 1; // ':'
        while i < n && chars[i] == ' ' {
            i += 1;
        }
        if i >= n {
            set_value(&mut b.action.params, key, String::new());
            break;
        }
        let q = chars[i];
        if q == '\'' || q == '"' {
            let rest_after_quote: String = chars[i + 1..].iter().collect();
            if rest_after_quote.trim().is_empty() {
                // `key:'` at the end of the line opens a multi-line value.
                b.open = Some(Open {
                    key,
                    quote: q,
                    lines: Vec::new(),
                    start: line,
                });
                return Ok(());
            }
            let (value, next) = read_quoted(&chars, i, line)?;
            set_value(&mut b.action.params, key, value);
            i = next;
        } else {
            let vstart = i;
            while i < n && !chars[i].is_whitespace() {
                i += 1;
            }
            set_value(&mut b.action.params, key, chars[vstart..i].iter().collect());
        }
    }
    Ok(())
}

/// Reads a value quoted with `chars[start]`; returns it and the index after the close.
fn read_quoted(chars: &[char], start: usize, line: usize) -> Result<(String, usize), ParseError> {
    let q = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != q {
        i += 1;
    }
    if i >= chars.len() {
        return Err(err(
            line,
            format!(
                "unterminated quote: {q} opened at column {} is never closed",
                start + 1
            ),
        ));
    }
    Ok((chars[start + 1..i].iter().collect(), i + 1))
}

/// Why a value cannot be written back as HeroScript.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot render {0}")]
pub struct RenderError(String);

fn is_bare(v: &str) -> bool {
    !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '"' || c == ':')
}

fn render_value(key: &str, v: &str, out: &mut String) -> Result<(), RenderError> {
    if v.contains('\r') {
        // Line splitting treats "\r\n" as one break, so a carriage return would not survive.
        return Err(RenderError(format!(
            "value of {key:?}: contains a carriage return"
        )));
    }
    if !v.contains('\n') {
        if is_bare(v) {
            out.push_str(&format!("\n    {key}:{v}"));
            return Ok(());
        }
        if !v.contains('\'') {
            out.push_str(&format!("\n    {key}:'{v}'"));
            return Ok(());
        }
        if !v.contains('"') {
            out.push_str(&format!("\n    {key}:\"{v}\""));
            return Ok(());
        }
    }
    // Multi-line form (values read back trimmed; lines indented by four).
    let quote = ['\'', '"']
        .into_iter()
        .find(|q| v.lines().all(|l| l.trim() != q.to_string()))
        .ok_or_else(|| RenderError(format!("value of {key:?}: every quote character closes it")))?;
    if v.trim() != v || v.lines().any(|l| l.trim().is_empty()) {
        return Err(RenderError(format!(
            "value of {key:?}: multi-line values are trimmed and skip empty lines"
        )));
    }
    out.push_str(&format!("\n    {key}:{quote}"));
    for l in v.lines() {
        out.push_str(&format!("\n        {l}"));
    }
    out.push_str(&format!("\n        {quote}"));
    Ok(())
}

/// Writes actions back as a script that [`parse`] reads as the same actions (line numbers
/// aside).
pub fn render(actions: &[Action]) -> Result<String, RenderError> {
    let mut out = String::new();
    for a in actions {
        for c in a.comments.lines() {
            out.push_str(&format!("// {}\n", c.trim()));
        }
        out.push_str(&format!("{}{}.{}", a.kind.bangs(), a.actor, a.name));
        for arg in &a.params.args {
            if arg.contains('\r') {
                return Err(RenderError(format!("positional argument {arg:?}")));
            }
            if is_bare(arg) {
                out.push_str(&format!(" {arg}"));
            } else if !arg.contains('\'') && !arg.contains('\n') {
                out.push_str(&format!(" '{arg}'"));
            } else if !arg.contains('"') && !arg.contains('\n') {
                out.push_str(&format!(" \"{arg}\""));
            } else {
                return Err(RenderError(format!("positional argument {arg:?}")));
            }
        }
        let mut rest = String::new();
        for (k, v) in &a.params.values {
            render_value(k, v, &mut rest)?;
        }
        // Each named value on its own parameter line (a multi-line value ends its lines).
        out.push_str(&rest);
        out.push('\n');
    }
    Ok(out)
}
