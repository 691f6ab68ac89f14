//! What tidings adds to Tera: `answer_url(...)`, the `urlencode`, `date(locale=...)`,
//! `number(locale=...)` and `price(currency=..., locale=...)` filters, and the autoescaping
//! every email template gets.

use tera::Tera;

/// Where `answer_url(question=…, value=…)` points until composition knows the email: a
/// reserved domain (RFC 2606), so a placeholder left in a trial render goes nowhere.
pub const ANSWER_PREFIX: &str = "https://answer.tidings.invalid/";

/// What `answer_url` renders: the question and the value (as JSON), each percent-encoded
/// so that neither HTML escaping nor a text body changes them.
pub fn answer_placeholder(question: &str, value: &serde_json::Value) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "{ANSWER_PREFIX}{}/{}",
        enc(question),
        enc(&value.to_string())
    )
}

/// Tera as tidings' templates see it: HTML escaped, and the functions tidings adds.
pub(super) fn new_tera() -> Tera {
    let mut tera = Tera::new();
    tera.autoescape_on([".html", ".htm"]);
    tera.register_function("answer_url", answer_url);
    tera.register_filter("urlencode", urlencode);
    tera.register_filter("date", date);
    tera.register_filter("number", number);
    tera.register_filter("price", price);
    tera
}

/// `{{ coupon.expires_at | date(locale=customer.locale) }}`: a date (`2026-07-02`, or a
/// time in RFC 3339) written as the locale writes a long date — `2026年7月2日` for `ja`,
/// `2 July 2026` for `en-GB`, `July 2, 2026` for `en` or no locale — by ICU4X, with CLDR's
/// data.
fn date(value: &str, kwargs: tera::Kwargs, _: &tera::State) -> tera::TeraResult<String> {
    use chrono::Datelike;
    let locale: Option<tera::Value> = kwargs.get("locale")?;
    let tag = locale.as_ref().and_then(|l| l.as_str()).unwrap_or("en");
    let day = chrono::NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(value.trim())
                .ok()
                .map(|t| t.date_naive())
        })
        .ok_or_else(|| {
            tera::Error::message(format!(
                "`date` needs a date such as 2026-07-02, not `{value}`"
            ))
        })?;
    let locale: icu_locale_core::Locale = tag
        .replace('_', "-")
        .parse()
        .unwrap_or(icu_locale_core::locale!("en"));
    let formatter = icu_datetime::FixedCalendarDateTimeFormatter::<
        icu_calendar::Gregorian,
        icu_datetime::fieldsets::YMD,
    >::try_new(locale.into(), icu_datetime::fieldsets::YMD::long())
    .map_err(|e| tera::Error::message(format!("no date format for `{tag}`: {e}")))?;
    let month = u8::try_from(day.month()).unwrap_or(1);
    let dom = u8::try_from(day.day()).unwrap_or(1);
    let date = icu_calendar::Date::try_new_gregorian(day.year(), month, dom)
        .map_err(|e| tera::Error::message(format!("`{value}`: {e}")))?;
    Ok(formatter.format(&date).to_string())
}

/// `{{ customer.id | urlencode }}`: a value made safe inside a URL's query.
fn urlencode(value: &str, _: tera::Kwargs, _: &tera::State) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `answer_url(question="nps", value=9)`: where a survey answer goes. What it renders is a
/// placeholder that composition turns into the email's own signed link.
fn answer_url(kwargs: tera::Kwargs, _: &tera::State) -> tera::TeraResult<String> {
    let question: String = kwargs.must_get("question")?;
    let value: tera::Value = kwargs.must_get("value")?;
    let value = if let Some(i) = value.as_i64() {
        serde_json::Value::from(i)
    } else if let Some(f) = value.as_f64() {
        serde_json::Value::from(f)
    } else if let Some(b) = value.as_bool() {
        serde_json::Value::from(b)
    } else if let Some(s) = value.as_str() {
        serde_json::Value::from(s)
    } else {
        return Err(tera::Error::message(
            "`value` of `answer_url` must be a number, a string, true or false",
        ));
    };
    if question.trim().is_empty() {
        return Err(tera::Error::message(
            "`question` of `answer_url` must name the question, e.g. `question=\"nps\"`",
        ));
    }
    Ok(answer_placeholder(&question, &value))
}

