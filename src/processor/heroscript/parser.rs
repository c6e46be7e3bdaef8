//! HeroScript text → actions, to the letter of version 2 of `heroscript.md` (herolib's V
//! rules with five deliberate differences, see docs/heroscript.md): lines, action kinds,
//! names, parameter lines, comments, lists, quoted and multi-line values, positional
//! arguments. Also the inverse, [`render`], which writes actions back as a script that parses
//! to the same actions.
//!
//! The parameter reader follows V's design on purpose: the parameter lines of an action form
//! one stream (lines joined by a space, as V joins them), read by a small state machine.
//! Reading it line by line lets the action reader know when a multi-line value is open
//! (deliberate difference 3) and lets `//` comments end at the end of their line.

use super::params::Params;
use crate::names::action_name_fix;

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

    /// The name used in JSON output: `dal`, `sal`, `macro` or `wal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dal => "dal",
            Kind::Sal => "sal",
            Kind::Macro => "macro",
            Kind::Wal => "wal",
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
#[non_exhaustive]
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

/// The whitespace V's `trim_space` removes (not Unicode whitespace: V leaves a no-break
/// space in place, so must we).
fn is_vspace(c: char) -> bool {
    matches!(c, ' ' | '\n' | '\t' | '\x0b' | '\x0c' | '\r')
}

/// V's `trim_space`.
pub(crate) fn vtrim(s: &str) -> &str {
    s.trim_matches(is_vspace)
}

/// Splits text into lines as V's `split_into_lines` does: `\r\n`, `\n` and a lone `\r` each
/// end a line.
fn split_lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                out.push(&text[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                out.push(&text[start..i]);
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        out.push(&text[start..]);
    }
    out
}

/// Leading spaces (tabs were already expanded).
fn lead(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Removes the common leading indentation of the non-blank lines (V's `dedent`); blank
/// lines become empty. Tabs must already be four spaces.
fn dedent(lines: &[String]) -> Vec<String> {
    let pre = lines
        .iter()
        .filter(|l| !vtrim(l).is_empty())
        .map(|l| lead(l))
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| {
            if vtrim(l).is_empty() {
                String::new()
            } else {
                // `pre` is at most this line's count of leading ASCII spaces.
                l[pre..].to_string()
            }
        })
        .collect()
}

/// Value normalisation: `\\n`, a literal `\n`, `<<BR>>` and `<BR>` become newlines, then
/// surrounding whitespace is trimmed. With `escapes`, `\'` and `\"` become the quote itself
/// (every value but a multi-line one, whose text is kept as written).
fn normalize(v: &str, escapes: bool) -> String {
    let mut s = v.replace("\\\\n", "\n").replace("\\n", "\n");
    if escapes {
        s = s.replace("\\'", "'").replace("\\\"", "\"");
    }
    s = s.replace("<<BR>>", "\n").replace("<BR>", "\n");
    vtrim(&s).to_string()
}

/// Characters V allows in a key or bare word.
fn is_valid_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | ',' | '.' | '/')
}

