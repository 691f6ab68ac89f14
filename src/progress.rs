//! What a run counts and shows while it runs. A [`Meter`] is made by whoever runs the work
//! (a command, the daemon) and handed to the engine and the sender, which count where the
//! work happens (one relaxed add); `/metrics` and the progress line read the same meter. The
//! progress line of long interactive commands (`run --once`, `import`, `simulate`) is a
//! ticker thread that redraws one line on stderr four times a second — only on a terminal,
//! unless `--progress always` asks for it (then the last line is kept).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts of the work done so far by one run.
#[derive(Debug)]
pub struct Meter {
    /// Import rows read.
    pub rows: AtomicU64,
    pub enrolled: AtomicU64,
    pub steps: AtomicU64,
    /// Emails put in the outbox.
    pub queued: AtomicU64,
    pub sent: AtomicU64,
    pub retrying: AtomicU64,
    pub failed: AtomicU64,
    /// A rehearsal's virtual clock, in milliseconds since the epoch.
    pub clock: AtomicI64,
    /// How long emails took from their event to the SMTP server.
    pub handoff: Histogram,
}

impl Default for Meter {
    fn default() -> Self {
        Self {
            rows: AtomicU64::new(0),
            enrolled: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            retrying: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            clock: AtomicI64::new(0),
            handoff: Histogram::default(),
        }
    }
}

/// Upper bounds, in seconds, of the buckets of [`Meter::handoff`].
pub const HANDOFF_BUCKETS: [f64; 10] = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// A histogram of how long emails took from the moment their event was accepted to the
/// moment the SMTP server accepted them: for `/metrics`, and the real-time benchmark.
#[derive(Debug)]
pub struct Histogram {
    /// Observations at or under each bound of [`HANDOFF_BUCKETS`] (not cumulative).
    buckets: [AtomicU64; 10],
    /// Observations over the last bound.
    over: AtomicU64,
    /// The sum of all observations, in microseconds.
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; 10],
            over: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let seconds = seconds.max(0.0);
        match HANDOFF_BUCKETS.iter().position(|b| seconds <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (Prometheus' `le`), the total count, and the sum in
    /// seconds.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut total = 0;
        let cumulative = HANDOFF_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                total += n.load(Ordering::Relaxed);
                (*bound, total)
            })
            .collect();
        let count = total + self.over.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (cumulative, count, sum)
    }
}

/// Adds one to a counter of a [`Meter`].
pub fn count(counter: &AtomicU64) {
    add(counter, 1);
}

/// Adds `n` to a counter of a [`Meter`].
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// On a terminal only.
    #[default]
    Auto,
    Always,
    Never,
}

/// What the line says, given the time since the command started.
pub type Render = dyn Fn(Duration) -> String + Send + Sync;

/// A running progress line; [`Progress::finish`] stops it.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

const TICK: Duration = Duration::from_millis(250);

impl Progress {
    pub fn start(mode: ProgressMode, render: Box<Render>) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let on = match mode {
            ProgressMode::Auto => terminal,
            ProgressMode::Always => true,
            ProgressMode::Never => false,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = on.then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                // A terminal line is redrawn in place; anything else gets the last line
                // only, so that a log is not filled with ticks.
                while !stop.load(Ordering::Relaxed) {
                    if terminal {
                        let _ = write!(std::io::stderr(), "\r\x1b[2K{}", render(started.elapsed()));
                    }
                    std::thread::sleep(TICK);
                }
                let line = render(started.elapsed());
                let _ = if terminal {
                    writeln!(std::io::stderr(), "\r\x1b[2K{line}")
                } else {
                    writeln!(std::io::stderr(), "{line}")
                };
            })
        });
        Self {
            stop,
            thread: Mutex::new(thread),
        }
    }

    /// Stops the ticker after it draws the final line.
    pub fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Per second, over `elapsed`.
pub fn rate(n: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs < 0.001 {
        0
    } else {
        (n as f64 / secs) as u64
    }
}

/// Reads how many statements the store has sent; the store's counter, handed in by the
/// command so that this floor need not know the store.
pub type Statements = fn() -> u64;

/// The line of a pass: the engine's work, the sender's, and the statements they cost.
pub fn pass_line(meter: Arc<Meter>, statements: Statements) -> Box<Render> {
    let before = statements();
    Box::new(move |elapsed| pass_text(&meter, statements() - before, elapsed))
}

/// `n statements (x per step)`: what a run's work cost the database.
pub fn statements_text(statements: u64, steps: u64) -> String {
    match steps {
        0 => format!("{statements} statements"),
        _ => format!(
            "{statements} statements ({:.1} per step)",
            statements as f64 / steps as f64
        ),
    }
}

fn pass_text(meter: &Meter, statements: u64, elapsed: Duration) -> String {
    let sent = get(&meter.sent);
    format!(
        "{:>5.1}s  {} enrolled · {} steps · {} emails queued · {} sent ({}/s) · {} to retry · {} failed · {}",
        elapsed.as_secs_f64(),
        get(&meter.enrolled),
        get(&meter.steps),
        get(&meter.queued),
        sent,
        rate(sent, elapsed),
        get(&meter.retrying),
        get(&meter.failed),
        statements_text(statements, get(&meter.steps)),
    )
}