/// `{{ customer.total_spent | number(locale=customer.locale, decimals=2) }}`: a number with
/// the locale's separators (`1,234.50` in `en`, `1.234,50` in `es`), rounded to `decimals`
/// places when given — by ICU4X, with CLDR's data.
fn number(value: &tera::Value, kwargs: tera::Kwargs, _: &tera::State) -> tera::TeraResult<String> {
    let decimals: Option<i64> = kwargs.get("decimals")?;
    let (n, locale) = decimal_and_locale(value, &kwargs, "number", decimals)?;
    let formatter = icu_decimal::DecimalFormatter::try_new((&locale).into(), Default::default())
        .map_err(|e| tera::Error::message(format!("no number format for `{locale}`: {e}")))?;
    Ok(formatter.format(&n).to_string())
}

/// `{{ order.total | price(currency="EUR", locale=customer.locale) }}`: an amount of money
/// as the locale writes it, the currency's symbol where the locale puts it — `€1,234.50`
/// in `en`, `1.234,50 €` in `de`, `1 234,50 €` in `fr` — rounded to `decimals` places (2
/// unless given: `decimals=0` for yen). By ICU4X's currency formatter, with CLDR's data.
fn price(value: &tera::Value, kwargs: tera::Kwargs, _: &tera::State) -> tera::TeraResult<String> {
    use icu_experimental::dimension::currency::{CurrencyCode, formatter::CurrencyFormatter};
    let currency: String = kwargs.must_get("currency")?;
    let code = currency.trim().to_ascii_uppercase();
    let code = (code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()))
        .then(|| code.parse().ok())
        .flatten()
        .map(CurrencyCode)
        .ok_or_else(|| {
            tera::Error::message(format!(
                "`currency` of `price` must be an ISO 4217 code such as \"EUR\", not `{currency}`"
            ))
        })?;
    let decimals: Option<i64> = kwargs.get("decimals")?;
    let (n, locale) = decimal_and_locale(value, &kwargs, "price", Some(decimals.unwrap_or(2)))?;
    let formatter = CurrencyFormatter::try_new((&locale).into(), Default::default())
        .map_err(|e| tera::Error::message(format!("no price format for `{locale}`: {e}")))?;
    Ok(formatter.format_fixed_decimal(&n, &code).to_string())
}

/// The value as a decimal (rounded and padded to `decimals` places when given) and the
/// `locale=` argument as a locale (`en` when absent or unknown).
fn decimal_and_locale(
    value: &tera::Value,
    kwargs: &tera::Kwargs,
    filter: &str,
    decimals: Option<i64>,
) -> tera::TeraResult<(fixed_decimal::Decimal, icu_locale_core::Locale)> {
    use fixed_decimal::{Decimal, FloatPrecision};
    let x = value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| tera::Error::message(format!("`{filter}` needs a number, not `{value}`")))?;
    let locale: Option<tera::Value> = kwargs.get("locale")?;
    let tag = locale.as_ref().and_then(|l| l.as_str()).unwrap_or("en");
    let mut n = Decimal::try_from_f64(x, FloatPrecision::RoundTrip)
        .map_err(|_| tera::Error::message(format!("`{x}` cannot be written as a number")))?;
    if let Some(places) = decimals {
        let position = -i16::try_from(places.clamp(0, 12)).unwrap_or(0);
        n.round(position);
        n.absolute.pad_end(position);
    }
    let locale: icu_locale_core::Locale = tag
        .replace('_', "-")
        .parse()
        .unwrap_or(icu_locale_core::locale!("en"));
    Ok((n, locale))
}
