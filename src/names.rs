//! Name fixing (`heroscript.md`, "Name fixing"): the one rule that turns a circle, topic,
//! actor, action or parameter name into the form used in keys, paths and lookups.
//! Values are never name-fixed.

/// Fixes a name: drops characters above U+007F, lowercases, strips leading and trailing
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
