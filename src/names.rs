//! Name fixing (docs/heroscript.md, "Name fixing"): the two rules that turn names into the form
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
#[non_exhaustive]
pub struct BadName {
    /// What the name was for ("circle", "topic").
    pub what: &'static str,
    /// The name as given.
    pub given: String,
    /// What it fixed to.
    pub fixed: String,
}

impl BadName {
    /// The error for a circle/topic pair that should have been fixed already and is not
    /// (a record or key from outside).
    pub(crate) fn not_fixed(circle: &str, topic: &str) -> BadName {
        let fixed = match (path_name("circle", circle), topic_name(topic)) {
            (Ok(c), Ok(t)) => format!("{c}/{t}"),
            _ => String::new(),
        };
        BadName {
            what: "circle/topic (not name-fixed)",
            given: format!("{circle}/{topic}"),
            fixed,
        }
    }
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

/// Whether `name` is already a usable fixed circle or topic name (what [`path_name`]
/// returns for it): the check for names read from Redis, which is untrusted. On the
/// engine's path for every job, so it allocates nothing: a fixed name is `a-z`, `0-9`, `.`
/// and `_`, never starts with `_`, never holds `__` (runs collapse), and is not empty, `.`
/// or `..` (the unit test checks this against [`path_name`]).
fn is_fixed(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && name != "."
        && name != ".."
        && b[0] != b'_'
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'_')
        && !b.windows(2).any(|w| w == b"__")
}

/// A queue: a circle and a topic, both name-fixed. Every way to make one either fixes the
/// names ([`QueueName::new`], [`FromStr`](std::str::FromStr)) or refuses names that are not
/// fixed already ([`QueueName::from_fixed`], for names read from Redis), so a `QueueName`
/// can become a Redis key or a directory as it is: "fixed" is its type, not a convention.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName {
    circle: String,
    topic: String,
}

impl QueueName {
    /// The queue of `circle` and `topic`, name-fixed (an empty topic is `default`).
    ///
    /// ```
    /// use herojobs::QueueName;
    /// let q = QueueName::new("My Circle", "")?;
    /// assert_eq!(q.to_string(), "my_circle/default");
    /// assert!(QueueName::new("..", "t").is_err());
    /// # Ok::<(), herojobs::BadName>(())
    /// ```
    pub fn new(circle: &str, topic: &str) -> Result<QueueName, BadName> {
        Ok(QueueName {
            circle: path_name("circle", circle)?,
            topic: topic_name(topic)?,
        })
    }

    /// The queue of names that must be fixed already (names read from Redis, which is
    /// untrusted): `None` for anything [`QueueName::new`] would change or refuse, so a
    /// planted `../x` never becomes a path or another circle's key.
    pub fn from_fixed(circle: &str, topic: &str) -> Option<QueueName> {
        (is_fixed(circle) && is_fixed(topic)).then(|| QueueName {
            circle: circle.to_string(),
            topic: topic.to_string(),
        })
    }

    /// The circle (name-fixed).
    pub fn circle(&self) -> &str {
        &self.circle
    }

    /// The topic (name-fixed).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The job `id` of this queue.
    pub fn job(&self, id: u32) -> JobRef {
        JobRef {
            queue: self.clone(),
            id,
        }
    }
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.circle, self.topic)
    }
}

impl std::str::FromStr for QueueName {
    type Err = BadRef;
    /// Reads `circle/topic` (names are fixed).
    fn from_str(s: &str) -> Result<QueueName, BadRef> {
        let (c, t) = s.split_once('/').ok_or_else(|| BadRef::Shape {
            given: s.to_string(),
            expected: "circle/topic",
        })?;
        Ok(QueueName::new(c, t)?)
    }
}

/// A job's address: its queue and its id, written `circle/topic/id` (how errors, logs and
/// the command line name a job; [`FromStr`](std::str::FromStr) reads it back).
///
/// ```
/// use herojobs::JobRef;
/// let r: JobRef = "ops/builds/42".parse()?;
/// assert_eq!((r.circle(), r.topic(), r.id()), ("ops", "builds", 42));
/// assert_eq!(r.to_string().parse::<JobRef>()?, r);
/// # Ok::<(), herojobs::BadRef>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobRef {
    queue: QueueName,
    id: u32,
}

