//! `cargo bench --bench validate`: how long `validate` takes on 500 workflow files.
//!
//! The files are the shipped examples copied under new names (each with its templates), so
//! every check runs: YAML, spans, cron, Rhai compile and trial run, Tera checks and trial
//! renders. It prints the median of several runs of the library call and of the binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tidings::config::Project;
use tidings::workflow::compile::compile_project;

const FILES: usize = 500;
const RUNS: usize = 7;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("tidings-bench-validate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    generate(&root, &dir, FILES);

    let project = match Project::load(&dir) {
        Ok(p) => p,
        Err(d) => panic!("bench project does not load: {}", d.message),
    };
    let mut library = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let compiled = compile_project(&project, &[]);
        library.push(start.elapsed());
        assert!(!compiled.has_errors(), "generated workflows must be valid");
        assert_eq!(compiled.plan.workflows.len(), FILES);
    }

    let binary = root.join("target/release/tidings");
    let mut cli = Vec::new();
    if binary.exists() {
        for _ in 0..RUNS {
            let start = Instant::now();
            let status = Command::new(&binary)
                .args(["-C", &dir.display().to_string(), "validate"])
                .stdout(std::process::Stdio::null())
                .status();
            cli.push(start.elapsed());
            assert!(status.is_ok_and(|s| s.success()));
        }
    }
    println!(
        "validate {FILES} workflow files ({} cores):",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "  library compile_project: median {:.1} ms over {RUNS} runs",
        ms(median(&mut library))
    );
    if cli.is_empty() {
        println!("  binary: build it with `cargo build --release` to time `tidings validate` too");
    } else {
        println!(
            "  tidings validate (process): median {:.1} ms over {RUNS} runs",
            ms(median(&mut cli))
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Copies the examples' templates and stages, and writes `n` workflows cycling through the
/// examples (some of which expect the stages).
fn generate(root: &Path, dir: &Path, n: usize) {
    copy_dir(&root.join("templates"), &dir.join("templates"));
    std::fs::copy(root.join("stages.yaml"), dir.join("stages.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.join("workflows")).unwrap_or_else(|e| panic!("{e}"));
    let examples: Vec<(String, String)> =
        tidings::workflow::compile::workflow_files(&root.join("workflows"))
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{e}"));
                let stem = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (stem, text)
            })
            .collect();
    for i in 0..n {
        let (stem, text) = &examples[i % examples.len()];
        let name = format!("{stem}-{i}");
        let text = text.replacen(&format!("name: {stem}"), &format!("name: {name}"), 1);
        std::fs::write(dir.join("workflows").join(format!("{name}.yaml")), text)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{e}"));
    for entry in std::fs::read_dir(from)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
