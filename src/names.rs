//! Name fixing (`heroscript.md`, "Name fixing"): the two rules that turn names into the form
//! used in keys, paths and lookups. [`action_name_fix`] is herolib's V `name_fix`, for
//! HeroScript actors and actions; [`name_fix`] (with [`path_name`] and [`topic_name`]) is the
//! Go original's rule for circles and topics, which become Redis keys and directory names.
//! Values are never name-fixed.

/// Fixes an actor or action name (each `.` part of an action's name separately) exactly as
/// herolib's V `name_fix` does, so that a script names the same handler here as there:
/// lowercase; cut at the first `#`; keep `a-z` and `0-9`; keep `_` unless the character
/// before it was `_`; each of `-`, `;`, `:`, `.` and space becomes `_` unless the character
/// before it was `_` (so `do--it` is `do__it` but `a_-b` is `a_b`); every other character
/// (including anything non-ASCII) is dropped without counting as "the character before". A
/// leading `_` is kept. (V keeps a file extension after the last `.`; action name parts
/// never hold a `.`, so that branch does not apply.)
///
/// ```
/// use herojobs::names::action_name_fix;
/// assert_eq!(action_name_fix("b@c#d"), "bc");
/// assert_eq!(action_name_fix("_priv"), "_priv");
/// assert_eq!(action_name_fix("do--it"), "do__it");
/// assert_eq!(action_name_fix("Return Success"), "return_success");
/// ```
pub fn action_name_fix(name: &str) -> String {
    let lower = name
        .trim_matches(|c| matches!(c, ' ' | '\n' | '\t' | '\x0b' | '\x0c' | '\r'))
        .to_ascii_lowercase();
    let cut = lower.split('#').next().unwrap_or("");
    let mut out = String::with_capacity(cut.len());
    let mut prev = 0u8;
    for b in cut.bytes() {
        match b {
            b'_' | b'-' | b';' | b':' | b'.' | b' ' => {
                if prev != b'_' {
                    out.push('_');
                }
            }
            b'0'..=b'9' | b'a'..=b'z' => out.push(b as char),
            _ => continue,
        }
        prev = b;
    }
    out
}

/// Fixes a circle or topic name (the Go original's rule): drops characters above U+007F, lowercases, strips leading and trailing
/// spaces and single quotes, keeps `a-z`, `0-9` and `.`, replaces every other character with
/// `_` (runs collapse into one), and removes one leading `_`.
///
/// ```
/// use herojobs::names::name_fix;
/// assert_eq!(name_fix("Hello World"), "hello_world");
/// assert_eq!(name_fix("Getting- Started"), "getting_started");
/// assert_eq!(name_fix("Hello,World.MD"), "hello_world.md");
/// assert_eq!(name_fix("Symbols: !@#$%^&*()"), "symbols_");
/// ```
pub fn name_fix(name: &str) -> String {
    let ascii: String = name.chars().filter(|c| c.is_ascii()).collect();
    let lower = ascii.to_ascii_lowercase();
    let trimmed = lower.trim_matches(|c| c == ' ' || c == '\'');
    let mut out = String::with_capacity(trimmed.len());
    for c in trimmed.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    if let Some(rest) = out.strip_prefix('_') {
        out = rest.to_string();
    }
    out
}

/// Why a name cannot be used as a path component or key part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {given:?} fixes to {fixed:?}, which cannot be used as a name (empty, `.` or `..`)")]
pub struct BadName {
    /// What the name was for ("circle", "topic").
    pub what: &'static str,
    /// The name as given.
    pub given: String,
    /// What it fixed to.
    pub fixed: String,
}

/// Fixes a name that becomes a path component or key part; refuses empty, `.` and `..`.
pub fn path_name(what: &'static str, name: &str) -> Result<String, BadName> {
    let fixed = name_fix(name);
    if fixed.is_empty() || fixed == "." || fixed == ".." {
        return Err(BadName {
            what,
            given: name.to_string(),
            fixed,
        });
    }
    Ok(fixed)
}

/// Fixes a topic; an empty topic is `default`.
pub fn topic_name(topic: &str) -> Result<String, BadName> {
    if topic.trim().is_empty() {
        return Ok("default".to_string());
    }
    path_name("topic", topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_from_the_contract() {
        assert_eq!(name_fix("Hello World"), "hello_world");
        assert_eq!(name_fix("Getting- Started"), "getting_started");
        assert_eq!(name_fix("Hello,World.MD"), "hello_world.md");
        assert_eq!(name_fix("Symbols: !@#$%^&*()"), "symbols_");
    }

    /// The contract's examples and V's own `namefix_test.v` inputs.
    #[test]
    fn action_names_as_v_fixes_them() {
        for (given, fixed) in [
            ("b@c#d", "bc"),
            ("_priv", "_priv"),
            ("do--it", "do__it"),
            ("Hello World", "hello_world"),
            ("a;b:c.d e", "a_b_c_d_e"),
            ("héllo", "hllo"),
            ("MiXeD_Case", "mixed_case"),
            ("#all-cut", ""),
            ("a__b", "a_b"),
            ("a_-b", "a_b"),
            ("a-_b", "a__b"),
            ("a@_b", "a_b"),
            ("trailing_", "trailing_"),
            ("$sds__ 4F", "sds_4f"),
            ("$sds_?__ 4F", "sds_4f"),
            ("$sds_?_!\"`{_ 4F", "sds_4f"),
        ] {
            assert_eq!(action_name_fix(given), fixed, "{given:?}");
        }
    }

    #[test]
    fn edge_cases() {
        assert_eq!(name_fix("  'Quoted'  "), "quoted");
        assert_eq!(name_fix("héllo wörld"), "hllo_wrld");
        assert_eq!(name_fix("__x"), "x"); // the run collapses to one `_`, then one leading `_` goes
        assert_eq!(name_fix("a/b/../c"), "a_b_.._c");
        assert!(path_name("circle", "..").is_err());
        assert!(path_name("circle", "€€").is_err());
        assert!(path_name("circle", " ' ").is_err());
        assert_eq!(topic_name("").unwrap(), "default");
        assert_eq!(topic_name("My Topic").unwrap(), "my_topic");
    }
}
