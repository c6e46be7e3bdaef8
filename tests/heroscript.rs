//! HeroScript version 2 (`heroscript.md`): every rule and example of the contract, the five
//! deliberate differences from herolib's V parser, and inputs/expectations taken from V's own
//! tests (`paramsparser/parser_test.v`, `params_test.v`, `params_getlist_test.v`,
//! `playbook/parser_test.v`, `playbook_test.v`, `texttools/namefix_test.v` in src/names.rs),
//! and the `fake` actor, including `fail_attempts` run by a real engine on a real Redis.

mod common;

use herojobs::processor::heroscript::{parse, render, Action, Actors, Kind, Params};
use herojobs::processor::JobContext;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

fn actions(script: &str) -> Vec<Action> {
    parse(script).unwrap_or_else(|e| panic!("{e}\n--- script ---\n{script}"))
}

fn one(script: &str) -> Action {
    let mut a = actions(script);
    assert_eq!(a.len(), 1, "expected one action in\n{script}\ngot {a:#?}");
    a.remove(0)
}

/// The params of the only action of `!!a.b` followed by `body` (parameter lines).
fn params(body: &str) -> Params {
    one(&format!("!!a.b\n{body}")).params
}

fn values(p: &Params) -> Vec<(&str, &str)> {
    p.values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ctx() -> JobContext {
    JobContext::new(Duration::from_secs(5), Arc::new(AtomicBool::new(false)))
}

/// Everything but the line numbers, for comparing parses.
type Shape = (
    Kind,
    String,
    String,
    BTreeMap<String, String>,
    Vec<String>,
    String,
);

fn shape(v: &[Action]) -> Vec<Shape> {
    v.iter()
        .map(|a| {
            (
                a.kind,
                a.actor.clone(),
                a.name.clone(),
                a.params.values.clone(),
                a.params.args.clone(),
                a.comments.clone(),
            )
        })
        .collect()
}

fn assert_render_stable(script: &str) {
    let a = actions(script);
    let text = render(&a).unwrap_or_else(|e| panic!("{e}\n{script}"));
    let again = parse(&text).unwrap_or_else(|e| panic!("{e}\n--- rendered ---\n{text}"));
    assert_eq!(shape(&a), shape(&again), "rendered:\n{text}");
}

// ---- Lines and actions ----

#[test]
fn the_whole_script_is_dedented_first_tabs_count_as_four_spaces() {
    let a = one("    !!vm.start name:x\n      cpu:4\n");
    assert_eq!(values(&a.params), vec![("cpu", "4"), ("name", "x")]);
    // A tab is four spaces: the parameter line is indented relative to the action.
    let a = one("\t!!vm.start\n\t\tcpu:4\n");
    assert_eq!(a.params.get("cpu"), Some("4"));
    // Indented by a tab only, with the action at column 0: still a parameter line.
    let a = one("!!vm.start\n\tcpu:4\n");
    assert_eq!(a.params.get("cpu"), Some("4"));
}

#[test]
fn empty_and_whitespace_only_lines_never_end_an_action() {
    let a = one("!!a.b x:1\n\n   \n\t\n  y:2\n");
    assert_eq!(values(&a.params), vec![("x", "1"), ("y", "2")]);
}

#[test]
fn the_number_of_bangs_is_the_kind_and_five_is_an_error() {
    let a = actions("!a.dal\n!!a.sal\n!!!a.macro\n!!!!a.wal\n");
    assert_eq!(
        a.iter().map(|a| a.kind).collect::<Vec<_>>(),
        vec![Kind::Dal, Kind::Sal, Kind::Macro, Kind::Wal]
    );
    assert_eq!(
        a.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>(),
        vec!["dal", "sal", "macro", "wal"]
    );
    let e = parse("!!a.b\n!!!!!a.c x:1").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("at most 4"), "{e}");
}

#[test]
fn one_part_names_get_actor_core_and_three_parts_are_an_error() {
    let a = one("!!start x:1");
    assert_eq!((a.actor.as_str(), a.name.as_str()), ("core", "start"));
    let a = one("!!VM.Start");
    assert_eq!((a.actor.as_str(), a.name.as_str()), ("vm", "start"));
    let e = parse("// c\n!!circle.vm.define name:x").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("3 parts"), "{e}");
    assert_eq!(e.to_string(), format!("line 2: {}", e.reason));
}

