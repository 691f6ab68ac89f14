//! The pages a customer sees after following a link from an email, in their language (the
//! customer's `locale`, else English): the answer to a survey and its comment box.

use crate::workflow::templates::escape_html;

/// The words of the answer pages in one language.
pub(super) struct Words {
    pub lang: &'static str,
    pub thanks: &'static str,
    pub your_answer: &'static str,
    pub comment_label: &'static str,
    pub send: &'static str,
    pub comment_saved: &'static str,
    pub change: &'static str,
    pub closed: &'static str,
    pub prefs_title: &'static str,
    pub prefs_intro: &'static str,
    pub save: &'static str,
    pub everything: &'static str,
    pub saved: &'static str,
    pub all_gone: &'static str,
    /// The title of the page after unsubscribing from everything.
    pub unsubscribed: &'static str,
    /// Shown on every page a proof's link opens.
    pub proof: &'static str,
    /// A comment over the box's limit (`{max}` characters).
    pub too_long: &'static str,
}

const EN: Words = Words {
    lang: "en",
    thanks: "Thank you for your answer",
    your_answer: "Your answer",
    comment_label: "Anything you would like to add? (optional)",
    send: "Send",
    comment_saved: "Thank you — your comment was saved.",
    change: "Changed your mind? Use another answer in the email: the latest one counts.",
    closed: "This survey is closed. Nothing was recorded.",
    prefs_title: "Your email preferences",
    prefs_intro: "Choose what we may send you. Emails about your orders always arrive.",
    save: "Save my choices",
    everything: "Unsubscribe from everything",
    saved: "Saved: you get only what is ticked.",
    all_gone: "You will get no more marketing email. Emails about your orders still arrive.",
    unsubscribed: "You are unsubscribed",
    proof: "This is a proof: nothing on this page changes or records anything.",
    too_long: "Your comment is longer than {max} characters; nothing was saved. Please shorten it.",
};

const JA: Words = Words {
    lang: "ja",
    thanks: "ご回答ありがとうございます",
    your_answer: "あなたの回答",
    comment_label: "ほかにご意見があればお聞かせください（任意）",
    send: "送信",
    comment_saved: "ありがとうございます。コメントを保存しました。",
    change: "回答を変更する場合は、メール内の別の回答を選んでください。最新の回答が有効になります。",
    closed: "このアンケートは終了しました。回答は記録されていません。",
    prefs_title: "メール配信の設定",
    prefs_intro: "受け取りたいメールを選んでください。ご注文に関するメールは常に届きます。",
    save: "設定を保存",
    everything: "すべての配信を停止",
    saved: "保存しました。チェックした内容のみお届けします。",
    all_gone: "今後、販促メールはお送りしません。ご注文に関するメールは引き続き届きます。",
    unsubscribed: "配信を停止しました",
    proof: "これは確認用のプルーフです。このページでは何も変更・記録されません。",
    too_long: "コメントが{max}文字を超えているため保存されませんでした。短くしてください。",
};

const HI: Words = Words {
    lang: "hi",
    thanks: "आपके उत्तर के लिए धन्यवाद",
    your_answer: "आपका उत्तर",
    comment_label: "क्या आप कुछ और जोड़ना चाहेंगे? (वैकल्पिक)",
    send: "भेजें",
    comment_saved: "धन्यवाद — आपकी टिप्पणी सहेज ली गई है।",
    change: "अपना उत्तर बदलना चाहते हैं? ईमेल में कोई दूसरा उत्तर चुनें: नवीनतम उत्तर ही गिना जाएगा।",
    closed: "यह सर्वेक्षण बंद हो चुका है। कुछ भी दर्ज नहीं किया गया।",
    prefs_title: "आपकी ईमेल प्राथमिकताएँ",
    prefs_intro: "चुनें कि हम आपको क्या भेज सकते हैं। आपके ऑर्डर से जुड़े ईमेल हमेशा आएँगे।",
    save: "मेरी पसंद सहेजें",
    everything: "सब कुछ से सदस्यता समाप्त करें",
    saved: "सहेजा गया: आपको केवल चुनी हुई चीज़ें मिलेंगी।",
    all_gone: "आपको अब कोई मार्केटिंग ईमेल नहीं मिलेगा। आपके ऑर्डर से जुड़े ईमेल आते रहेंगे।",
    unsubscribed: "आपकी सदस्यता समाप्त हो गई है",
    proof: "यह एक प्रूफ़ है: इस पेज पर कुछ भी बदलता या दर्ज नहीं होता।",
    too_long: "आपकी टिप्पणी {max} अक्षरों से लंबी है; कुछ भी सहेजा नहीं गया। कृपया इसे छोटा करें।",
};

const ZH: Words = Words {
    lang: "zh",
    thanks: "感谢您的回答",
    your_answer: "您的回答",
    comment_label: "还有什么想补充的吗？（可选）",
    send: "提交",
    comment_saved: "谢谢——您的评论已保存。",
    change: "想更改回答？请在邮件中选择其他答案：以最新的回答为准。",
    closed: "此调查已结束，未记录任何内容。",
    prefs_title: "您的邮件偏好",
    prefs_intro: "选择我们可以向您发送的内容。有关订单的邮件始终会发送。",
    save: "保存我的选择",
    everything: "退订全部",
    saved: "已保存：您只会收到已勾选的内容。",
    all_gone: "您将不再收到营销邮件。有关订单的邮件仍会发送。",
    unsubscribed: "您已退订",
    proof: "这是校样：此页面不会更改或记录任何内容。",
    too_long: "您的评论超过 {max} 个字符，未保存。请缩短后再试。",
};

