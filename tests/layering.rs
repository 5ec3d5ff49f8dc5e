//! The layering of the core (`docs/design.md`, "The map"), checked on the source: each layer
//! imports only from the layers below it, no core module names an item through the crate root
//! (which re-exports every layer, and would hide an upward import), and within a layer the
//! modules' imports form no cycle. The layer's own `mod.rs` is its hub (`store::Tx`,
//! `ops::Core`): its children may use it, and it is not part of the cycle check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom up.
const LAYERS: [&str; 6] = ["values", "oci", "store", "blobs", "ops", "handles"];

fn layer_of(name: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == name)
}

/// One source file of a layer: its layer, its module name within the layer (`None` for the
/// layer's `mod.rs`), and its code outside comments and `#[cfg(test)]` modules.
struct Source {
    path: PathBuf,
    layer: usize,
    module: Option<String>,
    code: String,
}

fn sources(src: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    for (layer, name) in LAYERS.iter().enumerate() {
        let dir = src.join(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        files.sort();
        for path in files {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 name");
            let text = std::fs::read_to_string(&path).expect("read source");
            out.push(Source {
                module: (stem != "mod").then(|| stem.to_owned()),
                code: code_of(&text),
                path,
                layer,
            });
        }
    }
    out
}

/// The text without comments and without what follows a `#[cfg(test)]` (test modules close
/// every file that has one).
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers following each occurrence of `prefix` (`crate::` → `store`, `values` …).
fn names_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    code.match_indices(prefix)
        .filter(|(i, _)| {
            // `super::` inside `super::super::` or a longer path segment is not the start.
            *i == 0 || !code[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
        })
        .map(|(i, _)| {
            let rest = &code[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// The problems of the tree under `src`, one line each.
fn problems(src: &Path) -> Vec<String> {
    let sources = sources(src);
    let mut problems = Vec::new();
    // Within each layer, the modules each module imports.
    let mut graph: BTreeMap<(usize, String), BTreeSet<String>> = BTreeMap::new();
    for s in &sources {
        let here = LAYERS[s.layer];
        for name in names_after(&s.code, "crate::") {
            match layer_of(name) {
                Some(l) if l > s.layer => problems.push(format!(
                    "{}: layer `{here}` imports `crate::{name}`, a layer above it",
                    s.path.display()
                )),
                Some(_) => {}
                None => problems.push(format!(
                    "{}: `crate::{name}` names an item through the crate root; name its layer",
                    s.path.display()
                )),
            }
        }
        let Some(module) = &s.module else { continue };
        let mut deps: BTreeSet<String> = names_after(&s.code, "super::")
            .into_iter()
            .filter(|n| {
                sources
                    .iter()
                    .any(|o| o.layer == s.layer && o.module.as_deref() == Some(n))
            })
            .map(str::to_owned)
            .collect();
        deps.extend(
            names_after(&s.code, &format!("crate::{here}::"))
                .into_iter()
                .map(str::to_owned),
        );
        deps.remove(module);
        graph.insert((s.layer, module.clone()), deps);
    }
    for (layer, module) in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, *layer, module) {
            problems.push(format!(
                "layer `{}`: its modules import each other in a circle: {}",
                LAYERS[*layer],
                cycle.join(" → ")
            ));
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// A path of imports from `start` back to itself, if there is one.
fn cycle_from(
    graph: &BTreeMap<(usize, String), BTreeSet<String>>,
    layer: usize,
    start: &str,
) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((module, path)) = stack.pop() {
        for dep in graph.get(&(layer, module.clone())).into_iter().flatten() {
            if dep == start {
                let mut cycle = path.clone();
                cycle.push(dep.clone());
                return Some(cycle);
            }
            if seen.insert(dep.clone()) {
                let mut next = path.clone();
                next.push(dep.clone());
                stack.push((dep.clone(), next));
            }
        }
    }
    None
}

#[test]
fn the_core_imports_only_downward_and_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = problems(&src);
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

/// The check itself can fail: a copy of the tree with one upward import, one import through
/// the crate root and one cycle is refused, naming each.
#[test]
fn the_check_finds_an_upward_import_a_root_import_and_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let copy = tempfile::tempdir().expect("tempdir");
    for layer in LAYERS {
        let to = copy.path().join(layer);
        std::fs::create_dir_all(&to).expect("mkdir");
        for entry in std::fs::read_dir(src.join(layer)).expect("read layer") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
            }
        }
    }
    assert!(problems(copy.path()).is_empty(), "the copy starts clean");
    let append = |file: &str, line: &str| {
        let path = copy.path().join(file);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, format!("{line}\n{text}")).expect("write");
    };
    append("values/page.rs", "use crate::ops::Core;");
    append("store/tables.rs", "use crate::Registry;");
    append("store/meta.rs", "use super::locks::Item;");
    append("store/locks.rs", "use super::meta::seq;");
    let found = problems(copy.path()).join("\n");
    assert!(
        found.contains("page.rs: layer `values` imports `crate::ops`"),
        "{found}"
    );
    assert!(
        found.contains("tables.rs: `crate::Registry` names an item"),
        "{found}"
    );
    assert!(
        found.contains("layer `store`: its modules import each other in a circle"),
        "{found}"
    );
}