#[test]
fn a_line_indented_less_than_two_spaces_or_starting_with_bang_ends_the_action() {
    let a = actions("!!a.b x:1\n x:2\n  y:3\n!!a.b x:1 x:2\n  !!c.d\n  z:1\n");
    assert_eq!(a.len(), 3);
    // ` x:2` (one space) ended the first action; `  y:3` then belongs to no action.
    assert_eq!(values(&a[0].params), vec![("x", "1")]);
    assert_eq!(values(&a[1].params), vec![("x", "2")]);
    // An indented `!` line is a new action, and the lines after it are its parameters.
    assert_eq!(
        (a[2].actor.as_str(), values(&a[2].params)),
        ("c", vec![("z", "1")])
    );
    // `![image](x.png)` is markdown, not an action; it ends the action before it.
    let a = actions("!!a.b\n  x:1\n![image](x.png)\n  y:2\n!!c.d");
    assert_eq!(a.len(), 2);
    assert_eq!(values(&a[0].params), vec![("x", "1")]);
}

#[test]
fn comments_directly_before_an_action_are_attached_to_it() {
    let a = actions(
        "// first\n//second line\n///  third  \n!!a.b\n\ntext\n// detached\nmore text\n!!c.d\n",
    );
    assert_eq!(a[0].comments, "first\nsecond line\nthird");
    assert_eq!(a[1].comments, "");
    // A comment stays attached across blank lines; an indented `//` at top level is text.
    let a = one("// kept\n\n!!a.b");
    assert_eq!(a.comments, "kept");
    let a = one("// lost\n  // indented\n!!a.b");
    assert_eq!(a.comments, "");
    // Comments after an action's parameter lines belong to the next action.
    let a = actions("!!a.b x:1\n// for c\n!!c.d");
    assert_eq!(
        (a[0].comments.as_str(), a[1].comments.as_str()),
        ("", "for c")
    );
}

#[test]
fn a_script_without_actions_parses_to_none_and_fails_as_a_job() {
    assert_eq!(parse("").unwrap(), vec![]);
    assert_eq!(parse("just text\n// a comment\n  x:1\n").unwrap(), vec![]);
    assert_eq!(
        Actors::with_builtins()
            .run("just text", &ctx())
            .unwrap_err()
            .to_string(),
        "no actions found in script"
    );
}

// ---- Parameters ----

#[test]
fn comments_inside_an_action_never_become_values_or_args() {
    // The issue's failure: `// comment here` became the args `//`, `comment`, `here`.
    let p = params("  x:1\n  // comment here\n  y:2 // trailing note\n  arg // note\n");
    assert_eq!(values(&p), vec![("x", "1"), ("y", "2")]);
    assert_eq!(p.args, vec!["arg"]);
    let p = one("!!a.b x:'q' // it's a note\n  y:2").params;
    assert_eq!(values(&p), vec![("x", "q"), ("y", "2")]);
    // `//` inside quotes is text.
    let p = params("  msg:'see // this' other:\"a // b\"");
    assert_eq!(
        values(&p),
        vec![("msg", "see // this"), ("other", "a // b")]
    );
    // Right after `key:` it is a comment; the value may then follow on the next line, as V
    // joins the parameter lines.
    let p = params("  k: // empty\n  v\n");
    assert_eq!(values(&p), vec![("k", "v")]);
    // An HTML comment line is a comment too (V's `<!--`).
    let p = params("  <!-- note -->\n  x:1");
    assert_eq!(values(&p), vec![("x", "1")]);
}

#[test]
fn key_value_pairs_keys_lowercased_id_removed_last_duplicate_wins_trailing_key_dropped() {
    let p = one("!!a.b Name:x  Port:   25 id:7 ID:8 dup:1 dup:2 last:").params;
    assert_eq!(
        values(&p),
        vec![("dup", "2"), ("name", "x"), ("port", "25")]
    );
    // Keys are lowercased, not name-fixed.
    let p = one("!!a.b net.IP:10.0.0.1 a_b:1 x/y:2").params;
    assert_eq!(
        values(&p),
        vec![("a_b", "1"), ("net.ip", "10.0.0.1"), ("x/y", "2")]
    );
    // Values keep their case.
    assert_eq!(one("!!a.b k:MiXeD").params.get("k"), Some("MiXeD"));
    // `key:` then only spaces: the next word is its value (V joins the lines with a space).
    let p = params("  a:\n  b:1");
    assert_eq!(values(&p), vec![("a", "b:1")]);
}

