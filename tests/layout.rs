//! The module layout stays a layering: no top-level module of the library
//! reaches, through its `crate::` paths, back to itself. Import cycles make
//! every later change touch both ends; this fails as soon as one appears,
//! and names the modules on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the top-level modules its code (not its comments or
/// unit tests) names through `crate::`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let path_re = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    let group_re = regex::Regex::new(r"(?s)use crate::\{(.*?)\};").unwrap();
    let name_re = regex::Regex::new(r"(?:^|[,{\s])([a-z_]+)(?:::|\s*[,}]|\s*$)").unwrap();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" || rel.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let text = match text.find("#[cfg(test)]\nmod tests {") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let deps = g.entry(top.clone()).or_default();
        for c in path_re.captures_iter(&code) {
            deps.insert(c[1].to_string());
        }
        for c in group_re.captures_iter(&code) {
            for n in name_re.captures_iter(&c[1]) {
                deps.insert(n[1].to_string());
            }
        }
        deps.remove(&top);
        deps.remove("self");
    }
    g
}

/// A cycle through `from`, if any: the path back to it.
fn cycle_from(
    g: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    at: &str,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in g.get(at).into_iter().flatten() {
        if next == from {
            let mut cycle = path.clone();
            cycle.push(from.to_string());
            return Some(cycle);
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if let Some(c) = cycle_from(g, from, next, path, seen) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_module_imports_itself_back_through_others() {
    let g = graph();
    assert!(g.len() > 10, "the walk found the modules: {g:?}");
    assert!(
        g["proxy"].contains("gateway") && g["auth"].contains("session"),
        "the walk sees real edges: {g:?}"
    );
    let mut cycles = Vec::new();
    for m in g.keys() {
        let mut path = vec![m.clone()];
        if let Some(c) = cycle_from(&g, m, m, &mut path, &mut BTreeSet::new()) {
            cycles.push(c.join(" -> "));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}
