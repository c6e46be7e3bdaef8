//! The Lua scripts that make each multi-key change one atomic round trip, one file each in
//! `lua/` (their header comments say what each takes and returns). A script that derives a
//! key from another gets the key prefixes from [`keys`](super::keys) when it is loaded
//! (`{{JOB_PREFIX}}`, `{{QUEUE_PREFIX_LEN}}`): no key is spelled out in Lua.

use super::keys;
use redis::Script;

/// Every script, loaded once per broker (`EVALSHA` after the first call).
pub(crate) struct Scripts {
    pub(crate) enqueue: Script,
    pub(crate) reserve: Script,
    pub(crate) finish_take: Script,
    pub(crate) release: Script,
    pub(crate) reclaim: Script,
    pub(crate) ensure: Script,
    pub(crate) watch: Script,
    pub(crate) start: Script,
    pub(crate) empty: Script,
    pub(crate) delete: Script,
    pub(crate) cancel: Script,
    pub(crate) retry: Script,
    pub(crate) prune: Script,
}

/// A script with the key prefixes filled in.
fn load(text: &str) -> Script {
    Script::new(&text.replace("{{JOB_PREFIX}}", keys::JOB_PREFIX).replace(
        "{{QUEUE_PREFIX_LEN}}",
        &keys::QUEUE_PREFIX.len().to_string(),
    ))
}

impl Scripts {
    pub(crate) fn load() -> Scripts {
        Scripts {
            enqueue: load(include_str!("lua/enqueue.lua")),
            reserve: load(include_str!("lua/reserve.lua")),
            finish_take: load(include_str!("lua/finish_take.lua")),
            release: load(include_str!("lua/release.lua")),
            reclaim: load(include_str!("lua/reclaim.lua")),
            ensure: load(include_str!("lua/ensure.lua")),
            watch: load(include_str!("lua/watch.lua")),
            start: load(include_str!("lua/start.lua")),
            empty: load(include_str!("lua/empty.lua")),
            delete: load(include_str!("lua/delete.lua")),
            cancel: load(include_str!("lua/cancel.lua")),
            retry: load(include_str!("lua/retry.lua")),
            prune: load(include_str!("lua/prune.lua")),
        }
    }
}

#[cfg(test)]
mod tests {
    /// No script spells a key prefix (they come from `keys.rs`) and every placeholder is
    /// filled in.
    #[test]
    fn scripts_spell_no_key_and_leave_no_placeholder() {
        for (name, text) in [
            ("enqueue", include_str!("lua/enqueue.lua")),
            ("reserve", include_str!("lua/reserve.lua")),
            ("finish_take", include_str!("lua/finish_take.lua")),
            ("release", include_str!("lua/release.lua")),
            ("reclaim", include_str!("lua/reclaim.lua")),
            ("ensure", include_str!("lua/ensure.lua")),
            ("watch", include_str!("lua/watch.lua")),
            ("start", include_str!("lua/start.lua")),
            ("empty", include_str!("lua/empty.lua")),
            ("delete", include_str!("lua/delete.lua")),
            ("cancel", include_str!("lua/cancel.lua")),
            ("retry", include_str!("lua/retry.lua")),
            ("prune", include_str!("lua/prune.lua")),
        ] {
            let code: String = text
                .lines()
                .map(|l| l.split("--").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                !code.contains("'hero") && !code.contains("\"hero"),
                "{name}"
            );
            let filled = code
                .replace("{{JOB_PREFIX}}", super::keys::JOB_PREFIX)
                .replace("{{QUEUE_PREFIX_LEN}}", "10");
            assert!(!filled.contains("{{"), "{name}: an unknown placeholder");
        }
    }
}