#[test]
fn a_comma_continues_an_unquoted_value_as_a_list() {
    let p = one("!!a.b list: a, b, c l:1,2 ,3 m: x ,y").params;
    assert_eq!(p.get("list"), Some("a,b,c"));
    assert_eq!(p.get("l"), Some("1,2,3"));
    assert_eq!(p.get("m"), Some("x,y"));
    assert_eq!(p.list("list"), vec!["a", "b", "c"]);
    // The contract's example: quoted items are stored as V stores them.
    let p = one("!!a.b fruits: Apple, 'Dragon Fruit', 'Kiwi'").params;
    assert_eq!(p.get("fruits"), Some("Apple,\"Dragon Fruit\",Kiwi"));
    assert_eq!(p.list("fruits"), vec!["Apple", "Dragon Fruit", "Kiwi"]);
    // V wraps a quoted last item in `"` only when the list ends the parameters; the list
    // getter gives the same items either way.
    let p = one("!!a.b fruits: Apple, 'Dragon Fruit' x:1").params;
    assert_eq!(p.get("fruits"), Some("Apple,Dragon Fruit"));
    assert_eq!(p.list("fruits"), vec!["Apple", "Dragon Fruit"]);
    // V copies a quoted first item ahead of itself (`Dragon Fruit,"Dragon Fruit",Kiwi`);
    // that loses the author's list, so it is stored once here.
    let p = one("!!a.b fruits: 'Dragon Fruit', Kiwi").params;
    assert_eq!(p.get("fruits"), Some("\"Dragon Fruit\",Kiwi"));
    assert_eq!(p.list("fruits"), vec!["Dragon Fruit", "Kiwi"]);
    // A list may continue on the next parameter line.
    let p = params("  tags: a,\n    b, c\n  x:1");
    assert_eq!(values(&p), vec![("tags", "a,b,c"), ("x", "1")]);
    // A list ending in a comma is dropped as `key:` is.
    assert_eq!(values(&params("  tags:a,\n")), vec![]);
    // The list getter also strips V's brackets.
    let p = one("!!a.b l:'[a, b]'").params;
    assert_eq!(p.list("l"), vec!["a", "b"]);
}

#[test]
fn quoted_values_escapes_and_trimming() {
    let p = params("  msg:'it\\'s ok' d:\"say \\\"hi\\\"\" pad:'  padded  ' e:'' u:\"x y\"");
    assert_eq!(
        values(&p),
        vec![
            ("d", "say \"hi\""),
            ("e", ""),
            ("msg", "it's ok"),
            ("pad", "padded"),
            ("u", "x y"),
        ]
    );
    // No space is needed after a closing quote.
    let p = params("  a:'x'b:2");
    assert_eq!(values(&p), vec![("a", "x"), ("b", "2")]);
    // A quoted value may run over several parameter lines: V joins them with a space.
    let p = params("  msg:'hello\n     world'  x:1");
    assert_eq!(values(&p), vec![("msg", "hello world"), ("x", "1")]);
}

#[test]
fn every_value_is_normalised() {
    let p = params("  a:one\\ntwo b:'x<BR>y' c:'x<<BR>>y' d:\"  z  \" e:x\\\\ny");
    assert_eq!(
        values(&p),
        vec![
            ("a", "one\ntwo"),
            ("b", "x\ny"),
            ("c", "x\ny"),
            ("d", "z"),
            ("e", "x\ny"),
        ]
    );
    // Normalisation happens after the quotes are read: a value that becomes empty is empty.
    assert_eq!(params("  a:'<BR>'").get("a"), Some(""));
}

#[test]
fn multi_line_values_with_each_quote_form() {
    for q in ["'", "\"", "'''", "\"\"\""] {
        let script = format!(
            "!!a.b\n    description:{q}\n        first line\n\n          indented\n        last\n        {q}\n    x:1\n"
        );
        let p = one(&script).params;
        assert_eq!(
            values(&p),
            vec![("description", "first line\n  indented\nlast"), ("x", "1")],
            "{q}"
        );
    }
    // Up to three spaces after `:` still open one (V's rule), and a trailing comment is fine.
    let p = params("  d:   ''' // note\n    body\n  '''");
    assert_eq!(p.get("d"), Some("body"));
    // With four spaces it is an ordinary quote that spans lines, joined by spaces (as in V).
    let p = params("  d:    '\n    one\n    two\n  '");
    assert_eq!(p.get("d"), Some("one two"));
    // Any of V's closing lines closes it; the body is normalised like any value.
    let p = params("  d:'''\n    a<BR>b\n    \\n\n  '\n  x:1");
    assert_eq!(values(&p), vec![("d", "a\nb"), ("x", "1")]);
    // On the action line itself, after other parameters.
    let p = one("!!a.b x:1 d:'\n    text\n    '").params;
    assert_eq!(values(&p), vec![("d", "text"), ("x", "1")]);
    // `//` and `!` inside the body are text.
    let p = params("  d:'\n    see http://x // y\n    !not an action\n  '");
    assert_eq!(p.get("d"), Some("see http://x // y\n!not an action"));
}

