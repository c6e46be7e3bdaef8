//! `herojobs ourdb ...`: look inside an OurDB directory, for people and scripts.

use crate::Failure;
use clap::{Args, Subcommand};
use herojobs::ourdb::{Config, OurDb};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Options every `ourdb` subcommand takes.
#[derive(Args)]
pub struct DbArgs {
    /// Database directory.
    dir: PathBuf,
    /// Lookup keysize (2, 3, 4 or 6). Needed only for a database written by herolib, which
    /// records none; one created by herojobs records it in ourdb.json.
    #[arg(long)]
    keysize: Option<u8>,
}

#[derive(Subcommand)]
pub enum OurdbCommand {
    /// Print a summary: keysize, next id, live records, files and bytes.
    Stats {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the current version of a record to stdout, as raw bytes.
    Get {
        #[command(flatten)]
        db: DbArgs,
        /// Record id.
        id: u32,
    },
    /// Store stdin as a new record and print its id (creates the database if needed).
    Add {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print the versions of a record, newest first.
    History {
        #[command(flatten)]
        db: DbArgs,
        /// Record id.
        id: u32,
        /// How many versions at most.
        #[arg(long, default_value_t = 10)]
        depth: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// One JSON line per live id: id, length, file, position. With --circle (and --topic)
    /// instead of a directory: the job database under --base, each record decoded as the
    /// job's JSON.
    Dump {
        /// Database directory (or --circle/--topic).
        #[arg(required_unless_present = "circle")]
        dir: Option<PathBuf>,
        /// Lookup keysize (see `stats`).
        #[arg(long)]
        keysize: Option<u8>,
        /// The circle whose job database to decode.
        #[arg(long, conflicts_with = "dir")]
        circle: Option<String>,
        /// Its topic.
        #[arg(long, default_value = "default", requires = "circle")]
        topic: String,
    },
    /// Verify every record and its history; exit 0 only if all are intact.
    Check {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Rewrite live records into fresh files, dropping deleted records and (unless
    /// --keep-history) history. Online: writers of other processes go on meanwhile.
    Compact {
        #[command(flatten)]
        db: DbArgs,
        /// Versions to keep per id, newest first (0 or 1: latest only).
        #[arg(long, default_value_t = 0)]
        keep_history: usize,
    },
}

/// How a subcommand opens the database: inspection opens read-only and creates nothing in
/// the directory (it may be a foreign or read-only database); `add` may create one.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Inspect,
    Write,
    Create,
}

fn open(args: &DbArgs, mode: Mode) -> Result<OurDb, Failure> {
    if let Some(k) = args.keysize {
        if ![2, 3, 4, 6].contains(&k) {
            return Err(Failure {
                message: format!("--keysize {k}: must be 2, 3, 4 or 6"),
                code: 2,
            });
        }
    }
    let cfg = Config {
        keysize: args.keysize,
        create: mode == Mode::Create,
        read_only: mode == Mode::Inspect,
        ..Config::default()
    };
    Ok(OurDb::open(&args.dir, cfg)?)
}

/// Text for a person: printable ASCII as is, everything else escaped.
fn printable(data: &[u8]) -> String {
    data.escape_ascii().to_string()
}

pub fn run(g: &crate::Global, cmd: OurdbCommand) -> Result<ExitCode, Failure> {
    let mut out = std::io::stdout().lock();
    match cmd {
        OurdbCommand::Stats { db, json } => {
            let db = open(&db, Mode::Inspect)?;
            let s = db.stats()?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&s)?)?;
            } else {
                writeln!(out, "directory     {}", s.dir.display())?;
                writeln!(out, "keysize       {}", s.keysize)?;
                writeln!(
                    out,
                    "mode          {}",
                    if s.incremental {
                        "incremental"
                    } else {
                        "key-value"
                    }
                )?;
                writeln!(out, "next id       {}", s.next_id)?;
                writeln!(out, "live records  {}", s.live_records)?;
                writeln!(
                    out,
                    "data files    {} ({} bytes)",
                    s.data_files, s.data_bytes
                )?;
                writeln!(
                    out,
                    "live / dead   {} / {} bytes ({:.0} % dead)",
                    s.space.live_bytes,
                    s.space.dead_bytes,
                    s.space.dead_ratio() * 100.0
                )?;
                writeln!(out, "lookup table  {} bytes", s.lookup_bytes)?;
                writeln!(out, "file size     {} bytes", s.file_size)?;
                writeln!(out, "generation    {}", s.generation)?;
            }
        }
        OurdbCommand::Get { db, id } => {
            let db = open(&db, Mode::Inspect)?;
            let data = db.get(id)?;
            out.write_all(&data)?;
        }
        OurdbCommand::Add { db } => {
            let mut data = Vec::new();
            std::io::stdin().read_to_end(&mut data)?;
            let db = open(&db, Mode::Create)?;
            let id = db.add(&data)?;
            db.close()?;
            writeln!(out, "{id}")?;
        }
        OurdbCommand::History {
            db,
            id,
            depth,
            json,
        } => {
            let db = open(&db, Mode::Inspect)?;
            for (i, v) in db.history(id, depth)?.iter().enumerate() {
                if json {
                    let line = match std::str::from_utf8(v) {
                        Ok(text) => serde_json::json!({"version": i, "len": v.len(), "utf8": text}),
                        Err(_) => serde_json::json!({"version": i, "len": v.len(),
                            "hex": v.iter().map(|b| format!("{b:02x}")).collect::<String>()}),
                    };
                    writeln!(out, "{line}")?;
                } else {
                    writeln!(out, "#{i} ({} bytes): {}", v.len(), printable(v))?;
                }
            }
        }
        OurdbCommand::Dump {
            dir,
            keysize,
            circle: Some(circle),
            topic,
        } => {
            let q = herojobs::QueueName::new(&circle, &topic)?;
            let args = DbArgs {
                dir: dir.unwrap_or_else(|| herojobs::job_db_dir(&g.base(), &q)),
                keysize,
            };
            if !args.dir.is_dir() {
                return Err(format!("no job database for {q} at {}", args.dir.display()).into());
            }
            let db = open(&args, Mode::Inspect)?;
            for id in db.ids() {
                let line = match db.get(id).map_err(|e| e.to_string()).and_then(|bytes| {
                    herojobs::Job::from_record(id, &bytes).map_err(|e| e.to_string())
                }) {
                    Ok(job) => job.to_json(),
                    Err(e) => serde_json::json!({"jobid": id, "unreadable": e}).to_string(),
                };
                writeln!(out, "{line}")?;
            }
        }
        OurdbCommand::Dump { dir, keysize, .. } => {
            let args = DbArgs {
                dir: dir.ok_or("a database directory or --circle")?,
                keysize,
            };
            let db = open(&args, Mode::Inspect)?;
            for id in db.ids() {
                let Some(loc) = db.location(id)? else {
                    continue;
                };
                let len = match db.get(id) {
                    Ok(v) => serde_json::json!(v.len()),
                    Err(e) => serde_json::json!(format!("error: {e}")),
                };
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"id": id, "length": len, "file": loc.file_nr, "position": loc.position})
                )?;
            }
        }
        OurdbCommand::Check { db } => {
            let db = open(&db, Mode::Inspect)?;
            let problems = db.check()?;
            let live = db.ids().count();
            if problems.is_empty() {
                writeln!(out, "ok: {live} live records, all intact")?;
            } else {
                let mut records = 0;
                for p in &problems {
                    if p.id == 0 {
                        writeln!(out, "database: {}", p.error)?;
                    } else {
                        records += 1;
                        writeln!(out, "id {} at {}: {}", p.id, p.location, p.error)?;
                    }
                }
                writeln!(
                    out,
                    "{records} of {live} live records damaged, {} problems of the database as a whole",
                    problems.len() - records
                )?;
                return Ok(ExitCode::from(1));
            }
        }
        OurdbCommand::Compact { db, keep_history } => {
            let db = open(&db, Mode::Write)?;
            let r = db.compact_with(herojobs::ourdb::CompactOptions::keep_history(keep_history))?;
            db.close()?;
            writeln!(
                out,
                "compacted {} records: {} -> {} data bytes in {} file(s)",
                r.records, r.bytes_before, r.bytes_after, r.files_after
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
