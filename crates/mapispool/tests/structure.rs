//! The crate's modules import one way (issue 19.11): no top-level module of `src/` names,
//! through a `crate::` path outside a comment, a module that names it back, directly or
//! through others. The session sits above the local API's client (`ipc`) and the daemon above
//! both; `transport/` above `tls`, `credential` and `transport_error`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules and, for each, the others its code names as `crate::<module>`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("src").flatten() {
        let path = entry.path();
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .expect("a name")
            .to_string();
        if name == "lib" {
            continue;
        }
        let files = modules.entry(name).or_default();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (name, files) in &modules {
        let mut deps = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(file).expect("read");
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or_default();
                for (at, _) in code.match_indices("crate::") {
                    let rest = &code[at + "crate::".len()..];
                    let dep: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if dep != *name && names.contains(&dep) {
                        deps.insert(dep);
                    }
                }
            }
        }
        graph.insert(name.clone(), deps);
    }
    graph
}

/// A path from `from` back to `to`, if there is one.
fn path_back(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for dep in graph.get(from).into_iter().flatten() {
        if dep == to {
            return Some(vec![dep.clone()]);
        }
        if seen.insert(dep.clone())
            && let Some(mut rest) = path_back(graph, dep, to, seen)
        {
            rest.insert(0, dep.clone());
            return Some(rest);
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = graph();
    // The modules the issue named are there to be checked.
    for name in ["session", "ipc", "daemon", "transport", "tls", "credential"] {
        assert!(graph.contains_key(name), "no module {name}: {graph:?}");
    }
    assert!(graph["daemon"].contains("session") && graph["session"].contains("ipc"));
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| {
            path_back(&graph, m, m, &mut BTreeSet::new())
                .map(|p| format!("{m} -> {}", p.join(" -> ")))
        })
        .collect();
    assert!(cycles.is_empty(), "import circles:\n{}", cycles.join("\n"));
}