#[test]
fn positional_args_in_order_de_duplicated_as_v_does() {
    let p = one("!!vm.start myvm force name:x other force MyVM").params;
    assert_eq!(p.args, vec!["myvm", "force", "other"]);
    // V compares the new word in lowercase with the words as stored.
    assert_eq!(one("!!a.b A a").params.args, vec!["A", "a"]);
    assert_eq!(one("!!a.b a A").params.args, vec!["a"]);
    assert_eq!(
        one("!!a.b x a,b ./rel").params.args,
        vec!["x", "a,b", "./rel"]
    );
    // V strips leading slashes from a bare word.
    assert_eq!(one("!!a.b /tmp/x").params.args, vec!["tmp/x"]);
    // Args and values may mix on any parameter line.
    let p = params("  one k:v\n  two");
    assert_eq!(
        (p.args.clone(), values(&p)),
        (vec!["one".to_string(), "two".to_string()], vec![("k", "v")])
    );
}

// ---- Name fixing ----

#[test]
fn actor_and_action_names_are_fixed_as_v_fixes_them() {
    let a = one("!!b@c#d.Do--It");
    assert_eq!((a.actor.as_str(), a.name.as_str()), ("bc", "do__it"));
    let a = one("!!_priv.x;y");
    assert_eq!((a.actor.as_str(), a.name.as_str()), ("_priv", "x_y"));
    let a = one("!!Mail-Client.héllo");
    assert_eq!((a.actor.as_str(), a.name.as_str()), ("mail_client", "hllo"));
    // Circles and topics keep the Go original's rule.
    assert_eq!(
        herojobs::names::path_name("circle", "My.Circle").unwrap(),
        "my.circle"
    );
    assert_eq!(herojobs::names::topic_name("").unwrap(), "default");
    assert!(herojobs::names::path_name("circle", "..").is_err());
}

// ---- Deliberate differences ----

#[test]
fn difference_1_double_slash_inside_an_unquoted_value_is_not_a_comment() {
    let p = one("!!a.b url:http://example.com/x next:1").params;
    assert_eq!(
        values(&p),
        vec![("next", "1"), ("url", "http://example.com/x")]
    );
    let p = one("!!a.b l:a,//b u:x //c").params;
    assert_eq!(values(&p), vec![("l", "a,//b"), ("u", "x")]);
}

#[test]
fn difference_2_quotes_of_the_other_kind_are_kept() {
    let p = params("  a:\"John's\" b:'say \"hi\" now'\n  c:'''\n    it's \"here\"\n    '''");
    assert_eq!(
        values(&p),
        vec![
            ("a", "John's"),
            ("b", "say \"hi\" now"),
            ("c", "it's \"here\"")
        ]
    );
    // Also in an unquoted value (V turns that `"` into `'` too).
    assert_eq!(params("  a:x\"y").get("a"), Some("x\"y"));
}

#[test]
fn difference_3_an_open_multi_line_value_keeps_lines_until_its_closing_quote() {
    let a = actions("!!a.b d:'\nnot indented\n!!not.an_action\n  '\n  x:1\n!!c.d");
    assert_eq!(a.len(), 2);
    assert_eq!(
        values(&a[0].params),
        vec![("d", "not indented\n!!not.an_action"), ("x", "1")]
    );
}

#[test]
fn difference_4_an_unterminated_quote_is_an_error_naming_its_line() {
    let e = parse("!!a.b\n  x:1\n  msg:'open\n  y:2\n").unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.reason.contains("unterminated quote"), "{e}");
    let e = parse("!!a.b\n  d:'''\n    body\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("never closed"), "{e}");
    let e = parse("!!a.b 'arg").unwrap_err();
    assert_eq!(e.line, 1);
    // A quote of the other kind does not close it.
    assert!(parse("!!a.b x:'abc\"").is_err());
}

#[test]
fn difference_5_keys_and_args_v_rejects() {
    let p = one("!!a.b --force other-key:2 'quoted arg' \"two\" x@y:1").params;
    assert_eq!(p.args, vec!["--force", "quoted arg", "two"]);
    assert_eq!(values(&p), vec![("other_key", "2"), ("xy", "1")]);
}

// ---- V's own tests ----

