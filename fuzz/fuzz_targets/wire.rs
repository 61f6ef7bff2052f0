//! Arbitrary bytes as an API response body: the detail and list parsers, the surrogate repair
//! and normalization must never panic, whatever arrives.
#![no_main]

use helpdesk_sync::domain::TicketId;
use helpdesk_sync::feishu::parse::{parse_list_response, parse_ticket_response};
use helpdesk_sync::normalize::{normalize_ticket, repair_surrogate_escapes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let headers = reqwest::header::HeaderMap::new();
    let id = TicketId::parse("6626871355780366331").expect("a valid id");
    let now = chrono::Utc::now();
    for status in [200, 429, 500] {
        if let Ok(ticket) = parse_ticket_response(status, &headers, data) {
            let _ = normalize_ticket(&id, &ticket, now);
        }
        let _ = parse_list_response(status, &headers, data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = repair_surrogate_escapes(text);
        if let Ok(n) = normalize_ticket(&id, text, now) {
            // What normalization keeps must be storable: no NUL, valid JSON.
            assert!(!n.record.ticket.raw.contains("\\u0000"));
            let _: serde_json_check::Value =
                serde_json_check::from_str(&n.record.ticket.raw).expect("raw stays valid JSON");
        }
    }
});
