//! The shape of `src/` that `ARCHITECTURE.md` promises, checked: modules depend on each
//! other one way (no import circle between any two modules where neither contains the
//! other), and no file is longer than a reader can hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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

/// `src/engine/steps.rs` → `["engine", "steps"]`; `mod.rs`, `lib.rs` and `main.rs` name
/// their folder (the crate root is `[]`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The module paths a file names: `crate::a::b::c` and `super::x` (as far as they go).
fn references(text: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut rest = text;
    while let Some(i) = [rest.find("crate::"), rest.find("super::")]
        .into_iter()
        .flatten()
        .min()
    {
        let (start, base): (usize, Vec<String>) = if rest[i..].starts_with("crate::") {
            (i + "crate::".len(), Vec::new())
        } else {
            // super::super::x
            let mut base = me.to_vec();
            let mut j = i;
            while rest[j..].starts_with("super::") {
                base.pop();
                j += "super::".len();
            }
            (j, base)
        };
        let before_ok = i == 0 || !rest[..i].ends_with(|c: char| word(c) || c == ':');
        let mut path = base;
        let mut k = start;
        loop {
            let len = rest[k..].find(|c: char| !word(c)).unwrap_or(rest.len() - k);
            if len == 0 {
                break;
            }
            path.push(rest[k..k + len].to_string());
            k += len;
            if rest[k..].starts_with("::") {
                k += 2;
            } else {
                break;
            }
        }
        if before_ok {
            out.push(path);
        }
        rest = &rest[k.max(i + 1)..];
    }
    out
}

#[test]
fn modules_depend_on_each_other_one_way() {
    let src = crate::common::repo_root().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    // The longest prefix of a path that is a module.
    let resolve = |path: &[String]| -> Vec<String> {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains(p))
            .unwrap_or_default()
    };
    // Edges between the two children of the modules' nearest common ancestor: a module
    // and what it contains are one unit; two siblings are not.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let me = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        for reference in references(&text, &me) {
            let to = resolve(&reference);
            let common = me.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == me.len() || common == to.len() {
                continue; // one contains the other
            }
            edges
                .entry(me[..=common].to_vec())
                .or_default()
                .insert(to[..=common].to_vec());
        }
    }
    assert!(edges.len() > 10, "the module graph was not read: {edges:?}");
    // Depth-first search for a cycle.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, &edges, &mut Vec::new(), &mut done) {
            let shown: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            panic!("an import circle: {}", shown.join(" → "));
        }
    }
}

#[test]
fn the_reference_reader_sees_crate_and_super_paths() {
    let me = vec!["engine".to_string(), "steps".to_string()];
    let found = references(
        "use crate::store::outbox::{a, b};\nlet x = super::compose::f();\n// not::crate::x",
        &me,
    );
    assert_eq!(
        found,
        vec![
            vec!["store".to_string(), "outbox".to_string()],
            vec!["engine".to_string(), "compose".to_string(), "f".to_string()],
        ]
    );
}

/// No file in `src/` is longer than about 700 lines.
#[test]
fn no_source_file_is_longer_than_seven_hundred_lines() {
    let src = crate::common::repo_root().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 700).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "too long: {long:?}");
}

/// Blanks out string and character literals and `//` comments, so that the braces inside
/// them are not counted.
fn code_only(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => break,
            '"' => {
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '\'' => {
                // A character literal ('{', '\n'), not a lifetime ('a).
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with('\\') {
                    for d in chars.by_ref() {
                        if d == '\'' {
                            break;
                        }
                    }
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.next();
                    chars.next();
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// No function in `src/` is longer than 80 lines (tests' own modules aside): a function
/// that does one thing fits on a screen.
#[test]
fn no_function_is_longer_than_eighty_lines() {
    let src = crate::common::repo_root().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut long = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .take_while(|l| !l.starts_with("#[cfg(test)]"))
            .collect();
        let mut i = 0;
        while i < lines.len() {
            let trimmed = lines[i].trim_start();
            let header = [
                "fn ",
                "pub fn ",
                "async fn ",
                "pub async fn ",
                "pub(super) fn ",
                "pub(super) async fn ",
                "pub(crate) fn ",
                "pub(crate) async fn ",
                "const fn ",
            ]
            .iter()
            .any(|p| trimmed.starts_with(p));
            if !header {
                i += 1;
                continue;
            }
            let (mut depth, mut opened, mut j) = (0i32, false, i);
            while j < lines.len() {
                let code = code_only(lines[j]);
                if !opened && code.trim_end().ends_with(';') && !code.contains('{') {
                    break; // a declaration without a body
                }
                for c in code.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if opened && depth <= 0 {
                    break;
                }
                j += 1;
            }
            let length = j - i + 1;
            if opened && length > 80 {
                long.push(format!("{}:{} ({length} lines)", file.display(), i + 1));
            }
            i += 1;
        }
    }
    assert!(long.is_empty(), "functions over 80 lines: {long:?}");
}
