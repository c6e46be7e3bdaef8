//! Exposes the locked versions of the compared crates as VERSION_<NAME> environment variables,
//! so every JSON line names exactly what was measured.

use std::fs;

const CRATES: [&str; 6] = [
    "herojobs",
    "fjall",
    "heed",
    "lmdb-master-sys",
    "redb",
    "sled",
];

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut name: Option<&str> = None;
    let mut found = Vec::new();
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"'));
        } else if let (Some(n), Some(v)) = (name, line.strip_prefix("version = ")) {
            if CRATES.contains(&n) && !found.contains(&n) {
                found.push(n);
                let var = n.to_uppercase().replace('-', "_");
                println!("cargo:rustc-env=VERSION_{var}={}", v.trim_matches('"'));
            }
            name = None;
        }
    }
    // Before the first lock file exists the versions are unknown, not a build failure.
    for n in CRATES.iter().filter(|n| !found.contains(n)) {
        let var = n.to_uppercase().replace('-', "_");
        println!("cargo:rustc-env=VERSION_{var}=unknown");
    }
}
