//! HeroScript parsing: no panic on any input, and parse → render → parse is stable.
#![no_main]

use herojobs::processor::heroscript::{parse, render, Action};
use libfuzzer_sys::fuzz_target;

fn strip(v: &[Action]) -> Vec<(String, String, String, Vec<(String, String)>, Vec<String>)> {
    v.iter()
        .map(|a| {
            (
                format!("{:?}", a.kind),
                a.actor.clone(),
                a.name.clone(),
                a.params
                    .values
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                a.params.args.clone(),
            )
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(actions) = parse(text) else { return };
    // Values that cannot be written back (e.g. both quote characters on a line of their own)
    // are reported by render, never silently changed.
    let Ok(rendered) = render(&actions) else {
        return;
    };
    let again = parse(&rendered)
        .unwrap_or_else(|e| panic!("rendered script does not parse: {e}\n{rendered}"));
    assert_eq!(
        strip(&actions),
        strip(&again),
        "render is not stable:\n{rendered}"
    );
});