/// A key as V stores it: lowercased, leading `/` removed. A key V would reject (characters
/// outside `A-Za-z0-9_,./`, deliberate difference 5) is name-fixed, each `.` part alone.
fn fix_key(raw: &str) -> String {
    let k = vtrim(raw).to_ascii_lowercase();
    let k = k.trim_start_matches('/');
    if k.chars().all(is_valid_name_char) {
        k.to_string()
    } else {
        k.split('.')
            .map(action_name_fix)
            .collect::<Vec<_>>()
            .join(".")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Between words.
    Start,
    /// Reading a word (an arg, or a key once `:` comes).
    Name,
    /// After `key:` or a list's `,`: waiting for the value (or the next item).
    ValueWait,
    /// Reading an unquoted value.
    Value,
    /// Inside quotes.
    Quote,
    /// A value ended; a `,` continues it as a list.
    ValueEnd,
}

/// A multi-line value being read.
struct Multi {
    key: String,
    lines: Vec<String>,
    line: usize,
    opener: String,
}

/// Reads the parameter lines of one action.
struct ParamReader {
    st: St,
    key: String,
    value: String,
    list: bool,
    /// The value came from a multi-line block (kept as written: no escape processing).
    from_multi: bool,
    quote: char,
    quote_is_arg: bool,
    quote_line: usize,
    quote_col: usize,
    prev: char,
    /// Where the `:` of the waiting value was: line and index after it.
    wait_at: Option<(usize, usize)>,
    multi: Option<Multi>,
    params: Params,
}

/// The closing line of a multi-line value: any of V's four closers.
fn closes_multi(trimmed: &str) -> bool {
    matches!(trimmed, "'" | "\"" | "'''" | "\"\"\"")
}

impl ParamReader {
    fn new(action: String) -> ParamReader {
        ParamReader {
            st: St::Start,
            key: String::new(),
            value: String::new(),
            list: false,
            from_multi: false,
            quote: '\'',
            quote_is_arg: false,
            quote_line: 0,
            quote_col: 0,
            prev: ' ',
            wait_at: None,
            multi: None,
            params: Params {
                action,
                ..Params::default()
            },
        }
    }

    fn in_multiline(&self) -> bool {
        self.multi.is_some()
    }

    /// V stores a list whose last item was quoted and holds a space with that item in double
    /// quotes: `Apple,"Dragon Fruit"`. (V duplicates a first item this way; we do not.)
    fn quote_last_item(&mut self) {
        match self.value.rfind(',') {
            Some(i) => {
                let last = &self.value[i + 1..];
                if last.contains(' ') {
                    self.value = format!("{},\"{}\"", &self.value[..i], last);
                }
            }
            None => {
                if self.value.contains(' ') {
                    self.value = format!("\"{}\"", self.value);
                }
            }
        }
    }

    fn emit_value(&mut self) {
        let key = fix_key(&self.key);
        let value = normalize(&self.value, !self.from_multi);
        if key != "id" {
            self.params.values.insert(key, value);
        }
        self.key.clear();
        self.value.clear();
        self.list = false;
        self.from_multi = false;
    }

    fn push_arg(&mut self, word: String) {
        // V compares the new word, normalised and lowercased, with the stored words as
        // written: `a a` keeps one, `A a` keeps both.
        let probe = normalize(&word, true).to_ascii_lowercase();
        if !self.params.args.contains(&probe) {
            self.params.args.push(word);
        }
    }

    fn emit_arg(&mut self) {
        let word = self
            .key
            .trim_matches(|c| c == ' ' || c == '\'')
            .trim_start_matches('/')
            .to_string();
        self.key.clear();
        self.push_arg(word);
    }

    /// Reads one parameter line (`raw`: tab-expanded, indentation kept).
    fn feed(&mut self, raw: &str, line: usize) {
        if let Some(m) = self.multi.as_mut() {
            if closes_multi(vtrim(raw)) {
                if let Some(m) = self.multi.take() {
                    let body = dedent(&m.lines).join("\n");
                    self.key = m.key;
                    self.value = body;
                    self.from_multi = true;
                    self.list = false;
                    self.st = St::ValueEnd;
                }
            } else {
                m.lines.push(raw.to_string());
            }
            return;
        }
        let t = vtrim(raw);
        if t.is_empty() || t.starts_with("<!--") {
            return;
        }
        let chars: Vec<char> = t.chars().collect();
        let n = chars.len();
        let slashes = |i: usize| chars[i] == '/' && i + 1 < n && chars[i + 1] == '/';
        let mut i = 0;
        'line: while i < n {
            let c = chars[i];
            match self.st {
                St::ValueEnd => {
                    if c == ' ' {
                        i += 1;
                    } else if c == ',' {
                        self.list = true;
                        self.quote_last_item();
                        self.value.push(',');
                        self.from_multi = false;
                        self.wait_at = None;
                        self.st = St::ValueWait;
                        i += 1;
                    } else if slashes(i) {
                        break 'line;
                    } else {
                        self.emit_value();
                        self.st = St::Start;
                    }
                }
                St::Start => {
                    if c == ' ' {
                        i += 1;
                    } else if slashes(i) {
                        break 'line;
                    } else if c == '\'' || c == '"' {
                        // A quoted positional argument (deliberate difference 5).
                        self.st = St::Quote;
                        self.quote = c;
                        self.quote_is_arg = true;
                        self.quote_line = line;
                        self.quote_col = i + 1;
                        self.value.clear();
                        self.prev = c;
                        i += 1;
                    } else {
                        self.key.clear();
                        self.st = St::Name;
                    }
                }
                St::Name => {
                    if slashes(i) {
                        self.emit_arg();
                        self.st = St::Start;
                        break 'line;
                    } else if c == ':' {
                        self.st = St::ValueWait;
                        self.value.clear();
                        self.list = false;
                        self.wait_at = Some((line, i + 1));
                        i += 1;
                    } else if c == ' ' {
                        self.emit_arg();
                        self.st = St::Start;
                        i += 1;
                    } else {
                        self.key.push(c);
                        i += 1;
                    }
                }
                St::ValueWait => {
                    if c == ' ' {
                        i += 1;
                    } else if slashes(i) && !(i > 0 && chars[i - 1] == ',') {
                        // After `key:` or `, ` a `//` is a comment; right after a list's
                        // comma it is part of the value (deliberate difference 1).
                        break 'line;
                    } else if c == '\'' || c == '"' {
                        if self.opens_multi(&chars, i, line) {
                            return;
                        }
                        self.st = St::Quote;
                        self.quote = c;
                        self.quote_is_arg = false;
                        self.quote_line = line;
                        self.quote_col = i + 1;
                        self.prev = c;
                        i += 1;
                    } else {
                        self.st = St::Value;
                    }
                }
                St::Value => {
                    // `//` here always follows a non-space character of the value: part of
                    // it (deliberate difference 1).
                    if c == ',' {
                        self.value.push(',');
                        self.list = true;
                        self.st = St::ValueWait;
                        self.wait_at = None;
                    } else if c == ' ' {
                        self.st = St::ValueEnd;
                        self.list = false;
                    } else {
                        self.value.push(c);
                    }
                    i += 1;
                }
                St::Quote => {
                    // Only the opening kind closes (deliberate difference 2); a backslash
                    // before it escapes it, as in V.
                    if c == self.quote && self.prev != '\\' {
                        if self.quote_is_arg {
                            let v = normalize(&std::mem::take(&mut self.value), true);
                            self.push_arg(v);
                            self.st = St::Start;
                        } else {
                            self.st = St::ValueEnd;
                        }
                    } else {
                        self.value.push(c);
                    }
                    self.prev = c;
                    i += 1;
                }
            }
        }
        // The end of a line reads as the space V joins the lines with.
        match self.st {
            St::Name => {
                self.emit_arg();
                self.st = St::Start;
            }
            St::Value => {
                self.st = St::ValueEnd;
                self.list = false;
            }
            St::Quote => {
                self.value.push(' ');
                self.prev = ' ';
            }
            St::Start | St::ValueWait | St::ValueEnd => {}
        }
    }

    /// Whether the quote at `chars[i]` opens a multi-line value: right after `key:` on the
    /// same line (V allows up to three spaces before a single quote), one or three quote
    /// characters, then nothing but an optional comment. Opens it if so.
    fn opens_multi(&mut self, chars: &[char], i: usize, line: usize) -> bool {
        if self.list || !self.value.is_empty() {
            return false;
        }
        let Some((wline, wcol)) = self.wait_at else {
            return false;
        };
        if wline != line {
            return false;
        }
        let gap = i - wcol;
        let run = chars[i..]
            .iter()
            .take_while(|c| **c == '\'' || **c == '"')
            .count();
        let rest: String = chars[i + run..].iter().collect();
        let rest = vtrim(&rest);
        if !(rest.is_empty() || rest.starts_with("//")) {
            return false;
        }
        if !(run == 3 || (run == 1 && gap <= 3)) {
            return false;
        }
        self.multi = Some(Multi {
            key: std::mem::take(&mut self.key),
            lines: Vec::new(),
            line,
            opener: chars[i..i + run].iter().collect(),
        });
        self.st = St::Start;
        true
    }

    /// Ends the parameters: the last value is stored; an open quote is an error.
    fn finish(mut self) -> Result<Params, ParseError> {
        if let Some(m) = &self.multi {
            return Err(err(
                m.line,
                format!(
                    "multi-line value of {:?} opened with {} is never closed (a line holding only {} ends it)",
                    m.key, m.opener, m.opener
                ),
            ));
        }
        match self.st {
            St::Quote => {
                return Err(err(
                    self.quote_line,
                    format!(
                        "unterminated quote: {} opened at column {} is never closed",
                        self.quote, self.quote_col
                    ),
                ))
            }
            St::Value | St::ValueEnd => {
                if self.list {
                    self.quote_last_item();
                }
                self.emit_value();
            }
            St::Name => self.emit_arg(),
            St::Start | St::ValueWait => {}
        }
        Ok(self.params)
    }
}

