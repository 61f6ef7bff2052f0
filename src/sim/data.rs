//! Generated tickets that look like the real API's, quirks included (see API-NOTES): ids above
//! 2^53 as strings or numbers, `comments` as object, list, null or absent, `updated_at = -1`,
//! `closed_at = 0` on open tickets, `tags` / `customized_fields` omitted, unknown extra fields.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The first simulated ticket id (the seed example's); the rest follow.
pub const FIRST_TICKET_ID: u64 = 6626871355780366331;
pub const HELPDESK_ID: &str = "6626871355780366330";

const TAGS: [(&str, &str); 8] = [
    ("7474857595946745884", "billing"),
    ("7474857595946745885", "login"),
    ("7474857595946745886", "bug"),
    ("7474857595946745887", "feature request"),
    ("7474857595946745888", "vip"),
    ("7474857595946745889", "refund"),
    ("7474857595946745890", "账号"),
    ("7474857595946745891", "urgent"),
];
const CHANNELS: [i64; 5] = [9, 2, 14, 13, 0];
/// Labels of options of the nested "Category" dropdown, at its three levels.
const CATEGORIES: [&str; 4] = ["Battery", "Laptop", "Software", "Screen"];
const PLATFORMS: [&str; 3] = ["Web", "iOS", "Android"];
const CITIES: [&str; 5] = ["Beijing", "Shanghai", "Shenzhen", "Singapore", "Tokyo"];
const DEPARTMENTS: [&str; 4] = ["Support L1", "Support L2", "Billing", "Engineering"];
const REASONS: [(&str, &str, &str); 3] = [
    ("答案看不懂", "I don't understand", "回答が複雑すぎる"),
    ("等待太久", "Waited too long", "待ち時間が長すぎる"),
    ("问题没解决", "Problem not solved", "問題が解決されていない"),
];

pub fn ticket_id(index: usize) -> String {
    (FIRST_TICKET_ID + index as u64).to_string()
}

/// How far apart the ticket numbering of two helpdesks starts: helpdesk `h` (0 = the first)
/// numbers its tickets from `h * HELPDESK_TICKET_STRIDE`, so ticket ids stay unique across
/// helpdesks (and 19 digits long, as the real ones are).
pub const HELPDESK_TICKET_STRIDE: usize = 1_000_000_000;

/// The id of ticket `index` of helpdesk number `helpdesk` (0 = the first, whose ids are
/// [`ticket_id`]'s).
pub fn helpdesk_ticket_id(helpdesk: usize, index: usize) -> String {
    ticket_id(helpdesk * HELPDESK_TICKET_STRIDE + index)
}

/// The id of custom field `n` (1, 2, 3) in helpdesk number `helpdesk`'s catalog: each
/// helpdesk has its own fields (the first helpdesk's are `679428120000000000n`).
fn field_id(helpdesk: usize, n: u64) -> String {
    (6_794_281_200_000_000_000u64 + helpdesk as u64 * 100 + n).to_string()
}

/// The first author id of internal notes in helpdesk number `helpdesk`'s tickets (the first
/// helpdesk's authors are `7262656095919128578` and `…579`, as the seed's example; the others'
/// differ, so per-author figures of the first helpdesk stay what they were).
fn note_author(helpdesk: usize) -> u64 {
    7_262_656_095_919_128_578u64 + helpdesk as u64 * 100
}

fn user(kind: &str, n: u32, rng: &mut StdRng) -> Value {
    let mut u = json!({
        "id": format!("ou_{kind}{n:028x}"),
        "avatar_url": format!("https://sim.invalid/avatar/{kind}{n}.png"),
        "name": format!("{kind} {n}"),
        "email": format!("{kind}{n}@example.com"),
        "city": CITIES[(n as usize) % CITIES.len()],
        "country": "CN",
    });
    // Departments are shown only with permission: often absent.
    if rng.random_bool(0.6) {
        u["department"] = json!(DEPARTMENTS[(n as usize) % DEPARTMENTS.len()]);
    }
    u
}

/// Ticket number `index`, created at or before `now_ms`. Deterministic for a given index.
pub fn generate_ticket(index: usize, now_ms: i64) -> Value {
    generate_helpdesk_ticket(0, HELPDESK_ID, index, now_ms)
}

