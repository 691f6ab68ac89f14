//! The links an email carries back to tidings besides the unsubscribe link: tracked links
//! (`/c/TOKEN`), the open pixel (`/o/TOKEN.gif`) and survey answers (`/a/TOKEN`).
//!
//! Each token seals what the endpoint needs — the email's delivery key and, for a link, the
//! exact URL the email held — with the project's key (the unsubscribe link's), each kind
//! under a purpose of its own, so no token can be read, forged, altered or used as another
//! kind. The URL is sealed, not looked up, so that a redirect can only ever go where the
//! email pointed: no open redirect, and no table of links to keep.

mod rewrite;

pub use rewrite::{Rewriter, utm_url};

use crate::unsubscribe::{Signer, TokenError};
use serde::{Deserialize, Serialize};

const CLICK: &[u8] = b"tidings tracked link v1";
const OPEN: &[u8] = b"tidings open pixel v1";
const ANSWER: &[u8] = b"tidings survey answer v1";

/// A tracked link: the email it was in and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Click {
    pub delivery: String,
    pub url: String,
    /// In a preview or a proof: followed, never recorded.
    #[serde(default, skip_serializing_if = "is_false")]
    pub proof: bool,
}

/// The open pixel of one email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    pub delivery: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub proof: bool,
}

/// One answer link: the email, the question and the value the link stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub delivery: String,
    pub question: String,
    pub value: serde_json::Value,
    #[serde(default, skip_serializing_if = "is_false")]
    pub proof: bool,
}

/// Tokens of real emails leave the proof mark out, so they read as they always did.
fn is_false(b: &bool) -> bool {
    !*b
}

/// The kinds of token, each sealed under its own purpose.
pub trait Token: Serialize + for<'de> Deserialize<'de> {
    const PURPOSE: &'static [u8];

    fn seal(&self, signer: &Signer) -> String {
        // Serializing these plain structs to JSON does not fail.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        signer.seal(Self::PURPOSE, &payload)
    }

    fn open(signer: &Signer, token: &str) -> Result<Self, TokenError> {
        let payload = signer.unseal(Self::PURPOSE, token)?;
        serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)
    }
}

impl Token for Click {
    const PURPOSE: &'static [u8] = CLICK;
}

impl Token for Open {
    const PURPOSE: &'static [u8] = OPEN;
}

impl Token for Answer {
    const PURPOSE: &'static [u8] = ANSWER;
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn each_kind_opens_only_as_itself_and_reveals_nothing() {
        let signer = Signer::new(b"k1").unwrap();
        let click = Click {
            delivery: "deal/c-42/e1/deal".into(),
            url: "https://shop.example/sale?x=1".into(),
            proof: false,
        };
        let token = click.seal(&signer);
        assert_eq!(Click::open(&signer, &token), Ok(click.clone()));
        assert_eq!(Open::open(&signer, &token), Err(TokenError::BadSignature));
        assert!(Click::open(&Signer::new(b"k2").unwrap(), &token).is_err());
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for needle in ["c-42", "shop.example", "deal"] {
            assert!(!token.contains(needle));
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()));
        }
        let mut altered = bytes.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(
            Click::open(&signer, &URL_SAFE_NO_PAD.encode(altered)),
            Err(TokenError::BadSignature)
        );
        let answer = Answer {
            delivery: "d".into(),
            question: "nps".into(),
            value: 9.into(),
            proof: false,
        };
        assert_eq!(Answer::open(&signer, &answer.seal(&signer)), Ok(answer));
    }
}
