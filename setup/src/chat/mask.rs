//! Masking what a person types before anything keeps it: secrets (Meta tokens, Stripe
//! keys and signing secrets, long opaque tokens), emails and phone numbers are replaced by
//! a placeholder naming what was there. Applied to every chat message before it is stored,
//! logged, shown to an engine or handed off.
//!
//! Kept: words, URLs without credentials, Meta pixel ids (15-16 digits: not personal, and
//! the assistant needs them), short numbers.

/// What a masked span is replaced with.
pub const SECRET: &str = "[secret]";
pub const EMAIL: &str = "[email]";
pub const PHONE: &str = "[phone]";

/// `text` with secrets, emails and phone numbers masked.
pub fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        out.push_str(&mask_word(&rest[..end]));
        rest = &rest[end..];
    }
    mask_phones(&out)
}

/// One whitespace-free word, its trailing punctuation kept.
fn mask_word(word: &str) -> String {
    let core = word.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '"', '\'']);
    let tail = &word[core.len()..];
    let core_start = core.trim_start_matches(['(', '"', '\'']);
    let head = &core[..core.len() - core_start.len()];
    let masked = if is_email(core_start) {
        EMAIL
    } else if is_secret(core_start) {
        SECRET
    } else {
        return word.to_owned();
    };
    format!("{head}{masked}{tail}")
}

fn is_email(word: &str) -> bool {
    match word.split_once('@') {
        Some((user, domain)) => !user.is_empty() && domain.contains('.') && !domain.ends_with('.'),
        None => false,
    }
}

/// A secret: a known prefix (Meta `EAA…`, Stripe `sk_`/`rk_`/`whsec_`, funnelhub `fh_`),
/// a `key=value` whose key names a secret, or a long opaque token (24+ characters of
/// letters, digits, `-_` mixing letters and digits). URLs are judged by their query only.
fn is_secret(word: &str) -> bool {
    if let Some((_, query)) = word.split_once('?') {
        if word.starts_with("http://") || word.starts_with("https://") {
            return query.split('&').any(|pair| match pair.split_once('=') {
                Some((key, value)) => named_secret(key) && !value.is_empty(),
                None => false,
            });
        }
    }
    if word.starts_with("http://") || word.starts_with("https://") {
        return false;
    }
    if let Some((key, value)) = word.split_once('=') {
        if named_secret(key) && !value.is_empty() {
            return true;
        }
    }
    const PREFIXES: [&str; 7] = ["EAA", "sk_", "rk_", "pk_live_", "whsec_", "fh_", "Bearer"];
    if PREFIXES.iter().any(|p| word.starts_with(p)) && word.len() >= 12 {
        return true;
    }
    word.len() >= 24
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && word.chars().any(|c| c.is_ascii_digit())
        && word.chars().any(|c| c.is_ascii_alphabetic())
}

fn named_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "senha",
        "hottok",
        "key",
        "signature",
    ]
    .iter()
    .any(|k| key.contains(k))
}

/// Phone numbers: runs of 10-13 digits, allowing `+`, spaces, dots, dashes and brackets
/// between them (Brazilian numbers with or without the country code). Longer runs (pixel
/// ids, 15-16 digits) and shorter ones stay.
fn mask_phones(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i].is_ascii_digit() || (chars[i] == '+' || chars[i] == '(');
        let after_word = i > 0 && chars[i - 1].is_alphanumeric();
        if starts && !after_word {
            let mut j = i;
            let mut digits = 0;
            let mut last_digit = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || " +-.()".contains(chars[j])) {
                if chars[j].is_ascii_digit() {
                    digits += 1;
                    last_digit = j;
                }
                j += 1;
            }
            let before_word =
                last_digit + 1 < chars.len() && chars[last_digit + 1].is_alphanumeric();
            if (10..=13).contains(&digits) && !before_word {
                out.push_str(PHONE);
                i = last_digit + 1;
                continue;
            }
            if digits > 0 {
                out.extend(&chars[i..=last_digit]);
                i = last_digit + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_emails_and_phones_are_masked_and_the_rest_kept() {
        let text = "meu token EAABsbCS1iHgBAKZAZBx2l3 e o pixel 123456789012345, \
                    email ana@example.com, fone +55 (11) 98765-4321; hottok=abc123secret. \
                    whsec_abcdefghijklmnop https://lp.example.com/oferta?utm_source=fb \
                    https://x.test/cb?token=zzz 3 tentativas";
        let masked = mask(text);
        for gone in [
            "EAABsbCS",
            "ana@example.com",
            "98765-4321",
            "abc123secret",
            "whsec_abc",
            "token=zzz",
        ] {
            assert!(!masked.contains(gone), "{gone} kept: {masked}");
        }
        for kept in [
            "meu token",
            "123456789012345",
            "https://lp.example.com/oferta?utm_source=fb",
            "3 tentativas",
            "[email],",
        ] {
            assert!(masked.contains(kept), "{kept} lost: {masked}");
        }
        assert_eq!(mask("ligue 11987654321 agora"), "ligue [phone] agora");
        assert_eq!(mask("pedido HP1234567890123"), "pedido HP1234567890123");
    }
}
