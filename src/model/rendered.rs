//! An email as composed: what `preview` shows and a proof sends.

/// One email as `preview` shows it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub step: String,
    pub to: String,
    pub locale: Option<String>,
    pub subject: String,
    pub html_file: String,
    pub html: String,
    pub text_file: Option<String>,
    pub text: Option<String>,
}