const ES: Words = Words {
    lang: "es",
    thanks: "Gracias por tu respuesta",
    your_answer: "Tu respuesta",
    comment_label: "¿Quieres añadir algo? (opcional)",
    send: "Enviar",
    comment_saved: "Gracias: hemos guardado tu comentario.",
    change: "¿Has cambiado de opinión? Elige otra respuesta en el correo: cuenta la más reciente.",
    closed: "Esta encuesta está cerrada. No se ha registrado nada.",
    prefs_title: "Tus preferencias de correo",
    prefs_intro: "Elige qué podemos enviarte. Los correos sobre tus pedidos siempre llegan.",
    save: "Guardar mis opciones",
    everything: "Darme de baja de todo",
    saved: "Guardado: solo recibirás lo que has marcado.",
    all_gone: "No recibirás más correos de marketing. Los correos sobre tus pedidos seguirán llegando.",
    unsubscribed: "Te has dado de baja",
    proof: "Esto es una prueba: nada de esta página cambia ni registra nada.",
    too_long: "Tu comentario supera los {max} caracteres; no se ha guardado nada. Acórtalo, por favor.",
};

/// The words for a BCP 47 locale (`ja-JP` → Japanese), English when there are none.
pub(super) fn words(locale: Option<&str>) -> &'static Words {
    let language = locale
        .and_then(|l| l.split(['-', '_']).next())
        .map(str::to_ascii_lowercase);
    match language.as_deref() {
        Some("ja") => &JA,
        Some("hi") => &HI,
        Some("zh") => &ZH,
        Some("es") => &ES,
        _ => &EN,
    }
}

/// A whole page: one column, readable on a phone, no script.
pub(super) fn page(words: &Words, title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"robots\" content=\"noindex\"><title>{}</title>\n<style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:2em auto;padding:0 1em;line-height:1.5}}textarea{{width:100%;box-sizing:border-box;font:inherit}}button{{font:inherit;padding:.4em 1.2em;margin-top:.5em}}.answer{{font-size:1.6em;font-weight:bold}}</style></head>\n<body><h1>{}</h1>\n{body}\n</body></html>\n",
        words.lang,
        escape_html(title),
        escape_html(title)
    )
}

/// The answer page: the answer given and a box for a comment.
pub(super) fn answer_page(words: &Words, value: &str, comment: Option<&str>) -> String {
    let body = format!(
        "<p>{}: <span class=\"answer\">{}</span></p>\n<form method=\"post\"><label for=\"comment\">{}</label><br><textarea id=\"comment\" name=\"comment\" rows=\"5\" maxlength=\"2000\">{}</textarea><br><button type=\"submit\">{}</button></form>\n<p><small>{}</small></p>",
        escape_html(words.your_answer),
        escape_html(value),
        escape_html(words.comment_label),
        escape_html(comment.unwrap_or("")),
        escape_html(words.send),
        escape_html(words.change),
    );
    page(words, words.thanks, &body)
}

/// The preference centre: a box per topic (ticked: the customer gets it), a button that
/// saves, and one that unsubscribes from everything. A plain form: no script needed.
pub(super) fn preferences_page(
    words: &Words,
    topics: &[(String, String, bool)],
    notice: Option<&str>,
) -> String {
    let mut body = String::new();
    if let Some(n) = notice {
        body.push_str(&format!(
            "<p role=\"status\"><strong>{}</strong></p>\n",
            escape_html(n)
        ));
    }
    body.push_str(&format!(
        "<p>{}</p>\n<form method=\"post\">\n",
        escape_html(words.prefs_intro)
    ));
    for (name, label, wanted) in topics {
        let checked = if *wanted { " checked" } else { "" };
        body.push_str(&format!(
            "<p><label><input type=\"checkbox\" name=\"topic\" value=\"{}\" data-topic=\"{}\"{checked}> {}</label></p>\n",
            escape_html(name),
            escape_html(name),
            escape_html(label)
        ));
    }
    body.push_str(&format!(
        "<p><button type=\"submit\" name=\"action\" value=\"save\">{}</button></p>\n<p><button type=\"submit\" name=\"action\" value=\"everything\">{}</button></p>\n</form>",
        escape_html(words.save),
        escape_html(words.everything)
    ));
    page(words, words.prefs_title, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_speak_the_customers_language() {
        assert_eq!(words(Some("ja-JP")).lang, "ja");
        assert_eq!(words(Some("hi")).lang, "hi");
        assert_eq!(words(Some("zh_Hans")).lang, "zh");
        assert_eq!(words(Some("es-MX")).lang, "es");
        assert_eq!(words(Some("de-DE")).lang, "en");
        assert_eq!(words(None).lang, "en");
        let html = answer_page(words(Some("ja")), "<9>", None);
        assert!(html.contains("lang=\"ja\"") && html.contains("&lt;9&gt;"));
    }
}