#[test]
fn v_parser_test_lists() {
    for (i, line) in [
        "list0: 'Apple'",
        "list1: Apple",
        "list2:Apple",
        "list3:  Apple ",
    ]
    .iter()
    .enumerate()
    {
        let p = one(&format!("!!a.b {line}")).params;
        assert_eq!(p.values, map(&[(&format!("list{i}"), "Apple")]), "{line}");
    }
    for (i, line) in [
        "list0: Apple, Banana",
        "list1: Apple ,Banana",
        "list2: Apple , Banana",
        "list3: Apple  ,  Banana",
        "list4: 'Apple', Banana",
        "list5: Apple, 'Banana'",
        "list6: 'Apple', 'Banana'",
    ]
    .iter()
    .enumerate()
    {
        let p = one(&format!("!!a.b {line}")).params;
        assert_eq!(
            p.values,
            map(&[(&format!("list{i}"), "Apple,Banana")]),
            "{line}"
        );
    }
    for (i, line) in [
        "list0: Apple, \"Dragon Fruit\", \"Passion Fruit\"",
        "list1: \"Apple\", \"Dragon Fruit\", \"Passion Fruit\"",
        "list2: Apple, 'Dragon Fruit', 'Passion Fruit'",
        "list3: 'Apple', 'Dragon Fruit', 'Passion Fruit'",
    ]
    .iter()
    .enumerate()
    {
        let p = one(&format!("!!a.b {line}")).params;
        assert_eq!(
            p.values,
            map(&[(
                &format!("list{i}"),
                "Apple,\"Dragon Fruit\",\"Passion Fruit\""
            )]),
            "{line}"
        );
        assert_eq!(
            p.list(&format!("list{i}")),
            vec!["Apple", "Dragon Fruit", "Passion Fruit"]
        );
    }
}

const V_TEXTIN: &str = "
\tid:a1 name6:aaaaa
\tname:'need to do something 1' 
\t//comment
\tdescription:'
\t\t## markdown works in it

\t\tdescription can be multiline
\t\tlets see what happens

\t\t- a
\t\t- something else

\t\t### subtitle

\t\t```python
\t\t#even code block in the other block, crazy parsing for sure
\t\tdef test():
\t\t\tconsole.print_debug()
\t\t```
\t\t'

\tname2:   test
\tname3: hi name10:'this is with space'  name11:aaa11

\t//some comment

\tname4: 'aaa'

\t//somecomment
\tname5:   'aab' 
";

const V_TEXTIN2: &str = "
\t//this is a cool piece of text
\t//
\t//now end of comment
\tid:a1 name6:aaaaa
\tname:'need to do something 1' 
\tdescription:'something<BR>yes' //comment 1

\taa //arg comment
\tbb
\tname2:   test
\tname3: hi name10:'this is with space'  name11:aaa11

\t// some comment 2

\tname4: 'aaa'

\tname5:   'aab' //somecomment 3
";

#[test]
fn v_params_test_texts_through_an_action() {
    let common = [
        ("name", "need to do something 1"),
        ("name10", "this is with space"),
        ("name11", "aaa11"),
        ("name2", "test"),
        ("name3", "hi"),
        ("name4", "aaa"),
        ("name5", "aab"),
        ("name6", "aaaaa"),
    ];
    let p = one(&format!("!!a.b{V_TEXTIN}")).params;
    let mut want = common.to_vec();
    // Blank lines inside a multi-line value are dropped in an action, as in V's playbook.
    want.push((
        "description",
        "## markdown works in it\ndescription can be multiline\nlets see what happens\n- a\n- something else\n### subtitle\n```python\n#even code block in the other block, crazy parsing for sure\ndef test():\n    console.print_debug()\n```",
    ));
    assert_eq!(p.values, map(&want));
    assert!(p.args.is_empty());

    let p = one(&format!("!!a.b{V_TEXTIN2}")).params;
    let mut want = common.to_vec();
    want.push(("description", "something\nyes"));
    assert_eq!(p.values, map(&want));
    assert_eq!(p.args, vec!["aa", "bb"]);

    let p = one("!!a.b\n\tzz //comment 1\n\tid:a1 name6:aaaaa //comment 2\n").params;
    assert_eq!(
        (p.values, p.args),
        (map(&[("name6", "aaaaa")]), vec!["zz".to_string()])
    );
}

#[test]
fn v_params_test_args_and_urls() {
    let want = map(&[
        ("color", "red"),
        ("priority", "incredible"),
        ("description", "with spaces, lets see if ok"),
    ]);
    let p = one(
        "!!a.b arg1 arg2 color:red priority:'incredible' description:'with spaces, lets see if ok'",
    )
    .params;
    assert_eq!(
        (p.values.clone(), p.args.clone()),
        (want.clone(), vec!["arg1".to_string(), "arg2".to_string()])
    );
    let p = one("!!a.b arg1 color:red priority:'incredible' arg2    description:'with spaces, lets see if ok'").params;
    assert_eq!(
        (p.values, p.args),
        (want, vec!["arg1".to_string(), "arg2".to_string()])
    );

    let p = one(
        "!!a.b arg1  color:red priority:'2' description:'with spaces, lets see if ok' x:5 arg2",
    )
    .params;
    assert_eq!(p.args, vec!["arg1", "arg2"]);
    assert_eq!(p.int("x").unwrap(), Some(5));
    assert_eq!(p.int("priority").unwrap(), Some(2));

    let url = "https://github.com/freeflowuniverse/herolib/tree/development/examples/mdbook/books_to_include1";
    assert_eq!(
        one(&format!("!!a.b color:red url:'{url}'"))
            .params
            .get("url"),
        Some(url)
    );
    assert_eq!(
        one(&format!("!!a.b color:red url:\"{url} \""))
            .params
            .get("url"),
        Some(url)
    );
}

