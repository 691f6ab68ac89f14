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

/// A file's own code: its `#[cfg(test)] mod tests` (whose `super::` is the file itself,
/// and whose edges are the tests') left out.
fn code_of(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at])
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A use tree from `at` (just past its first `::`): `a::b`, `a::{b, c::{d}}`, `a as b`,
/// each leaf as (the name it binds, its segments). `self` in a group names its prefix.
fn use_tree(
    text: &str,
    mut at: usize,
    prefix: Vec<String>,
    out: &mut Vec<(String, Vec<String>)>,
) -> usize {
    let mut path = prefix;
    loop {
        at += text[at..].len() - text[at..].trim_start().len();
        if text[at..].starts_with('{') {
            at += 1;
            loop {
                at += text[at..].len() - text[at..].trim_start().len();
                if text[at..].starts_with('}') {
                    return at + 1;
                }
                at = use_tree(text, at, path.clone(), out);
                at += text[at..].len() - text[at..].trim_start().len();
                if text[at..].starts_with(',') {
                    at += 1;
                }
                if at >= text.len() {
                    return at;
                }
            }
        }
        let len = text[at..]
            .find(|c: char| !is_word(c))
            .unwrap_or(text.len() - at);
        if len == 0 {
            // `*` or the end: a glob names its module.
            if text[at..].starts_with('*') {
                at += 1;
            }
            out.push((String::new(), path));
            return at;
        }
        let word = &text[at..at + len];
        at += len;
        if text[at..].starts_with("::") {
            path.push(word.to_string());
            at += 2;
            continue;
        }
        let mut name = word.to_string();
        if word != "self" {
            path.push(word.to_string());
        } else {
            name = path.last().cloned().unwrap_or_default();
        }
        let rest = text[at..].trim_start();
        if let Some(alias) = rest.strip_prefix("as ") {
            let alias = alias.trim_start();
            let n = alias.find(|c: char| !is_word(c)).unwrap_or(alias.len());
            name = alias[..n].to_string();
            at = text.len() - alias.len() + n;
        }
        out.push((name, path));
        return at;
    }
}

/// `crate::`, `super::` and `self::` made absolute from module `me`; other paths as written.
fn absolute(segments: &[String], me: &[String]) -> Vec<String> {
    let mut base = me.to_vec();
    let mut rest = segments;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => base.clear(),
    }
    base.extend(rest.iter().cloned());
    base
}

/// The module paths a file's code names: every `crate::`/`super::` path (each leaf of a
/// grouped `use` on its own), made absolute.
fn references(text: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = ["crate::", "super::"]
        .iter()
        .filter_map(|p| text[from..].find(p).map(|i| i + from))
        .min()
    {
        let before_ok = i == 0 || !text[..i].ends_with(|c: char| is_word(c) || c == ':');
        let mut leaves = Vec::new();
        let end = use_tree(text, i, Vec::new(), &mut leaves);
        if before_ok {
            out.extend(leaves.into_iter().map(|(_, path)| absolute(&path, me)));
        }
        from = end.max(i + 1);
    }
    out
}

/// Every name a module binds with `use` (its own or re-exported), and the absolute path
/// it stands for: `super::X` in a child then leads to where `X` really is.
fn bindings(
    text: &str,
    me: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("use ").map(|i| i + from) {
        from = i + 4;
        let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
        let head = text[line_start..i].trim();
        if !(head.is_empty() || head.starts_with("pub")) {
            continue;
        }
        let mut leaves = Vec::new();
        from = use_tree(text, i + 4, Vec::new(), &mut leaves);
        for (name, path) in leaves {
            let first = path.first().map(String::as_str);
            let relative_child = first.is_some_and(|f| {
                let mut child = me.to_vec();
                child.push(f.to_string());
                modules.contains(&child)
            });
            let path = if relative_child {
                let mut p = me.to_vec();
                p.extend(path);
                p
            } else if matches!(first, Some("crate" | "super" | "self")) {
                absolute(&path, me)
            } else {
                continue; // another crate
            };
            if !name.is_empty() {
                out.insert(name, path);
            }
        }
    }
    out
}

/// The module a path lands in: its longest prefix that is a module, followed through
/// the `use` bindings of the modules on the way (a re-export leads to its source).
fn resolve(
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
    binds: &BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
    depth: usize,
) -> Vec<String> {
    let n = (0..=path.len())
        .rev()
        .find(|&n| modules.contains(&path[..n]))
        .unwrap_or(0);
    let module = path[..n].to_vec();
    if let Some(next) = path.get(n)
        && depth < 16
        && let Some(target) = binds.get(&module).and_then(|b| b.get(next))
        && target.as_slice() != path
    {
        let mut t = target.clone();
        t.extend(path[n + 1..].iter().cloned());
        return resolve(&t, modules, binds, depth + 1);
    }
    module
}

