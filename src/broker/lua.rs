//! The Lua scripts that make each multi-key change one atomic round trip, one file each in
//! `lua/` (their header comments say what each takes and returns). A script that derives a
//! key from another gets the key prefixes from [`keys`](super::keys) when it is loaded
//! (`{{JOB_PREFIX}}`, `{{SCHEDULED_PREFIX}}`, `{{QUEUE_PREFIX_LEN}}`): no key is spelled
//! out in Lua.

use super::keys;
use redis::Script;

/// A script with the key prefixes filled in.
fn load(text: &str) -> Script {
    Script::new(&fill(text))
}

/// The text with the key prefixes filled in.
fn fill(text: &str) -> String {
    text.replace("{{JOB_PREFIX}}", keys::JOB_PREFIX)
        .replace("{{SCHEDULED_PREFIX}}", keys::SCHEDULED_PREFIX)
        .replace(
            "{{QUEUE_PREFIX_LEN}}",
            &keys::QUEUE_PREFIX.len().to_string(),
        )
}

/// The scripts by name, each from `lua/<name>.lua`: one list for the struct, its loading
/// and the test below.
macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        /// Every script, loaded once per broker (`EVALSHA` after the first call).
        pub(crate) struct Scripts {
            $(pub(crate) $name: Script,)*
        }

        impl Scripts {
            pub(crate) fn load() -> Scripts {
                Scripts {
                    $($name: load(include_str!(concat!("lua/", stringify!($name), ".lua"))),)*
                }
            }
        }

        /// Name and text of every script.
        #[cfg(test)]
        const SOURCES: &[(&str, &str)] = &[
            $((stringify!($name), include_str!(concat!("lua/", stringify!($name), ".lua"))),)*
        ];
    };
}

scripts!(
    enqueue,
    reserve,
    finish_take,
    release,
    reclaim,
    ensure,
    watch,
    start,
    empty,
    delete,
    cancel,
    retry,
    prune,
);

#[cfg(test)]
mod tests {
    /// No script spells a key prefix (they come from `keys.rs`) and every placeholder is
    /// filled in.
    #[test]
    fn scripts_spell_no_key_and_leave_no_placeholder() {
        for &(name, text) in super::SOURCES {
            let code: String = text
                .lines()
                .map(|l| l.split("--").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                !code.contains("'hero") && !code.contains("\"hero"),
                "{name}"
            );
            let filled = super::fill(&code);
            assert!(!filled.contains("{{"), "{name}: an unknown placeholder");
        }
    }
}