#[test]
fn v_playbook_parser_test() {
    let text1 = "
//comment for the action
!!payment.add person:fatayera
\t//comment for name
\tname: 'TF Wallet'
\tblockchain: 'stellar' //holochain maybe?
\taccount: 'something'
\tdescription: 'TF Wallet for TFT' 
\tpreferred: false
";
    let a = one(text1);
    assert_eq!(a.comments, "comment for the action");
    assert_eq!((a.actor.as_str(), a.name.as_str()), ("payment", "add"));
    assert_eq!(
        a.params.values,
        map(&[
            ("person", "fatayera"),
            ("name", "TF Wallet"),
            ("blockchain", "stellar"),
            ("account", "something"),
            ("description", "TF Wallet for TFT"),
            ("preferred", "false"),
        ])
    );
    assert_eq!(a.params.bool("preferred").unwrap(), Some(false));
    assert_render_stable(text1);
    let a = one(
        "!!play.run url:'https://git.threefold.info/despiegk/cfg/src/branch/main/myit/hetzner.md'",
    );
    assert_eq!(
        a.params.get("url"),
        Some("https://git.threefold.info/despiegk/cfg/src/branch/main/myit/hetzner.md")
    );
}

// ---- Examples of the earlier contract that still hold ----

#[test]
fn contract_examples() {
    let a = one("!!fake.return_success message:'Hello World'");
    assert_eq!(
        (a.kind, a.actor.as_str(), a.name.as_str()),
        (Kind::Sal, "fake", "return_success")
    );
    assert_eq!(a.params.get("message"), Some("Hello World"));

    let script = "//comment for the action\n!!mailclient.configure host:localhost\n    name: 'myname'\n    port:25\n    description:'\n        a description can be multiline\n\n        like this\n        '\n";
    let a = one(script);
    assert_eq!(a.comments, "comment for the action");
    assert_eq!(
        a.params.values,
        map(&[
            ("host", "localhost"),
            ("name", "myname"),
            ("port", "25"),
            ("description", "a description can be multiline\nlike this"),
        ])
    );

    let a = actions("!!vm.define name:'Test VM' cpu:4 tags:a,b,c\n    memory: 8GB\n!!vm.start name:test_vm\n!vm.list\n!!!vm.macro\n");
    assert_eq!(a.len(), 4);
    assert_eq!(a[0].params.size("memory").unwrap(), Some(8 << 30));
    assert_eq!(a[0].params.list("tags"), vec!["a", "b", "c"]);
}

// ---- Rendering ----

#[test]
fn render_then_parse_gives_the_same_actions() {
    assert_render_stable("//c1\n//\n//c2\n!!mailclient.configure host:localhost arg1 'arg two' A a\n    name: 'my name'\n    q:\"it's\" r:'say \"x\"' nl:'a\\nb'\n    fruits: Apple, 'Dragon Fruit', 'Kiwi'\n    url:http://x.y/z\n    description:'\n        multi\n          line it's\n        '\n!x.y\n!!!!w.z --force other-key:1 :empty\n");
    assert_render_stable("!!a.b v:'\\\\' w:'a\\'b\"c' x:'' y:'<BR>' z:\"'''\"\n");
    assert_render_stable(&format!("!!a.b{V_TEXTIN}"));
    assert_render_stable(&format!("!!a.b{V_TEXTIN2}"));
}

// ---- Running ----