/// Edges between the two children of the modules' nearest common ancestor: a module and
/// what it contains are one unit; two siblings are not.
fn module_edges(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let texts: Vec<(Vec<String>, String)> = files
        .iter()
        .map(|f| (module_of(src, f), std::fs::read_to_string(f).unwrap()))
        .collect();
    let binds: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>> = texts
        .iter()
        .map(|(me, text)| (me.clone(), bindings(code_of(text), me, &modules)))
        .collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (me, text) in &texts {
        for reference in references(code_of(text), me) {
            let to = resolve(&reference, &modules, &binds, 0);
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
    edges
}

/// Depth-first search for a cycle.
fn a_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
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
    edges.keys().find_map(|node| {
        visit(node, edges, &mut Vec::new(), &mut done)
            .map(|cycle| cycle.iter().map(|m| m.join("::")).collect())
    })
}

#[test]
fn modules_depend_on_each_other_one_way() {
    let edges = module_edges(&crate::common::repo_root().join("src"));
    let count: usize = edges.values().map(BTreeSet::len).sum();
    assert!(count > 150, "the module graph was not read: {edges:?}");
    if let Some(cycle) = a_cycle(&edges) {
        panic!("an import circle: {}", cycle.join(" → "));
    }
}

/// The floors of `src/`, lowest first (ARCHITECTURE.md draws them): a module may use
/// only the floors below its own, so a line of code knows what it may touch.
const FLOORS: &[&[&str]] = &[
    &["source", "time", "progress"],
    &["model"],
    &["config", "robots", "stats"],
    &["import"],
    &["store"],
    &["workflow", "sync"],
    &["unsubscribe"],
    &["links"],
    &["engine"],
    &["delivery"],
    &["pass"],
    &["rehearsal", "analysis"],
    &["daemon"],
    &["cli"],
];

#[test]
fn no_module_uses_a_floor_above_its_own() {
    let floor = |m: &str| FLOORS.iter().position(|f| f.contains(&m));
    let src = crate::common::repo_root().join("src");
    let mut up = Vec::new();
    for (from, to) in module_edges(&src) {
        if from.len() != 1 {
            continue; // within one module: the circle check above
        }
        let at = floor(&from[0]).unwrap_or_else(|| panic!("`{}` has no floor in FLOORS", from[0]));
        for to in to {
            let there = floor(&to[0]).unwrap_or_else(|| panic!("`{}` has no floor", to[0]));
            if there >= at {
                up.push(format!("{} -> {}", from[0], to[0]));
            }
        }
    }
    assert!(up.is_empty(), "edges that do not go down: {up:?}");
}

/// No module in `src/` takes every name of another with a glob (`use super::*`, a parent's
/// `use child::*`): each edge is then written where it starts, and the reader above sees it.
#[test]
fn no_module_globs_another() {
    let src = crate::common::repo_root().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut globs = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if file.ends_with("tests.rs") {
            continue; // a `#[cfg(test)] mod tests;` file
        }
        for line in code_of(&text).lines() {
            let line = line.trim();
            if line.contains("use ") && line.ends_with("::*;") && !line.contains("::prelude::") {
                globs.push(format!("{}: {line}", file.display()));
            }
        }
    }
    assert!(globs.is_empty(), "globs hide edges: {globs:?}");
}

/// Prints the module edges (`cargo test --test integration architecture::print -- --ignored
/// --nocapture`): what depends on what, for a reader checking that none goes up.
#[test]
#[ignore = "prints the module graph on demand"]
fn print_the_module_edges() {
    for (from, to) in module_edges(&crate::common::repo_root().join("src")) {
        for to in to {
            println!("{} -> {}", from.join("::"), to.join("::"));
        }
    }
}

#[test]
fn the_reference_reader_sees_every_edge() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let me = s(&["engine", "steps"]);
    let found = references(
        "use crate::store::outbox::{a, b::{c, self}};\nuse super::{compose::f, g};\nlet x = super::compose::f();\n// not::crate::x",
        &me,
    );
    assert_eq!(
        found,
        vec![
            s(&["store", "outbox", "a"]),
            s(&["store", "outbox", "b", "c"]),
            s(&["store", "outbox", "b"]),
            s(&["engine", "compose", "f"]),
            s(&["engine", "g"]),
            s(&["engine", "compose", "f"]),
        ]
    );
    // A name a parent binds from one child leads a sibling's `super::name` to that child.
    let modules: BTreeSet<Vec<String>> = [
        s(&[]),
        s(&["engine"]),
        s(&["engine", "steps"]),
        s(&["engine", "triggers"]),
    ]
    .into();
    let mut binds = BTreeMap::new();
    binds.insert(
        s(&["engine"]),
        bindings(
            "pub(crate) use triggers::{history_if as h, zone};\n",
            &s(&["engine"]),
            &modules,
        ),
    );
    assert_eq!(
        resolve(&s(&["engine", "h"]), &modules, &binds, 0),
        s(&["engine", "triggers"])
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

/// One pass, composed once: `run --once`, the daemon, `simulate` and `tidings test` all run
/// `pass::Runner::pass`. Only `pass.rs` puts the engine's pass and the senders together;
/// anywhere else that calls them directly is a second copy of the pass, free to drift.
#[test]
fn only_the_pass_runs_the_engine_and_the_senders() {
    let src = crate::common::repo_root().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let calls = [
        ".run_once(",
        ".run_once_signalling(",
        "dispatch(",
        "dispatch_alongside(",
    ];
    let mut found = Vec::new();
    for f in &files {
        let me = module_of(&src, f);
        // The pass itself, the engine and the senders (which define and call their own),
        // and the daemon's one-off webhook retry (`delivery::webhook`) are where they live.
        if matches!(
            me.first().map(String::as_str),
            Some("pass" | "engine" | "delivery")
        ) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in code_of(&text).lines().enumerate() {
            let code = code_only(line);
            for call in calls {
                let at = code.find(call);
                // `x.dispatch(` of another type (the webhook sender's) is not the pass's.
                let own = at
                    .is_some_and(|i| call.starts_with('.') || i == 0 || !code[..i].ends_with('.'));
                if own {
                    found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "the pass composed again: {found:#?}");
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
