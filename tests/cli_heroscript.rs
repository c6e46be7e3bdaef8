//! `herojobs heroscript parse [FILE|-] [--json]` as the contract's "Inspecting a parse"
//! describes it: a JSON array of {kind, actor, action, params, args, comments}; exit status 1
//! with the parse error on stderr; without --json the actions rendered back as HeroScript,
//! which parses to the same actions.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn herojobs(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herojobs"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run herojobs");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait herojobs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const SCRIPT: &str = "// configure mail\n// twice\n!!mailclient.configure host:localhost force\n    name: 'my name'\n    // not an arg\n    tags: a, b, 'c d'\n    url:http://example.com/x\n    description:'''\n        two\n        lines\n        '''\n!vm.list\n!!!!core_x\n";

fn expected_json() -> serde_json::Value {
    serde_json::json!([
        {
            "kind": "sal",
            "actor": "mailclient",
            "action": "configure",
            "params": {
                "host": "localhost",
                "name": "my name",
                // V quotes a list's last item only when the list ends the parameters.
                "tags": "a,b,c d",
                "url": "http://example.com/x",
                "description": "two\nlines"
            },
            "args": ["force"],
            "comments": "configure mail\ntwice"
        },
        {"kind": "dal", "actor": "vm", "action": "list", "params": {}, "args": [], "comments": ""},
        {"kind": "wal", "actor": "core", "action": "core_x", "params": {}, "args": [], "comments": ""}
    ])
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(&out.stdout)))
}

#[test]
fn json_from_a_file_from_stdin_and_from_dash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.hero");
    std::fs::write(&file, SCRIPT).expect("write script");
    let path = file.to_str().expect("utf-8 path");
    assert_eq!(
        json_of(&herojobs(&["heroscript", "parse", path, "--json"], None)),
        expected_json()
    );
    assert_eq!(
        json_of(&herojobs(&["heroscript", "parse", "--json"], Some(SCRIPT))),
        expected_json()
    );
    assert_eq!(
        json_of(&herojobs(
            &["--json", "heroscript", "parse", "-"],
            Some(SCRIPT)
        )),
        expected_json()
    );
    // No actions: an empty array, not an error.
    assert_eq!(
        json_of(&herojobs(
            &["heroscript", "parse", "--json"],
            Some("just text\n")
        )),
        serde_json::json!([])
    );
}

#[test]
fn rendering_parses_back_to_the_same_actions() {
    let out = herojobs(&["heroscript", "parse", "-"], Some(SCRIPT));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rendered = text(&out.stdout);
    assert!(rendered.contains("!!mailclient.configure"), "{rendered}");
    assert_eq!(
        json_of(&herojobs(
            &["heroscript", "parse", "--json"],
            Some(&rendered)
        )),
        expected_json(),
        "rendered:\n{rendered}"
    );
    // And rendering is a fixed point.
    let again = herojobs(&["heroscript", "parse"], Some(&rendered));
    assert_eq!(text(&again.stdout), rendered);
}

#[test]
fn a_parse_error_exits_1_with_the_line_on_stderr() {
    for (script, needle) in [
        (
            "!!a.b\n  x:1\n  msg:'never closed\n",
            "line 3: unterminated quote",
        ),
        ("!!a.b.c x:1\n", "line 1: action name"),
        ("\n!!!!!a.b\n", "line 2: 5 `!`"),
    ] {
        let out = herojobs(&["heroscript", "parse", "--json"], Some(script));
        assert_eq!(out.status.code(), Some(1), "{script:?}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains(needle),
            "{script:?}: {}",
            text(&out.stderr)
        );
    }
    let out = herojobs(&["heroscript", "parse", "/nonexistent/x.hero"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/x.hero"),
        "{}",
        text(&out.stderr)
    );
}