#[test]
fn the_fake_actor_has_every_action_of_the_contract() {
    let actors = Actors::with_builtins();
    let c = ctx();
    assert_eq!(
        actors
            .run("!!fake.return_success message:'Hello World'", &c)
            .unwrap(),
        "Hello World"
    );
    assert_eq!(
        actors.run("!!fake.return_success", &c).unwrap(),
        "Success message"
    );
    assert_eq!(
        actors
            .run("!!fake.return_error message:nope", &c)
            .unwrap_err()
            .to_string(),
        "fake.return_error (line 1): nope"
    );
    let v: serde_json::Value = serde_json::from_str(
        &actors
            .run("!!fake.return_json message:m status:s code:201", &c)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        v,
        serde_json::json!({"message": "m", "status": "s", "code": 201})
    );
    assert_eq!(actors.run("!!fake.return_empty", &c).unwrap(), "");
    assert_eq!(
        actors.run("!!fake.return_large size:2", &c).unwrap(),
        "Line 1: This is a test line\nLine 2: This is a test line"
    );
    assert_eq!(actors.run("!!fake.sleep ms:5", &c).unwrap(), "slept 5 ms");
    assert_eq!(
        actors.run("!!fake.sleep seconds:10ms", &c).unwrap(),
        "slept 10 ms"
    );
    let cancelled = JobContext::new(Duration::from_secs(5), Arc::new(AtomicBool::new(true)));
    assert!(actors.run("!!fake.sleep seconds:10", &cancelled).is_err());
    // Results are joined by newlines; the first error stops the script.
    assert_eq!(
        actors
            .run(
                "!!fake.return_success message:a\n!!fake.return_success message:b",
                &c
            )
            .unwrap(),
        "a\nb"
    );
    assert!(actors
        .run("!!fake.return_error\n!!fake.sleep seconds:30", &c)
        .unwrap_err()
        .to_string()
        .ends_with("This is a test error"));
    assert_eq!(
        actors.run("!!nobody.x", &c).unwrap_err().to_string(),
        "no handler registered for actor: nobody"
    );
    assert_eq!(
        actors.run("!!fake.fly", &c).unwrap_err().to_string(),
        "action not supported: fake.fly"
    );
    assert!(actors
        .run("!!fake.x y:'open", &c)
        .unwrap_err()
        .to_string()
        .starts_with("heroscript parse error: line 1: unterminated quote"));
}

#[test]
fn fake_fail_attempts_fails_its_first_n_attempts_then_succeeds() {
    let actors = Actors::with_builtins();
    let at = |n: u32| ctx().with_attempt(n);
    assert_eq!(ctx().attempt(), 1);
    for n in 1..=2 {
        let e = actors
            .run("!!fake.fail_attempts count:2", &at(n))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("attempt {n} fails on purpose")), "{e}");
    }
    assert_eq!(
        actors.run("!!fake.fail_attempts count:2", &at(3)).unwrap(),
        "succeeded on attempt 3"
    );
    assert_eq!(
        actors.run("!!fake.fail_attempts count:0", &at(1)).unwrap(),
        "succeeded on attempt 1"
    );
    assert!(actors
        .run("!!fake.fail_attempts count:x", &at(1))
        .unwrap_err()
        .to_string()
        .contains("not an integer"));
}

/// Scripts built from the grammar's own pieces, with a fixed seed: parsing never panics, and
/// whatever parses renders to a script that parses to the same actions (the fuzz target does
/// the same on arbitrary bytes).
#[test]
fn generated_scripts_render_back_to_the_same_actions() {
    use rand::{Rng, SeedableRng};
    const PIECES: &[&str] = &[
        "!!a.b",
        "!x",
        "!!!m.n",
        "!!!!w.z",
        "![i]",
        "//",
        "// c",
        "  ",
        "    ",
        " ",
        "\t",
        "\n",
        "\n",
        "\n",
        "\n  ",
        "\n    ",
        "k:",
        "K2:",
        "id:",
        "v",
        "V w",
        "'",
        "\"",
        "'''",
        "\"\"\"",
        "\\'",
        "\\\"",
        "\\n",
        "<BR>",
        ",",
        ", ",
        " ,",
        "http://x",
        "a//b",
        "--f",
        "x-y:",
        "é",
        ":",
        "#",
        "@",
        "/",
        "<!--",
        "'q r'",
        "\"q'r\"",
        "1,2",
        "!",
        "\r\n",
        "l: a, 'b c'",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let (mut parsed, mut rendered) = (0, 0);
    for _ in 0..30_000 {
        let n = rng.gen_range(1..24);
        let script: String = (0..n)
            .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
            .collect();
        let Ok(a) = parse(&script) else { continue };
        parsed += 1;
        let Ok(text) = render(&a) else { continue };
        rendered += 1;
        let again = parse(&text).unwrap_or_else(|e| {
            panic!("{e}\n--- script ---\n{script:?}\n--- rendered ---\n{text}")
        });
        assert_eq!(
            shape(&a),
            shape(&again),
            "\n--- script ---\n{script:?}\n--- rendered ---\n{text}"
        );
    }
    // The generator must exercise something: most scripts parse and most parses render.
    assert!(
        parsed > 10_000 && rendered > parsed * 9 / 10,
        "{parsed} parsed, {rendered} rendered"
    );
}

/// V's `params_getlist_test.v`: the list getter on stored values.
#[test]
fn v_getlist_test_values() {
    for (raw, want) in [
        ("A,A,A,A", vec!["A", "A", "A", "A"]),
        ("a", vec!["a"]),
        ("a,b,dddeegggdf ,e", vec!["a", "b", "dddeegggdf", "e"]),
        ("[\"A\",\"A\",\"A\",\"A\"]", vec!["A", "A", "A", "A"]),
        ("[\"A\",\"A\",'A',\"A\"]", vec!["A", "A", "A", "A"]),
        ("[\"A\",'\"A\"',\"A\",\"A\"]", vec!["A", "A", "A", "A"]),
        ("1, 5, 7, 2", vec!["1", "5", "7", "2"]),
    ] {
        let mut p = Params::default();
        p.values.insert("mylist".into(), raw.into());
        assert_eq!(p.list("mylist"), want, "{raw:?}");
    }
    assert!(Params::default().list("mylist").is_empty());
}

/// V's `playbook_test.v` texts: several actions, comments before each, blank lines between.
#[test]
fn v_playbook_test_texts() {
    let text1 = "
//comment for the action
!!payment.add person:fatayera
\t//comment for name
\tname: 'TF Wallet'
\tblockchain: 'stellar' //holochain maybe?
\taccount: 'something'
\tdescription: 'TF Wallet for TFT' 
\tpreferred: false

//comment2
!!payment.add person:despiegk
\tname: 'TF Wallet2'

";
    let a = actions(text1);
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0].comments.as_str(), a[0].params.values.len()),
        ("comment for the action", 6)
    );
    assert_eq!(a[1].comments, "comment2");
    assert_eq!(
        a[1].params.values,
        map(&[("person", "despiegk"), ("name", "TF Wallet2")])
    );
    assert_render_stable(text1);

    let text2 = "