/// Ticket number `index` of helpdesk number `helpdesk` (0 = the first: exactly
/// [`generate_ticket`]'s), whose id is `helpdesk_id`: its id is [`helpdesk_ticket_id`], its
/// custom fields are that helpdesk's, its note authors its own. Deterministic.
pub fn generate_helpdesk_ticket(
    helpdesk: usize,
    helpdesk_id: &str,
    index: usize,
    now_ms: i64,
) -> Value {
    let index = helpdesk * HELPDESK_TICKET_STRIDE + index;
    let mut rng = StdRng::seed_from_u64(0x5eed ^ index as u64);
    let id = ticket_id(index);
    // Spread over the last 90 days.
    let created_at = now_ms - rng.random_range(3_600_000..90 * 86_400_000i64);
    let status: i64 = *[1, 2, 3, 4, 5, 50, 51, 51, 51, 52]
        .get(rng.random_range(0..10))
        .unwrap_or(&51);
    let closed = status >= 50;
    let human = rng.random_bool(0.85);
    let guest = user("guest", rng.random_range(0..300), &mut rng);
    let agent_count = if human { rng.random_range(1..=3) } else { 0 };
    let agents: Vec<Value> = (0..agent_count)
        .map(|_| user("agent", rng.random_range(0..20), &mut rng))
        .collect();
    let entry = created_at + rng.random_range(1_000..600_000);
    let first_response = entry + rng.random_range(5_000..1_800_000);
    let last_response = first_response + rng.random_range(0..7_200_000);
    let closed_at = if closed {
        last_response + rng.random_range(60_000..86_400_000)
    } else {
        0
    };
    let updated_at = if index.is_multiple_of(17) {
        -1
    } else if closed {
        closed_at
    } else {
        last_response.min(now_ms)
    };

    let mut t = json!({
        "ticket_id": id,
        "helpdesk_id": helpdesk_id,
        "guest": guest,
        "ticket_type": if human { 2 } else { 1 },
        "status": status,
        "created_at": created_at,
        "updated_at": updated_at,
        "channel": CHANNELS[index % CHANNELS.len()],
        "agents": agents,
        "collaborators": [],
        "bot_service_duration": (entry - created_at) / 1000,
    });
    if index.is_multiple_of(11) {
        // Some payloads carry the id as a JSON number: still above 2^53, still exact.
        t["ticket_id"] = json!(FIRST_TICKET_ID + index as u64);
    }
    if closed || index.is_multiple_of(2) {
        t["closed_at"] = json!(closed_at);
    }
    if human {
        t["agent_entry_time"] = json!(entry);
        t["agent_first_response_time"] = json!(first_response);
        t["agent_last_response_time"] = json!(last_response);
        t["agent_first_response_duration"] = json!((first_response - entry) / 1000);
        t["agent_service_duration"] =
            json!(((last_response - entry) as f64 / 60_000.0 * 100.0).round() / 100.0);
        t["agent_owner"] = t["agents"][0].clone();
        if rng.random_bool(0.3) {
            t["collaborators"] = json!([user("agent", rng.random_range(0..20), &mut rng)]);
        }
    }
    if closed {
        let score = rng.random_range(1..=3);
        t["score"] = json!(score);
        t["solve"] = json!(if rng.random_bool(0.8) { 2 } else { 1 });
        t["closed_by"] = if human {
            t["agents"][0].clone()
        } else {
            t["guest"].clone()
        };
        if human {
            t["agent_resolution_time"] = json!((closed_at - entry) / 1000);
            t["actual_processing_time"] =
                json!((closed_at - entry) / 1000 - rng.random_range(0..60));
        }
        if score == 1 {
            let (zh, en, ja) = REASONS[index % REASONS.len()];
            t["dissatisfaction_reason"] = json!({"zh_cn": zh, "en_us": en, "ja_jp": ja});
        }
    } else {
        t["closed_by"] = Value::Null;
    }
    match index % 4 {
        0 => t["comments"] = comment(helpdesk, index, 0, created_at, &mut rng),
        1 => {
            t["comments"] = json!([
                comment(helpdesk, index, 0, created_at, &mut rng),
                comment(helpdesk, index, 1, created_at, &mut rng)
            ])
        }
        2 => t["comments"] = Value::Null,
        _ => {}
    }
    if !index.is_multiple_of(3) {
        let n = rng.random_range(1..=2);
        let tags: Vec<Value> = (0..n)
            .map(|k| {
                let (tid, name) = TAGS[(index + k * 3) % TAGS.len()];
                json!({"id": tid, "name": name})
            })
            .collect();
        t["tags"] = json!(tags);
    }
    if !index.is_multiple_of(5) {
        t["customized_fields"] = json!([
            {"id": field_id(helpdesk, 1), "value": PLATFORMS[index % PLATFORMS.len()],
             "key_name": "platform", "display_name": "Platform", "position": 1,
             "required": true, "editable": true},
            {"id": field_id(helpdesk, 2), "value": format!("order-{}", 100000 + index),
             "key_name": "order_no", "display_name": "Order number", "position": 2,
             "required": false, "editable": true},
        ]);
        if index % 4 == 3 {
            // A nested dropdown's value is the label of the option chosen, at any level.
            let category = CATEGORIES[(index / 4) % CATEGORIES.len()];
            if let Some(fields) = t["customized_fields"].as_array_mut() {
                fields.push(json!(
                    {"id": field_id(helpdesk, 3), "value": category, "key_name": "category",
                     "display_name": "Category", "position": 3, "required": false,
                     "editable": true}));
            }
        }
    }
    if index.is_multiple_of(7) {
        t["field_added_after_this_client_was_written"] = json!({"anything": [1, 2, 3]});
    }
    t
}