#[derive(PartialEq, Eq)]
enum Top {
    Start,
    CommentMaybe,
    Action,
}

/// An action whose parameter lines are being read.
struct Open {
    kind: Kind,
    actor: String,
    name: String,
    comments: String,
    line: usize,
    reader: ParamReader,
}

impl Open {
    fn finish(self) -> Result<Action, ParseError> {
        Ok(Action {
            kind: self.kind,
            actor: self.actor,
            name: self.name,
            params: self.reader.finish()?,
            comments: self.comments,
            line: self.line,
        })
    }
}

fn is_action_line(trimmed: &str) -> bool {
    trimmed.starts_with('!') && !trimmed.starts_with("![")
}

/// Parses a script into actions. A script with no action parses to no actions.
pub fn parse(script: &str) -> Result<Vec<Action>, ParseError> {
    let expanded: Vec<String> = split_lines(script)
        .into_iter()
        .map(|l| l.replace('\t', "    "))
        .collect();
    let lines = dedent(&expanded);
    let mut actions = Vec::new();
    let mut state = Top::Start;
    let mut current: Option<Open> = None;
    let mut comments: Vec<String> = Vec::new();
    for (idx, line) in lines.iter().enumerate() {
        let line_no = idx + 1;
        let strip = vtrim(line);
        if strip.is_empty() {
            continue;
        }
        if state == Top::Action {
            if let Some(open) = current.as_mut() {
                // Inside an open multi-line value every line belongs to it until its
                // closing quote (deliberate difference 3).
                if open.reader.in_multiline() {
                    open.reader.feed(line, line_no);
                    continue;
                }
                if line.starts_with("  ") && !strip.starts_with('!') {
                    open.reader.feed(line, line_no);
                    continue;
                }
            }
            // Any other line ends the action and is read again as a top-level line.
            if let Some(open) = current.take() {
                actions.push(open.finish()?);
            }
            comments.clear();
            state = Top::Start;
        }
        if state == Top::CommentMaybe {
            if line.starts_with("//") {
                comments.push(strip.trim_start_matches(['/', ' ']).to_string());
                continue;
            }
            if !strip.starts_with('!') {
                // Text between a comment and the next action detaches the comment.
                comments.clear();
            }
            state = Top::Start;
        }
        if is_action_line(strip) {
            let open = start_action(strip, line_no, std::mem::take(&mut comments).join("\n"))?;
            current = Some(open);
            state = Top::Action;
        } else if line.starts_with("//") {
            comments.push(strip.trim_start_matches(['/', ' ']).to_string());
            state = Top::CommentMaybe;
        }
    }
    if let Some(open) = current {
        actions.push(open.finish()?);
    }
    Ok(actions)
}