//comment for the action
!!payment.add person:fatayera
\tname: 'TF Wallet'

!!payment.else person:despiegk
\tname: 'TF Wallet2'

!!actor2.else person:despiegk
\tname: 'TF Wallet2'

";
    let a = actions(text2);
    assert_eq!(
        a.iter().map(Action::full_name).collect::<Vec<_>>(),
        vec!["payment.add", "payment.else", "actor2.else"]
    );
    assert_eq!(a.iter().map(|a| a.line).collect::<Vec<_>>(), vec![3, 6, 9]);
}

/// The worker hands the job's attempt number to the handler: a job whose first run was lost
/// (active under a lease that ran out, as when an engine dies) runs again as attempt 2, and
/// `fake.fail_attempts count:1` then succeeds.
///
/// The lost run is planted as a dead engine leaves it, on the documented layouts: in Redis
/// the job hash says `active`, attempt 1, and `herojobs-leases` holds its lease with a
/// deadline 300 ms away; in OurDB its record says active, attempt 1.
#[test]
fn an_engine_gives_the_handler_the_job_s_attempt_number() {
    use herojobs::ourdb::{Config, OurDb};
    use herojobs::processor::Registry;
    use herojobs::{Client, Job, JobStatus, ParamsType};
    let redis = common::RedisServer::start();
    let (_d, base) = common::base_dir();
    let client = Client::connect(&redis.url(), &base).expect("connect");
    let job = client
        .submit(Job::new(
            "c",
            "retry",
            ParamsType::HeroScript,
            "!!fake.fail_attempts count:1",
        ))
        .expect("submit");
    let mut j = client.get(&job).expect("get");
    drop(client); // closes its job database, which is written below
    j.status = JobStatus::Active;
    j.attempts = 1;
    j.time_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let mut con = redis.conn();
    let hash = format!("herojobs:c:retry:{}", job.id());
    let _: () = redis::cmd("HSET")
        .arg(&hash)
        .arg("job")
        .arg(j.to_json())
        .arg("status")
        .arg("active")
        .arg("attempt")
        .arg(1)
        .query(&mut con)
        .expect("mark the job active");
    let _: () = redis::cmd("ZADD")
        .arg("herojobs-leases")
        .arg(now_ms + 300)
        .arg(format!("c:retry:{}", job.id()))
        .query(&mut con)
        .expect("its lease");
    let db = OurDb::open(herojobs::job_db_dir(&base, job.queue()), Config::default())
        .expect("open the job database");
    db.set(job.id(), &j.to_record()).expect("record it active");
    db.close().expect("close the job database");
    let mut engine = common::test_engine(&redis.url(), &base, 1)
        .registry(Registry::with_builtins())
        .build()
        .expect("engine");
    let client = engine.client();
    engine.start().expect("start");
    let done = client.wait(&job, Duration::from_secs(60)).expect("wait");
    assert_eq!(
        (done.status, done.result.as_str(), done.attempts),
        (JobStatus::Done, "succeeded on attempt 2", 2),
        "{done:?}"
    );
}
