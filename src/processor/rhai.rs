//! The Rhai processor: the job's params are a Rhai script, run in a fresh sandboxed engine
//! per job (no modules from disk, no `eval`, limits on operations, call depth, expression
//! depth, string, array and map sizes), stopped through the progress callback when the job
//! is cancelled or its deadline passes.
//!
//! In scope: `JOB_ID`, `CIRCLE_ID`, `TOPIC`, `SESSION_KEY`, `ATTEMPT` (1 on the first run).
//! Functions: `print`/`debug` (to the job log, bounded as written: see
//! [`super::LogLimits`]), `sleep(ms)` (returns early with an error when the job is cancelled),
//! `heroscript(text)` (runs HeroScript actions through the same actors; returns their
//! result). The script's value is the result: unit → empty, string → as is, anything else
//! → JSON.

use super::heroscript::Actors;
use super::{JobContext, JobError, JobLog, Processor};
use crate::job::Job;
use rhai::{Dynamic, Engine, EvalAltResult, Scope};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sandbox limits.
#[derive(Debug, Clone)]
pub struct RhaiLimits {
    /// Operations before the script is stopped.
    pub max_operations: u64,
    /// Function call depth.
    pub max_call_levels: usize,
    /// Expression nesting depth (and inside functions).
    pub max_expr_depth: usize,
    /// Longest string, in bytes.
    pub max_string_size: usize,
    /// Largest array.
    pub max_array_size: usize,
    /// Largest object map.
    pub max_map_size: usize,
}

impl Default for RhaiLimits {
    fn default() -> Self {
        RhaiLimits {
            max_operations: 10_000_000,
            max_call_levels: 64,
            max_expr_depth: 64,
            max_string_size: 1024 * 1024,
            max_array_size: 100_000,
            max_map_size: 100_000,
        }
    }
}

/// Extends each job's engine (register functions and types).
pub type EngineHook = Arc<dyn Fn(&mut Engine) + Send + Sync>;

/// The processor for `rhaiscript` jobs.
#[derive(Clone)]
pub struct RhaiProcessor {
    limits: RhaiLimits,
    actors: Actors,
    hooks: Vec<EngineHook>,
}

impl Default for RhaiProcessor {
    fn default() -> Self {
        RhaiProcessor::new(RhaiLimits::default(), Actors::with_builtins())
    }
}

impl RhaiProcessor {
    /// A processor with these limits; `heroscript(text)` uses `actors`.
    pub fn new(limits: RhaiLimits, actors: Actors) -> RhaiProcessor {
        RhaiProcessor {
            limits,
            actors,
            hooks: Vec::new(),
        }
    }

    /// Adds a hook run on every job's fresh engine: register your functions and types here.
    pub fn with_hook(mut self, hook: impl Fn(&mut Engine) + Send + Sync + 'static) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    fn engine(&self, ctx: &JobContext, log: JobLog) -> Engine {
        let mut engine = Engine::new();
        let l = &self.limits;
        engine.set_max_operations(l.max_operations);
        engine.set_max_call_levels(l.max_call_levels);
        engine.set_max_expr_depths(l.max_expr_depth, l.max_expr_depth);
        engine.set_max_string_size(l.max_string_size);
        engine.set_max_array_size(l.max_array_size);
        engine.set_max_map_size(l.max_map_size);
        // Sandbox: nothing loads from disk, no evaluating strings as code.
        engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
        engine.disable_symbol("eval");

        let cancel = ctx.cancel_flag();
        let deadline = ctx.deadline();
        let stop = Arc::clone(&cancel);
        engine.on_progress(move |_ops| {
            if stop.load(Ordering::Acquire) || Instant::now() >= deadline {
                Some(Dynamic::from("cancelled"))
            } else {
                None
            }
        });
        // Written straight into the job's bounded log: a script printing without end costs
        // no more memory than the log's limits.
        let l1 = log.clone();
        engine.on_print(move |s| l1.write(s));
        let l2 = log.clone();
        engine.on_debug(move |s, _src, pos| {
            let cut = super::floor_char_boundary(s, l2_max_line(&l2));
            l2.write(&format!("debug {pos}: {}", &s[..cut]))
        });

        let c1 = Arc::clone(&cancel);
        engine.register_fn("sleep", move |ms: i64| -> Result<(), Box<EvalAltResult>> {
            let end = Instant::now() + Duration::from_millis(ms.max(0) as u64);
            while Instant::now() < end {
                if c1.load(Ordering::Acquire) || Instant::now() >= deadline {
                    return Err("sleep interrupted: the job was cancelled".into());
                }
                std::thread::sleep((end - Instant::now()).min(Duration::from_millis(10)));
            }
            Ok(())
        });
        let actors = self.actors.clone();
        let c2 = Arc::clone(&cancel);
        let timeout = ctx.timeout();
        let attempt = ctx.attempt();
        let l3 = log;
        engine.register_fn(
            "heroscript",
            move |text: &str| -> Result<String, Box<EvalAltResult>> {
                let inner = JobContext::with_log(deadline, timeout, Arc::clone(&c2), l3.clone())
                    .with_attempt(attempt);
                actors.run(text, &inner).map_err(|e| e.to_string().into())
            },
        );
        for hook in &self.hooks {
            hook(&mut engine);
        }
        engine
    }
}

