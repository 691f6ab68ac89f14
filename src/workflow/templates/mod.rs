//! Email templates: every file under `templates/` parsed once with Tera, locale variants
//! resolved, and the checks that catch a broken email before it is sent.
//!
//! Names are paths relative to the templates folder (`reactivation/deal.html`). A step's
//! `email: reactivation/deal` uses `deal.html`, an optional `deal.txt`, and variants such as
//! `deal.ja.html` for customers whose locale is `ja` or `ja-JP`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use tera::{Context, ErrorKind, Tera};

use crate::source::SourceFile;
use crate::source::diagnostic::{Diagnostic, Span};

mod functions;
pub mod locales;
mod references;
mod written;

use functions::new_tera;
pub use functions::{ANSWER_PREFIX, answer_placeholder};
pub use references::{Reference, references};
pub use written::decode_entities;

/// All templates of a project, parsed.
pub struct Templates {
    /// The folder as messages show it, with a trailing `/` (`templates/`).
    folder: String,
    files: BTreeMap<String, SourceFile>,
    /// Files that failed to parse, with the diagnostic to show where one is used.
    broken: BTreeMap<String, Diagnostic>,
    tera: Tera,
    /// The literal starts of the links the template files write ([`written`]): the only
    /// links composition tracks.
    link_prefixes: Vec<String>,
}

/// The files one `email:` step renders from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailFiles {
    pub html: String,
    pub text: Option<String>,
    /// Locale tag (`ja`, `pt-BR`) to its HTML and optional text variant.
    pub variants: BTreeMap<String, (String, Option<String>)>,
}

impl EmailFiles {
    /// Picks the files for a locale (see [`locales::best`]), else the default's.
    pub fn for_locale(&self, locale: Option<&str>) -> (&str, Option<&str>) {
        let (_, html, text) = self.choose(locale);
        (html, text)
    }

    /// The files for a locale and the variant's tag (`None`: the default files).
    pub fn choose(&self, locale: Option<&str>) -> (Option<&str>, &str, Option<&str>) {
        let tag = locales::best(locale, self.variants.keys().map(String::as_str));
        match tag.and_then(|t| self.variants.get_key_value(t)) {
            Some((tag, (h, t))) => (Some(tag), h, t.as_deref().or(self.text.as_deref())),
            None => (None, &self.html, self.text.as_deref()),
        }
    }

    /// Every HTML file of this email, default first.
    pub fn all_html(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.html.as_str()).chain(self.variants.values().map(|(h, _)| h.as_str()))
    }

    /// Every file of this email.
    pub fn all_files(&self) -> impl Iterator<Item = &str> {
        self.all_html().chain(
            self.text
                .iter()
                .map(String::as_str)
                .chain(self.variants.values().filter_map(|(_, t)| t.as_deref())),
        )
    }
}

/// What a template may name; which of these exist depends on the workflow and the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemplateScope {
    pub event: bool,
    pub coupon: bool,
}

const TEMPLATE_EXTENSIONS: &[&str] = &["html", "htm", "txt"];

impl Templates {
    /// Reads and parses every template under `dir`, reporting each file that does not parse.
    pub fn load(dir: &Path, diagnostics: &mut Vec<Diagnostic>) -> Self {
        let mut files = BTreeMap::new();
        let mut paths = Vec::new();
        collect_files(dir, &mut paths);
        paths.sort();
        for path in paths {
            let Ok(rel) = path.strip_prefix(dir) else {
                continue;
            };
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            match SourceFile::read_text(&path, "template-unreadable") {
                Ok(file) => {
                    files.insert(name, file);
                }
                Err(d) => diagnostics.push(*d),
            }
        }
        let mut templates = Self::from_files(files, diagnostics);
        templates.folder = format!("{}/", dir.display());
        templates
    }