fn start_action(strip: &str, line: usize, comments: String) -> Result<Open, ParseError> {
    let (name, params) = match strip.find(' ') {
        Some(i) => (vtrim(&strip[..i]), vtrim(&strip[i + 1..])),
        None => (strip, ""),
    };
    let bangs = name.chars().take_while(|c| *c == '!').count();
    let kind = match bangs {
        1 => Kind::Dal,
        2 => Kind::Sal,
        3 => Kind::Macro,
        4 => Kind::Wal,
        n => {
            return Err(err(
                line,
                format!("{n} `!` before an action name; at most 4 (`!` DAL, `!!` SAL, `!!!` macro, `!!!!` WAL)"),
            ))
        }
    };
    let bare = &name[bangs..];
    let parts: Vec<&str> = bare.split('.').collect();
    let (actor, action) = match parts.as_slice() {
        [a] => ("core".to_string(), action_name_fix(a)),
        [a, b] => (action_name_fix(a), action_name_fix(b)),
        _ => {
            return Err(err(
                line,
                format!(
                    "action name {bare:?} has {} parts; expected `action` or `actor.action`",
                    parts.len()
                ),
            ))
        }
    };
    let mut reader = ParamReader::new(format!("{actor}.{action}"));
    if !params.is_empty() {
        reader.feed(params, line);
    }
    Ok(Open {
        kind,
        actor,
        name: action,
        comments,
        line,
        reader,
    })
}

/// Why an action cannot be written back as HeroScript.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot render {0}")]
pub struct RenderError(String);

/// Parses the parameter text of one action (for checking an encoding).
fn reparse(lines: &[String]) -> Option<Params> {
    if lines.iter().any(|l| l.contains(['\n', '\r'])) {
        return None;
    }
    let mut r = ParamReader::new(String::new());
    for (i, l) in lines.iter().enumerate() {
        if r.in_multiline() || !vtrim(l).is_empty() {
            r.feed(l, i + 1);
        }
    }
    r.finish().ok()
}

/// Whether `lines` read back as exactly `key` = `v`, both as an action's last value and
/// followed by another one (V stores a list whose last item was quoted differently in the
/// two places).
fn value_reads_back(key: &str, v: &str, lines: &[String]) -> bool {
    let other = if key == "zz" { "zy" } else { "zz" };
    let mut followed = lines.to_vec();
    followed.push(format!("    {other}:x"));
    let alone = reparse(lines)
        .is_some_and(|p| p.args.is_empty() && p.values.len() == 1 && p.get(key) == Some(v));
    alone
        && reparse(&followed).is_some_and(|p| {
            p.args.is_empty()
                && p.values.len() == 2
                && p.get(key) == Some(v)
                && p.get(other) == Some("x")
        })
}

