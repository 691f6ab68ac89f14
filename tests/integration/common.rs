//! A small fluent helper for running the CLI and reading what it printed.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    repo_root().join("tests").join("fixtures")
}

/// A fresh, empty folder for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tidings-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Replaces the first `from` in a project file, which must hold it.
pub fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

pub struct Tidings {
    cwd: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Tidings {
    /// Runs in the fixtures folder, so paths in messages are short and stable.
    pub fn new() -> Self {
        Self {
            cwd: fixtures(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = dir.into();
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn run(self) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd)
            .env_remove("NO_COLOR")
            .output()
            .expect("the tidings binary runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Starts `tidings ARGS` in `dir` against the store at `url` without waiting, output
/// discarded: for tests that kill it part-way.
pub fn spawn(dir: &Path, url: &str, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .current_dir(dir)
        .env("TIDINGS_DB", url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the tidings binary starts")
}

impl Run {
    /// Exit status, stdout and stderr in one text, for snapshots.
    pub fn transcript(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// One HTTP request as the test receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Decides the status for a request, given how many requests with the same
/// `Idempotency-Key` came before it.
pub type Answer = dyn Fn(&Request, usize) -> u16 + Send + Sync;

/// A real HTTP/1.1 server on loopback for webhook tests: records each request and answers
/// with the status `answer` picks, closing the connection after each response.
pub struct HttpReceiver {
    pub port: u16,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Request>>>,
}

impl HttpReceiver {
    pub fn start(answer: Box<Answer>) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Request>::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or("").to_string(),
                    parts.next().unwrap_or("").to_string(),
                );
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
                let length: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let request = Request {
                    method,
                    path,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let before = {
                    let all = seen.lock().unwrap();
                    all.iter()
                        .filter(|r| {
                            r.header("idempotency-key") == request.header("idempotency-key")
                        })
                        .count()
                };
                let status = answer(&request, before);
                seen.lock().unwrap().push(request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} Test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        });
        Self { port, requests }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// A loopback port nobody listens on (yet): a server that is down, or one to start.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Where in an SMTP conversation a scripted fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mail,
    Rcpt,
    Data,
    /// After the message's final `.`.
    End,
}

/// What the scripted server does at a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    Accept,
    Reply(u16, &'static str),
    /// Close the connection without a reply.
    Drop,
}

/// Picks the act for a stage, given the recipient and how many messages to that
/// recipient the server has already been offered (reached `RCPT`).
pub type Script = dyn Fn(Stage, &str, usize) -> Act + Send + Sync;

/// One message the server took in (whether or not it acknowledged the final `.`).
#[derive(Debug, Clone)]
pub struct Received {
    pub to: String,
    pub bytes: Vec<u8>,
    pub acknowledged: bool,
    /// When the final `.` came in.
    pub at: std::time::Instant,
}

/// A real SMTP server on loopback for delivery tests: speaks ESMTP (EHLO with 8BITMIME,
/// MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT), one thread per connection, and
/// strikes faults where `script` says.
pub struct SmtpServer {
    pub port: u16,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    pub offered: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Every `MAIL FROM` line as it came, parameters and all.
    pub mail_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Transactions whose RCPT had arrived before the reply to MAIL was written: the
    /// client pipelined.
    pipelined: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// What the test server says about itself in EHLO.
#[derive(Clone, Copy)]
struct Offer {
    pipelining: bool,
    /// 8BITMIME and SMTPUTF8.
    utf8: bool,
}

impl Offer {
    /// PIPELINING, 8BITMIME and SMTPUTF8, as most servers offer.
    const USUAL: Offer = Offer {
        pipelining: true,
        utf8: true,
    };
}

impl SmtpServer {
    /// A server that offers PIPELINING, as most do.
    pub fn start(script: Box<Script>) -> Self {
        Self::on_any_port(script, Offer::USUAL)
    }

    /// A server that does not offer PIPELINING: commands must come one at a time.
    pub fn start_without_pipelining(script: Box<Script>) -> Self {
        let offer = Offer {
            pipelining: false,
            ..Offer::USUAL
        };
        Self::on_any_port(script, offer)
    }

    /// A server of plain 7-bit SMTP: neither 8BITMIME nor SMTPUTF8.
    pub fn start_seven_bit(script: Box<Script>) -> Self {
        let offer = Offer {
            utf8: false,
            ..Offer::USUAL
        };
        Self::on_any_port(script, offer)
    }

    /// Starts on a port picked earlier (the "server down at start" test).
    pub fn start_on(port: u16, script: Box<Script>) -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        Self::serve(listener, script, Offer::USUAL)
    }

    fn on_any_port(script: Box<Script>, offer: Offer) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Self::serve(listener, script, offer)
    }

    fn serve(listener: std::net::TcpListener, script: Box<Script>, offer: Offer) -> Self {
        use std::sync::{Arc, Mutex};
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let offered = Arc::new(Mutex::new(Vec::<String>::new()));
        let mail_lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let pipelined = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let script: Arc<Script> = Arc::from(script);
        let (r, o, p) = (received.clone(), offered.clone(), pipelined.clone());
        let m = mail_lines.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (r, o, p, script) = (r.clone(), o.clone(), p.clone(), script.clone());
                let m = m.clone();
                std::thread::spawn(move || smtp_session(stream, &*script, offer, &r, &o, &p, &m));
            }
        });
        Self {
            port,
            received,
            offered,
            mail_lines,
            pipelined,
        }
    }

    pub fn pipelined(&self) -> usize {
        self.pipelined.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn offered(&self) -> Vec<String> {
        self.offered.lock().unwrap().clone()
    }
}

fn smtp_session(
    stream: std::net::TcpStream,
    script: &Script,
    offer: Offer,
    received: &std::sync::Mutex<Vec<Received>>,
    offered: &std::sync::Mutex<Vec<String>>,
    pipelined: &std::sync::atomic::AtomicUsize,
    mail_lines: &std::sync::Mutex<Vec<String>>,
) {
    use std::io::{BufRead, BufReader, Write};
    let mut out = stream.try_clone().unwrap();
    let mut input = BufReader::new(stream);
    // Replies wait while more pipelined commands are already in, and go out together, as
    // Postfix does (small writes one after another would stall on Nagle's algorithm).
    let mut pending = Vec::new();
    let mut say = |text: &str, more_in: bool| {
        pending.extend_from_slice(format!("{text}\r\n").as_bytes());
        more_in || out.write_all(&std::mem::take(&mut pending)).is_ok()
    };
    if !say("220 test.localhost ESMTP", false) {
        return;
    }
    let mut rcpt = String::new();
    let mut nth = 0;
    // Where the transaction stands, as a real server tracks it: RCPT needs an accepted
    // MAIL, DATA an accepted RCPT.
    let (mut mail_ok, mut rcpt_ok) = (false, false);
    let act = |stage, rcpt: &str, nth| script(stage, rcpt, nth);
    loop {
        let mut line = String::new();
        if input.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let upper = line.trim_end().to_ascii_uppercase();
        let reply = |a: Act, ok: &str| -> Option<String> {
            match a {
                Act::Accept => Some(ok.to_string()),
                Act::Reply(code, text) => Some(format!("{code} {text}")),
                Act::Drop => None,
            }
        };
        let answer = if upper.starts_with("EHLO") {
            (mail_ok, rcpt_ok) = (false, false);
            let pipelining = if offer.pipelining {
                "250-PIPELINING\r\n"
            } else {
                ""
            };
            let utf8 = if offer.utf8 {
                "250-8BITMIME\r\n250-SMTPUTF8\r\n"
            } else {
                ""
            };
            Some(format!(
                "250-test.localhost\r\n{pipelining}{utf8}250 SIZE 10000000"
            ))
        } else if upper.starts_with("RSET") {
            (mail_ok, rcpt_ok) = (false, false);
            Some("250 OK".into())
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            Some("250 OK".into())
        } else if upper.starts_with("QUIT") {
            say("221 bye", false);
            return;
        } else if upper.starts_with("MAIL FROM") {
            mail_lines.lock().unwrap().push(line.trim_end().to_string());
            if mail_ok {
                Some("503 5.5.1 nested MAIL command".into())
            } else {
                if input.buffer().starts_with(b"RCPT") {
                    pipelined.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                let r = reply(act(Stage::Mail, "", 0), "250 OK");
                mail_ok = r.as_deref().is_some_and(|r| r.starts_with('2'));
                r
            }
        } else if upper.starts_with("RCPT TO") && !mail_ok {
            Some("503 5.5.1 need MAIL first".into())
        } else if upper.starts_with("DATA") && !rcpt_ok {
            Some("554 5.5.1 no valid recipients".into())
        } else if upper.starts_with("RCPT TO") {
            rcpt = line
                .trim_end()
                .split_once(':')
                .map(|(_, a)| {
                    a.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                })
                .unwrap_or_default();
            let mut o = offered.lock().unwrap();
            nth = o.iter().filter(|x| **x == rcpt).count();
            o.push(rcpt.clone());
            drop(o);
            let r = reply(act(Stage::Rcpt, &rcpt, nth), "250 OK");
            rcpt_ok = r.as_deref().is_some_and(|r| r.starts_with('2'));
            r
        } else if upper.starts_with("DATA") {
            match reply(act(Stage::Data, &rcpt, nth), "354 go ahead") {
                Some(r) if r.starts_with("354") => {
                    say(&r, false);
                    let mut bytes = Vec::new();
                    loop {
                        let mut l = Vec::new();
                        if input.read_until(b'\n', &mut l).unwrap_or(0) == 0 {
                            return;
                        }
                        if l == b".\r\n" {
                            break;
                        }
                        let l = if l.starts_with(b"..") {
                            &l[1..]
                        } else {
                            &l[..]
                        };
                        bytes.extend_from_slice(l);
                    }
                    (mail_ok, rcpt_ok) = (false, false);
                    let end = reply(act(Stage::End, &rcpt, nth), "250 queued");
                    received.lock().unwrap().push(Received {
                        to: rcpt.clone(),
                        bytes,
                        acknowledged: end.as_deref().is_some_and(|e| e.starts_with('2')),
                        at: std::time::Instant::now(),
                    });
                    end
                }
                other => other,
            }
        } else {
            Some("502 not implemented".into())
        };
        match answer {
            Some(a) => {
                if !say(&a, !input.buffer().is_empty()) {
                    return;
                }
            }
            None => return,
        }
    }
}

/// Says that a check was skipped, past the test harness's output capture (which keeps
/// `eprintln!` of a passing test to itself): a skip must be seen by whoever ran the tests.
pub fn say_skipped(note: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "note: {note}");
}

/// xorshift64*: random cases reproducible without a dependency (a test prints its seed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
