//! `tidings.yaml`: the project's settings. Every key has a default, so a repository with
//! no config file works; secrets are only ever `${ENV}` references, resolved when needed.

use std::path::{Path, PathBuf};

use chrono::{NaiveTime, TimeDelta};
use serde::Deserialize;
use thiserror::Error;

use crate::source::SourceFile;
use crate::source::diagnostic::{Diagnostic, Span};
use crate::source::yaml::{Document, Route};

mod retention;
mod server;
pub mod sources;
mod tracking;
pub use retention::RetentionConfig;
pub use server::ServerConfig;
pub use sources::SourceConfig;
pub use tracking::{EmailTracking, TrackingConfig, WorkflowTracking};

pub const CONFIG_FILE: &str = "tidings.yaml";

/// The settings, as written (with `${ENV}` references unresolved).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct Config {
    /// `database: sqlite://tidings.db` (the default: a file beside the config) or
    /// `postgres://user@host/db`.
    pub database: String,
    /// `workflows: workflows` — the folder of workflow files.
    pub workflows: PathBuf,
    /// `templates: templates` — the folder of email templates.
    pub templates: PathBuf,
    /// `stages: stages.yaml` — optional lifecycle stages.
    pub stages: PathBuf,
    /// `default_locale: en` — the language of templates without a locale in their name
    /// (`deal.html`): what `template.locale` is when a customer gets them.
    pub default_locale: String,
    pub email: EmailConfig,
    pub unsubscribe: UnsubscribeConfig,
    pub limits: Limits,
    pub server: ServerConfig,
    pub webhooks: WebhookConfig,
    pub triggers: TriggersConfig,
    pub tracking: TrackingConfig,
    pub retention: RetentionConfig,
    /// `topics: { offers: { en: "Deals and coupons", ja: "お得な情報" } }` — the kinds of
    /// marketing mail a customer can opt out of one by one, each described per language.
    pub topics: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// `sources: { shop: { database, every, customers, orders } }` — the shop's own
    /// databases, read by `tidings sync` and the daemon.
    pub sources: std::collections::BTreeMap<String, SourceConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database: "sqlite://tidings.db".into(),
            workflows: "workflows".into(),
            templates: "templates".into(),
            stages: "stages.yaml".into(),
            default_locale: "en".into(),
            email: EmailConfig::default(),
            unsubscribe: UnsubscribeConfig::default(),
            limits: Limits::default(),
            server: ServerConfig::default(),
            webhooks: WebhookConfig::default(),
            triggers: TriggersConfig::default(),
            tracking: TrackingConfig::default(),
            retention: RetentionConfig::default(),
            topics: Default::default(),
            sources: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct EmailConfig {
    /// `from: "Acme <hello@acme.example>"`
    pub from: String,
    /// `transport: smtp://127.0.0.1:2525` (STARTTLS when offered), `smtps://host:465`,
    /// `folder:out/mail` (the default: one `.eml` file per message) or `stdout`.
    pub transport: String,
    /// `username: ${SMTP_USER}`
    pub username: Option<String>,
    /// `password: ${SMTP_PASSWORD}`
    pub password: Option<String>,
    /// `concurrency: 16` — SMTP connections in parallel.
    pub concurrency: usize,
    /// `rate_per_second: 100` — at most this many messages a second (0 = unlimited).
    pub rate_per_second: u32,
    /// `rate_per_domain: { default: 20, gmail.com: 50 }` — at most so many messages a
    /// second to one recipient domain; mail to other domains goes on meanwhile.
    pub rate_per_domain: std::collections::BTreeMap<String, u32>,
    /// `dkim: { selector: s1, domain: acme.example, key_file: ${DKIM_KEY_FILE} }`
    pub dkim: Option<DkimConfig>,
    /// `give_up_after: 3d` — an email still failing (4xx, no connection) this long after it
    /// was queued is marked failed.
    pub give_up_after: String,
    /// `lease: 5m` — how long an email being sent, or a batch of due journeys, stays
    /// claimed by its worker. On PostgreSQL (several workers) what a worker that died left
    /// is taken over when its lease runs out; SQLite has one worker and takes it over at once.
    pub lease: String,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            from: "tidings <tidings@localhost>".into(),
            transport: "folder:out/mail".into(),
            username: None,
            password: None,
            concurrency: 16,
            rate_per_second: 0,
            rate_per_domain: Default::default(),
            dkim: None,
            give_up_after: "3d".into(),
            lease: "5m".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct DkimConfig {
    /// `selector: s1` — the DNS record `s1._domainkey.DOMAIN` holds the public key.
    pub selector: String,
    /// `domain: acme.example` — the `d=` of the signature; align it with the From domain.
    pub domain: String,
    /// `key_file: keys/dkim.pem` or `${DKIM_KEY_FILE}` — an RSA key in PKCS#1 PEM, or for
    /// Ed25519 the base64 of the 32-byte secret key. Relative to the project root.
    pub key_file: String,
    /// `algorithm: rsa` (the default) or `ed25519`.
    #[serde(default)]
    pub algorithm: DkimAlgorithm,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DkimAlgorithm {
    #[default]
    Rsa,
    Ed25519,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct UnsubscribeConfig {
    /// `base_url: https://acme.example/u` — the daemon serves `/u/{token}`. Default:
    /// `server.public_url` + `/u`.
    pub base_url: Option<String>,
    /// `secret: ${TIDINGS_UNSUBSCRIBE_SECRET}` — signs unsubscribe tokens (default: a
    /// random key the store makes and keeps).
    pub secret: Option<String>,
    /// `valid_for: 365d` — how long an unsubscribe link works.
    pub valid_for: String,
}

impl Default for UnsubscribeConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            secret: None,
            valid_for: "365d".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct Limits {
    /// `frequency_cap: { count: 3, per: 7d }` — marketing mail only.
    pub frequency_cap: Option<FrequencyCap>,
    /// `quiet_hours: { from: "21:00", to: "08:00" }` — in the customer's local time.
    pub quiet_hours: Option<QuietHours>,
    /// `catch_up_max_age: 7d` — a schedule's fire time missed while nothing ran is made up
    /// (`catch_up: run_once`) only if it is at most this old. Default 7 days.
    pub catch_up_max_age: String,
    /// `expression_time: 50ms` — the wall-clock budget of one Rhai evaluation (an
    /// audience, a condition, a stage rule for one customer). One that runs longer fails
    /// that customer's enrollment, and the rest go on.
    pub expression_time: String,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            frequency_cap: None,
            quiet_hours: None,
            catch_up_max_age: "7d".into(),
            expression_time: "50ms".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct TriggersConfig {
    /// `max_event_age: 1d` — an event this much older than the pass that first sees it
    /// starts no journey (history imported in bulk, a backlog after an outage): it would
    /// send welcomes months late. `tidings enroll --since` backfills on purpose.
    pub max_event_age: String,
}

impl Default for TriggersConfig {
    fn default() -> Self {
        Self {
            max_event_age: "1d".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FrequencyCap {
    pub count: u32,
    pub per: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct QuietHours {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct WebhookConfig {
    /// `allow_hosts: [crm.internal]` — hosts a webhook may reach even on a loopback,
    /// private or link-local address (by default no webhook may).
    pub allow_hosts: Vec<String>,
    /// `max_attempts: 5` — tries before a call that keeps failing (5xx, 408, 429, timeouts,
    /// refused connections) is marked failed; between tries the wait doubles from 30 s.
    pub max_attempts: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            max_attempts: 5,
        }
    }
}

/// Where unsubscribe links point when neither `server.public_url` nor
/// `unsubscribe.base_url` says: the daemon's default address, which works on this machine
/// only (see [`Config::production_problems`]).
pub const LOCAL_UNSUBSCRIBE_BASE: &str = "http://127.0.0.1:8080/u";

impl Config {
    /// Where unsubscribe links point: `unsubscribe.base_url`, else `server.public_url`'s
    /// `/u`, else the daemon's local default.
    pub fn unsubscribe_base(&self) -> String {
        match (&self.unsubscribe.base_url, &self.server.public_url) {
            (Some(base), _) => base.trim_end_matches('/').to_string(),
            (None, Some(public)) => format!("{}/u", public.trim_end_matches('/')),
            (None, None) => LOCAL_UNSUBSCRIBE_BASE.to_string(),
        }
    }

    /// Where the links tidings writes hang off: `server.public_url`, else the unsubscribe
    /// base without its `/u`, else the daemon's local default.
    pub fn public_base(&self) -> String {
        match (&self.server.public_url, &self.unsubscribe.base_url) {
            (Some(public), _) => public.trim_end_matches('/').to_string(),
            (None, Some(base)) => {
                let base = base.trim_end_matches('/');
                base.strip_suffix("/u").unwrap_or(base).to_string()
            }
            (None, None) => LOCAL_UNSUBSCRIBE_BASE.trim_end_matches("/u").to_string(),
        }
    }

    /// What makes mail sent over the network (`smtp://`, `smtps://`) unfit to leave: an
    /// unsubscribe link no recipient can reach (unset, or on a loopback address) and a
    /// sender at `localhost`. Each is (the key to change, the message, what to do). Mail
    /// written to a folder or stdout is a rehearsal, and may have them.
    pub fn production_problems(&self) -> Vec<(&'static str, String, String)> {
        let transport = self.email.transport.trim();
        if !(transport.starts_with("smtp://") || transport.starts_with("smtps://")) {
            return Vec::new();
        }
        let mut problems = Vec::new();
        let base = self.unsubscribe_base();
        let key = match (&self.unsubscribe.base_url, &self.server.public_url) {
            (Some(_), _) => "unsubscribe.base_url",
            _ => "server.public_url",
        };
        if self.unsubscribe.base_url.is_none() && self.server.public_url.is_none() {
            problems.push((
                key,
                format!("mail goes out over SMTP with unsubscribe links to `{base}`, which no recipient can reach"),
                "set `server.public_url` to where the daemon is reached from the internet, e.g. `public_url: https://mail.acme.example`".to_string(),
            ));
        } else if is_local_url(&base) {
            problems.push((
                key,
                format!("mail goes out over SMTP with unsubscribe links to `{base}`, a loopback address no recipient can reach"),
                "point it at where the daemon is reached from the internet, e.g. `https://mail.acme.example`".to_string(),
            ));
        }
        let domain = self
            .email
            .from
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('>').trim().to_ascii_lowercase())
            .unwrap_or_default();
        if domain == "localhost" || domain.ends_with(".localhost") || domain.is_empty() {
            problems.push((
                "email.from",
                format!("mail goes out over SMTP from `{}`, an address at no real domain", self.email.from),
                "set `email.from` to your sending address, e.g. `from: \"Acme <hello@acme.example>\"`".to_string(),
            ));
        }
        problems
    }
}

/// Whether a URL's host is this machine (a loopback name or address, or unspecified).
fn is_local_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// The settings as running code uses them: durations and times parsed once, where the
/// project is loaded (which reports a wrong one at its line); nothing downstream parses
/// configuration text again.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `email.lease`: how long a claimed email or batch of journeys stays claimed.
    pub lease: TimeDelta,
    /// `email.give_up_after`: retries stop this long after an email was queued.
    pub give_up_after: TimeDelta,
    /// `limits.catch_up_max_age`: older missed fire times are not made up.
    pub catch_up_max_age: TimeDelta,
    /// `limits.expression_time`: one Rhai evaluation's wall-clock budget.
    pub expression_time: TimeDelta,
    /// `unsubscribe.valid_for`: how long an unsubscribe link works.
    pub unsubscribe_valid_for: TimeDelta,
    /// `limits.frequency_cap`: at most `count` marketing emails per `per` (0: no cap).
    pub frequency_cap: Option<(u32, TimeDelta)>,
    /// `limits.quiet_hours`: from, to (local times; to may be the next morning).
    pub quiet_hours: Option<(NaiveTime, NaiveTime)>,
    /// `server.header_timeout` and `server.request_timeout`.
    pub header_timeout: TimeDelta,
    pub request_timeout: TimeDelta,
    /// `tracking.machine_window`: a click this soon after its email left is a machine's.
    pub machine_window: TimeDelta,
    /// `triggers.max_event_age`: an older event starts no journey.
    pub max_event_age: TimeDelta,
    /// `retention.bodies`: bodies of mail done this long ago are dropped.
    pub keep_bodies: TimeDelta,
}

impl Settings {
    /// The settings of a config; a text that does not parse (which `Project::load` has
    /// already refused with its position) falls back to the default's.
    pub fn of(c: &Config) -> Self {
        let defaults = Config::default();
        let duration = |text: &str, default: &str| {
            crate::time::duration::parse(text)
                .or_else(|_| crate::time::duration::parse(default))
                .unwrap_or_default()
        };
        Self {
            lease: duration(&c.email.lease, &defaults.email.lease),
            give_up_after: duration(&c.email.give_up_after, &defaults.email.give_up_after),
            catch_up_max_age: duration(
                &c.limits.catch_up_max_age,
                &defaults.limits.catch_up_max_age,
            ),
            expression_time: duration(&c.limits.expression_time, &defaults.limits.expression_time),
            unsubscribe_valid_for: duration(
                &c.unsubscribe.valid_for,
                &defaults.unsubscribe.valid_for,
            ),
            frequency_cap: c.limits.frequency_cap.as_ref().and_then(|cap| {
                let per = crate::time::duration::parse(&cap.per).ok()?;
                (cap.count > 0).then_some((cap.count, per))
            }),
            header_timeout: duration(&c.server.header_timeout, &defaults.server.header_timeout),
            request_timeout: duration(&c.server.request_timeout, &defaults.server.request_timeout),
            machine_window: duration(
                &c.tracking.machine_window,
                &defaults.tracking.machine_window,
            ),
            max_event_age: duration(&c.triggers.max_event_age, &defaults.triggers.max_event_age),
            keep_bodies: duration(&c.retention.bodies, &defaults.retention.bodies),
            quiet_hours: c.limits.quiet_hours.as_ref().and_then(|q| {
                Some((
                    crate::time::duration::parse_time_of_day(&q.from)?,
                    crate::time::duration::parse_time_of_day(&q.to)?,
                ))
            }),
        }
    }
}

/// A project: its root folder and settings.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub config: Config,
    /// The config file, when there is one.
    pub file: Option<SourceFile>,
}

impl Project {
    /// Loads `tidings.yaml` from `root`, or the defaults when there is none.
    pub fn load(root: &Path) -> Result<Self, Box<Diagnostic>> {
        let path = root.join(CONFIG_FILE);
        if !path.exists() {
            return Ok(Self {
                root: root.to_path_buf(),
                config: Config::default(),
                file: None,
            });
        }
        let file = SourceFile::read_text(&path, "config-unreadable")?;
        let config: Config = if file.text().trim().is_empty() {
            Config::default()
        } else {
            crate::source::yaml::parse_typed(&file)?
        };
        let project = Self {
            root: root.to_path_buf(),
            config,
            file: Some(file),
        };
        project.check_env_references()?;
        project.check_limits()?;
        if let Some(file) = &project.file {
            let doc = Document::index(file);
            project.config.server.check(&doc)?;
            sources::check(&project.config.sources, &doc)?;
            let locale = &project.config.default_locale;
            if locale
                .parse::<icu_locale_core::LanguageIdentifier>()
                .is_err()
            {
                return Err(Box::new(
                    Diagnostic::error("config-locale", format!("`{locale}` is not a locale"))
                        .at(doc.value_span(&Route::root().key("default_locale")))
                        .help("write a BCP 47 tag such as `en` or `pt-BR`"),
                ));
            }
        }
        Ok(project)
    }

    /// [`Config::production_problems`] as errors at the key to change (the transport when
    /// the key is not written): `validate` reports them, `run` and the daemon refuse to
    /// send with them.
    pub fn production_diagnostics(&self) -> Vec<Diagnostic> {
        let problems = self.config.production_problems();
        let doc = self.file.as_ref().map(Document::index);
        problems
            .into_iter()
            .map(|(key, message, help)| {
                let d = Diagnostic::error("config-production", format!("{message} (`{key}`)"))
                    .help(help);
                match &doc {
                    Some(doc) => {
                        let route =
                            |dotted: &str| dotted.split('.').fold(Route::root(), |r, k| r.key(k));
                        let at = if doc.node(&route(key)).is_some() {
                            route(key)
                        } else {
                            route("email.transport")
                        };
                        d.at(doc.value_span(&at))
                    }
                    None => d,
                }
            })
            .collect()
    }

    pub fn workflows_dir(&self) -> PathBuf {
        self.path(&self.config.workflows)
    }

    pub fn templates_dir(&self) -> PathBuf {
        self.path(&self.config.templates)
    }

    /// The database URL with `${ENV}` resolved, and a relative SQLite file placed under
    /// the project root.
    pub fn database_url(&self) -> Result<String, EnvError> {
        let url = expand_env(&self.config.database, &|name| std::env::var(name).ok())?;
        match url.strip_prefix("sqlite://") {
            Some(path) if !path.starts_with('/') && !path.starts_with(":memory:") => {
                Ok(format!("sqlite://{}", self.path(Path::new(path)).display()))
            }
            _ => Ok(url),
        }
    }

    /// A path under the project root; without a `./` prefix when the root is the current
    /// folder, so messages show `templates/x.html` as the user would type it.
    pub fn path(&self, rel: &Path) -> PathBuf {
        if self.root == Path::new(".") {
            rel.to_path_buf()
        } else {
            self.root.join(rel)
        }
    }

    /// Quiet hours are times of day and the cap's period a duration; checked at load so
    /// that a typo is an error, not a rule silently not applied.
    fn check_limits(&self) -> Result<(), Box<Diagnostic>> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let doc = Document::index(file);
        let limits = Route::root().key("limits");
        if let Some(q) = &self.config.limits.quiet_hours {
            for (key, value) in [("from", &q.from), ("to", &q.to)] {
                if crate::time::duration::parse_time_of_day(value).is_none() {
                    return Err(Box::new(
                        Diagnostic::error(
                            "config-limits",
                            format!("`{value}` is not a time of day"),
                        )
                        .at(doc.value_span(&limits.key("quiet_hours").key(key)))
                        .help("write 24-hour local time as `HH:MM`, e.g. `21:00`"),
                    ));
                }
            }
        }
        if let Some(cap) = &self.config.limits.frequency_cap
            && crate::time::duration::parse(&cap.per)
                .map_or(true, |d| d <= chrono::TimeDelta::zero())
        {
            return Err(Box::new(
                Diagnostic::error(
                    "config-limits",
                    format!("`{}` is not a period for the frequency cap", cap.per),
                )
                .at(doc.value_span(&limits.key("frequency_cap").key("per")))
                .help(crate::time::duration::DURATION_HELP),
            ));
        }
        // Durations the delivery side reads: wrong ones are found here, with a position,
        // not when the first email is due.
        let c = &self.config;
        for (section, key, value) in [
            ("limits", "catch_up_max_age", &c.limits.catch_up_max_age),
            ("limits", "expression_time", &c.limits.expression_time),
            ("email", "give_up_after", &c.email.give_up_after),
            ("email", "lease", &c.email.lease),
            ("unsubscribe", "valid_for", &c.unsubscribe.valid_for),
            ("server", "header_timeout", &c.server.header_timeout),
            ("server", "request_timeout", &c.server.request_timeout),
            ("tracking", "machine_window", &c.tracking.machine_window),
            ("triggers", "max_event_age", &c.triggers.max_event_age),
            ("retention", "bodies", &c.retention.bodies),
        ] {
            if crate::time::duration::parse(value).map_or(true, |d| d <= chrono::TimeDelta::zero())
                && !(key == "give_up_after" && value.trim() == "0s")
            {
                return Err(Box::new(
                    Diagnostic::error(
                        "config-duration",
                        format!("`{value}` is not a duration for `{section}.{key}`"),
                    )
                    .at(doc.value_span(&Route::root().key(section).key(key)))
                    .help(crate::time::duration::DURATION_HELP),
                ));
            }
        }
        Ok(())
    }

    /// Every `${...}` must be well formed; whether the variable is set is checked when the
    /// value is needed, so `validate` runs offline and without secrets.
    fn check_env_references(&self) -> Result<(), Box<Diagnostic>> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let c = &self.config;
        let mut fields: Vec<(String, Option<&str>)> = [
            ("database", Some(c.database.as_str())),
            (
                "email.dkim.key_file",
                c.email.dkim.as_ref().map(|d| d.key_file.as_str()),
            ),
            ("email.username", c.email.username.as_deref()),
            ("email.password", c.email.password.as_deref()),
            ("email.transport", Some(&c.email.transport)),
            ("unsubscribe.secret", c.unsubscribe.secret.as_deref()),
            ("server.token", c.server.token.as_deref()),
        ]
        .into_iter()
        .map(|(route, value)| (route.to_string(), value))
        .collect();
        for (name, source) in &c.sources {
            fields.push((format!("sources.{name}.database"), Some(&source.database)));
        }
        let doc = Document::index(file);
        for (route, value) in fields {
            let Some(value) = value else { continue };
            if let Err(EnvError::Malformed { at }) = env_references(value) {
                let mut r = Route::root();
                for key in route.split('.') {
                    r = r.key(key);
                }
                let span: Span = doc.locate(&r, at, 2);
                return Err(Box::new(
                    Diagnostic::error(
                        "config-env",
                        format!("malformed environment reference in `{route}`"),
                    )
                    .at(span)
                    .help("write `${NAME}` with a name of letters, digits and underscores"),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("malformed `${{...}}` reference at character {at}")]
    Malformed { at: usize },
    /// Names the variable, never a value.
    #[error("environment variable `{name}` is not set")]
    Missing { name: String },
}

/// The names of the `${NAME}` references in a value, or where a malformed one starts.
pub fn env_references(value: &str) -> Result<Vec<String>, EnvError> {
    let mut names = Vec::new();
    let mut rest = value;
    let mut base = 0;
    while let Some(i) = rest.find("${") {
        let at = value[..base + i].chars().count();
        let after = &rest[i + 2..];
        let end = after.find('}').ok_or(EnvError::Malformed { at })?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(EnvError::Malformed { at });
        }
        names.push(name.to_string());
        base += i + 2 + end + 1;
        rest = &value[base..];
    }
    Ok(names)
}

/// Replaces each `${NAME}` with the variable's value from `lookup`.
pub fn expand_env(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, EnvError> {
    let mut out = value.to_string();
    for name in env_references(value)? {
        let v = lookup(&name).ok_or(EnvError::Missing { name: name.clone() })?;
        out = out.replacen(&format!("${{{name}}}"), &v, 1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
