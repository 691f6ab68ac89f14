//! Which locale variant of a template (or subject) a customer gets, and in which locale
//! the chosen text writes its dates and numbers.
//!
//! A variant must share the customer's language and writing system: `zh-Hant-TW` (or
//! `zh-TW`) never gets a `zh` file, which is Simplified, and falls back to the default.
//! Among those, one for the customer's region is preferred (`pt-BR` takes `pt`, written
//! for Brazil, over `pt-PT`). Scripts and regions left out of a tag are CLDR's likely ones.

use icu_locale::{LanguageIdentifier, LocaleExpander};

/// Language, script and region, the ones a tag leaves out filled in as CLDR has them.
fn maximized(tag: &str) -> Option<LanguageIdentifier> {
    // Static data: making one costs nothing.
    let expander = LocaleExpander::new_common();
    let mut id: LanguageIdentifier = tag.parse().ok()?;
    expander.maximize(&mut id);
    Some(id)
}

/// The best of `tags` for a customer's `locale`, or `None` for the default: the same tag
/// first, then the same language and script in the customer's region, then in another.
/// A locale that does not parse falls back by cutting subtags from the end.
pub fn best<'a>(locale: Option<&str>, tags: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let locale = locale.filter(|l| !l.is_empty())?;
    let tags: Vec<&str> = tags.into_iter().filter(|t| !t.is_empty()).collect();
    if let Some(exact) = tags.iter().find(|t| t.eq_ignore_ascii_case(locale)) {
        return Some(exact);
    }
    let Some(wanted) = maximized(locale) else {
        return by_prefix(locale, &tags);
    };
    let mut best: Option<(u8, &str)> = None;
    for tag in tags {
        let Some(offered) = maximized(tag) else {
            continue;
        };
        if offered.language != wanted.language || offered.script != wanted.script {
            continue;
        }
        let score = if offered.region == wanted.region {
            2
        } else {
            1
        };
        // Ties go to the shorter (more general) tag: `pt` before `pt-BR-x-...`.
        let better = best.is_none_or(|(s, t)| score > s || (score == s && tag.len() < t.len()));
        if better {
            best = Some((score, tag));
        }
    }
    best.map(|(_, tag)| tag)
}

/// `ja-JP` tries `ja-JP`, then `ja`.
fn by_prefix<'a>(locale: &str, tags: &[&'a str]) -> Option<&'a str> {
    let mut tag = locale.to_string();
    loop {
        if let Some(found) = tags.iter().find(|t| t.eq_ignore_ascii_case(&tag)) {
            return Some(found);
        }
        tag.truncate(tag.rfind('-')?);
    }
}

/// The locale the chosen text is written in, for `template.locale`: the customer's own
/// when the text is in their language and script (`en-GB` reading the English default
/// writes dates the British way), else the text's (a Hindi reader of the English default
/// gets English dates, not Hindi ones in an English sentence).
pub fn written_in(customer: Option<&str>, chosen: &str) -> String {
    let Some(customer) = customer.filter(|c| !c.is_empty()) else {
        return chosen.to_string();
    };
    match (maximized(customer), maximized(chosen)) {
        (Some(c), Some(t)) if c.language == t.language && c.script == t.script => {
            customer.to_string()
        }
        _ => chosen.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_shares_the_language_and_the_script() {
        let tags = ["ja", "zh", "hi", "pt", "pt-PT", "en-GB"];
        let pick = |l: &str| best(Some(l), tags);
        assert_eq!(pick("ja-JP"), Some("ja"));
        assert_eq!(pick("zh-CN"), Some("zh"));
        assert_eq!(pick("zh-Hant-TW"), None);
        assert_eq!(pick("zh-TW"), None);
        assert_eq!(pick("pt-BR"), Some("pt"));
        assert_eq!(pick("pt-PT"), Some("pt-PT"));
        assert_eq!(pick("PT-pt"), Some("pt-PT"));
        assert_eq!(pick("en-AU"), Some("en-GB"));
        assert_eq!(pick("fr"), None);
        assert_eq!(best(None, tags), None);
        assert_eq!(best(Some("zh-Hant-HK"), ["zh-Hant", "zh"]), Some("zh-Hant"));
        assert_eq!(best(Some("zh-HK"), ["zh-TW", "zh"]), Some("zh-TW"));
    }

    #[test]
    fn the_text_is_written_in_the_customers_locale_only_in_their_language() {
        assert_eq!(written_in(Some("en-GB"), "en"), "en-GB");
        assert_eq!(written_in(Some("hi"), "en"), "en");
        assert_eq!(written_in(Some("ja-JP"), "ja"), "ja-JP");
        assert_eq!(written_in(None, "en"), "en");
        assert_eq!(written_in(Some("zh-TW"), "zh"), "zh");
    }
}