impl JobRef {
    /// Job `id` of `queue`.
    pub fn new(queue: QueueName, id: u32) -> JobRef {
        JobRef { queue, id }
    }

    /// Its queue.
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }

    /// Its circle (name-fixed).
    pub fn circle(&self) -> &str {
        &self.queue.circle
    }

    /// Its topic (name-fixed).
    pub fn topic(&self) -> &str {
        &self.queue.topic
    }

    /// Its id within the queue.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl std::fmt::Display for JobRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.queue, self.id)
    }
}

impl std::str::FromStr for JobRef {
    type Err = BadRef;
    /// Reads `circle/topic/id` (names are fixed; the id is a positive 32-bit number).
    fn from_str(s: &str) -> Result<JobRef, BadRef> {
        let shape = || BadRef::Shape {
            given: s.to_string(),
            expected: "circle/topic/id",
        };
        let (queue, id) = s.rsplit_once('/').ok_or_else(shape)?;
        let queue: QueueName = queue.parse().map_err(|e| match e {
            BadRef::Shape { .. } => shape(),
            other => other,
        })?;
        let id = id
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| BadRef::Id {
                given: s.to_string(),
            })?;
        Ok(JobRef { queue, id })
    }
}

/// Why a `circle/topic[/id]` text is not a queue or job address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadRef {
    /// Not of the form expected.
    #[error("{given:?} is not of the form {expected}")]
    Shape {
        /// The text.
        given: String,
        /// The form wanted (`circle/topic/id`, `circle/topic`).
        expected: &'static str,
    },
    /// The id part is not a positive 32-bit number.
    #[error("{given:?}: expected circle/topic/id with an id from 1 to 4294967295")]
    Id {
        /// The text.
        given: String,
    },
    /// A circle or topic that cannot be used.
    #[error(transparent)]
    Name(#[from] BadName),
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

    /// The allocation-free check agrees with name fixing itself, on names built from the
    /// characters that matter (every string of up to 4 of them) and on odd ones.
    #[test]
    fn is_fixed_agrees_with_path_name() {
        let alphabet = ['a', '0', '.', '_', 'A', ' ', '-', '\'', 'é', ':'];
        let mut names = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for n in &frontier {
                for c in alphabet {
                    next.push(format!("{n}{c}"));
                }
            }
            names.extend(next.iter().cloned());
            frontier = next;
        }
        names.extend(["..", ".", "a..b", "_x", "x_", "Hello World", "../etc"].map(String::from));
        for n in names {
            let slow = path_name("name", &n).is_ok_and(|f| f == n);
            assert_eq!(is_fixed(&n), slow, "{n:?}");
        }
    }

    #[test]
    fn queue_names_are_fixed_or_refused() {
        let q = QueueName::new("Ops Team", "").unwrap();
        assert_eq!((q.circle(), q.topic()), ("ops_team", "default"));
        assert!(QueueName::from_fixed("ops_team", "default").is_some());
        for (c, t) in [
            ("Ops", "t"),
            ("..", "t"),
            ("c", "a b"),
            ("c", ""),
            ("", "t"),
            ("c", "x:y"),
        ] {
            assert!(QueueName::from_fixed(c, t).is_none(), "{c:?}/{t:?}");
        }
    }

    #[test]
    fn job_refs_round_trip_and_refuse_bad_text() {
        let r: JobRef = "Ops/Builds/42".parse().unwrap();
        assert_eq!(r.to_string(), "ops/builds/42");
        assert_eq!(r.to_string().parse::<JobRef>().unwrap(), r);
        assert_eq!(QueueName::new("ops", "builds").unwrap().job(42), r);
        for bad in [
            "",
            "ops",
            "ops/5",
            "ops/t/0",
            "ops/t/x",
            "ops/t/-1",
            "../t/5",
            "ops/t/4294967296",
        ] {
            assert!(bad.parse::<JobRef>().is_err(), "{bad:?}");
        }
        assert!(matches!("../t/5".parse::<JobRef>(), Err(BadRef::Name(_))));
        assert!(matches!(
            "ops/t/0".parse::<JobRef>(),
            Err(BadRef::Id { .. })
        ));
    }
}
