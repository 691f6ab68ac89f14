//! The project's own fuzz check, bounded in time: copies of the shipped project with one
//! file mutated (bytes cut, bytes inserted — YAML's and Tera's punctuation, invalid UTF-8,
//! huge numbers, deep brackets —, lines repeated or swapped), each through `validate
//! --format json`. Whatever a file holds, `validate` answers within seconds with exit 0 or
//! 1, JSON on stdout, and every diagnostic names a file and a line.
//! `TIDINGS_FUZZ_CASES` sets how many mutants (default 120) and `TIDINGS_FUZZ_SEED` the
//! seed (fixed by default, so a failure is reproduced by the same run).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Rng, repo_root, scratch_dir};

const INSERTS: &[&[u8]] = &[
    b":",
    b"- ",
    b"[",
    b"{",
    b"}",
    b"]",
    b"&a ",
    b"*a",
    b"\"",
    b"'",
    b"\n",
    b"  ",
    b"\t",
    b"{{",
    b"}}",
    b"{%",
    b"%}",
    b"#",
    b"\xff\xfe",
    b"\xe9",
    b"99999999999999999999",
    b"-1",
    b"1e400",
    b"100000000d",
    b"!!binary",
    b"---\n",
    b"\0",
    b"\xe7\x89\xa9",
];

fn mutate(text: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = text.to_vec();
    let at = rng.below(out.len() + 1);
    match rng.below(6) {
        0 => {
            let end = (at + 1 + rng.below(40)).min(out.len());
            out.drain(at.min(end)..end);
        }
        1 | 2 => {
            let piece = *rng.pick(INSERTS);
            out.splice(at..at, piece.iter().copied());
        }
        3 => {
            let nest = ["[", "{a: "][rng.below(2)].repeat(1 + rng.below(3000));
            out.splice(at..at, nest.bytes());
        }
        _ => {
            let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
            let pick = lines[rng.below(lines.len())];
            let mut repeated = Vec::new();
            for _ in 0..1 + rng.below(200) {
                repeated.extend_from_slice(pick);
                repeated.push(b'\n');
            }
            out.splice(at..at, repeated);
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The files a mutant may change: workflows, their tests' YAML, templates, stages.
fn targets(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.join("stages.yaml")];
    for sub in ["workflows", "templates"] {
        let mut stack = vec![dir.join(sub)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn mutated_copies_of_the_shipped_project_never_break_validate() {
    let cases: usize = std::env::var("TIDINGS_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(120);
    let dir = scratch_dir("fuzz");
    let root = repo_root();
    copy_dir(&root.join("workflows"), &dir.join("workflows"));
    copy_dir(&root.join("templates"), &dir.join("templates"));
    std::fs::copy(root.join("stages.yaml"), dir.join("stages.yaml")).unwrap();
    let files = targets(&dir);
    let seed = std::env::var("TIDINGS_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0x7469_6469_6e67_7321_u64);
    let mut rng = Rng(seed.max(1));
    let started = Instant::now();
    for case in 0..cases {
        let file = &files[rng.below(files.len())];
        let original = std::fs::read(file).unwrap();
        std::fs::write(file, mutate(&original, &mut rng)).unwrap();
        let output = within(&dir, &["validate", "--format", "json"], file, case);
        let what = format!(
            "case {case}, {}: exit {:?}\n{}",
            file.display(),
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(matches!(output.status.code(), Some(0 | 1)), "{what}");
        let doc: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{what}\nstdout is not JSON: {e}"));
        for d in doc["diagnostics"].as_array().into_iter().flatten() {
            assert!(
                d["file"].is_string() && d["line"].as_u64().is_some_and(|l| l > 0),
                "{what}\na diagnostic without a place: {d}"
            );
        }
        // A mutant that validates is run as CI would next: its tests pass or fail, nothing
        // else (a case that cannot run is a failure, never a crash).
        if output.status.code() == Some(0) {
            let tested = within(&dir, &["test"], file, case);
            assert!(
                matches!(tested.status.code(), Some(0 | 1)),
                "case {case}, {}: `tidings test` exit {:?}\n{}",
                file.display(),
                tested.status.code(),
                String::from_utf8_lossy(&tested.stderr)
            );
        }
        std::fs::write(file, original).unwrap();
    }
    eprintln!("fuzz: {cases} mutants in {:?}", started.elapsed());
}

/// A run of `tidings ARGS` in `dir` that must end within 20 s; past that the mutant is kept
/// beside the scratch folder and the test fails.
fn within(dir: &Path, args: &[&str], file: &Path, case: usize) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let kept = dir.with_extension(format!("case-{case}"));
            let _ = std::fs::copy(file, &kept);
            panic!(
                "case {case}: `tidings {}` did not answer within 20 s on {} (kept as {})",
                args.join(" "),
                file.display(),
                kept.display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}