/// The per-line limit of a log (debug lines are cut before formatting).
fn l2_max_line(log: &JobLog) -> usize {
    log.limits().max_line
}

/// Turns the script's value into the job's result text.
fn result_text(v: Dynamic) -> Result<String, String> {
    if v.is_unit() {
        return Ok(String::new());
    }
    if v.is_string() {
        return v.into_string().map_err(|t| format!("result of type {t}"));
    }
    serde_json::to_string(&v)
        .map_err(|e| format!("the script's value does not convert to JSON: {e}"))
}

impl RhaiProcessor {
    /// Runs `job`: the result, or the error message it fails with.
    fn run_text(&self, job: &Job, ctx: &JobContext) -> Result<String, String> {
        let engine = self.engine(ctx, ctx.log_handle());
        let mut scope = Scope::new();
        scope.push_constant("JOB_ID", job.id as i64);
        scope.push_constant("CIRCLE_ID", job.circle.clone());
        scope.push_constant("TOPIC", job.topic.clone());
        scope.push_constant("SESSION_KEY", job.session_key.clone());
        // Which run this is (1 on the first): a script can act differently on a retry.
        scope.push_constant("ATTEMPT", ctx.attempt() as i64);
        let out = engine.eval_with_scope::<Dynamic>(&mut scope, &job.params);
        match out {
            Ok(v) => result_text(v),
            Err(e) => {
                let timed_out = Instant::now() >= ctx.deadline();
                match *e {
                    EvalAltResult::ErrorTerminated(..) if timed_out => {
                        Err(format!("timeout after {} s", ctx.timeout().as_secs()))
                    }
                    EvalAltResult::ErrorTerminated(..) => Err("cancelled".into()),
                    _ if timed_out && ctx.is_cancelled() => {
                        Err(format!("timeout after {} s", ctx.timeout().as_secs()))
                    }
                    other => Err(format!("rhai: {other}")),
                }
            }
        }
    }
}

impl Processor for RhaiProcessor {
    fn process(&self, job: &Job, ctx: &JobContext) -> Result<String, JobError> {
        self.run_text(job, ctx).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn run(script: &str, timeout: Duration) -> (Result<String, String>, Vec<String>) {
        let job = Job {
            id: 7,
            circle: "c".into(),
            topic: "t".into(),
            session_key: "sk".into(),
            params: script.into(),
            ..Job::default()
        };
        let ctx = JobContext::new(timeout, Arc::new(AtomicBool::new(false)));
        let r = RhaiProcessor::default().run_text(&job, &ctx);
        (r, ctx.take_log())
    }

    #[test]
    fn values_scope_and_log() {
        assert_eq!(run("40 + 2", Duration::from_secs(5)).0.unwrap(), "42");
        assert_eq!(run("\"text\"", Duration::from_secs(5)).0.unwrap(), "text");
        assert_eq!(run("let x = 1;", Duration::from_secs(5)).0.unwrap(), "");
        assert_eq!(
            run("#{a: [1, 2]}", Duration::from_secs(5)).0.unwrap(),
            r#"{"a":[1,2]}"#
        );
        assert_eq!(
            run(
                "`${JOB_ID} ${CIRCLE_ID} ${TOPIC} ${SESSION_KEY}`",
                Duration::from_secs(5)
            )
            .0
            .unwrap(),
            "7 c t sk"
        );
        let (r, log) = run("print(\"hello\"); debug(1); 5", Duration::from_secs(5));
        assert_eq!(r.unwrap(), "5");
        assert_eq!(log[0], "hello");
        assert!(log[1].starts_with("debug"));
        assert_eq!(
            run(
                "heroscript(\"!!fake.return_success message:hi\")",
                Duration::from_secs(5)
            )
            .0
            .unwrap(),
            "hi"
        );
    }

    #[test]
    fn errors_limits_sandbox_and_timeouts() {
        let e = run("let x = ;", Duration::from_secs(5)).0.unwrap_err();
        assert!(e.starts_with("rhai: ") && e.contains("line 1"), "{e}");
        let e = run("eval(\"1\")", Duration::from_secs(5)).0.unwrap_err();
        assert!(e.contains("eval"), "{e}");
        let e = run("import \"x\" as y; 1", Duration::from_secs(5))
            .0
            .unwrap_err();
        assert!(e.contains("x"), "{e}");
        let e = run("let s = \"x\"; loop { s += s; }", Duration::from_secs(5))
            .0
            .unwrap_err();
        assert!(
            e.to_lowercase().contains("length") || e.contains("size"),
            "{e}"
        );
        let e = run("loop { }", Duration::from_secs(3600)).0.unwrap_err();
        assert!(e.contains("operations") || e.contains("Too many"), "{e}");
        let start = Instant::now();
        let e = run("sleep(60000)", Duration::from_millis(300))
            .0
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(
            e.contains("timeout after 0 s") || e.contains("cancelled"),
            "{e}"
        );
        let e = run(
            "let i = 0; loop { i += 1; if i > 100000000 { break; } }",
            Duration::from_millis(200),
        )
        .0;
        assert!(e.is_err());
    }
}
