//! What an email or a webhook call says: one composition (context, subject by locale,
//! templates, coupon, unsubscribe link) for real sends and for previews alike.

use super::{Engine, EngineError, Rendered};
use crate::model::customer::{Customer, Event};
use crate::model::payload::{EmailExtras, Payload, WebhookCall};
use crate::model::states::Channel;
use crate::store::deliveries::NewDelivery;
use crate::store::enrollments::EnrollmentRow;
use crate::unsubscribe::Unsubscribe;
use crate::workflow::plan::{EmailStep, StepKind, Trigger, Workflow};
use crate::workflow::templates::locales;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tera::Context;

impl Engine {
    /// Whether this email's body is rendered: always, unless the engine renders only the
    /// first body of each step and template (a rehearsal that writes no `.eml` files)
    /// and one has rendered — a body that fails is rendered, and fails, every time.
    fn renders_body(&self, wf: &Workflow, step: &str, template: &str) -> bool {
        let Some(rendered) = &self.first_bodies else {
            return true;
        };
        let key = body_key(wf, step, template);
        rendered
            .lock()
            .map_or(true, |rendered| !rendered.contains(&key))
    }

    /// Notes that a body of this step and template rendered (see [`Self::renders_body`]).
    fn body_rendered(&self, wf: &Workflow, step: &str, template: &str) {
        if let Some(Ok(mut rendered)) = self.first_bodies.as_ref().map(|r| r.lock()) {
            rendered.insert(body_key(wf, step, template));
        }
    }

    pub(super) fn context(
        &self,
        wf: &Workflow,
        customer: &Customer,
        event: Option<&Event>,
        moment: Moment,
        delivery: Option<&str>,
    ) -> Context {
        let at = moment.at;
        let mut ctx = Context::new();
        ctx.insert("customer", customer);
        if let Some(e) = event {
            ctx.insert("event", e);
        }
        ctx.insert(
            "workflow",
            &serde_json::json!({ "name": wf.name, "description": wf.description }),
        );
        ctx.insert("now", &at.to_rfc3339());
        // A signed token (customer, workflow, expiry): the one-click endpoint (RFC 8058)
        // acts on it without a lookup, and a forged or altered link does nothing.
        let base = self.config.unsubscribe_base();
        let valid_for = self.settings.unsubscribe_valid_for;
        let token = self.signer.get().map(|s| {
            s.token(&Unsubscribe {
                customer_id: customer.id.clone(),
                workflow: wf.name.clone(),
                expires_at: at.max(moment.links_from) + valid_for,
                delivery: delivery.map(str::to_string),
                topic: wf.topic.clone(),
                proof: moment.proof,
            })
        });
        ctx.insert(
            "unsubscribe_url",
            &format!("{base}/{}", token.unwrap_or_default()),
        );
        ctx
    }