/// The custom field catalog that goes with the generated tickets (`ticket_customized_fields`
/// items as the API documents them: position and times as text, options nested three deep).
pub fn catalog() -> Vec<Value> {
    helpdesk_catalog(0, HELPDESK_ID)
}

/// The custom field catalog of helpdesk number `helpdesk` (0 = the first: exactly
/// [`catalog`]'s), whose id is `helpdesk_id`: the same fields under that helpdesk's own ids.
pub fn helpdesk_catalog(helpdesk: usize, helpdesk_id: &str) -> Vec<Value> {
    let option = |tag: &str, name: &str, children: Vec<Value>| {
        let mut o = json!({"tag": tag, "display_name": name});
        if !children.is_empty() {
            o["children"] = json!(children);
        }
        o
    };
    let common = |id: &str, key: &str, name: &str, position: &str, kind: &str| {
        json!({"ticket_customized_field_id": id, "helpdesk_id": helpdesk_id, "key_name": key,
               "display_name": name, "position": position, "field_type": kind,
               "description": format!("{name} of the request"), "visible": true,
               "editable": true, "required": key == "platform",
               "created_at": "1616920429000", "updated_at": "1616920429000",
               "created_by": {"id": "ou_admin0000000000000000000000000", "name": "Admin"},
               "updated_by": {"id": "ou_admin0000000000000000000000000", "name": "Admin"}})
    };
    let mut platform = common(
        &field_id(helpdesk, 1),
        "platform",
        "Platform",
        "1",
        "dropdown",
    );
    platform["dropdown_options"] = json!({"children": PLATFORMS
        .iter()
        .map(|p| option(&p.to_lowercase(), p, vec![]))
        .collect::<Vec<_>>()});
    platform["dropdown_allow_multiple"] = json!(false);
    let order = common(
        &field_id(helpdesk, 2),
        "order_no",
        "Order number",
        "2",
        "string",
    );
    let mut category = common(
        &field_id(helpdesk, 3),
        "category",
        "Category",
        "3",
        "dropdown_nested",
    );
    category["dropdown_options"] = json!({"children": [
        option("hardware", "Hardware", vec![
            option("laptop", "Laptop", vec![
                option("battery", "Battery", vec![]),
                option("screen", "Screen", vec![]),
            ]),
        ]),
        option("software", "Software", vec![]),
    ]});
    category["dropdown_allow_multiple"] = json!(false);
    vec![platform, order, category]
}

/// First message id of ticket `index` (ids above 2^53, sent as JSON numbers).
const FIRST_MESSAGE_ID: u64 = 7_300_000_000_000_000_000;
/// A ticket whose index is this modulo has a conversation longer than one page.
const LONG_CONVERSATION_EVERY: usize = 50;

/// The conversation of ticket `index` (as [`generate_ticket`] made it): a guest message, often
/// a bot greeting, then agent replies and guest follow-ups, in time order within the ticket's
/// life. Types text, post, image and interactive; contents as the API sends them (JSON text);
/// `created_at` in milliseconds, in seconds for some tickets (a quirk to survive). Every 50th
/// ticket (from the 7th) has 230 messages: more than one page.
pub fn generate_messages(index: usize, ticket: &Value) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(0x3e55 ^ index as u64);
    let count = if index % LONG_CONVERSATION_EVERY == 7 {
        230
    } else {
        index % 9
    };
    let created = ticket["created_at"].as_i64().unwrap_or(0);
    let end = [
        ticket["closed_at"].as_i64(),
        ticket["agent_last_response_time"].as_i64(),
    ]
    .into_iter()
    .flatten()
    .filter(|t| *t > created)
    .max()
    .unwrap_or(created + 3_600_000);
    let guest = ticket["guest"]["id"]
        .as_str()
        .unwrap_or("ou_guest")
        .to_owned();
    let agents: Vec<String> = ticket["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["id"].as_str().map(str::to_owned))
        .collect();
    let in_seconds = index.is_multiple_of(13);
    let step = ((end - created) / (count as i64 + 1)).max(1);
    (0..count)
        .map(|k| {
            let at = created + step * (k as i64 + 1);
            let (sender, name) = match k {
                0 => (guest.clone(), "guest"),
                1 if index.is_multiple_of(3) => (String::new(), "Helpdesk bot"),
                _ if k % 2 == 1 && !agents.is_empty() => {
                    (agents[rng.random_range(0..agents.len())].clone(), "agent")
                }
                _ => (guest.clone(), "guest"),
            };
            message(index, k, at, in_seconds, &sender, name)
        })
        .collect()
}