    pub fn from_files(
        files: BTreeMap<String, SourceFile>,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Self {
        let mut broken = BTreeMap::new();
        let mut good = Vec::new();
        for (name, file) in &files {
            let mut scratch = Tera::new();
            match scratch.add_raw_template(name, file.text()) {
                Ok(()) => good.push((name.clone(), file.text().to_string())),
                Err(e) => {
                    if let ErrorKind::SyntaxError(report) = e.kind() {
                        broken.insert(name.clone(), report_diagnostic(
                            "template-syntax",
                            "template syntax error",
                            file,
                            report.message(),
                            report.span(),
                            "fix the Tera syntax: `{{ customer.first_name }}` for values, `{% if ... %}...{% endif %}` for logic",
                        ));
                    } else {
                        good.push((name.clone(), file.text().to_string()));
                    }
                }
            }
        }
        let mut tera = new_tera();
        if let Err(e) = tera.add_raw_templates(good.iter().map(|(n, t)| (n.as_str(), t.as_str()))) {
            // Keep what stands alone, so that other checks still run; each template that
            // does not is reported at the name it cannot find.
            tera = new_tera();
            let before = broken.len();
            for (n, t) in &good {
                if let Err(e) = tera.add_raw_template(n, t) {
                    let d = Diagnostic::error("template-link", format!("template `{n}` cannot be loaded: {e}"))
                        .at_opt(files.get(n).map(|f| missing_parent_span(f, &e.to_string())))
                        .help("check that every `{% extends %}` and `{% include %}` names an existing template");
                    broken.insert(n.clone(), d);
                }
            }
            if broken.len() == before {
                diagnostics.push(
                    Diagnostic::error("template-link", format!("templates do not fit together: {e}"))
                        .at_opt(files.values().next().map(Span::file_start))
                        .help("check that every `{% extends %}` and `{% include %}` names an existing template"),
                );
            }
        }
        let mut link_prefixes: Vec<String> = files
            .values()
            .flat_map(|f| written::link_prefixes(f.text()))
            .collect();
        link_prefixes.sort();
        link_prefixes.dedup();
        Self {
            folder: "templates/".into(),
            files,
            broken,
            tera,
            link_prefixes,
        }
    }

    /// Whether a rendered link is one the templates write (its literal start is in a
    /// template file), rather than one that came in a customer's or an event's value.
    pub fn writes_link(&self, url: &str) -> bool {
        self.link_prefixes
            .iter()
            .any(|p| url.starts_with(p.as_str()))
    }

    /// Registers inline templates (subjects), already checked one by one.
    pub fn add_inline(&mut self, items: Vec<(String, String)>) -> Result<(), tera::Error> {
        if items.is_empty() {
            return Ok(());
        }
        self.tera.add_raw_templates(items)
    }

    pub fn tera(&self) -> &Tera {
        &self.tera
    }

    /// The folder, for messages that tell the user which file to create or edit.
    pub fn folder(&self) -> &str {
        &self.folder
    }

    pub fn file(&self, name: &str) -> Option<&SourceFile> {
        self.files.get(name)
    }

    pub fn is_broken(&self, name: &str) -> bool {
        self.broken.contains_key(name)
    }

    /// Why a template could not be loaded, if it could not.
    pub fn problem(&self, name: &str) -> Option<&Diagnostic> {
        self.broken.get(name)
    }

    /// Every template that could not be loaded, with why.
    pub fn problems(&self) -> impl Iterator<Item = (&str, &Diagnostic)> {
        self.broken.iter().map(|(n, d)| (n.as_str(), d))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The files of `email: base`, or `None` when `base.html` does not exist.
    pub fn resolve(&self, base: &str) -> Option<EmailFiles> {
        let html = format!("{base}.html");
        if !self.files.contains_key(&html) {
            return None;
        }
        let text = Some(format!("{base}.txt")).filter(|t| self.files.contains_key(t));
        let prefix = format!("{base}.");
        let mut variants = BTreeMap::new();
        for name in self.files.keys() {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let Some(locale) = rest.strip_suffix(".html") else {
                continue;
            };
            if is_locale_tag(locale) {
                let t = format!("{base}.{locale}.txt");
                let t = self.files.contains_key(&t).then_some(t);
                variants.insert(locale.to_string(), (name.clone(), t));
            }
        }
        Some(EmailFiles {
            html,
            text,
            variants,
        })
    }

    /// Template names close to a missing `email:` value, for the "did you mean" hint.
    pub fn suggest(&self, base: &str) -> Option<String> {
        let bases: Vec<&str> = self
            .files
            .keys()
            .filter_map(|n| n.strip_suffix(".html"))
            .filter(|n| !n.rsplit_once('.').is_some_and(|(_, l)| is_locale_tag(l)))
            .collect();
        crate::source::yaml::closest(base, bases.iter().copied()).map(str::to_string)
    }

    /// The top-level names a template uses (through includes and parents too).
    pub fn variables(&self, name: &str) -> HashSet<String> {
        self.tera
            .get_template_variables(name)
            .map(|v| v.into_iter().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Checks one template file against what its step provides: unknown names and fields,
    /// and a trial render with a sample customer. Returns diagnostics pointing into it.
    pub fn check_file(
        &self,
        name: &str,
        scope: TemplateScope,
        contexts: &[(&str, &Context)],
    ) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let Some(file) = self.files.get(name) else {
            return out;
        };
        if let Some(problem) = self.broken.get(name) {
            out.push(problem.clone());
            return out;
        }
        out.extend(check_names(file, &self.variables(name), scope, &|_| true));
        // The first failure is enough: the others are most likely the same mistake.
        for (who, context) in contexts {
            if out.is_empty()
                && let Err(e) = self.tera.render(name, context)
            {
                out.push(render_diagnostic(&e, file, self, who));
            }
        }
        out
    }
}

/// The names every template may use, and the fields each object has.
fn known_fields(root: &str, scope: TemplateScope) -> Option<&'static [&'static str]> {
    use crate::model::customer::{COUPON_FIELDS, CUSTOMER_FIELDS, EVENT_FIELDS, WORKFLOW_FIELDS};
    match root {
        "customer" => Some(CUSTOMER_FIELDS),
        "event" if scope.event => Some(EVENT_FIELDS),
        "coupon" if scope.coupon => Some(COUPON_FIELDS),
        // Each an earlier step's coupon, checked against the workflow's steps.
        "coupons" => Some(&[]),
        "workflow" => Some(WORKFLOW_FIELDS),
        "now" | "unsubscribe_url" => Some(&[]),
        "template" => Some(&["locale"]),
        _ => None,
    }
}

/// Checks the names a template (or an inline subject) uses. `top` is what Tera found at
/// the top level; `in_scope` filters names bound locally (loop variables).
pub fn check_names(
    file: &SourceFile,
    top: &HashSet<String>,
    scope: TemplateScope,
    in_scope: &dyn Fn(&str) -> bool,
) -> Vec<Diagnostic> {
    let refs = references(file.text());
    let mut out = Vec::new();
    let mut unknown: Vec<&String> = top
        .iter()
        .filter(|n| known_fields(n, scope).is_none() && in_scope(n))
        .collect();
    unknown.sort();
    for name in unknown {
        let at = refs
            .iter()
            .find(|r| r.path[0] == *name)
            .map(|r| r.at)
            .unwrap_or(0);
        let span = Span::new(file, file.line_col(at), name.chars().count());
        let help = match name.as_str() {
            "event" => "`event` exists only in workflows with an `event:` trigger".to_string(),
            "coupon" => "`coupon` is set only when the email step has `coupon: { prefix: ..., valid_for: ... }`".to_string(),
            _ => match crate::source::yaml::closest(name, ["customer", "event", "coupon", "workflow", "template", "now", "unsubscribe_url"]) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("customer fields are under `customer`, e.g. `customer.{name}`; templates see `customer`, `event`, `coupon`, `workflow`, `now` and `unsubscribe_url`"),
            },
        };
        out.push(
            Diagnostic::error(
                "template-unknown-variable",
                format!("template uses unknown variable `{name}`"),
            )
            .at(span)
            .help(help),
        );
    }
    let mut seen = HashSet::new();
    for r in &refs {
        let Some(field) = r.path.get(1) else { continue };
        let root = r.path[0].as_str();
        let Some(fields) = known_fields(root, scope) else {
            continue;
        };
        if fields.is_empty() || fields.contains(&field.as_str()) || !top.contains(root) {
            continue;
        }
        if !seen.insert((root.to_string(), field.clone())) {
            continue;
        }
        let field_at = r.at + root.len() + 1;
        let span = Span::new(file, file.line_col(field_at), field.chars().count());
        let help = match crate::source::yaml::closest(field, fields.iter().copied()) {
            Some(best) => format!("did you mean `{root}.{best}`?"),
            None if root == "customer" => format!(
                "custom fields are under `customer.attributes`, e.g. `customer.attributes.{field}`"
            ),
            None if root == "event" => {
                format!("event data is under `event.properties`, e.g. `event.properties.{field}`")
            }
            None => format!("`{root}` has {}", fields.join(", ")),
        };
        out.push(
            Diagnostic::error(
                "template-unknown-field",
                format!("`{root}` has no field `{field}`"),
            )
            .at(span)
            .help(help),
        );
    }
    out
}

fn is_locale_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    let Some(lang) = parts.next() else {
        return false;
    };
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    out.extend(crate::source::files_under(dir).into_iter().filter(|path| {
        path.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| TEMPLATE_EXTENSIONS.contains(&e))
    }));
}

