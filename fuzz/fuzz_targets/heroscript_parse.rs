//! HeroScript parsing (version 2 grammar): no panic on any input; parse → render → parse
//! gives the same actions (kind, actor, action, params, args, comments); rendering the
//! re-parsed actions gives the same text again.
#![no_main]

use herojobs::processor::heroscript::{parse, render, Action};
use libfuzzer_sys::fuzz_target;

type Shape = (String, String, String, Vec<(String, String)>, Vec<String>, String);

fn shape(v: &[Action]) -> Vec<Shape> {
    v.iter()
        .map(|a| {
            (
                a.kind.as_str().to_string(),
                a.actor.clone(),
                a.name.clone(),
                a.params
                    .values
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                a.params.args.clone(),
                a.comments.clone(),
            )
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(actions) = parse(text) else { return };
    for a in &actions {
        // Also the getters must not panic on anything the parser produced.
        for k in a.params.values.keys() {
            let _ = a.params.list(k);
            let _ = a.params.int(k);
            let _ = a.params.duration(k);
            let _ = a.params.size(k);
        }
    }
    // A value no form can write back (e.g. text that normalisation would change) is reported
    // by render, never silently changed.
    let Ok(rendered) = render(&actions) else {
        return;
    };
    let again = parse(&rendered)
        .unwrap_or_else(|e| panic!("rendered script does not parse: {e}\n{rendered}"));
    assert_eq!(
        shape(&actions),
        shape(&again),
        "render is not stable:\n{rendered}"
    );
    let twice = render(&again).unwrap_or_else(|e| panic!("re-render failed: {e}\n{rendered}"));
    assert_eq!(rendered, twice, "render of the re-parse differs");
});
