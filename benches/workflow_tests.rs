//! `cargo bench --bench workflow_tests`: how long `tidings test` takes for 200 cases.
//!
//! The cases are the shipped examples' own tests, repeated under new names until there are
//! 200 (so every kind of step runs: events, advances over days and weeks, every kind of
//! expectation). Each run loads the tests and runs them all, on fresh in-memory stores, in
//! parallel as `tidings test` does. It prints the median of several runs.

#![allow(clippy::expect_used)] // a benchmark, like a test, stops at the first surprise

use std::time::{Duration, Instant};

use tidings::config::Project;
use tidings::rehearsal::workflow_tests::{runner, spec};
use tidings::workflow::compile::compile_project;

const CASES: usize = 200;
const RUNS: usize = 5;

fn main() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let project = match Project::load(&root) {
        Ok(p) => p,
        Err(d) => panic!("the project does not load: {}", d.message),
    };
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let compiled = compile_project(&project, &[]);
        let mut diagnostics = Vec::new();
        let shipped = spec::load(&compiled.plan, &mut diagnostics);
        assert!(diagnostics.is_empty(), "the shipped tests must load");
        let mut suites: Vec<spec::Suite> = shipped
            .iter()
            .map(|s| spec::Suite {
                cases: Vec::new(),
                ..s.clone()
            })
            .collect();
        let mut n = 0;
        'fill: loop {
            for (i, s) in shipped.iter().enumerate() {
                for case in &s.cases {
                    let mut case = case.clone();
                    case.name = format!("{} #{n}", case.name);
                    suites[i].cases.push(case);
                    n += 1;
                    if n == CASES {
                        break 'fill;
                    }
                }
            }
        }
        let results = runner::run_all(&compiled.plan, &project.config, &suites, jobs);
        times.push(start.elapsed());
        assert_eq!(results.len(), CASES);
        assert!(
            results.iter().all(|r| r.failure.is_none()),
            "every case passes"
        );
    }
    times.sort();
    let median: Duration = times[RUNS / 2];
    println!(
        "tidings test: {CASES} cases, {jobs} in parallel: median {:.2} s over {RUNS} runs ({:.1} ms a case)",
        median.as_secs_f64(),
        median.as_secs_f64() * 1000.0 / CASES as f64
    );
}
