//! `compare-stores table FILE`: the markdown table of medians (min–max) from the JSON lines
//! that run.sh collected, with OurDB's ratio to the best other store.

use anyhow::{Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Label of the get rows computed from CPU time.
const CPU_ROW: &str = "per thread-CPU second";

const STORES: [&str; 5] = ["ourdb", "fjall", "lmdb", "redb", "sled"];
const WORKLOADS: [&str; 8] = [
    "add-periodic",
    "add-strict-8",
    "add-strict-1",
    "add-batch-1000",
    "get-random-2",
    "get-random-1",
    "open-get",
    "footprint",
];

/// What a workload's row shows.
struct Metric {
    field: &'static str,
    higher_is_better: bool,
    /// Whether the workload promises durability (then sled's sync_file_range is set apart).
    fsync: bool,
}

fn metric(workload: &str) -> Metric {
    match workload {
        "open-get" => Metric {
            field: "open_get_ms",
            higher_is_better: false,
            fsync: false,
        },
        "footprint" => Metric {
            field: "ratio_allocated",
            higher_is_better: false,
            fsync: false,
        },
        w => Metric {
            field: "ops_per_s",
            higher_is_better: true,
            fsync: w.starts_with("add-"),
        },
    }
}

fn format(workload: &str, x: f64) -> String {
    match workload {
        "open-get" => {
            if x < 10.0 {
                format!("{x:.2} ms")
            } else {
                format!("{x:.0} ms")
            }
        }
        "footprint" => format!("{x:.3}"),
        _ => {
            if x >= 1e6 {
                format!("{:.2}M/s", x / 1e6)
            } else if x >= 1e4 {
                format!("{:.0}k/s", x / 1e3)
            } else if x >= 1e3 {
                format!("{:.1}k/s", x / 1e3)
            } else {
                format!("{x:.0}/s")
            }
        }
    }
}

/// 1000000 -> "1,000,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Default)]
struct Cell {
    values: Vec<f64>,
}

impl Cell {
    fn median(&self) -> Option<f64> {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => None,
            n if n % 2 == 1 => Some(v[n / 2]),
            n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }
    fn show(&self, workload: &str) -> String {
        let Some(m) = self.median() else {
            return "—".into();
        };
        let lo = self.values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self
            .values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        if self.values.len() == 1 {
            format(workload, m)
        } else {
            format!(
                "{} ({}–{})",
                format(workload, m),
                format(workload, lo),
                format(workload, hi)
            )
        }
    }
}

pub fn print(path: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // (workload, variant) -> store -> values
    let mut cells: BTreeMap<(String, String), BTreeMap<String, Cell>> = BTreeMap::new();
    let mut versions: BTreeMap<String, String> = BTreeMap::new();
    let mut sizes: BTreeMap<String, String> = BTreeMap::new();
    let mut probes: BTreeMap<String, Cell> = BTreeMap::new();
    let mut rounds = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a JSON line", path.display(), i + 1))?;
        let (Some(store), Some(workload)) = (v["store"].as_str(), v["workload"].as_str()) else {
            continue;
        };
        let m = metric(workload);
        let Some(x) = v[m.field].as_f64() else {
            continue;
        };
        let variant = v["variant"].as_str().unwrap_or("").to_string();
        let mut figures = vec![(variant.clone(), x)];
        if let Some(cpu) = v["ops_per_cpu_s"].as_f64() {
            let label = if variant.is_empty() {
                CPU_ROW.to_string()
            } else {
                format!("{variant} · {CPU_ROW}")
            };
            figures.push((label, cpu));
        }
        for (variant, x) in figures {
            let cell = cells
                .entry((workload.to_string(), variant))
                .or_default()
                .entry(store.to_string())
                .or_default();
            cell.values.push(x);
            rounds = rounds.max(cell.values.len());
        }
        if let Some(p) = v["fsync_probe_us"]["median"].as_f64() {
            probes
                .entry(workload.to_string())
                .or_default()
                .values
                .push(p);
        }
        if let Some(ver) = v["version"].as_str() {
            versions.insert(store.to_string(), ver.to_string());
        }
        let size = match (v["n"].as_u64(), v["threads"].as_u64(), v["gets"].as_u64()) {
            (Some(n), Some(t), Some(g)) => {
                format!("{} records, {t} thr, {} gets", thousands(n), thousands(g))
            }
            (Some(n), Some(t), None) if t > 1 => format!("{} records, {t} thr", thousands(n)),
            (Some(n), _, _) => format!("{} records", thousands(n)),
            _ => String::new(),
        };
        sizes.insert(workload.to_string(), size);
    }

    println!("Medians of up to {rounds} runs per cell (min–max in parentheses). \"vs\" columns: OurDB's advantage over that store, > 1× = OurDB ahead (throughput ÷ throughput, or time/size ÷ time/size inverted).\n");
    println!("| workload | ourdb | fjall | lmdb | redb | sled | best other | OurDB vs best | best real-fsync | OurDB vs best real-fsync |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut keys: Vec<&(String, String)> = cells.keys().collect();
    keys.sort_by_key(|(w, variant)| {
        (
            WORKLOADS.iter().position(|x| x == w).unwrap_or(usize::MAX),
            variant.clone(),
        )
    });
    for key in keys {
        let (workload, variant) = key;
        let row = &cells[key];
        let m = metric(workload);
        // A variant row compares with OurDB's figure from the main row (of its kind).
        let base = if variant.ends_with(CPU_ROW) {
            CPU_ROW.to_string()
        } else {
            String::new()
        };
        let ourdb = row.get("ourdb").and_then(Cell::median).or_else(|| {
            cells
                .get(&(workload.clone(), base))
                .and_then(|r| r.get("ourdb"))
                .and_then(Cell::median)
        });
        let better = |a: f64, b: f64| if m.higher_is_better { a > b } else { a < b };
        let best = |real_only: bool| -> Option<(&str, f64)> {
            let mut best: Option<(&str, f64)> = None;
            for s in STORES.iter().filter(|s| **s != "ourdb") {
                if real_only && *s == "sled" {
                    continue;
                }
                if let Some(x) = row.get(*s).and_then(Cell::median) {
                    if best.is_none_or(|(_, b)| better(x, b)) {
                        best = Some((s, x));
                    }
                }
            }
            best
        };
        let ratio = |b: Option<(&str, f64)>| -> String {
            match (ourdb, b) {
                (Some(o), Some((_, b))) if o > 0.0 && b > 0.0 => {
                    let adv = if m.higher_is_better { o / b } else { b / o };
                    if adv < 1.0 {
                        format!("**{adv:.2}×**")
                    } else {
                        format!("{adv:.2}×")
                    }
                }
                _ => "—".into(),
            }
        };
        let name = |b: Option<(&str, f64)>| -> String {
            b.map(|(s, x)| format!("{s} {}", format(workload, x)))
                .unwrap_or_else(|| "—".into())
        };
        let label = if variant.is_empty() {
            format!(
                "`{workload}` ({})",
                sizes.get(workload).cloned().unwrap_or_default()
            )
        } else {
            format!("`{workload}` · {variant}")
        };
        let mut line = format!("| {label} |");
        for s in STORES {
            let shown = match row.get(s) {
                Some(c) => c.show(workload),
                None => "—".into(),
            };
            line.push_str(&format!(" {shown} |"));
        }
        let b = best(false);
        line.push_str(&format!(" {} | {} |", name(b), ratio(b)));
        if m.fsync {
            let r = best(true);
            line.push_str(&format!(" {} | {} |", name(r), ratio(r)));
        } else {
            line.push_str(" — | — |");
        }
        println!("{line}");
    }
    println!();
    let list: Vec<String> = STORES
        .iter()
        .filter_map(|s| versions.get(*s).map(|v| format!("{s}: {v}")))
        .collect();
    println!("Versions: {}.", list.join("; "));
    println!("sled's sync (`flush()`) is `sync_file_range`, not fsync: it is left out of \"best real-fsync\".");
    println!("\"{CPU_ROW}\": gets ÷ each reading thread's own CPU time, summed over the threads (what they would do with a core each; less sensitive to other processes than the wall-clock rate).");
    let list: Vec<String> = WORKLOADS
        .iter()
        .filter_map(|w| {
            let c = probes.get(*w)?;
            let lo = c.values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = c.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            Some(format!("{w} {:.0} µs ({lo:.0}–{hi:.0})", c.median()?))
        })
        .collect();
    if !list.is_empty() {
        println!("Disk state before each measurement (4 KiB append + fdatasync, median per run; median and min–max over the runs): {}.", list.join("; "));
    }
    Ok(())
}
