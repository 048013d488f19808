//! The crate's layering, checked on its sources: every `crate::` path in a
//! source file names a layer at or below the file's own (tests excepted),
//! the hot path's accounting imports nothing but the hot path, and no
//! files import each other, directly or around a cycle.

use std::path::{Path, PathBuf};

/// The layers, lowest first (see `src/guide.rs`).
const LAYERS: &[&str] = &[
    "hot", "stats", "alert", "diagnose", "protect", "report", "monitor", "handle", "build",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer a `crate::` path names, if it names one.
fn named_layer(path: &str) -> Option<usize> {
    let first = path.split("::").next()?;
    LAYERS.iter().position(|l| *l == first)
}

/// Every `crate::a::b` path on code lines (comments and doc comments
/// left out), with its line number.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            found.push((n + 1, rest[..end].to_owned()));
        }
    }
    found
}

fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs" || name == "model.rs"
}

#[test]
fn imports_point_only_down_the_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 30, "found the sources: {}", files.len());
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&root).expect("under src");
        let Some(own) = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .and_then(named_layer)
        else {
            continue; // lib.rs, error.rs, guide.rs
        };
        if is_test_file(file) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("readable");
        for (line, path) in crate_paths(&text) {
            if let Some(layer) = named_layer(&path) {
                if layer > own {
                    wrong.push(format!(
                        "{}:{line}: {} imports crate::{path}",
                        rel.display(),
                        LAYERS[own]
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports pointing up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_hot_path_imports_nothing_of_the_crate_outside_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/hot");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let accounting = root.join("accounting.rs");
    assert!(files.contains(&accounting), "{files:?}");
    for file in files.iter().filter(|f| !is_test_file(f)) {
        let text = std::fs::read_to_string(file).expect("readable");
        let outside: Vec<_> = crate_paths(&text)
            .into_iter()
            .filter(|(_, p)| !p.starts_with("hot::"))
            .collect();
        assert!(outside.is_empty(), "{}: {outside:?}", file.display());
    }
}

/// The module path of a source file: `hot/accounting.rs` is
/// `["hot", "accounting"]`, `monitor/mod.rs` is `["monitor"]`, `lib.rs` is
/// `[]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

/// The file that defines the longest prefix of `module::path` that is a
/// file of its own (`hot::accounting::Counters` -> `hot/accounting.rs`).
fn file_of(root: &Path, path: &[String]) -> Option<PathBuf> {
    (1..=path.len()).rev().find_map(|n| {
        let dir: PathBuf = path[..n].iter().collect();
        [
            root.join(&dir).with_extension("rs"),
            root.join(&dir).join("mod.rs"),
        ]
        .into_iter()
        .find(|f| f.is_file())
    })
}

/// Every file a source file imports through `crate::` or `super::` paths
/// on code lines. A module's own files are one module: a parent's
/// `mod child;`, its `child::` paths and re-exports, and a child's
/// `super::` paths to its parent are the module tree (Rust's `impl` of a
/// parent's type in a child file needs them), so only imports between
/// files that are not parent and child can form a cycle here.
fn imports(root: &Path, file: &Path, text: &str) -> Vec<PathBuf> {
    let rel = file.strip_prefix(root).expect("under src");
    let own = module_of(rel);
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (prefix, base) in [
            ("crate::", Vec::new()),
            ("super::", own[..own.len().saturating_sub(1)].to_vec()),
        ] {
            let mut rest = code;
            while let Some(i) = rest.find(prefix) {
                let before = &rest[..i];
                rest = &rest[i + prefix.len()..];
                // `crate::` inside `pub(crate)` or a longer path's `super::`.
                if before.ends_with("::") || before.ends_with('(') {
                    continue;
                }
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                let mut path = base.clone();
                path.extend(
                    rest[..end]
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
                if let Some(target) = file_of(root, &path) {
                    if target != file && !out.contains(&target) {
                        out.push(target);
                    }
                }
            }
        }
    }
    out
}

/// An import cycle among `edges` (file -> files it imports), if any, as
/// the files along it.
fn find_cycle(edges: &[(PathBuf, Vec<PathBuf>)]) -> Option<Vec<PathBuf>> {
    fn visit(
        at: &PathBuf,
        edges: &[(PathBuf, Vec<PathBuf>)],
        stack: &mut Vec<PathBuf>,
        done: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        if let Some(i) = stack.iter().position(|f| f == at) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(at.clone());
            return Some(cycle);
        }
        if done.contains(at) {
            return None;
        }
        stack.push(at.clone());
        let next = edges.iter().find(|(f, _)| f == at).map(|(_, n)| n.clone());
        for n in next.unwrap_or_default() {
            if let Some(c) = visit(&n, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.push(at.clone());
        None
    }
    let mut done = Vec::new();
    edges
        .iter()
        .find_map(|(f, _)| visit(f, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_two_files_import_each_other_even_through_others() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let edges: Vec<(PathBuf, Vec<PathBuf>)> = files
        .iter()
        .filter(|f| !is_test_file(f))
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("readable");
            let to = imports(&root, f, &text)
                .into_iter()
                .filter(|t| !is_test_file(t) && !t.ends_with("lib.rs"))
                .collect();
            (f.clone(), to)
        })
        .collect();
    let accounting = root.join("hot/accounting.rs");
    let edge = |from: &str| {
        edges
            .iter()
            .find(|(f, _)| f.ends_with(from))
            .map(|(_, to)| to.clone())
            .unwrap_or_default()
    };
    // The resolution itself: `monitor/mod.rs` imports the accounting.
    assert!(edge("monitor/mod.rs").contains(&accounting), "{edges:?}");
    if let Some(cycle) = find_cycle(&edges) {
        let names: Vec<_> = cycle
            .iter()
            .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
            .collect();
        panic!("an import cycle: {}", names.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let (a, b, c) = (PathBuf::from("a"), PathBuf::from("b"), PathBuf::from("c"));
    let acyclic = [
        (a.clone(), vec![b.clone()]),
        (b.clone(), vec![c.clone()]),
        (c.clone(), vec![]),
    ];
    assert_eq!(find_cycle(&acyclic), None);
    let cyclic = [
        (a.clone(), vec![b.clone()]),
        (b.clone(), vec![c.clone()]),
        (c.clone(), vec![a.clone()]),
    ];
    assert_eq!(find_cycle(&cyclic), Some(vec![a.clone(), b, c, a]));
}