    /// The emails of a workflow (or one step) as this customer would get them at `at`:
    /// the same context as a real send, with the given event (or a sample) for
    /// event-triggered workflows and a coupon code derived from the preview. `locale`
    /// overrides the customer's.
    pub async fn preview(
        &self,
        workflow: &str,
        step: Option<&str>,
        customer: &Customer,
        locale: Option<&str>,
        event: Option<&Event>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Rendered>, EngineError> {
        self.load_signer().await?;
        let wf = self
            .plan
            .workflow(workflow)
            .ok_or_else(|| EngineError::Config(self.plan.no_such_workflow(workflow)))?;
        let steps: Vec<_> = wf
            .all_steps()
            .into_iter()
            .filter(|s| matches!(s.kind, StepKind::Email(_)))
            .collect();
        if let Some(id) = step
            && !steps.iter().any(|s| s.id == id)
        {
            let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
            return Err(EngineError::Config(format!(
                "workflow `{workflow}` has no email step `{id}`; its email steps are: {}",
                ids.join(", ")
            )));
        }
        let event = match (&wf.trigger, event) {
            (Trigger::Event { name, .. }, Some(given)) => Some(Event {
                name: name.clone(),
                ..given.clone()
            }),
            (Trigger::Event { name, .. }, None) => Some(Event::sample(name, at)),
            _ => None,
        };
        let mut customer = customer.clone();
        if let Some(l) = locale {
            customer.locale = Some(l.to_string());
        }
        let mut out = Vec::new();
        for s in steps
            .into_iter()
            .filter(|s| step.is_none_or(|id| s.id == id))
        {
            let StepKind::Email(email) = &s.kind else {
                continue;
            };
            let key = format!("preview/{}/{}/{}", wf.name, customer.id, s.id);
            let earlier = preview_coupons(wf, &customer, email, at);
            let composed = self
                .compose(
                    wf,
                    (email, &s.id),
                    &customer,
                    event.as_ref(),
                    Moment::preview(at),
                    (&key, &earlier),
                )
                .map_err(|(name, e)| {
                    EngineError::Config(format!(
                        "`{name}`: {}",
                        crate::source::diagnostic::error_chain(&e)
                    ))
                })?;
            out.push(Rendered {
                step: s.id.clone(),
                to: customer.email.clone(),
                locale: customer.locale.clone(),
                subject: composed.subject,
                html_file: composed.html_file.to_string(),
                html: composed.html,
                text_file: composed.text_file.map(str::to_string),
                text: composed.text,
            });
        }
        Ok(out)
    }

    /// What an email says, for a send and a preview alike: the context, the coupon (its
    /// code derived from `coupon_key`), the subject for the customer's locale, and the
    /// HTML and text templates rendered, their links tracked as `tracking:` says (the
    /// delivery key, `coupon_key`, is what the tracked links name). An error names the
    /// template that failed.
    #[allow(clippy::too_many_arguments)] // the email, who it is for, and when
    pub(super) fn compose<'a>(
        &self,
        wf: &Workflow,
        (email, step): (&'a EmailStep, &str),
        customer: &Customer,
        event: Option<&Event>,
        moment: Moment,
        (coupon_key, earlier): (&str, &Value),
    ) -> Result<Composed<'a>, (String, tera::Error)> {
        let mut ctx = self.context(wf, customer, event, moment, Some(coupon_key));
        // Earlier steps' coupons, by step id (`{{ coupons.deal.code }}`).
        ctx.insert("coupons", earlier);
        let coupon = email
            .coupon
            .as_ref()
            .map(|c| (coupon_code(&c.prefix, coupon_key), moment.at + c.valid_for));
        if let Some((code, expires)) = &coupon {
            let expires = expires.format("%Y-%m-%d").to_string();
            ctx.insert(
                "coupon",
                &serde_json::json!({ "code": code, "expires_at": expires }),
            );
        }
        let unsubscribe_url = ctx
            .get("unsubscribe_url")
            .and_then(|u| u.as_str())
            .map(str::to_string);
        let (tag, html_file, text_file) = email.files.choose(customer.locale.as_deref());
        let written = tag.unwrap_or(&self.config.default_locale);
        let locale = locales::written_in(customer.locale.as_deref(), written);
        ctx.insert("template", &serde_json::json!({ "locale": locale }));
        let tera = self.plan.templates.tera();
        let render = |name: &str| tera.render(name, &ctx).map_err(|e| (name.to_string(), e));
        if !self.renders_body(wf, step, html_file) {
            return Ok(Composed {
                subject: render(subject_for(&email.subjects, customer.locale.as_deref()))?,
                html: String::new(),
                text: None,
                body: false,
                html_file,
                text_file,
                coupon,
                unsubscribe_url,
            });
        }
        let (mut html, mut text) = (render(html_file)?, text_file.map(render).transpose()?);
        self.body_rendered(wf, step, html_file);
        if let Some(signer) = self.signer.get() {
            let names = (wf.name.as_str(), step);
            let marketing = wf.class == crate::workflow::raw::MailClass::Marketing;
            let tracking = self
                .config
                .tracking
                .for_email(&wf.tracking, marketing, names);
            let public = self.config.public_base();
            let rewriter = crate::links::Rewriter {
                signer,
                public: &public,
                delivery: coupon_key,
                clicks: tracking.clicks,
                opens: tracking.opens,
                utm: &tracking.utm,
                unsubscribe: unsubscribe_url.as_deref().unwrap_or(""),
                proof: moment.proof,
                written: &|url: &str| self.plan.templates.writes_link(url),
            };
            html = rewriter.html(&html);
            text = text.map(|t| rewriter.text(&t));
        }
        Ok(Composed {
            subject: render(subject_for(&email.subjects, customer.locale.as_deref()))?,
            html,
            text,
            body: true,
            html_file,
            text_file,
            coupon,
            unsubscribe_url,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn email(
        &self,
        wf: &Workflow,
        email: &EmailStep,
        step: &str,
        row: &EnrollmentRow,
        customer: &Customer,
        event: Option<&Event>,
        (moment, earlier): (Moment, &Value),
    ) -> Result<NewDelivery, tera::Error> {
        let at = moment.at;
        let key = delivery_key(wf, &customer.id, &row.id, step);
        let composed = self
            .compose(wf, (email, step), customer, event, moment, (&key, earlier))
            .map_err(|(_, e)| e)?;
        let subject = composed.subject;
        if subject.contains(['\r', '\n']) {
            return Err(tera::Error::message(
                "the subject has a line break after rendering; remove it from the customer data or the template",
            ));
        }
        let (coupon, unsubscribe) = (composed.coupon, composed.unsubscribe_url);
        Ok(NewDelivery {
            id: key.clone(),
            channel: Channel::Email,
            enrollment_id: row.id.clone(),
            workflow: wf.name.clone(),
            customer_id: customer.id.clone(),
            step: step.to_string(),
            class: wf.class,
            mode: wf.delivery,
            recipient: customer.email.clone(),
            subject: Some(subject),
            html: composed.body.then_some(composed.html),
            text: composed.text,
            payload: Some(Payload::Email(EmailExtras {
                unsubscribe_url: unsubscribe,
            })),
            coupon,
            message_id: crate::model::ids::message_id(&key, &self.config.email.from),
            due_at: at,
            // Due when its event arrived: the email the event asked for, not a later step.
            accepted_at: event
                .and_then(|e| e.recorded_at)
                .filter(|accepted| at <= *accepted),
            variant: row.variant.clone(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn webhook(
        &self,
        wf: &Workflow,
        hook: &crate::workflow::plan::WebhookStep,
        step: &str,
        row: &EnrollmentRow,
        customer: &Customer,
        event: Option<&Event>,
        at: DateTime<Utc>,
    ) -> Result<NewDelivery, tera::Error> {
        let key = delivery_key(wf, &customer.id, &row.id, step);
        let ctx = self.context(wf, customer, event, Moment::now(at), None);
        // String values of the body are Tera templates; the URL's `${ENV}` is resolved at
        // send time, so no secret is ever stored in the outbox.
        let body = hook
            .json
            .as_ref()
            .map(|j| render_json(j, &ctx))
            .transpose()?;
        let payload = Payload::Webhook(WebhookCall {
            method: hook.method.clone(),
            url: hook.url.clone(),
            headers: hook.headers.clone(),
            body,
            timeout_s: hook.timeout.num_seconds(),
        });
        Ok(NewDelivery {
            id: key.clone(),
            channel: Channel::Webhook,
            enrollment_id: row.id.clone(),
            workflow: wf.name.clone(),
            customer_id: customer.id.clone(),
            step: step.to_string(),
            class: wf.class,
            mode: wf.delivery,
            recipient: hook.url.clone(),
            subject: None,
            html: None,
            text: None,
            payload: Some(payload),
            coupon: None,
            message_id: crate::model::ids::message_id(&key, &self.config.email.from),
            due_at: at,
            accepted_at: None,
            variant: row.variant.clone(),
        })
    }
}

/// A step's body by template, as the first-bodies-only rendering remembers it.
fn body_key(wf: &Workflow, step: &str, template: &str) -> String {
    format!("{}/{step}/{template}", wf.name)
}

/// The key of the email or webhook call of `step` in a journey: its idempotency key, and
/// what a later email finds its coupon by.
pub(super) fn delivery_key(wf: &Workflow, customer_id: &str, journey: &str, step: &str) -> String {
    format!("{}/{customer_id}/{journey}/{step}", wf.name)
}

/// An email as composed: what a send writes to the outbox and a preview shows.
pub(super) struct Composed<'a> {
    subject: String,
    html: String,
    text: Option<String>,
    /// Whether the body was rendered (see [`Engine::rendering_first_bodies_only`]).
    body: bool,
    html_file: &'a str,
    text_file: Option<&'a str>,
    coupon: Option<(String, DateTime<Utc>)>,
    unsubscribe_url: Option<String>,
}

/// The coupons a preview's email shows from earlier steps: the codes those steps would
/// reserve in the preview, valid from its moment.
fn preview_coupons(
    wf: &Workflow,
    customer: &Customer,
    email: &EmailStep,
    at: DateTime<Utc>,
) -> Value {
    let mut out = serde_json::Map::new();
    for s in wf.all_steps() {
        let StepKind::Email(e) = &s.kind else {
            continue;
        };
        let Some(c) = &e.coupon else { continue };
        if !email.earlier_coupons.contains(&s.id) {
            continue;
        }
        let key = format!("preview/{}/{}/{}", wf.name, customer.id, s.id);
        let expires = (at + c.valid_for).format("%Y-%m-%d").to_string();
        out.insert(
            s.id.clone(),
            serde_json::json!({ "code": coupon_code(&c.prefix, &key), "expires_at": expires }),
        );
    }
    Value::Object(out)
}

/// Renders the string values of a webhook body as templates; an error fails the step
/// rather than sending the template's text.
pub(super) fn render_json(v: &Value, ctx: &Context) -> Result<Value, tera::Error> {
    Ok(match v {
        Value::String(s) if s.contains("{{") || s.contains("{%") => {
            Value::String(tera::Tera::one_off(s, ctx, false)?)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_json(x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), render_json(x, ctx)?)))
                .collect::<Result<_, tera::Error>>()?,
        ),
        other => other.clone(),
    })
}

/// The subject for a locale: `ja-JP` tries `ja-JP`, then `ja`, then the default.
pub(super) fn subject_for<'a>(
    subjects: &'a std::collections::BTreeMap<String, String>,
    locale: Option<&str>,
) -> &'a str {
    let tags = subjects.keys().map(String::as_str);
    crate::workflow::templates::locales::best(locale, tags)
        .and_then(|tag| subjects.get(tag))
        .or_else(|| subjects.get(""))
        .map_or("", String::as_str)
}

/// When a step runs (`at`, when it fell due) and from when the links it writes must stay
/// valid (the pass's moment, later when the step fell due long ago).
#[derive(Debug, Clone, Copy)]
pub(super) struct Moment {
    pub(super) at: DateTime<Utc>,
    pub(super) links_from: DateTime<Utc>,
    /// A preview (shown, or sent as a proof): its links are marked so that following them
    /// records and changes nothing.
    pub(super) proof: bool,
}

/// `PREFIX-XXXX-XXXX`, derived from the delivery key: each delivery (and so each
/// re-entry) gets its own code, and a retried step gets the same one.
pub(super) fn coupon_code(prefix: &str, key: &str) -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut h = crate::model::ids::fnv(key);
    let mut code = String::new();
    for i in 0..8 {
        if i == 4 {
            code.push('-');
        }
        code.push(ALPHABET[(h % 32) as usize] as char);
        h /= 32;
    }
    format!("{prefix}-{code}")
}

impl Moment {
    pub(super) fn now(at: DateTime<Utc>) -> Self {
        Self {
            at,
            links_from: at,
            proof: false,
        }
    }

    /// A preview's moment: its links are a proof's.
    fn preview(at: DateTime<Utc>) -> Self {
        Self {
            proof: true,
            ..Self::now(at)
        }
    }
}
