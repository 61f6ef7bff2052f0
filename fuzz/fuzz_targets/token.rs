//! Arbitrary bytes as a token endpoint answer (the first byte picks the HTTP status): the
//! parser must never panic, and an error must never quote a token-shaped value of the body
//! (it may be the tenant token; `sync_runs.error`, `check` and the logs show errors).
#![no_main]

use helpdesk_sync::feishu::parse::parse_token_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let status = [200, 400, 401, 429, 500][usize::from(first) % 5];
    let headers = reqwest::header::HeaderMap::new();
    if let Err(error) = parse_token_response(status, &headers, body) {
        let shown = error.to_string();
        let text = String::from_utf8_lossy(body);
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c))) {
            let mixed = word.chars().any(|c| c.is_ascii_alphabetic())
                && word.chars().any(|c| c.is_ascii_digit());
            if word.len() >= 16 && mixed {
                assert!(!shown.contains(word), "{shown:?} quotes {word:?}");
            }
        }
    }
});
