//! The crate's layering, checked on its sources: every `crate::` path in a
//! source file names a layer at or below the file's own (tests excepted),
//! and the hot path's accounting imports nothing but the hot path.

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
