//! Parameters of one HeroScript action: named values (keys lowercased, values normalised as
//! the contract says) and positional arguments, with typed getters whose errors name the
//! action, the key and the value.

use std::collections::BTreeMap;
use std::time::Duration;

/// A typed getter could not convert a value (or the key is missing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("action {action}: param {key}: {reason}")]
#[non_exhaustive]
pub struct ParamError {
    /// `actor.action`.
    pub action: String,
    /// The key.
    pub key: String,
    /// What was wrong (includes the value).
    pub reason: String,
}

/// Named and positional parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// `actor.action`, for error messages.
    pub action: String,
    /// Named values; the last duplicate wins; `id` is removed.
    pub values: BTreeMap<String, String>,
    /// Bare words, in order.
    pub args: Vec<String>,
}

impl Params {
    fn err(&self, key: &str, reason: String) -> ParamError {
        ParamError {
            action: self.action.clone(),
            key: key.to_string(),
            reason,
        }
    }

    /// The raw value, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A string value, or `default` when absent.
    pub fn string_or(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or(default).to_string()
    }

    /// A required string value.
    pub fn string(&self, key: &str) -> Result<String, ParamError> {
        self.get(key)
            .map(str::to_string)
            .ok_or_else(|| self.err(key, "missing".into()))
    }

    /// An integer value.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ParamError> {
        self.get(key)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| self.err(key, format!("{v:?} is not an integer")))
            })
            .transpose()
    }

    /// A boolean: true/yes/1/on or false/no/0/off (any case).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ParamError> {
        self.get(key)
            .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" | "y" => Ok(true),
                "false" | "no" | "0" | "off" | "n" => Ok(false),
                _ => Err(self.err(
                    key,
                    format!("{v:?} is not a boolean (true/false, yes/no, 1/0)"),
                )),
            })
            .transpose()
    }

    /// A list, read as V's `get_list` reads one: surrounding `[`, `]` and spaces removed,
    /// split on `,`, each item trimmed of spaces and quotes, empty items dropped. The raw value
    /// `Apple,"Dragon Fruit",Kiwi` gives `Apple`, `Dragon Fruit`, `Kiwi`.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key).map(split_list).unwrap_or_default()
    }

    /// A duration: a number with an optional unit `ms`, `s`, `m`, `h`, `d` (no unit: seconds).
    pub fn duration(&self, key: &str) -> Result<Option<Duration>, ParamError> {
        self.get(key)
            .map(|v| {
                parse_duration(v).ok_or_else(|| {
                    self.err(
                        key,
                        format!("{v:?} is not a duration (e.g. 500ms, 10s, 5m, 2h)"),
                    )
                })
            })
            .transpose()
    }

    /// A size in bytes: a number with an optional unit `B`, `KB`, `MB`, `GB`, `TB` (powers of
    /// 1024; no unit: bytes).
    pub fn size(&self, key: &str) -> Result<Option<u64>, ParamError> {
        self.get(key)
            .map(|v| {
                parse_size(v)
                    .ok_or_else(|| self.err(key, format!("{v:?} is not a size (e.g. 512MB, 8GB)")))
            })
            .transpose()
    }
}

/// Splits a list value (see [`Params::list`]).
pub fn split_list(v: &str) -> Vec<String> {
    v.trim_matches(|c| c == '[' || c == ']' || c == ' ')
        .split(',')
        .map(|s| {
            s.trim_matches(|c| c == '\'' || c == '"' || c == ' ')
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn split_unit(v: &str) -> Option<(f64, String)> {
    let v = v.trim();
    let idx = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(idx);
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    Some((n, unit.trim().to_ascii_lowercase()))
}

/// Parses `500ms`, `10s`, `5m`, `2h`, `1d` or a plain number of seconds.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let (n, unit) = split_unit(v)?;
    let secs = match unit.as_str() {
        "ms" => n / 1000.0,
        "" | "s" | "sec" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// Parses `512MB`, `8GB`, `10KB`, `100B` or a plain number of bytes (powers of 1024).
pub fn parse_size(v: &str) -> Option<u64> {
    let (n, unit) = split_unit(v)?;
    let mult = match unit.as_str() {
        "" | "b" => 1.0,
        "kb" | "k" | "kib" => 1024.0,
        "mb" | "m" | "mib" => 1024.0 * 1024.0,
        "gb" | "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "tb" | "t" | "tib" => 1024.0f64.powi(4),
        _ => return None,
    };
    let bytes = n * mult;
    (bytes <= u64::MAX as f64).then_some(bytes as u64)
}
