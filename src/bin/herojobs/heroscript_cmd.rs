//! `herojobs heroscript parse`: shows how a script parses (a user's way to check a script,
//! and the way parses are compared with herolib's V parser): the actions as JSON, or
//! rendered back as HeroScript.

use super::{Failure, Global};
use clap::{Args, Subcommand};
use herojobs::processor::heroscript::{parse, render, Action};
use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;

/// HeroScript subcommands.
#[derive(Subcommand)]
pub enum HeroscriptCommand {
    /// Parse a script and print its actions (as HeroScript, or with --json as a JSON array);
    /// exit status 1 with the parse error on stderr.
    Parse(ParseArgs),
}

/// Arguments of `heroscript parse`.
#[derive(Args)]
pub struct ParseArgs {
    /// The script file; `-` or nothing reads stdin.
    pub file: Option<String>,
}

/// One action as the contract's "Inspecting a parse" prints it (fields in its order).
#[derive(serde::Serialize)]
struct JsonAction<'a> {
    kind: &'static str,
    actor: &'a str,
    action: &'a str,
    params: &'a BTreeMap<String, String>,
    args: &'a [String],
    comments: &'a str,
}

fn to_json(actions: &[Action]) -> Result<String, serde_json::Error> {
    let list: Vec<JsonAction<'_>> = actions
        .iter()
        .map(|a| JsonAction {
            kind: a.kind.as_str(),
            actor: &a.actor,
            action: &a.name,
            params: &a.params.values,
            args: &a.params.args,
            comments: &a.comments,
        })
        .collect();
    serde_json::to_string_pretty(&list)
}

/// Runs a `heroscript` subcommand.
pub fn run(g: &Global, cmd: HeroscriptCommand) -> Result<ExitCode, Failure> {
    match cmd {
        HeroscriptCommand::Parse(a) => {
            let (name, text) = match a.file.as_deref() {
                None | Some("-") => {
                    let mut buf = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut buf)
                        .map_err(|e| format!("reading stdin: {e}"))?;
                    ("stdin".to_string(), buf)
                }
                Some(f) => (
                    f.to_string(),
                    std::fs::read(f).map_err(|e| format!("reading {f}: {e}"))?,
                ),
            };
            let text =
                String::from_utf8(text).map_err(|e| format!("{name}: not UTF-8 text ({e})"))?;
            let actions = parse(&text).map_err(|e| format!("{name}: {e}"))?;
            if g.json {
                println!("{}", to_json(&actions)?);
            } else {
                print!("{}", render(&actions).map_err(|e| format!("{name}: {e}"))?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
