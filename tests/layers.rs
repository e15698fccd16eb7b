//! The layer table of docs/ARCHITECTURE.md, checked: every `crate::…` path in `src/` must point
//! to a module of a lower layer. Imports that break the rule would be listed in `KNOWN` (none
//! today): a new upward arrow fails here, and so does an entry that is no longer needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules by layer, lowest first (the table in docs/ARCHITECTURE.md).
const LAYERS: &[(&str, u8)] = &[
    ("secret", 0),
    ("quote", 0),
    ("nofollow", 0),
    ("log_throttle", 0),
    ("liveness", 0),
    ("error", 0),
    ("schedule", 0),
    ("binlog", 0),
    ("priority", 0),
    ("retention", 1),
    ("storage", 1),
    ("catalog", 1),
    ("mysql_client", 1),
    ("media", 2),
    ("alert", 2),
    ("health", 2),
    ("heartbeat", 2),
    ("metrics", 2),
    ("config", 3),
    ("snapshot", 4),
    ("backup", 5),
    ("restore", 5),
    ("daemon", 6),
    ("cli", 7),
];

/// Arrows against the table that are tolerated, each with why. None today; keep it that way.
const KNOWN: &[(&str, &str, &str)] = &[];

fn layer(m: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == m).map(|(_, l)| *l)
}

/// (from module, to module) → the first file and line showing it.
fn arrows() -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().to_string();
            let from = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string();
            if from == "main" || from == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                for (i, _) in code.match_indices("crate::") {
                    let to: String = code[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !to.is_empty() && to != from {
                        out.entry((from.clone(), to))
                            .or_insert_with(|| format!("src/{rel}:{}: {}", n + 1, code.trim()));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn imports_point_down_the_layer_table() {
    let mut problems = Vec::new();
    let mut used_known = BTreeSet::new();
    for ((from, to), at) in arrows() {
        let (Some(lf), Some(lt)) = (layer(&from), layer(&to)) else {
            problems.push(format!(
                "{at}: module `{from}` or `{to}` is not in the layer table (add it to LAYERS and docs/ARCHITECTURE.md)"
            ));
            continue;
        };
        if lt < lf {
            continue;
        }
        if KNOWN.iter().any(|(f, t, _)| *f == from && *t == to) {
            used_known.insert((from.clone(), to.clone()));
            continue;
        }
        problems.push(format!(
            "{at}: `{from}` (layer {lf}) uses `{to}` (layer {lt}): arrows point down only (docs/ARCHITECTURE.md)"
        ));
    }
    for (f, t, why) in KNOWN {
        if !used_known.contains(&(f.to_string(), t.to_string())) {
            problems.push(format!(
                "`{f}` → `{t}` ({why}) is gone: remove it from KNOWN so it cannot come back"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_module_of_lib_rs_is_in_the_table() {
    let lib = include_str!("../src/lib.rs");
    for m in lib.lines().filter_map(|l| l.strip_prefix("pub mod ")) {
        let m = m.trim_end_matches(';');
        assert!(layer(m).is_some(), "module `{m}` has no layer");
    }
}
