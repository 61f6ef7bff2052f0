//! Arbitrary bytes as a webhook delivery: the first bytes choose the headers (timestamp, nonce,
//! signature present or not, signature right or wrong), the rest is the body. Verification,
//! decryption and event parsing must never panic, and nothing unsigned may come out as a
//! ticket event.
#![no_main]

use helpdesk_sync::events::{Event, EventKeys, signature, verify_and_parse};
use libfuzzer_sys::fuzz_target;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::SecretString;

const KEY: &str = "fuzz-encrypt-key";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let now = chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("a valid time");
    let keys = EventKeys {
        verification_token: (mode & 1 == 0).then(|| SecretString::from("fuzz-token")),
        encrypt_key: (mode & 2 == 0).then(|| SecretString::from(KEY)),
    };
    let mut headers = HeaderMap::new();
    let signed = mode & 4 == 0;
    if signed {
        let ts = if mode & 8 == 0 { "1790000000" } else { "-1" };
        headers.insert("x-lark-request-timestamp", HeaderValue::from_static(ts));
        headers.insert("x-lark-request-nonce", HeaderValue::from_static("n"));
        let sig = if mode & 16 == 0 {
            signature(ts, "n", KEY, body)
        } else {
            "0".repeat(64)
        };
        headers.insert(
            "x-lark-signature",
            HeaderValue::from_str(&sig).expect("hex is a header value"),
        );
    }
    if let Ok(Event::Ticket { .. }) = verify_and_parse(&keys, &headers, body, now) {
        // With an encrypt key, only a correctly signed delivery can be a ticket event.
        if keys.encrypt_key.is_some() {
            assert!(
                signed && mode & 16 == 0,
                "an unsigned or forged delivery was accepted"
            );
        }
    }
});
