//! The HeroScript processor: parse the job's params into actions ([`parser`]), then call the
//! handler registered for each `actor.action`, in script order. The job's result is the
//! handlers' results joined by newlines; the first error stops the script and fails the job.

pub mod params;
pub mod parser;

use super::{JobContext, Processor};
use crate::job::Job;
pub use params::{ParamError, Params};
pub use parser::{parse, render, Action, Kind, ParseError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Handles one action.
pub type Handler = Arc<dyn Fn(&Action, &JobContext) -> Result<String, String> + Send + Sync>;

/// Handlers by actor, then action name (both name-fixed).
#[derive(Clone, Default)]
pub struct Actors {
    map: HashMap<String, HashMap<String, Handler>>,
}

impl Actors {
    /// No actors.
    pub fn new() -> Actors {
        Actors::default()
    }

    /// With the built-in `fake` actor (tests and the demo).
    pub fn with_builtins() -> Actors {
        let mut a = Actors::new();
        register_fake(&mut a);
        a
    }

    /// Registers the handler of `actor.action`.
    pub fn register(
        &mut self,
        actor: &str,
        action: &str,
        f: impl Fn(&Action, &JobContext) -> Result<String, String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.map
            .entry(crate::names::name_fix(actor))
            .or_default()
            .insert(crate::names::name_fix(action), Arc::new(f));
        self
    }

    /// Runs a script: every action in order; stops at the first error.
    pub fn run(&self, script: &str, ctx: &JobContext) -> Result<String, String> {
        let actions = parse(script).map_err(|e| format!("heroscript parse error: {e}"))?;
        let mut results = Vec::with_capacity(actions.len());
        for a in &actions {
            if ctx.is_cancelled() {
                return Err("cancelled".into());
            }
            let handlers = self
                .map
                .get(&a.actor)
                .ok_or_else(|| format!("no handler registered for actor: {}", a.actor))?;
            let h = handlers
                .get(&a.name)
                .ok_or_else(|| format!("action not supported: {}.{}", a.actor, a.name))?;
            results
                .push(h(a, ctx).map_err(|e| format!("{} (line {}): {e}", a.full_name(), a.line))?);
        }
        Ok(results.join("\n"))
    }
}

/// The processor for `heroscript` jobs.
#[derive(Clone, Default)]
pub struct HeroScriptProcessor {
    actors: Actors,
}

impl HeroScriptProcessor {
    /// A processor over these actors.
    pub fn new(actors: Actors) -> HeroScriptProcessor {
        HeroScriptProcessor { actors }
    }

    /// The actors.
    pub fn actors(&self) -> &Actors {
        &self.actors
    }
}

impl Processor for HeroScriptProcessor {
    fn process(&self, job: &Job, ctx: &JobContext) -> Result<String, String> {
        self.actors.run(&job.params, ctx)
    }
}

fn register_fake(a: &mut Actors) {
    a.register("fake", "return_success", |act, _| {
        Ok(act.params.string_or("message", "Success message"))
    });
    a.register("fake", "return_error", |act, _| {
        Err(act.params.string_or("message", "This is a test error"))
    });
    a.register("fake", "return_json", |act, _| {
        let code = act
            .params
            .int("code")
            .map_err(|e| e.to_string())?
            .unwrap_or(200);
        Ok(serde_json::json!({
            "message": act.params.string_or("message", "JSON response"),
            "status": act.params.string_or("status", "ok"),
            "code": code,
        })
        .to_string())
    });
    a.register("fake", "return_empty", |_, _| Ok(String::new()));
    a.register("fake", "return_large", |act, _| {
        let n = act
            .params
            .int("size")
            .map_err(|e| e.to_string())?
            .unwrap_or(1000);
        if !(0..=10_000).contains(&n) {
            return Err(format!("size {n} is outside 0..=10000"));
        }
        Ok((1..=n)
            .map(|i| format!("Line {i}: This is a test line"))
            .collect::<Vec<_>>()
            .join("\n"))
    });
    a.register("fake", "sleep", |act, ctx| {
        let d = match (act.params.get("ms"), act.params.get("seconds")) {
            (Some(_), _) => Duration::from_millis(
                act.params
                    .int("ms")
                    .map_err(|e| e.to_string())?
                    .unwrap_or(0)
                    .max(0) as u64,
            ),
            (None, Some(_)) => act
                .params
                .duration("seconds")
                .map_err(|e| e.to_string())?
                .unwrap_or_default(),
            (None, None) => Duration::from_secs(1),
        };
        ctx.sleep(d)
            .map_err(|_| format!("cancelled after sleeping less than {d:?}"))?;
        Ok(format!("slept {} ms", d.as_millis()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn ctx() -> JobContext {
        JobContext::new(Duration::from_secs(5), Arc::new(AtomicBool::new(false)))
    }

    #[test]
    fn contract_example_1() {
        let a = parse("!!fake.return_success message:'Hello World'").unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].kind, a[0].actor.as_str(), a[0].name.as_str()),
            (Kind::Sal, "fake", "return_success")
        );
        assert_eq!(a[0].params.get("message"), Some("Hello World"));
    }

    #[test]
    fn contract_example_2_comments_and_multiline() {
        let script = "//comment for the action\n!!mailclient.configure host:localhost\n    name: 'myname'\n    port:25\n    description:'\n        a description can be multiline\n\n        like this\n        '\n";
        let a = parse(script).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].comments, "comment for the action");
        let p = &a[0].params;
        assert_eq!(p.get("host"), Some("localhost"));
        assert_eq!(p.get("name"), Some("myname"));
        assert_eq!(p.get("port"), Some("25"));
        assert_eq!(p.int("port").unwrap(), Some(25));
        assert_eq!(
            p.get("description"),
            Some("a description can be multiline\nlike this")
        );
    }

    #[test]
    fn contract_example_3_kinds_and_lists() {
        let script = "!!vm.define name:'Test VM' cpu:4 tags:a,b,c\n    memory: 8GB\n!!vm.start name:test_vm\n!vm.list\n!!!vm.macro\n";
        let a = parse(script).unwrap();
        assert_eq!(
            a.iter().map(|a| a.kind).collect::<Vec<_>>(),
            vec![Kind::Sal, Kind::Sal, Kind::Dal, Kind::Macro]
        );
        assert_eq!(a[0].params.get("name"), Some("Test VM"));
        assert_eq!(a[0].params.get("memory"), Some("8GB"));
        assert_eq!(
            a[0].params.size("memory").unwrap(),
            Some(8 * 1024 * 1024 * 1024)
        );
        assert_eq!(a[0].params.list("tags"), vec!["a", "b", "c"]);
        assert_eq!(a[1].params.get("name"), Some("test_vm"));
    }

    #[test]
    fn contract_example_4_lines_that_end_actions() {
        let a = parse("!!a.b x:1\nx:2\n  y:3\n!!a.b x:1 x:2\n").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].params.values.len(), 1);
        assert_eq!(a[0].params.get("x"), Some("1"));
        assert_eq!(a[1].params.get("x"), Some("2"));
    }

    #[test]
    fn contract_errors() {
        let e = parse("!!circle.vm.define name:x").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("3 parts"), "{e}");
        assert_eq!(
            parse("just text\n// a comment\n").unwrap_err().reason,
            "no actions found in script"
        );
        let e = parse("!!a.b\n  x:'open\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("unterminated quote"), "{e}");
        assert!(parse("!!!!!a.b").unwrap_err().reason.contains("at most 4"));
    }

    #[test]
    fn positional_args_reserved_id_names_and_values() {
        let a = parse("!!VM.Start myvm force name:x id:7 Key:'Keep Case'").unwrap();
        assert_eq!(a[0].actor, "vm");
        assert_eq!(a[0].name, "start");
        assert_eq!(a[0].params.args, vec!["myvm", "force"]);
        assert_eq!(a[0].params.get("id"), None);
        assert_eq!(a[0].params.get("key"), Some("Keep Case"));
        let a = parse("!start x:1").unwrap();
        assert_eq!(a[0].actor, "core");
        assert_eq!(parse("![image](x.png)\n!!a.b").unwrap().len(), 1);
        assert_eq!(
            crate::processor::heroscript::params::split_list("'a, b', ,c"),
            vec!["a", "b", "c"]
        );
        let p = &parse("!!a.b n:x d:5m t:maybe").unwrap()[0].params;
        assert!(p
            .int("n")
            .unwrap_err()
            .to_string()
            .contains("action a.b: param n: \"x\" is not an integer"));
        assert_eq!(p.duration("d").unwrap(), Some(Duration::from_secs(300)));
        assert!(p.bool("t").is_err());
    }

    #[test]
    fn render_then_parse_is_stable() {
        let script = "//c1\n//c2\n!!mailclient.configure host:localhost arg1 'arg two'\n    name: 'my name'\n    q:\"it's\"\n    description:'\n        multi\n          line\n        '\n!x.y\n";
        let a = parse(script).unwrap();
        let again = parse(&render(&a).unwrap()).unwrap();
        let strip = |v: &[Action]| {
            v.iter()
                .map(|a| {
                    (
                        a.kind,
                        a.actor.clone(),
                        a.name.clone(),
                        a.params.clone(),
                        a.comments.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&a), strip(&again));
    }

    #[test]
    fn fake_actor_and_dispatch_errors() {
        let actors = Actors::with_builtins();
        let c = ctx();
        assert_eq!(
            actors
                .run("!!fake.return_success message:'Hello World'", &c)
                .unwrap(),
            "Hello World"
        );
        assert_eq!(
            actors
                .run(
                    "!!fake.return_success\n!!fake.return_success message:two",
                    &c
                )
                .unwrap(),
            "Success message\ntwo"
        );
        assert!(actors
            .run("!!fake.return_error", &c)
            .unwrap_err()
            .ends_with("This is a test error"));
        let v: serde_json::Value =
            serde_json::from_str(&actors.run("!!fake.return_json code:201", &c).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"message": "JSON response", "status": "ok", "code": 201})
        );
        assert_eq!(actors.run("!!fake.return_empty", &c).unwrap(), "");
        let large = actors.run("!!fake.return_large size:3", &c).unwrap();
        assert_eq!(
            large,
            "Line 1: This is a test line\nLine 2: This is a test line\nLine 3: This is a test line"
        );
        assert_eq!(
            actors
                .run("!!fake.return_large", &c)
                .unwrap()
                .lines()
                .count(),
            1000
        );
        assert!(actors.run("!!fake.return_large size:10001", &c).is_err());
        assert_eq!(
            actors.run("!!nobody.x", &c).unwrap_err(),
            "no handler registered for actor: nobody"
        );
        assert_eq!(
            actors.run("!!fake.fly", &c).unwrap_err(),
            "action not supported: fake.fly"
        );
        assert!(
            actors
                .run("!!fake.return_error\n!!fake.return_success", &c)
                .is_err(),
            "first error stops"
        );
        assert_eq!(actors.run("!!fake.sleep ms:20", &c).unwrap(), "slept 20 ms");
        let cancelled = JobContext::new(Duration::from_secs(5), Arc::new(AtomicBool::new(true)));
        assert!(actors.run("!!fake.sleep seconds:10", &cancelled).is_err());
    }
}
