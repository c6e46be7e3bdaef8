//! Credential redaction: every URL herojobs shows (the `run` banner, broker errors, logs,
//! hints) goes through [`redact_url`] first, so `redis://:hunter2@host` never reaches a
//! terminal, a log file or a job record.

/// Query parameters whose values are secrets (the redis crate reads `pass`/`user` from
/// `unix://` URLs).
const SECRET_QUERY_KEYS: &[&str] = &["pass", "password", "user", "username", "token", "key"];

/// The URL with its userinfo and secret query values replaced by `***`.
///
/// `redis://user:pw@h:1/0` → `redis://user:***@h:1/0`; `redis://:pw@h` → `redis://:***@h`;
/// `redis://pw@h` → `redis://***@h` (a lone userinfo may be a password, so it is hidden);
/// `unix:///s.sock?pass=pw` → `unix:///s.sock?pass=***`. The userinfo ends at the *last*
/// `@` before any `?`/`#`, so a password holding a raw `@` or `/` is hidden whole: it may
/// hide more than the userinfo, never less.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let query_at = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, tail) = rest.split_at(query_at);
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match before_query.rfind('@') {
        Some(at) => {
            let userinfo = &before_query[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str("***"),
            }
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    out.push_str(&redact_query(tail));
    out
}

/// `?a=1&pass=x#f` → `?a=1&pass=***#f`.
fn redact_query(tail: &str) -> String {
    let Some(q) = tail.strip_prefix('?') else {
        return tail.to_string();
    };
    let (query, fragment) = match q.find('#') {
        Some(i) => q.split_at(i),
        None => (q, ""),
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str()) => {
                format!("{k}=***")
            }
            _ => kv.to_string(),
        })
        .collect();
    format!("?{}{fragment}", parts.join("&"))
}

/// Replaces every occurrence of `url`'s secrets in `text` (for messages of other crates
/// that may echo a URL): the password, if any, becomes `***`.
pub fn redact_in(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    for secret in secrets_of(url) {
        if secret.len() >= 3 {
            out = out.replace(&secret, "***");
        }
    }
    out
}

/// The secret parts of a URL: its password (or lone userinfo) and secret query values.
fn secrets_of(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let query_at = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, tail) = rest.split_at(query_at);
    let mut out = Vec::new();
    if let Some(at) = before_query.rfind('@') {
        let userinfo = &before_query[..at];
        match userinfo.split_once(':') {
            Some((_, pw)) => out.push(pw.to_string()),
            None => out.push(userinfo.to_string()),
        }
    }
    if let Some(q) = tail.strip_prefix('?') {
        for kv in q.split(['&', '#']) {
            if let Some((k, v)) = kv.split_once('=') {
                if SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str()) {
                    out.push(v.to_string());
                }
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_secret_query_values_are_hidden() {
        let cases = [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis://:hunter2@127.0.0.1:1/0",
                "redis://:***@127.0.0.1:1/0",
            ),
            ("redis://bob:hunter2@h:1", "redis://bob:***@h:1"),
            ("redis://hunter2@h", "redis://***@h"),
            ("redis://:p@ss/w@rd@h:1/2", "redis://:***@h:1/2"),
            ("rediss://u:%40x@h", "rediss://u:***@h"),
            (
                "unix:///tmp/r.sock?db=1&pass=hunter2",
                "unix:///tmp/r.sock?db=1&pass=***",
            ),
            (
                "redis+unix:///s?user=u&password=x#f",
                "redis+unix:///s?user=***&password=***#f",
            ),
            ("not a url:hunter2@x", "not a url:***@x"),
            ("", ""),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
            assert!(!redact_url(url).contains("hunter2"), "{url}");
        }
    }

    #[test]
    fn secrets_are_removed_from_free_text() {
        let url = "redis://:hunter2@127.0.0.1:1";
        let msg = format!("cannot reach {url}: auth hunter2 refused");
        let r = redact_in(&msg, url);
        assert!(!r.contains("hunter2"), "{r}");
        assert!(r.contains("redis://:***@127.0.0.1:1"), "{r}");
    }
}