/// One message: id, chat message id, type and content by position, sender as given.
pub fn message(
    index: usize,
    k: usize,
    at_ms: i64,
    in_seconds: bool,
    sender: &str,
    name: &str,
) -> Value {
    let (kind, content) = match k % 4 {
        0 | 1 => (
            "text",
            json!({"text": format!("message {k} on ticket {index}")}).to_string(),
        ),
        2 => (
            "post",
            json!({"title": "", "content": [[{"tag": "text", "text": format!("post {k}")},
                                               {"tag": "a", "text": " details", "href": "https://x"}]]})
            .to_string(),
        ),
        _ => (
            "image",
            json!({"image_key": format!("img_v2_{index}_{k}")}).to_string(),
        ),
    };
    let mut m = json!({
        "id": FIRST_MESSAGE_ID + index as u64 * 1000 + k as u64,
        "message_id": format!("om_{index:08x}{k:06x}"),
        "message_type": kind,
        "created_at": if in_seconds { at_ms / 1000 } else { at_ms },
        "content": content,
        "user_name": name,
        "avatar_url": format!("https://sim.invalid/avatar/{name}.png"),
        "user_id": sender,
    });
    if sender.is_empty() {
        m["user_id"] = Value::Null;
    }
    m
}

fn comment(helpdesk: usize, index: usize, k: u64, created_at: i64, rng: &mut StdRng) -> Value {
    json!({
        "content": format!("Internal note {k} on ticket {index}"),
        "created_at": created_at + rng.random_range(60_000..3_600_000),
        "id": 1000 + index as u64 * 2 + k,
        "user_avatar_url": "https://sim.invalid/avatar/note.png",
        "user_name": "Agent Note",
        // Above 2^53 and sent as a JSON integer, like the seed's example.
        "user_id": note_author(helpdesk) + k,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TicketId;
    use crate::normalize::normalize_ticket;

    #[test]
    fn generated_tickets_normalize_without_warnings() {
        let now = 1_790_000_000_000;
        for i in 0..200 {
            let t = generate_ticket(i, now);
            let id = TicketId::parse(&ticket_id(i)).unwrap();
            let n = normalize_ticket(&id, &t.to_string(), chrono::Utc::now()).unwrap();
            assert!(n.warnings.is_empty(), "ticket {i}: {:?}", n.warnings);
        }
    }

    #[test]
    fn another_helpdesks_tickets_are_its_own() {
        let now = 1_790_000_000_000;
        let ids: Vec<String> = catalog()
            .iter()
            .map(|f| f["ticket_customized_field_id"].as_str().unwrap().to_owned())
            .collect();
        let theirs = helpdesk_catalog(1, "7000000000000000001");
        assert!(
            theirs
                .iter()
                .all(|f| f["helpdesk_id"] == json!("7000000000000000001"))
        );
        for i in 0..100 {
            let t = generate_helpdesk_ticket(1, "7000000000000000001", i, now);
            let id = helpdesk_ticket_id(1, i);
            assert_eq!(t["ticket_id"].to_string().trim_matches('"'), id);
            assert_ne!(id, ticket_id(i));
            assert_eq!(t["helpdesk_id"], json!("7000000000000000001"));
            for field in t["customized_fields"].as_array().into_iter().flatten() {
                assert!(!ids.contains(&field["id"].as_str().unwrap().to_owned()));
                assert!(
                    theirs
                        .iter()
                        .any(|f| f["ticket_customized_field_id"] == field["id"])
                );
            }
            let parsed = TicketId::parse(&id).unwrap();
            let n = normalize_ticket(&parsed, &t.to_string(), chrono::Utc::now()).unwrap();
            assert!(n.warnings.is_empty(), "ticket {i}: {:?}", n.warnings);
        }
        assert_eq!(
            generate_helpdesk_ticket(0, HELPDESK_ID, 7, now),
            generate_ticket(7, now)
        );
    }

    #[test]
    fn quirks_are_present() {
        let now = 1_790_000_000_000;
        let all: Vec<Value> = (0..40).map(|i| generate_ticket(i, now)).collect();
        assert!(all.iter().any(|t| t["comments"].is_object()));
        assert!(all.iter().any(|t| t["comments"].is_array()));
        assert!(all.iter().any(|t| t.get("comments") == Some(&Value::Null)));
        assert!(all.iter().any(|t| t.get("comments").is_none()));
        assert!(all.iter().any(|t| t["updated_at"] == json!(-1)));
        assert!(all.iter().any(|t| t.get("tags").is_none()));
        assert!(all.iter().any(|t| t["ticket_id"].is_u64()));
        assert_eq!(generate_ticket(3, now), generate_ticket(3, now));
    }
}
