//! The HeroScript processor: parse the job's params into actions ([`parser`], version 2 of
//! the contract, see docs/heroscript.md), then call the handler registered for each
//! `actor.action`, in script order. The job's result is the handlers' results joined by
//! newlines; the first error stops the script and fails the job. Also the built-in `fake`
//! actor used by tests and the demo.

pub mod params;
pub mod parser;

use super::{JobContext, JobError, Processor};
use crate::job::Job;
pub use params::{ParamError, Params};
pub use parser::{parse, render, Action, Kind, ParseError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Handles one action.
pub type Handler = Arc<dyn Fn(&Action, &JobContext) -> Result<String, JobError> + Send + Sync>;

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

    /// Registers the handler of `actor.action` (both name-fixed as the parser fixes them).
    pub fn register(
        &mut self,
        actor: &str,
        action: &str,
        f: impl Fn(&Action, &JobContext) -> Result<String, JobError> + Send + Sync + 'static,
    ) -> &mut Self {
        self.map
            .entry(crate::names::action_name_fix(actor))
            .or_default()
            .insert(crate::names::action_name_fix(action), Arc::new(f));
        self
    }

    /// Runs a script: every action in order; stops at the first error. A script without
    /// actions fails with `no actions found in script`.
    /// A script that does not parse, or names an actor or action nobody handles, fails
    /// permanently (a retry cannot fix it).
    pub fn run(&self, script: &str, ctx: &JobContext) -> Result<String, JobError> {
        let actions = parse(script)
            .map_err(|e| JobError::permanent(format!("heroscript parse error: {e}")))?;
        if actions.is_empty() {
            return Err(JobError::permanent("no actions found in script"));
        }
        let mut results = Vec::with_capacity(actions.len());
        for a in &actions {
            if ctx.is_cancelled() {
                return Err(super::Cancelled.into());
            }
            let handlers = self.map.get(&a.actor).ok_or_else(|| {
                JobError::permanent(format!("no handler registered for actor: {}", a.actor))
            })?;
            let h = handlers.get(&a.name).ok_or_else(|| {
                JobError::permanent(format!("action not supported: {}.{}", a.actor, a.name))
            })?;
            results.push(
                h(a, ctx)
                    .map_err(|e| e.context(format_args!("{} (line {})", a.full_name(), a.line)))?,
            );
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
    fn process(&self, job: &Job, ctx: &JobContext) -> Result<String, JobError> {
        self.actors.run(&job.params, ctx)
    }
}

fn register_fake(a: &mut Actors) {
    a.register("fake", "return_success", |act, _| {
        Ok(act.params.string_or("message", "Success message"))
    });
    a.register("fake", "return_error", |act, _| {
        Err(act
            .params
            .string_or("message", "This is a test error")
            .into())
    });
    a.register("fake", "return_json", |act, _| {
        let code = act.params.int("code")?.unwrap_or(200);
        Ok(serde_json::json!({
            "message": act.params.string_or("message", "JSON response"),
            "status": act.params.string_or("status", "ok"),
            "code": code,
        })
        .to_string())
    });
    a.register("fake", "return_empty", |_, _| Ok(String::new()));
    a.register("fake", "return_large", |act, _| {
        let n = act.params.int("size")?.unwrap_or(1000);
        if !(0..=10_000).contains(&n) {
            return Err(format!("size {n} is outside 0..=10000").into());
        }
        Ok((1..=n)
            .map(|i| format!("Line {i}: This is a test line"))
            .collect::<Vec<_>>()
            .join("\n"))
    });
    a.register("fake", "sleep", |act, ctx| {
        let d = match (act.params.get("ms"), act.params.get("seconds")) {
            (Some(_), _) => Duration::from_millis(act.params.int("ms")?.unwrap_or(0).max(0) as u64),
            (None, Some(_)) => act.params.duration("seconds")?.unwrap_or_default(),
            (None, None) => Duration::from_secs(1),
        };
        ctx.sleep(d)
            .map_err(|_| format!("cancelled after sleeping less than {d:?}"))?;
        Ok(format!("slept {} ms", d.as_millis()))
    });
    // For retry tests: fails while the job's attempt number is at most `count`.
    a.register("fake", "fail_attempts", |act, ctx| {
        let count = act.params.int("count")?.unwrap_or(1);
        let attempt = i64::from(ctx.attempt());
        if attempt <= count {
            Err(format!("attempt {attempt} fails on purpose (fails the first {count})").into())
        } else {
            Ok(format!("succeeded on attempt {attempt}"))
        }
    });
}

// Tests: tests/heroscript.rs (every rule and example of the contract, V's own test inputs).