fn escape_quoted(v: &str, q: char) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push(q);
    for c in v.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// Ways to write a value, simplest first; each is checked by reading it back.
fn value_encodings(key: &str, v: &str) -> Vec<Vec<String>> {
    let mut out = vec![
        vec![format!("    {key}:{v}")],
        vec![format!("    {key}:{}", escape_quoted(v, '\''))],
        vec![format!("    {key}:{}", escape_quoted(v, '"'))],
    ];
    for q in ["'''", "\"\"\""] {
        let mut lines = vec![format!("    {key}:{q}")];
        lines.extend(v.split('\n').map(|l| format!("        {l}")));
        lines.push(format!("        {q}"));
        out.push(lines);
    }
    out
}

/// A fixed name as written in a script. Name fixing is not idempotent (`__x` fixes to `_x`),
/// but a fixed name holds only `a-z`, `0-9` and `_`, and writing each `_` as `-` fixes back
/// to exactly it; that form is used only when the plain one would not.
fn render_name(name: &str) -> String {
    if action_name_fix(name) == name {
        name.to_string()
    } else {
        name.replace('_', "-")
    }
}

fn arg_encodings(a: &str) -> Vec<String> {
    vec![a.to_string(), escape_quoted(a, '\''), escape_quoted(a, '"')]
}

/// Writes actions back as a script that [`parse`] reads as the same actions (line numbers
/// aside). Each value and argument is written in the simplest form that reads back as
/// itself; one that has none (e.g. text that normalisation would change) is an error.
pub fn render(actions: &[Action]) -> Result<String, RenderError> {
    let mut out = String::new();
    for a in actions {
        for c in a.comments.split('\n') {
            if a.comments.is_empty() {
                break;
            }
            if c.contains('\r') || vtrim(c) != c || c.starts_with('/') {
                return Err(RenderError(format!(
                    "comment line {c:?} of {}",
                    a.full_name()
                )));
            }
            out.push_str(&format!("// {c}\n"));
        }
        out.push_str(&format!(
            "{}{}.{}",
            a.kind.bangs(),
            render_name(&a.actor),
            render_name(&a.name)
        ));
        let mut done: Vec<String> = Vec::new();
        for arg in &a.params.args {
            // Whether an argument is kept depends only on the stored words before it, so
            // each one can be checked on its own.
            let enc = arg_encodings(arg)
                .into_iter()
                .find(|e| {
                    reparse(&[format!("    {e}")]).is_some_and(|p| {
                        p.values.is_empty() && p.args.len() == 1 && p.args[0] == *arg
                    })
                })
                .ok_or_else(|| {
                    RenderError(format!("positional argument {arg:?} of {}", a.full_name()))
                })?;
            done.push(enc);
        }
        for d in &done {
            out.push(' ');
            out.push_str(d);
        }
        for (idx, (k, v)) in a.params.values.iter().enumerate() {
            if k.starts_with(',') && idx > 0 {
                // After another value, a line starting with `,` continues that value's list.
                return Err(RenderError(format!(
                    "key {k:?} of {} (starts with a comma)",
                    a.full_name()
                )));
            }
            let enc = value_encodings(k, v)
                .into_iter()
                .find(|lines| value_reads_back(k, v, lines))
                .ok_or_else(|| {
                    RenderError(format!("value of {k:?} of {}: {v:?}", a.full_name()))
                })?;
            for l in enc {
                out.push('\n');
                out.push_str(&l);
            }
        }
        out.push('\n');
    }
    // Each value was checked on its own; lines can still interact (a multi-line block next
    // to another value, blank lines it would drop): the whole text must read back as the
    // actions, or render says so instead of writing something else.
    // Line numbers differ by design (render lays the actions out anew).
    let same = |x: &Action, y: &Action| {
        (x.kind, &x.actor, &x.name, &x.params, &x.comments)
            == (y.kind, &y.actor, &y.name, &y.params, &y.comments)
    };
    let back = parse(&out).ok();
    let reads_back = back.as_ref().is_some_and(|b| {
        b.len() == actions.len() && b.iter().zip(actions).all(|(x, y)| same(x, y))
    });
    if !reads_back {
        return Err(RenderError(
            "these actions do not read back as written when rendered together (a value's blank lines or line structure cannot be expressed)".into(),
        ));
    }
    Ok(out)
}
