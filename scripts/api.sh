#!/usr/bin/env bash
# The crate's public API, as docs/api.md lists it: every public item (default features),
# from rustdoc's JSON through cargo-public-api (it needs a nightly toolchain).
#   scripts/api.sh           rewrites docs/api.md
#   scripts/api.sh --check   fails if the public API differs from docs/api.md (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly public-api --version >/dev/null 2>&1; then
    cargo install cargo-public-api --locked
fi
items=$(cargo +nightly public-api --simplified 2>/dev/null)
doc=$(
    cat <<'HEAD'
# The public API of herojobs

Every public item of the library with its default features, as `scripts/api.sh` lists it
(rustdoc's JSON through `cargo public-api --simplified`). CI fails when the API and this
list differ: a change to the public surface is made on purpose, and shows up in review as a
change to this file. Regenerate it with `scripts/api.sh`.

```text
HEAD
    printf '%s\n' "$items"
    printf '```\n'
)
if [ "${1:-}" = "--check" ]; then
    if ! diff -u docs/api.md <(printf '%s\n' "$doc"); then
        echo "the public API differs from docs/api.md (above): if that is on purpose, run scripts/api.sh and commit docs/api.md" >&2
        exit 1
    fi
    echo "public API matches docs/api.md"
else
    printf '%s\n' "$doc" > docs/api.md
    echo "wrote docs/api.md ($(printf '%s\n' "$items" | wc -l) items)"
fi
