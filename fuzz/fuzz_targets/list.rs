//! Arbitrary bytes as a list answer: the page parser, then each listed row merged over a
//! stored ticket, normalized and compared with a detail, as list-first ingestion does. Nothing
//! may panic; every item is either a listed ticket or counted as skipped; a merged row is JSON.
#![no_main]

use helpdesk_sync::domain::{ListTrust, TicketId};
use helpdesk_sync::feishu::parse::parse_list_response;
use helpdesk_sync::normalize::listed::{compare_with_detail, merge_list_row, normalize_list_row};
use libfuzzer_sys::fuzz_target;

const STORED: &str = r#"{"ticket_id":"6626871355780366331","status":1,"tags":[{"id":"1","name":"vip"}],"agents":[{"id":"ou_a"}]}"#;

fuzz_target!(|data: &[u8]| {
    let headers = reqwest::header::HeaderMap::new();
    let Ok(page) = parse_list_response(200, &headers, data) else {
        return;
    };
    let trust = ListTrust::default();
    let now = chrono::Utc::now();
    for row in &page.tickets {
        let Ok(id) = TicketId::parse(&row.ticket_id) else {
            continue;
        };
        if let Ok(merged) = merge_list_row(&row.raw, Some(STORED), &trust) {
            let value: serde_json_check::Value =
                serde_json_check::from_str(&merged).expect("a merged row stays valid JSON");
            // Tags are never taken from a list row.
            assert_eq!(value["tags"][0]["name"], "vip");
        }
        let _ = normalize_list_row(&id, &row.raw, Some(STORED), &trust, now);
        let _ = normalize_list_row(&id, &row.raw, None, &trust, now);
        let _ = compare_with_detail(&row.raw, STORED);
    }
});
