//! The layer rule of ARCHITECTURE.md, checked on the source: a module imports only modules of
//! lower layers (`store` never imports `notify`, `kafka` never imports `pipeline`, the core
//! imports nothing of the shell). Reads every `crate::<module>` path in `src/` — `use` lines and
//! paths in code and tests alike.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module of the library and its layer: a module may use only lower layers.
const LAYERS: &[(&str, u8)] = &[
    // The pure core, and the two values every layer may be handed (the clock, the shutdown).
    ("core", 0),
    ("clock", 0),
    ("shutdown", 0),
    // Pure on the core: the output contract, the seeded synthetic district.
    ("output", 1),
    ("edfi", 1),
    ("synth", 1),
    // The store and telemetry know nothing of what they hold or count.
    ("store", 2),
    ("telemetry", 2),
    // Outside systems, each on the store: notifications, Kafka, the admin HTTP server.
    ("notify", 3),
    ("kafka", 3),
    ("http", 3),
    // One batch: fold, outputs, plan, commit.
    ("pipeline", 4),
    ("config", 5),
    // The modes.
    ("service", 6),
    ("replay", 6),
    ("loadgen", 6),
    ("translator", 6),
    ("demo", 7),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules a file names as `crate::<module>`, with the line of each.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String =
                after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn no_module_imports_a_module_of_its_own_or_a_higher_layer() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs");
        if ["lib", "main", "bin"].contains(&module) {
            continue;
        }
        let own = layer(module).unwrap_or_else(|| {
            panic!("src/{module} has no layer: add it to LAYERS in {}", file!())
        });
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, used) in crate_paths(&text) {
            *seen.entry(format!("{module} -> {used}")).or_default() += 1;
            if used == module {
                continue;
            }
            match layer(&used) {
                Some(l) if l < own => {}
                _ => violations.push(format!(
                    "src/{}:{line}: {module} (layer {own}) uses crate::{used} (layer {:?})",
                    relative.display(),
                    layer(&used)
                )),
            }
        }
    }
    assert!(violations.is_empty(), "imports against the layers:\n{}", violations.join("\n"));
    // The rule has something to check: the shell's layers do use each other.
    for edge in ["notify -> store", "pipeline -> notify", "service -> pipeline", "store -> core"] {
        assert!(seen.contains_key(edge), "{edge} not found: is the scan reading the sources?");
    }
}

#[test]
fn the_scan_finds_an_upward_import() {
    let text = "use crate::core::Flag;\nuse crate::notify::{Notification};\n// crate::pipeline\n";
    let found: Vec<String> = crate_paths(text).into_iter().map(|(_, m)| m).collect();
    assert_eq!(found, ["core", "notify"]);
    assert!(layer("notify") > layer("store"), "store is below notify");
}