/// A Tera report (syntax or render error) as a diagnostic in a file.
pub fn report_diagnostic(
    code: &'static str,
    what: &str,
    file: &SourceFile,
    message: &str,
    span: &tera::Span,
    help: &str,
) -> Diagnostic {
    let text = file.text();
    let from = span.range.start.min(text.len());
    let to = span.range.end.clamp(from, text.len());
    let start = file.line_col(from);
    let len = text[from..to]
        .lines()
        .next()
        .map_or(1, |l| l.chars().count());
    Diagnostic::error(
        code,
        format!(
            "{what}: {}",
            crate::source::diagnostic::lowercase_first(message)
        ),
    )
    .at(Span::new(file, start, len.max(1)))
    .help(help)
}

/// Where a template names the parent Tera could not find (`inheriting from 'X'`): the
/// name in its `{% extends %}`, else the file's start.
fn missing_parent_span(file: &SourceFile, message: &str) -> Span {
    let parent = message
        .split_once("from '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(name, _)| name);
    let at = parent.and_then(|p| file.text().find(&format!("\"{p}\"")).map(|i| (i + 1, p)));
    match at {
        Some((i, p)) => Span::new(file, file.line_col(i), p.chars().count()),
        None => Span::file_start(file),
    }
}

/// Text made safe inside HTML or XML (`&`, `<`, `>`, quotes), with Tera's own escaper.
pub fn escape_html(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    // Writing to a Vec cannot fail.
    let _ = tera::escape_html(text, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn render_diagnostic(
    e: &tera::Error,
    file: &SourceFile,
    templates: &Templates,
    who: &str,
) -> Diagnostic {
    match e.kind() {
        ErrorKind::RenderingError(report) | ErrorKind::SyntaxError(report) => {
            let target = templates.files.get(report.filename()).unwrap_or(file);
            report_diagnostic(
                "template-render",
                &format!("template fails to render for {who}"),
                target,
                report.message(),
                report.span(),
                if who.contains("no name") {
                    "a customer may not have this value: give it one before the filter, e.g. `(customer.first_name or \"\") | urlencode`"
                } else {
                    "check filters and the types of the values used; missing customer data renders as empty text"
                },
            )
        }
        _ => Diagnostic::error("template-render", format!("template fails to render: {e}"))
            .at(Span::file_start(file))
            .help(
                "check that every `{% include %}` and `{% extends %}` names an existing template",
            ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_each_language_writes_them() {
        let mut tera = new_tera();
        tera.add_raw_template("t", "{{ d | date(locale=l) }}")
            .unwrap();
        let render = |d: &str, l: Option<&str>| {
            let mut ctx = Context::new();
            ctx.insert("d", d);
            ctx.insert("l", &l);
            tera.render("t", &ctx).unwrap()
        };
        assert_eq!(render("2026-07-02", Some("ja")), "2026年7月2日");
        assert_eq!(render("2026-07-02", Some("ja-JP")), "2026年7月2日");
        assert_eq!(render("2026-07-02", Some("en-GB")), "2 July 2026");
        assert_eq!(render("2026-07-02T10:00:00Z", None), "July 2, 2026");
        assert_eq!(render("2026-07-02", Some("es-MX")), "2 de julio de 2026");
        assert_eq!(render("2026-07-02", Some("zh-CN")), "2026年7月2日");
        assert!(render("2026-07-02", Some("hi")).contains("2026"));
    }

    #[test]
    fn numbers_are_written_as_each_language_writes_them() {
        let mut tera = new_tera();
        tera.add_raw_template("t", "{{ n | number(locale=l, decimals=2) }}")
            .unwrap();
        let render = |n: f64, l: &str| {
            let mut ctx = Context::new();
            ctx.insert("n", &n);
            ctx.insert("l", l);
            tera.render("t", &ctx).unwrap()
        };
        assert_eq!(render(1234.5, "en"), "1,234.50");
        assert_eq!(render(1234.5, "de"), "1.234,50");
        assert_eq!(render(1234.5, "ja-JP"), "1,234.50");
        assert_eq!(render(0.125, "en"), "0.12");
        assert_eq!(render(1234567.0, "hi"), "12,34,567.00");
    }

    #[test]
    fn prices_carry_their_symbol_where_each_language_puts_it() {
        let mut tera = new_tera();
        tera.add_raw_template("t", "{{ n | price(currency=c, locale=l) }}")
            .unwrap();
        tera.add_raw_template(
            "yen",
            "{{ n | price(currency=\"jpy\", locale=\"ja\", decimals=0) }}",
        )
        .unwrap();
        let render = |template: &str, n: f64, c: &str, l: &str| {
            let mut ctx = Context::new();
            ctx.insert("n", &n);
            ctx.insert("c", c);
            ctx.insert("l", l);
            tera.render(template, &ctx)
        };
        let price = |n: f64, c: &str, l: &str| render("t", n, c, l).unwrap();
        assert_eq!(price(1234.5, "USD", "en-US"), "$1,234.50");
        assert_eq!(price(1234.5, "EUR", "en"), "€1,234.50");
        assert_eq!(price(1234.5, "EUR", "de-DE"), "1.234,50\u{a0}€");
        assert_eq!(price(1234.5, "EUR", "fr-FR"), "1\u{202f}234,50\u{a0}€");
        assert_eq!(price(1234.5, "GBP", "en-GB"), "£1,234.50");
        assert_eq!(price(1234567.0, "INR", "hi"), "₹12,34,567.00");
        assert_eq!(render("yen", 1234.6, "", "").unwrap(), "￥1,235");
        let wrong = render("t", 1.0, "euro", "en").unwrap_err();
        assert!(format!("{wrong:?}").contains("ISO 4217"), "{wrong:?}");
    }

    #[test]
    fn references_skip_strings_filters_and_methods() {
        let refs = references(
            "Hi {{ customer.first_name | default(value=\"friend.x\") }} {% if coupon.code %}{{ x.y.z }}{% endif %} {{ answer_url(question=\"nps\", value=9) }} {% if a == b %}{% endif %}",
        );
        let paths: Vec<String> = refs.iter().map(|r| r.path.join(".")).collect();
        // Functions and their keyword arguments are not names of the context.
        assert_eq!(
            paths,
            ["customer.first_name", "coupon.code", "x.y.z", "a", "b"]
        );
        assert_eq!(refs[0].at, 6);
    }

    #[test]
    fn locale_fallback() {
        let files = EmailFiles {
            html: "d.html".into(),
            text: Some("d.txt".into()),
            variants: BTreeMap::from([("ja".into(), ("d.ja.html".into(), None))]),
        };
        assert_eq!(
            files.for_locale(Some("ja-JP")),
            ("d.ja.html", Some("d.txt"))
        );
        assert_eq!(files.for_locale(Some("fr")), ("d.html", Some("d.txt")));
        assert_eq!(files.for_locale(None), ("d.html", Some("d.txt")));
    }

    #[test]
    fn locale_tags() {
        assert!(is_locale_tag("ja"));
        assert!(is_locale_tag("pt-BR"));
        assert!(!is_locale_tag("deal"));
        assert!(!is_locale_tag("x"));
    }
}
