//! The Feishu Helpdesk simulator: token, ticket detail and ticket list endpoints served the way
//! the real API behaves (auth headers checked, documented error codes, the 10 req/s detail limit
//! answered with 429 + 99991400 + `x-ogw-ratelimit-*` headers, latency), the event
//! subscription endpoint, the custom field catalog, ticket conversations ([`messages`]), signed
//! and encrypted webhook events sent to a URL ([`events`]), plus fault injection. Used by `simulate`, `demo` and the integration tests.
//!
//! One simulator is one app serving several helpdesks, as Feishu does: the first is
//! [`SimConfig::helpdesk_id`], the others [`SimConfig::extra_helpdesks`]. Each has its own
//! token, tickets, conversations and custom field catalog; the `X-Lark-Helpdesk-Authorization`
//! header chooses which one a request reads. Rate limits are the app's: every helpdesk's
//! requests count against one window per endpoint. Every request is logged
//! ([`SimState::requests`]) with its arrival, endpoint, helpdesk and answer.

pub mod data;
pub mod events;
pub mod messages;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use rand::Rng;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use data::{HELPDESK_ID, generate_ticket, helpdesk_ticket_id, ticket_id};

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of generated tickets of the first helpdesk.
    pub tickets: usize,
    /// The app's id: the token endpoint checks it.
    pub app_id: String,
    /// The app's secret: the token endpoint checks it.
    pub app_secret: String,
    /// The first helpdesk's id (what its tickets carry in `helpdesk_id`).
    pub helpdesk_id: String,
    /// The first helpdesk's token (its `X-Lark-Helpdesk-Authorization` is
    /// base64 `helpdesk_id:helpdesk_token`).
    pub helpdesk_token: String,
    /// The first helpdesk's display name (for what `simulate` and `demo` print; the API never
    /// sends it).
    pub helpdesk_name: String,
    /// The app's other helpdesks, each with its own token, tickets, conversations and custom
    /// field catalog (empty: one helpdesk, as before). Their requests count against the same
    /// per-app limits as the first helpdesk's.
    pub extra_helpdesks: Vec<SimHelpdesk>,
    /// Added before every ticket response.
    pub latency: Duration,
    /// Uniform ± jitter around `latency`.
    pub jitter: Duration,
    /// Detail endpoint limit per sliding second (documented: 10), for the app: the sum over
    /// every helpdesk.
    pub detail_limit_per_second: usize,
    /// List endpoint limit per sliding second (documented: 50), for the app (all helpdesks).
    pub list_limit_per_second: usize,
    /// List endpoint limit per sliding minute (documented: 1000), enforced as well, for the app
    /// (all helpdesks).
    pub list_limit_per_minute: usize,
    /// Lifetime of issued tenant tokens.
    pub token_ttl: Duration,
    /// Added before every token response.
    pub token_latency: Duration,
    /// List pages repeat their first ticket at the end, and from page 2 on also the previous
    /// page's last ticket (paging quirks to survive: duplicates within and across pages).
    pub list_repeats_rows: bool,
    /// Fields the list rows leave out (besides `tags`, which they never carry).
    pub list_rows_drop: Vec<String>,
    /// Fields whose value in list rows differs from the detail's (a list that lies).
    pub list_rows_alter: Vec<String>,
    /// What list answers say in `total` (the real count, or a lie).
    pub list_total: ListTotal,
    /// List rows show `updated_at` this many milliseconds after the detail's (negative:
    /// before): the list's clock differs from the detail's. `-1` (never updated) stays `-1`.
    pub list_updated_at_ahead_ms: i64,
    /// Text replacements made in every list answer's body as sent (e.g. a marker into a lone
    /// `\ud83d` surrogate escape, which no JSON value can hold).
    pub list_body_replace: Vec<(String, String)>,
    /// The app's event Verification Token (sent in every event's header).
    pub verification_token: String,
    /// The app's event Encrypt Key (events are encrypted and signed with it).
    pub encrypt_key: String,
    /// Messages endpoint limit per sliding second (the real one's is "special", unpublished),
    /// for the app (all helpdesks).
    pub message_limit_per_second: usize,
    /// Custom field catalog limit per sliding second (the real one's is not stated), answered
    /// like the others when exceeded (429 + 99991400 + `x-ogw-ratelimit-*`), for the app (all
    /// helpdesks).
    pub catalog_limit_per_second: usize,
    /// How `time_start` / `time_end` of the messages endpoint are read.
    pub message_time_unit: messages::TimeBoundUnit,
    /// Every error answer (JSON with a non-zero `code`, on any endpoint) echoes what it was
    /// sent in its `msg`: the `Authorization` and `X-Lark-Helpdesk-Authorization` headers and
    /// the request body (the token request's app secret), as a careless gateway does.
    pub echo_auth_in_errors: bool,
    /// The catalog's last page says `has_more` with a token back to the first page's offset
    /// (`pt-0`): its page tokens loop forever.
    pub catalog_loops: bool,
    /// What messages answers say in `total` (the real count, the page length, or 0).
    pub message_total: ListTotal,
    /// The messages endpoint ignores `page`: every page is the first one, full forever (a
    /// conversation that pages forever).
    pub message_pages_repeat: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tickets: 500,
            app_id: "cli_simulated".into(),
            app_secret: "simulated-app-secret".into(),
            helpdesk_id: HELPDESK_ID.into(),
            helpdesk_token: "simulated-helpdesk-token".into(),
            helpdesk_name: "Helpdesk".into(),
            extra_helpdesks: Vec::new(),
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            detail_limit_per_second: 10,
            list_limit_per_second: 50,
            list_limit_per_minute: 1000,
            token_ttl: Duration::from_secs(7200),
            token_latency: Duration::ZERO,
            list_repeats_rows: false,
            list_rows_drop: Vec::new(),
            list_rows_alter: Vec::new(),
            list_total: ListTotal::Actual,
            list_updated_at_ahead_ms: 0,
            list_body_replace: Vec::new(),
            verification_token: "simulated-verification-token".into(),
            encrypt_key: "simulated-encrypt-key".into(),
            message_limit_per_second: 50,
            catalog_limit_per_second: 50,
            message_time_unit: messages::TimeBoundUnit::Seconds,
            echo_auth_in_errors: false,
            catalog_loops: false,
            message_total: ListTotal::Actual,
            message_pages_repeat: false,
        }
    }
}

/// One more helpdesk of the simulated app (see [`SimConfig::extra_helpdesks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimHelpdesk {
    /// Display name (for what `simulate` and `demo` print and write into configs).
    pub name: String,
    /// Its id: what its tickets and catalog carry in `helpdesk_id`, and the first half of its
    /// `X-Lark-Helpdesk-Authorization` header.
    pub helpdesk_id: String,
    /// Its token: the second half of that header.
    pub helpdesk_token: String,
    /// Number of generated tickets (ids unique across helpdesks, see
    /// [`data::helpdesk_ticket_id`]).
    pub tickets: usize,
}

impl SimHelpdesk {
    /// Extra helpdesk number `n` (1, 2, …: the first helpdesk is number 0) with `tickets`
    /// tickets: name "Helpdesk n+1", id `70000000000000000nn`, token
    /// `simulated-helpdesk-token-n`.
    pub fn numbered(n: usize, tickets: usize) -> Self {
        Self {
            name: format!("Helpdesk {}", n + 1),
            helpdesk_id: (7_000_000_000_000_000_000u64 + n as u64).to_string(),
            helpdesk_token: format!("simulated-helpdesk-token-{n}"),
            tickets,
        }
    }
}

impl SimConfig {
    /// The same simulator serving `count` helpdesks (at least one): the first keeps its id
    /// and token and is named "Helpdesk 1"; the others are [`SimHelpdesk::numbered`], each with
    /// [`Self::tickets`] tickets. One helpdesk leaves the config as it is.
    pub fn with_helpdesks(self, count: usize) -> Self {
        if count <= 1 {
            return self;
        }
        let tickets = self.tickets;
        Self {
            helpdesk_name: "Helpdesk 1".into(),
            extra_helpdesks: (1..count)
                .map(|n| SimHelpdesk::numbered(n, tickets))
                .collect(),
            ..self
        }
    }

    /// What `simulate` prints for a simulator listening on `addr`: how to point a config at
    /// it (the single-helpdesk keys for one helpdesk, else one `[[helpdesks]]` table each) and
    /// the ticket ids of each helpdesk.
    pub fn describe(&self, addr: SocketAddr) -> String {
        let base_url = format!("http://{addr}");
        if self.extra_helpdesks.is_empty() {
            return format!(
                "Simulated Feishu Helpdesk with {} tickets on {addr} (Ctrl-C to stop)\n\n\
                 Point a config at it:\n\n\
                 [feishu]\nbase_url = \"{base_url}\"\napp_id = \"{}\"\napp_secret = \"{}\"\n\
                 helpdesk_id = \"{}\"\nhelpdesk_token = \"{}\"\n\n\
                 Ticket ids: {} .. {}",
                self.tickets,
                self.app_id,
                self.app_secret,
                self.helpdesk_id,
                self.helpdesk_token,
                ticket_id(0),
                ticket_id(self.tickets.saturating_sub(1)),
            );
        }
        let helpdesks = self.helpdesks();
        let mut text = format!(
            "Simulated Feishu app with {} helpdesks on {addr} (Ctrl-C to stop; the rate limits \
             are the app's, shared by every helpdesk)\n\n\
             Point a config at it:\n\n\
             [feishu]\nbase_url = \"{base_url}\"\napp_id = \"{}\"\napp_secret = \"{}\"\n",
            helpdesks.len(),
            self.app_id,
            self.app_secret,
        );
        for helpdesk in &helpdesks {
            text.push_str(&format!(
                "\n[[helpdesks]]\nname = {:?}\nhelpdesk_id = \"{}\"\nhelpdesk_token = \"{}\"\n",
                helpdesk.name, helpdesk.helpdesk_id, helpdesk.helpdesk_token,
            ));
        }
        for (h, helpdesk) in helpdesks.iter().enumerate() {
            text.push_str(&format!(
                "\n{}: {} tickets, ids {} .. {}",
                helpdesk.name,
                helpdesk.tickets,
                helpdesk_ticket_id(h, 0),
                helpdesk_ticket_id(h, helpdesk.tickets.saturating_sub(1)),
            ));
        }
        text
    }

    /// Every helpdesk the simulator serves, the first ([`SimConfig::helpdesk_id`]) first.
    pub fn helpdesks(&self) -> Vec<SimHelpdesk> {
        let first = SimHelpdesk {
            name: self.helpdesk_name.clone(),
            helpdesk_id: self.helpdesk_id.clone(),
            helpdesk_token: self.helpdesk_token.clone(),
            tickets: self.tickets,
        };
        std::iter::once(first)
            .chain(self.extra_helpdesks.iter().cloned())
            .collect()
    }
}

/// The `X-Lark-Helpdesk-Authorization` value for a helpdesk: base64 of `id:token`.
pub fn helpdesk_auth(helpdesk_id: &str, helpdesk_token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{helpdesk_id}:{helpdesk_token}"))
}

/// The `total` a list answer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListTotal {
    /// The number of matching tickets.
    #[default]
    Actual,
    /// The length of the page sent (as if one page were all).
    PageLength,
    /// Zero, whatever the page holds.
    Zero,
    /// At least 10,000 for every window (as if every window were over the cap).
    OverCap,
}

/// A fault the next detail request for a ticket (or for any ticket) meets.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// HTTP 500 with code 155000.
    InternalError,
    /// HTTP 502 with an HTML body.
    BadGateway,
    /// HTTP 200 with a body that is not JSON.
    NotJson,
    /// HTTP 200 with a JSON body cut in the middle.
    Truncated,
    /// Answer only after this long (to trigger client timeouts).
    Delay(Duration),
    /// HTTP 429 + 99991400 with `x-ogw-ratelimit-reset` seconds.
    RateLimited { reset_seconds: u64 },
    /// HTTP 400 + 99991400 (older APIs' form of rate limiting).
    RateLimited400 { reset_seconds: u64 },
    /// Headers and half a body, then the connection drops.
    ConnectionDrop,
    /// Token endpoint: a valid token, announced with this `expire` (seconds).
    TokenExpire(i64),
    /// Messages endpoint: this one answer ignores `time_start` / `time_end` (every message
    /// comes back), whatever unit the simulator otherwise reads them in.
    IgnoreTimeBounds,
    /// Exactly this answer: a hostile API (a platform code on one ticket, a BOM, a duplicate
    /// key, an unrequested gzip body, a huge body…).
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

impl Fault {
    /// A JSON error answer with Feishu code `code`.
    pub fn api_code(status: u16, code: i64, msg: &str) -> Self {
        Self::raw(status, json!({"code": code, "msg": msg}).to_string())
    }

    /// An answer with `body` as is (content type JSON).
    pub fn raw(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::Raw {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: body.into(),
        }
    }

    /// A success envelope around `ticket` (JSON text), for hostile ticket bodies.
    pub fn ticket_body(ticket: &str) -> Self {
        Self::raw(
            200,
            format!(r#"{{"code":0,"msg":"success","data":{{"ticket":{ticket}}}}}"#),
        )
    }
}

/// The response a [`Fault::Raw`] describes.
pub(crate) fn raw_response(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// One request the simulator answered.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// When it arrived, since the simulator started.
    pub arrived: Duration,
    /// Which endpoint it asked.
    pub endpoint: Endpoint,
    /// The ticket in its path (detail, messages), if any.
    pub ticket_id: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// The helpdesk its `X-Lark-Helpdesk-Authorization` header named (decoded, whether its
    /// token was right or not); None for the token endpoint and for a missing or unreadable
    /// header.
    pub helpdesk_id: Option<String>,
}

/// How a request was answered, roughly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// HTTP 2xx (an HTTP 200 carrying a non-zero code, as a wrong app secret's, counts here).
    Ok,
    /// HTTP 429: over a rate limit.
    RateLimited,
    /// Any other status.
    Error,
}

impl RequestRecord {
    /// How it was answered (from [`Self::status`]).
    pub fn answer(&self) -> Answer {
        match self.status {
            200..=299 => Answer::Ok,
            429 => Answer::RateLimited,
            _ => Answer::Error,
        }
    }
}

/// The simulator's endpoints, as its request log names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Token,
    Detail,
    List,
    Subscribe,
    Catalog,
    Messages,
}

/// Shared simulator state; tests reach it through [`SimServer::state`].
pub struct SimState {
    config: SimConfig,
    started: Instant,
    /// Every helpdesk served, the first first; a helpdesk's number is its place here.
    helpdesks: Vec<SimHelpdesk>,
    /// Each helpdesk's `X-Lark-Helpdesk-Authorization` value, by helpdesk number.
    helpdesk_headers: Vec<String>,
    /// Helpdesks whose token is revoked (by id): their requests answer 401/154001.
    revoked: Mutex<HashSet<String>>,
    /// Each helpdesk's tickets by id, by helpdesk number (ids unique across helpdesks).
    tickets: Mutex<Vec<BTreeMap<String, Value>>>,
    /// Each helpdesk's tickets in list order, built when a list call needs it and dropped when
    /// a ticket changes (lock order: `tickets`, then this), so a page costs a scan of small
    /// entries, not of every ticket's JSON.
    list_index: Mutex<Vec<Option<Arc<Vec<ListEntry>>>>>,
    tokens: Mutex<HashMap<String, Instant>>,
    issued: Mutex<Vec<String>>,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    /// Tickets whose detail answers 404/154004 while the list still shows them.
    detail_gone: Mutex<HashSet<String>>,
    any_faults: Mutex<VecDeque<Fault>>,
    list_faults: Mutex<VecDeque<Fault>>,
    /// Tickets to change when a list request for a given page of a window holding them
    /// arrives (one each, in order): a ticket changing while its window is being paged.
    list_changes: Mutex<VecDeque<ListChange>>,
    token_faults: Mutex<VecDeque<Fault>>,
    /// Each helpdesk's custom field catalog, by helpdesk number.
    catalog: Mutex<Vec<Vec<Value>>>,
    catalog_faults: Mutex<VecDeque<Fault>>,
    messages: Mutex<HashMap<String, Vec<Value>>>,
    message_faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    log: Mutex<Vec<RequestRecord>>,
    windows: Mutex<HashMap<Endpoint, VecDeque<Instant>>>,
    /// Per-minute sliding windows (the list endpoint's second limit).
    minute_windows: Mutex<HashMap<Endpoint, VecDeque<Instant>>>,
    /// Event subscriptions as (helpdesk id, type, subtype).
    subscriptions: Mutex<std::collections::BTreeSet<(String, String, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimState {
    pub fn new(config: SimConfig) -> Self {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let helpdesks = config.helpdesks();
        let mut tickets = Vec::with_capacity(helpdesks.len());
        let mut messages = HashMap::new();
        let mut catalogs = Vec::with_capacity(helpdesks.len());
        for (h, helpdesk) in helpdesks.iter().enumerate() {
            let mut own = BTreeMap::new();
            for i in 0..helpdesk.tickets {
                let ticket = data::generate_helpdesk_ticket(h, &helpdesk.helpdesk_id, i, now_ms);
                let global = h * data::HELPDESK_TICKET_STRIDE + i;
                messages.insert(ticket_id(global), data::generate_messages(global, &ticket));
                own.insert(ticket_id(global), ticket);
            }
            tickets.push(own);
            catalogs.push(data::helpdesk_catalog(h, &helpdesk.helpdesk_id));
        }
        let helpdesk_headers = helpdesks
            .iter()
            .map(|h| helpdesk_auth(&h.helpdesk_id, &h.helpdesk_token))
            .collect();
        Self {
            config,
            started: Instant::now(),
            helpdesks,
            helpdesk_headers,
            revoked: Mutex::new(HashSet::new()),
            list_index: Mutex::new(vec![None; tickets.len()]),
            tickets: Mutex::new(tickets),
            tokens: Mutex::new(HashMap::new()),
            issued: Mutex::new(Vec::new()),
            faults: Mutex::new(HashMap::new()),
            detail_gone: Mutex::new(HashSet::new()),
            any_faults: Mutex::new(VecDeque::new()),
            list_faults: Mutex::new(VecDeque::new()),
            list_changes: Mutex::new(VecDeque::new()),
            token_faults: Mutex::new(VecDeque::new()),
            catalog: Mutex::new(catalogs),
            catalog_faults: Mutex::new(VecDeque::new()),
            messages: Mutex::new(messages),
            message_faults: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            windows: Mutex::new(HashMap::new()),
            minute_windows: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(Default::default()),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// When the simulator started: [`RequestRecord::arrived`] counts from here (tests compare
    /// two simulators' logs on one clock).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Every helpdesk served, the first first (name, id, token, generated ticket count).
    pub fn helpdesks(&self) -> &[SimHelpdesk] {
        &self.helpdesks
    }

    /// The number of the helpdesk whose id is `helpdesk_id` (0 = the first).
    fn helpdesk_number(&self, helpdesk_id: &str) -> Option<usize> {
        self.helpdesks
            .iter()
            .position(|h| h.helpdesk_id == helpdesk_id)
    }

    /// All ticket ids of every helpdesk, the first helpdesk's first, each helpdesk's in order.
    pub fn ticket_ids(&self) -> Vec<String> {
        lock(&self.tickets)
            .iter()
            .flat_map(|own| own.keys().cloned())
            .collect()
    }

    /// The ticket ids of the helpdesk whose id is `helpdesk_id`, in order (none for an
    /// unknown id).
    pub fn helpdesk_ticket_ids(&self, helpdesk_id: &str) -> Vec<String> {
        let Some(h) = self.helpdesk_number(helpdesk_id) else {
            return Vec::new();
        };
        lock(&self.tickets)
            .get(h)
            .map(|own| own.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The id of the helpdesk ticket `id` belongs to.
    pub fn ticket_helpdesk(&self, id: &str) -> Option<String> {
        let h = lock(&self.tickets)
            .iter()
            .position(|own| own.contains_key(id))?;
        Some(self.helpdesks[h].helpdesk_id.clone())
    }

    /// Ticket `id`, whichever helpdesk it belongs to.
    pub fn ticket(&self, id: &str) -> Option<Value> {
        lock(&self.tickets)
            .iter()
            .find_map(|own| own.get(id).cloned())
    }

    /// Ticket `id` if it belongs to helpdesk number `h`.
    fn ticket_in(&self, h: usize, id: &str) -> Option<Value> {
        lock(&self.tickets)
            .get(h)
            .and_then(|own| own.get(id).cloned())
    }

    /// Changes a ticket (of any helpdesk) and bumps its `updated_at` to now.
    pub fn update_ticket(&self, id: &str, change: impl FnOnce(&mut Value)) {
        let mut tickets = lock(&self.tickets);
        if let Some(t) = tickets.iter_mut().find_map(|own| own.get_mut(id)) {
            change(t);
            t["updated_at"] = json!(chrono::Utc::now().timestamp_millis());
        }
        self.list_index_stale();
    }

    /// Drops the list index (call with `tickets` locked, after changing them).
    fn list_index_stale(&self) {
        lock(&self.list_index).iter_mut().for_each(|i| *i = None);
    }

    /// Adds or replaces a ticket as given: a ticket already there stays in its helpdesk; a new
    /// one goes to the helpdesk its `helpdesk_id` names, else to the first.
    pub fn put_ticket(&self, id: &str, ticket: Value) {
        let mut tickets = lock(&self.tickets);
        let h = tickets
            .iter()
            .position(|own| own.contains_key(id))
            .or_else(|| {
                ticket["helpdesk_id"]
                    .as_str()
                    .and_then(|hd| self.helpdesk_number(hd))
            })
            .unwrap_or(0);
        tickets[h].insert(id.to_owned(), ticket);
        self.list_index_stale();
    }

    /// Deletes a ticket (of any helpdesk): its detail answers 404/154004 from now on.
    pub fn delete_ticket(&self, id: &str) {
        let mut tickets = lock(&self.tickets);
        for own in tickets.iter_mut() {
            own.remove(id);
        }
        self.list_index_stale();
    }

    /// Revokes the token of helpdesk `helpdesk_id`: its requests answer 401/154001 (as a
    /// wrong helpdesk token does) until [`Self::restore_helpdesk_token`]; the other helpdesks
    /// go on.
    pub fn revoke_helpdesk_token(&self, helpdesk_id: &str) {
        lock(&self.revoked).insert(helpdesk_id.to_owned());
    }

    /// Accepts helpdesk `helpdesk_id`'s token again (after [`Self::revoke_helpdesk_token`]).
    pub fn restore_helpdesk_token(&self, helpdesk_id: &str) {
        lock(&self.revoked).remove(helpdesk_id);
    }

    /// Deletes a ticket from the detail endpoint only: its detail answers 404/154004 from now
    /// on while the list still shows it (a list index that lags deletions).
    pub fn delete_detail_only(&self, id: &str) {
        lock(&self.detail_gone).insert(id.to_owned());
    }

    /// The detail endpoint answers `id` again (after [`Self::delete_detail_only`]).
    pub fn restore_detail(&self, id: &str) {
        lock(&self.detail_gone).remove(id);
    }

    /// Queues faults for the next detail requests of `id`.
    pub fn inject(&self, id: &str, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.faults)
            .entry(id.to_owned())
            .or_default()
            .extend(faults);
    }

    /// Queues faults for the next detail requests of any ticket.
    pub fn inject_any(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.any_faults).extend(faults);
    }

    /// Every tenant token issued so far, invalidated ones included.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.issued).clone()
    }

    /// Queues faults for the next list requests (InternalError, BadGateway, NotJson, RateLimited).
    pub fn inject_list(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.list_faults).extend(faults);
    }

    /// Updates ticket `id` (as [`Self::update_ticket`] does, nothing but `updated_at` changed)
    /// when the next list request for page `page` of a window holding the ticket arrives,
    /// before it is answered: the ticket leaves an update-time window while that window is
    /// paged, and the rows behind it move up a place. Several calls queue several changes, one
    /// per such request.
    pub fn update_on_list_page(&self, page: usize, id: &str) {
        lock(&self.list_changes).push_back(ListChange {
            page,
            id: id.to_owned(),
            delete: false,
        });
    }

    /// Deletes ticket `id` (as [`Self::delete_ticket`] does) when the next list request for
    /// page `page` of a window holding it arrives: it leaves a create-time window too.
    pub fn delete_on_list_page(&self, page: usize, id: &str) {
        lock(&self.list_changes).push_back(ListChange {
            page,
            id: id.to_owned(),
            delete: true,
        });
    }

    /// The change queued for a list request for `page` of the window `updated` × `created`
    /// (bounds in ms, inclusive), taken off the queue.
    fn list_change(
        &self,
        page: usize,
        updated: Option<(i64, i64)>,
        created: Option<(i64, i64)>,
    ) -> Option<ListChange> {
        let mut changes = lock(&self.list_changes);
        let holds = |id: &str| {
            self.ticket(id).is_some_and(|t| {
                let within = |v: Option<i64>, r: Option<(i64, i64)>| {
                    r.is_none_or(|(s, e)| v.is_some_and(|v| v >= s && v <= e))
                };
                within(t["updated_at"].as_i64(), updated)
                    && within(t["created_at"].as_i64(), created)
            })
        };
        let due = changes.iter().position(|c| c.page == page && holds(&c.id));
        due.and_then(|i| changes.remove(i))
    }

    /// Replaces the first helpdesk's custom field catalog (`ticket_customized_fields` items).
    pub fn set_catalog(&self, items: Vec<Value>) {
        lock(&self.catalog)[0] = items;
    }

    /// Replaces helpdesk `helpdesk_id`'s custom field catalog; false for an unknown helpdesk.
    pub fn set_helpdesk_catalog(&self, helpdesk_id: &str, items: Vec<Value>) -> bool {
        let Some(h) = self.helpdesk_number(helpdesk_id) else {
            return false;
        };
        lock(&self.catalog)[h] = items;
        true
    }

    /// Queues faults for the next catalog requests (InternalError, NotJson, RateLimited).
    pub fn inject_catalog(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.catalog_faults).extend(faults);
    }

    /// Invalidates every issued tenant token (as an app secret reset would).
    pub fn invalidate_tokens(&self) {
        lock(&self.tokens).clear();
    }

    /// Every request answered so far, in arrival order (all helpdesks, all answers).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).clone()
    }

    /// The most requests to `endpoint` (every helpdesk's, whatever the answer) that arrived
    /// within any sliding window of `width`: what the app sent against a per-app limit.
    pub fn max_requests_in_window(&self, endpoint: Endpoint, width: Duration) -> usize {
        self.max_requests_in_window_where(width, |r| r.endpoint == endpoint)
    }

    /// The most requests `keep` selects that arrived within any sliding window of `width`
    /// (e.g. one helpdesk's, or only those answered 200).
    pub fn max_requests_in_window_where(
        &self,
        width: Duration,
        keep: impl Fn(&RequestRecord) -> bool,
    ) -> usize {
        let times: Vec<Duration> = lock(&self.log)
            .iter()
            .filter(|r| keep(r))
            .map(|r| r.arrived)
            .collect();
        max_in_window(&times, width)
    }

    /// Detail requests answered, in total and for one ticket.
    pub fn detail_requests(&self, ticket: Option<&str>) -> usize {
        lock(&self.log)
            .iter()
            .filter(|r| r.endpoint == Endpoint::Detail)
            .filter(|r| ticket.is_none() || r.ticket_id.as_deref() == ticket)
            .count()
    }

    /// Requests to `endpoint` answered with `status`.
    pub fn count_status(&self, endpoint: Endpoint, status: u16) -> usize {
        lock(&self.log)
            .iter()
            .filter(|r| r.endpoint == endpoint && r.status == status)
            .count()
    }

    /// Event subscriptions made through `POST /events/subscribe` by any helpdesk, as (type,
    /// subtype), each once.
    pub fn subscriptions(&self) -> Vec<(String, String)> {
        let all: std::collections::BTreeSet<(String, String)> = lock(&self.subscriptions)
            .iter()
            .map(|(_, kind, sub)| (kind.clone(), sub.clone()))
            .collect();
        all.into_iter().collect()
    }

    /// Event subscriptions helpdesk `helpdesk_id` made, as (type, subtype).
    pub fn helpdesk_subscriptions(&self, helpdesk_id: &str) -> Vec<(String, String)> {
        lock(&self.subscriptions)
            .iter()
            .filter(|(h, _, _)| h == helpdesk_id)
            .map(|(_, kind, sub)| (kind.clone(), sub.clone()))
            .collect()
    }

    /// The most requests to `endpoint` that arrived within any sliding one-second window.
    pub fn max_per_second(&self, endpoint: Endpoint) -> usize {
        let times: Vec<Duration> = lock(&self.log)
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .map(|r| r.arrived)
            .collect();
        max_in_window(&times, Duration::from_secs(1))
    }

    /// Logs a request; `headers` give its helpdesk (None: the token endpoint).
    pub(crate) fn record(
        &self,
        arrived: Instant,
        endpoint: Endpoint,
        ticket_id: Option<String>,
        status: u16,
        headers: Option<&HeaderMap>,
    ) {
        let helpdesk_id = headers.and_then(claimed_helpdesk);
        lock(&self.log).push(RequestRecord {
            arrived: arrived - self.started,
            endpoint,
            ticket_id,
            status,
            helpdesk_id,
        });
    }

    /// Sliding one-second limit; returns the seconds until a slot frees when over it.
    fn over_limit(&self, endpoint: Endpoint, limit: usize, now: Instant) -> Option<u64> {
        over_window(&self.windows, endpoint, limit, Duration::from_secs(1), now)
    }

    /// Sliding one-minute limit, the same way.
    fn over_minute_limit(&self, endpoint: Endpoint, limit: usize, now: Instant) -> Option<u64> {
        over_window(
            &self.minute_windows,
            endpoint,
            limit,
            Duration::from_secs(60),
            now,
        )
    }

    fn next_fault(&self, id: &str) -> Option<Fault> {
        if let Some(f) = lock(&self.faults).get_mut(id).and_then(VecDeque::pop_front) {
            return Some(f);
        }
        lock(&self.any_faults).pop_front()
    }

    /// Checks both auth headers; the number of the helpdesk they select, or the error response
    /// when they fail (a wrong or revoked helpdesk token: 401/154001).
    pub(crate) fn check_auth(&self, headers: &HeaderMap) -> Result<usize, Box<Response>> {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = bearer else {
            return Err(Box::new(api_error(
                StatusCode::BAD_REQUEST,
                99991661,
                "Missing access token for authorization",
            )));
        };
        let valid = lock(&self.tokens)
            .get(token)
            .is_some_and(|expires| *expires > Instant::now());
        if !valid {
            return Err(Box::new(api_error(
                StatusCode::BAD_REQUEST,
                99991663,
                "Invalid access token for authorization",
            )));
        }
        let helpdesk = headers
            .get("x-lark-helpdesk-authorization")
            .and_then(|v| v.to_str().ok());
        let selected = helpdesk
            .and_then(|sent| self.helpdesk_headers.iter().position(|h| h == sent))
            .filter(|h| !lock(&self.revoked).contains(&self.helpdesks[*h].helpdesk_id));
        selected.ok_or_else(|| {
            Box::new(api_error(
                StatusCode::UNAUTHORIZED,
                154001,
                "Unauthorized, please check you have the correct access",
            ))
        })
    }

    async fn latency(&self) {
        let base = self.config.latency;
        let jitter = self.config.jitter;
        if base.is_zero() && jitter.is_zero() {
            return;
        }
        let j = jitter.as_secs_f64();
        let offset = if j > 0.0 {
            rand::rng().random_range(-j..=j)
        } else {
            0.0
        };
        tokio::time::sleep(Duration::from_secs_f64(
            (base.as_secs_f64() + offset).max(0.0),
        ))
        .await;
    }
}

/// A sliding-window limit of `limit` requests per `width`: None (and the request counted) when
/// it fits, else the whole seconds until a slot frees.
fn over_window(
    windows: &Mutex<HashMap<Endpoint, VecDeque<Instant>>>,
    endpoint: Endpoint,
    limit: usize,
    width: Duration,
    now: Instant,
) -> Option<u64> {
    let mut windows = lock(windows);
    let window = windows.entry(endpoint).or_default();
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= width)
    {
        window.pop_front();
    }
    if window.len() >= limit {
        let oldest = window.front().copied().unwrap_or(now);
        let wait = width.saturating_sub(now.duration_since(oldest));
        return Some(wait.as_secs_f64().ceil().max(1.0) as u64);
    }
    window.push_back(now);
    None
}

/// The helpdesk id an `X-Lark-Helpdesk-Authorization` header names (base64 `id:token`), if
/// it can be read.
fn claimed_helpdesk(headers: &HeaderMap) -> Option<String> {
    let sent = headers
        .get("x-lark-helpdesk-authorization")?
        .to_str()
        .ok()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(sent)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, _) = text.split_once(':')?;
    Some(id.to_owned())
}

/// The largest number of timestamps inside any half-open window `[t, t + width)`.
pub fn max_in_window(times: &[Duration], width: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

pub(crate) fn api_error(status: StatusCode, code: i64, msg: &str) -> Response {
    (status, axum::Json(json!({"code": code, "msg": msg}))).into_response()
}

pub(crate) fn rate_limited(status: StatusCode, limit: usize, reset_seconds: u64) -> Response {
    let mut response = api_error(status, 99991400, "request trigger frequency limit");
    let headers = response.headers_mut();
    headers.insert("x-ogw-ratelimit-limit", HeaderValue::from(limit as u64));
    headers.insert("x-ogw-ratelimit-reset", HeaderValue::from(reset_seconds));
    response
}

#[derive(serde::Deserialize)]
struct TokenRequest {
    app_id: Option<String>,
    app_secret: Option<String>,
}

impl SimState {
    /// Faults the next token requests meet, in order.
    pub fn inject_token(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.token_faults).extend(faults);
    }

    /// A token fault's answer, when one is queued.
    fn token_fault(&self) -> Option<Response> {
        match lock(&self.token_faults).pop_front()? {
            Fault::Raw {
                status,
                headers,
                body,
            } => Some(raw_response(status, headers, body)),
            Fault::TokenExpire(expire) => {
                let token = self.issue_token();
                Some(
                    axum::Json(json!({"code": 0, "msg": "ok", "tenant_access_token": token,
                                      "expire": expire}))
                    .into_response(),
                )
            }
            other => fault_response(Some(other), 0),
        }
    }

    /// A new valid token.
    fn issue_token(&self) -> String {
        let token = format!("t-sim{:032x}", rand::random::<u128>());
        lock(&self.tokens).insert(token.clone(), Instant::now() + self.config.token_ttl);
        lock(&self.issued).push(token.clone());
        token
    }
}

async fn token(State(state): State<Arc<SimState>>, body: axum::body::Bytes) -> Response {
    let arrived = Instant::now();
    tokio::time::sleep(state.config.token_latency).await;
    if let Some(response) = state.token_fault() {
        state.record(
            arrived,
            Endpoint::Token,
            None,
            response.status().as_u16(),
            None,
        );
        return response;
    }
    let request: Option<TokenRequest> = serde_json::from_slice(&body).ok();
    let response = match request {
        None => api_error(StatusCode::BAD_REQUEST, 9499, "Bad Request"),
        Some(r) if r.app_id.as_deref() != Some(state.config.app_id.as_str()) => {
            api_error(StatusCode::BAD_REQUEST, 10003, "invalid param: app_id")
        }
        Some(r) if r.app_secret.as_deref() != Some(state.config.app_secret.as_str()) => {
            // Feishu answers a wrong secret with HTTP 200 and a non-zero code.
            api_error(StatusCode::OK, 10014, "app secret invalid")
        }
        Some(_) => {
            let token = format!("t-sim{:032x}", rand::random::<u128>());
            lock(&state.tokens).insert(token.clone(), Instant::now() + state.config.token_ttl);
            lock(&state.issued).push(token.clone());
            axum::Json(json!({
                "code": 0, "msg": "ok",
                "tenant_access_token": token,
                "expire": state.config.token_ttl.as_secs(),
            }))
            .into_response()
        }
    };
    state.record(
        arrived,
        Endpoint::Token,
        None,
        response.status().as_u16(),
        None,
    );
    response
}

async fn ticket_detail(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let arrived = Instant::now();
    let response = detail_response(&state, &id, &headers, arrived).await;
    state.record(
        arrived,
        Endpoint::Detail,
        Some(id),
        response.status().as_u16(),
        Some(&headers),
    );
    response
}

async fn detail_response(
    state: &SimState,
    id: &str,
    headers: &HeaderMap,
    arrived: Instant,
) -> Response {
    let limit = state.config.detail_limit_per_second;
    if let Some(reset) = state.over_limit(Endpoint::Detail, limit, arrived) {
        return rate_limited(StatusCode::TOO_MANY_REQUESTS, limit, reset);
    }
    let helpdesk = match state.check_auth(headers) {
        Ok(h) => h,
        Err(denied) => return *denied,
    };
    state.latency().await;
    match state.next_fault(id) {
        None => {}
        Some(Fault::InternalError) => {
            return api_error(StatusCode::INTERNAL_SERVER_ERROR, 155000, "Internal error");
        }
        Some(Fault::BadGateway) => {
            return (
                StatusCode::BAD_GATEWAY,
                "<html><body>502 Bad Gateway</body></html>",
            )
                .into_response();
        }
        Some(Fault::NotJson) => {
            return (StatusCode::OK, "<html>maintenance</html>").into_response();
        }
        Some(Fault::Truncated) => {
            return (
                StatusCode::OK,
                r#"{"code":0,"msg":"success","data":{"ticket":{"ticket_id":"#,
            )
                .into_response();
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::RateLimited { reset_seconds }) => {
            return rate_limited(StatusCode::TOO_MANY_REQUESTS, limit, reset_seconds);
        }
        Some(Fault::RateLimited400 { reset_seconds }) => {
            return rate_limited(StatusCode::BAD_REQUEST, limit, reset_seconds);
        }
        Some(Fault::ConnectionDrop) => {
            let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
                Ok(r#"{"code":0,"msg":"success","data":{"#),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "simulated drop",
                )),
            ];
            return Response::new(Body::from_stream(futures::stream::iter(chunks)));
        }
        Some(Fault::Raw {
            status,
            headers,
            body,
        }) => return raw_response(status, headers, body),
        // Token faults only.
        Some(Fault::TokenExpire(_) | Fault::IgnoreTimeBounds) => {}
    }
    // Real ticket ids are 19-digit numbers; anything else is a bad request.
    if id.len() != 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return api_error(
            StatusCode::BAD_REQUEST,
            154000,
            "Bad request, please check your request body",
        );
    }
    let gone = lock(&state.detail_gone).contains(id);
    // Another helpdesk's ticket is not found through this helpdesk's token.
    match state.ticket_in(helpdesk, id).filter(|_| !gone) {
        Some(ticket) => {
            axum::Json(json!({"code": 0, "msg": "success", "data": {"ticket": ticket}}))
                .into_response()
        }
        None => api_error(StatusCode::NOT_FOUND, 154004, "Resource not found"),
    }
}

async fn ticket_list(
    State(state): State<Arc<SimState>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let arrived = Instant::now();
    let response = list_response(&state, &query, &headers, arrived).await;
    state.record(
        arrived,
        Endpoint::List,
        None,
        response.status().as_u16(),
        Some(&headers),
    );
    response
}

/// Most rows one list query can reach by paging (the real API's cap).
pub const LIST_REACHABLE_ROWS: usize = 10_000;

async fn list_response(
    state: &SimState,
    query: &[(String, String)],
    headers: &HeaderMap,
    arrived: Instant,
) -> Response {
    let limit = state.config.list_limit_per_second;
    if let Some(reset) = state.over_limit(Endpoint::List, limit, arrived) {
        return rate_limited(StatusCode::TOO_MANY_REQUESTS, limit, reset);
    }
    let per_minute = state.config.list_limit_per_minute;
    if let Some(reset) = state.over_minute_limit(Endpoint::List, per_minute, arrived) {
        return rate_limited(StatusCode::TOO_MANY_REQUESTS, per_minute, reset);
    }
    let helpdesk = match state.check_auth(headers) {
        Ok(h) => h,
        Err(denied) => return *denied,
    };
    state.latency().await;
    match lock(&state.list_faults).pop_front() {
        Some(Fault::InternalError) => {
            return api_error(StatusCode::INTERNAL_SERVER_ERROR, 155000, "Internal error");
        }
        Some(Fault::BadGateway) => {
            return (StatusCode::BAD_GATEWAY, "<html>502</html>").into_response();
        }
        Some(Fault::NotJson) => {
            return (StatusCode::OK, "<html>maintenance</html>").into_response();
        }
        Some(Fault::RateLimited { reset_seconds }) => {
            return rate_limited(StatusCode::TOO_MANY_REQUESTS, limit, reset_seconds);
        }
        _ => {}
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let number = |name: &str| param(name).and_then(|v| v.parse::<i64>().ok());
    let page = number("page").unwrap_or(1).max(1) as usize;
    let page_size = number("page_size").unwrap_or(20);
    if !(1..=200).contains(&page_size) {
        return api_error(
            StatusCode::BAD_REQUEST,
            99992402,
            "field validation failed: page_size",
        );
    }
    let page_size = page_size as usize;
    let range = |start: &str, end: &str| match (number(start), number(end)) {
        (Some(s), Some(e)) => Ok(Some((s, e))),
        (None, None) => Ok(None),
        _ => Err(()),
    };
    let (Ok(updated), Ok(created)) = (
        range("update_time_start", "update_time_end"),
        range("create_time_start", "create_time_end"),
    ) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            154000,
            "each start time needs its end time",
        );
    };
    match state.list_change(page, updated, created) {
        Some(change) if change.delete => state.delete_ticket(&change.id),
        Some(change) => state.update_ticket(&change.id, |_| {}),
        None => {}
    }
    let status_list: HashSet<i64> = query
        .iter()
        .filter(|(k, _)| k == "status_list")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let tickets = lock(&state.tickets);
    let index = state.list_index(&tickets, helpdesk);
    let matching: Vec<&Value> = index
        .iter()
        .filter(|t| {
            let within = |v: Option<i64>, r: Option<(i64, i64)>| {
                r.is_none_or(|(s, e)| v.is_some_and(|v| v >= s && v <= e))
            };
            within(t.updated_at, updated)
                && within(t.created_at, created)
                && (status_list.is_empty() || t.status.is_some_and(|s| status_list.contains(&s)))
        })
        .filter_map(|t| tickets[helpdesk].get(&t.ticket_id))
        .collect();
    let total = matching.len();
    let start = (page - 1) * page_size;
    let reachable = total.min(LIST_REACHABLE_ROWS);
    let mut rows: Vec<&Value> = if start < reachable {
        matching[start..(start + page_size).min(reachable)].to_vec()
    } else {
        Vec::new()
    };
    if state.config.list_repeats_rows
        && let Some(first) = rows.first().copied()
    {
        rows.push(first);
        if start > 0 {
            rows.push(matching[start - 1]);
        }
    }
    let rows: Vec<Value> = rows.into_iter().map(|t| state.as_list_row(t)).collect();
    let total = match state.config.list_total {
        ListTotal::Actual => total,
        ListTotal::PageLength => rows.len(),
        ListTotal::Zero => 0,
        ListTotal::OverCap => total.max(LIST_REACHABLE_ROWS),
    };
    let body = json!({"code": 0, "msg": "success", "data": {"total": total, "tickets": rows}});
    let mut body = body.to_string();
    for (from, to) in &state.config.list_body_replace {
        body = body.replace(from.as_str(), to);
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A ticket changed when a given page of a window holding it is asked for.
#[derive(Debug)]
struct ListChange {
    page: usize,
    id: String,
    delete: bool,
}

/// What the list filters and orders a ticket by.
#[derive(Debug)]
struct ListEntry {
    ticket_id: String,
    created_at: Option<i64>,
    updated_at: Option<i64>,
    status: Option<i64>,
}

impl SimState {
    /// Helpdesk `h`'s tickets in list order (`created_at`, then id), from the index or built
    /// into it; `tickets` is the locked ticket map.
    fn list_index(&self, tickets: &[BTreeMap<String, Value>], h: usize) -> Arc<Vec<ListEntry>> {
        let mut index = lock(&self.list_index);
        index[h]
            .get_or_insert_with(|| {
                let mut entries: Vec<ListEntry> = tickets[h]
                    .iter()
                    .map(|(id, t)| ListEntry {
                        ticket_id: id.clone(),
                        created_at: t["created_at"].as_i64(),
                        updated_at: t["updated_at"].as_i64(),
                        status: t["status"].as_i64(),
                    })
                    .collect();
                // Stable: tickets created at the same time stay in id order.
                entries.sort_by_key(|t| t.created_at.unwrap_or(0));
                Arc::new(entries)
            })
            .clone()
    }

    /// A ticket as the list shows it: every field of the detail but `tags` (as the list's docs
    /// say), with the configured quirks (fields dropped or altered, a clock ahead) for
    /// self-verification tests.
    fn as_list_row(&self, ticket: &Value) -> Value {
        let mut row = ticket.clone();
        if let Some(o) = row.as_object_mut() {
            o.remove("tags");
            for field in &self.config.list_rows_drop {
                o.remove(field);
            }
            for field in &self.config.list_rows_alter {
                if let Some(v) = o.get_mut(field) {
                    *v = altered(v);
                }
            }
            let ahead = self.config.list_updated_at_ahead_ms;
            if ahead != 0
                && let Some(updated) = o.get("updated_at").and_then(Value::as_i64)
                && updated > 0
            {
                o.insert("updated_at".into(), json!(updated + ahead));
            }
        }
        row
    }
}

/// A value that differs from `v` in the same type (a number moved, a text changed, an object
/// or list emptied).
fn altered(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_i64().map_or(1, |i| i + 1)),
        Value::String(s) => json!(format!("{s} (list)")),
        Value::Bool(b) => json!(!b),
        Value::Array(_) => json!([]),
        Value::Object(_) => json!({}),
        Value::Null => json!(1),
    }
}

async fn catalog(
    State(state): State<Arc<SimState>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let arrived = Instant::now();
    let response = catalog_response(&state, &query, &headers, arrived).await;
    state.record(
        arrived,
        Endpoint::Catalog,
        None,
        response.status().as_u16(),
        Some(&headers),
    );
    response
}

/// The answer a queued fault makes (InternalError, BadGateway, NotJson, RateLimited), if any.
pub(crate) fn fault_response(fault: Option<Fault>, limit: usize) -> Option<Response> {
    Some(match fault? {
        Fault::InternalError => {
            api_error(StatusCode::INTERNAL_SERVER_ERROR, 155000, "Internal error")
        }
        Fault::BadGateway => (StatusCode::BAD_GATEWAY, "<html>502</html>").into_response(),
        Fault::NotJson => (StatusCode::OK, "<html>maintenance</html>").into_response(),
        Fault::RateLimited { reset_seconds } => {
            rate_limited(StatusCode::TOO_MANY_REQUESTS, limit, reset_seconds)
        }
        _ => return None,
    })
}

/// `GET /ticket_customized_fields`: pages of `page_size` (≤ 100) items, `page_token` an offset.
async fn catalog_response(
    state: &SimState,
    query: &[(String, String)],
    headers: &HeaderMap,
    arrived: Instant,
) -> Response {
    let limit = state.config.catalog_limit_per_second;
    if let Some(reset) = state.over_limit(Endpoint::Catalog, limit, arrived) {
        return rate_limited(StatusCode::TOO_MANY_REQUESTS, limit, reset);
    }
    let helpdesk = match state.check_auth(headers) {
        Ok(h) => h,
        Err(denied) => return *denied,
    };
    state.latency().await;
    let fault = lock(&state.catalog_faults).pop_front();
    if let Some(response) = fault_response(fault, limit) {
        return response;
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let page_size = param("page_size").map_or(Ok(20), str::parse::<usize>);
    let Ok(page_size @ 1..=100) = page_size else {
        return api_error(
            StatusCode::BAD_REQUEST,
            99992402,
            "field validation failed: page_size",
        );
    };
    let start = match param("page_token") {
        None | Some("") => 0,
        Some(token) => match token.strip_prefix("pt-").and_then(|n| n.parse().ok()) {
            Some(offset) => offset,
            None => return api_error(StatusCode::BAD_REQUEST, 154000, "invalid page_token"),
        },
    };
    let catalogs = lock(&state.catalog);
    let items = &catalogs[helpdesk];
    let end = (start + page_size).min(items.len());
    let page: Vec<&Value> = items.get(start..end).unwrap_or_default().iter().collect();
    let has_more = end < items.len();
    let mut data = json!({"has_more": has_more, "items": page});
    if has_more {
        data["next_page_token"] = json!(format!("pt-{end}"));
    } else if state.config.catalog_loops && start > 0 {
        data["has_more"] = json!(true);
        data["next_page_token"] = json!("pt-0");
    }
    axum::Json(json!({"code": 0, "msg": "success", "data": data})).into_response()
}

/// The simulator's HTTP routes.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route(crate::feishu::client::TOKEN_PATH, post(token))
        .route("/open-apis/helpdesk/v1/tickets/{id}", get(ticket_detail))
        .route(
            "/open-apis/helpdesk/v1/tickets/{id}/messages",
            get(messages::messages),
        )
        .route(crate::feishu::client::TICKETS_PATH, get(ticket_list))
        .route(crate::feishu::client::CATALOG_PATH, get(catalog))
        .route(
            crate::feishu::client::EVENTS_SUBSCRIBE_PATH,
            post(events::subscribe),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            echo_auth_in_errors,
        ))
        .with_state(state)
}

/// [`SimConfig::echo_auth_in_errors`]: an error answer's `msg` quotes the request's auth
/// headers and body.
async fn echo_auth_in_errors(
    State(state): State<Arc<SimState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !state.config.echo_auth_in_errors {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let echoed_headers = format!(
        "Authorization: {}; X-Lark-Helpdesk-Authorization: {}",
        header("authorization"),
        header("x-lark-helpdesk-authorization")
    );
    let Ok(sent) = axum::body::to_bytes(body, 1 << 20).await else {
        return api_error(StatusCode::BAD_REQUEST, 9499, "Bad Request");
    };
    let echo = format!("{echoed_headers}; body: {}", String::from_utf8_lossy(&sent));
    let response = next
        .run(axum::extract::Request::from_parts(parts, Body::from(sent)))
        .await;
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return api_error(StatusCode::BAD_GATEWAY, 155000, "echo failed");
    };
    let mut value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return Response::from_parts(parts, Body::from(bytes)),
    };
    if value["code"].as_i64().is_none_or(|c| c == 0) {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let msg = value["msg"].as_str().unwrap_or("").to_owned();
    value["msg"] = json!(format!("{msg} (request was: {echo})"));
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(value.to_string()))
}

/// A running simulator; stops when dropped.
pub struct SimServer {
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
    stop: CancellationToken,
}

impl SimServer {
    /// Serves on `listen` (use port 0 for a free one).
    pub async fn start(config: SimConfig, listen: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState::new(config));
        let stop = CancellationToken::new();
        let app = router(state.clone());
        let until = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "simulator stopped");
            }
        });
        Ok(Self { addr, state, stop })
    }

    /// Every request answered so far (see [`SimState::requests`]).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.requests()
    }

    /// `http://127.0.0.1:PORT`, for `feishu.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counting() {
        let ms = Duration::from_millis;
        assert_eq!(max_in_window(&[], ms(1000)), 0);
        assert_eq!(max_in_window(&[ms(0), ms(999), ms(1000)], ms(1000)), 2);
        assert_eq!(
            max_in_window(&[ms(0), ms(10), ms(20), ms(2000)], ms(1000)),
            3
        );
    }

    /// A simulator with a second helpdesk ("IT"), 3 tickets each, and a valid tenant token.
    fn two_helpdesks(config: SimConfig) -> (Arc<SimState>, String) {
        let state = Arc::new(SimState::new(SimConfig {
            tickets: 3,
            extra_helpdesks: vec![SimHelpdesk {
                name: "IT".into(),
                ..SimHelpdesk::numbered(1, 3)
            }],
            ..config
        }));
        let token = state.issue_token();
        (state, token)
    }

    fn headers(token: &str, helpdesk_id: &str, helpdesk_token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h.insert(
            "x-lark-helpdesk-authorization",
            HeaderValue::from_str(&helpdesk_auth(helpdesk_id, helpdesk_token)).unwrap(),
        );
        h
    }

    async fn body(response: Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn detail(state: &Arc<SimState>, id: &str, h: &HeaderMap) -> (u16, Value) {
        body(ticket_detail(State(state.clone()), Path(id.to_owned()), h.clone()).await).await
    }

    async fn list(state: &Arc<SimState>, h: &HeaderMap) -> (u16, Value) {
        let query = vec![("page_size".to_owned(), "100".to_owned())];
        body(ticket_list(State(state.clone()), Query(query), h.clone()).await).await
    }

    #[tokio::test]
    async fn the_helpdesk_header_selects_tickets_catalog_and_conversations() {
        let (state, token) = two_helpdesks(SimConfig::default());
        let [first, it] = state.helpdesks() else {
            panic!("two helpdesks expected")
        };
        let (first, it) = (first.clone(), it.clone());
        assert_eq!(first.helpdesk_id, HELPDESK_ID);
        let a = headers(&token, &first.helpdesk_id, &first.helpdesk_token);
        let b = headers(&token, &it.helpdesk_id, &it.helpdesk_token);
        let a_ids = state.helpdesk_ticket_ids(&first.helpdesk_id);
        let b_ids = state.helpdesk_ticket_ids(&it.helpdesk_id);
        assert_eq!(a_ids, (0..3).map(ticket_id).collect::<Vec<_>>());
        assert_eq!(
            b_ids,
            (0..3).map(|i| helpdesk_ticket_id(1, i)).collect::<Vec<_>>()
        );
        assert_eq!(state.ticket_ids().len(), 6);
        assert_eq!(
            state.ticket_helpdesk(&b_ids[0]),
            Some(it.helpdesk_id.clone())
        );

        // Each helpdesk's list shows its own tickets, each carrying its helpdesk's id.
        for (h, ids, helpdesk_id) in [
            (&a, &a_ids, &first.helpdesk_id),
            (&b, &b_ids, &it.helpdesk_id),
        ] {
            let (status, answer) = list(&state, h).await;
            assert_eq!(status, 200, "{answer}");
            let rows = answer["data"]["tickets"].as_array().unwrap();
            let mut listed: Vec<String> = rows
                .iter()
                .map(|t| t["ticket_id"].to_string().trim_matches('"').to_owned())
                .collect();
            listed.sort();
            assert_eq!(&listed, ids);
            assert!(rows.iter().all(|t| t["helpdesk_id"] == json!(helpdesk_id)));
        }

        // A ticket is found through its own helpdesk only.
        let (status, answer) = detail(&state, &b_ids[1], &b).await;
        assert_eq!(status, 200);
        assert_eq!(
            answer["data"]["ticket"]["helpdesk_id"],
            json!(it.helpdesk_id)
        );
        assert_eq!(detail(&state, &b_ids[1], &a).await.0, 404);
        assert_eq!(detail(&state, &a_ids[1], &b).await.0, 404);
        assert_eq!(detail(&state, &a_ids[1], &a).await.0, 200);

        // Each helpdesk has its own catalog.
        let catalog_of =
            |h: &HeaderMap| catalog(State(state.clone()), Query(Vec::new()), h.clone());
        let (_, own) = body(catalog_of(&b).await).await;
        let items = own["data"]["items"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        assert!(
            items
                .iter()
                .all(|i| i["helpdesk_id"] == json!(it.helpdesk_id))
        );
        let (_, theirs) = body(catalog_of(&a).await).await;
        assert_ne!(
            items[0]["ticket_customized_field_id"],
            theirs["data"]["items"][0]["ticket_customized_field_id"]
        );

        // A token of no helpdesk: the real API's 401/154001.
        let wrong = headers(&token, &it.helpdesk_id, "not-its-token");
        let (status, answer) = detail(&state, &b_ids[0], &wrong).await;
        assert_eq!((status, answer["code"].clone()), (401, json!(154001)));

        // The log names the helpdesk each request claimed.
        let log = state.requests();
        let of = |id: &str| {
            log.iter()
                .filter(|r| r.helpdesk_id.as_deref() == Some(id))
                .count()
        };
        assert_eq!(of(&first.helpdesk_id), 4);
        assert_eq!(of(&it.helpdesk_id), 5);
        assert_eq!(log.last().unwrap().answer(), Answer::Error);
        assert!(log.iter().take(2).all(|r| r.answer() == Answer::Ok));
    }

    #[tokio::test]
    async fn rate_limits_are_the_apps_summed_over_helpdesks() {
        let (state, token) = two_helpdesks(SimConfig {
            list_limit_per_second: 100,
            list_limit_per_minute: 5,
            catalog_limit_per_second: 2,
            ..SimConfig::default()
        });
        let hs = state.helpdesks().to_vec();
        let a = headers(&token, &hs[0].helpdesk_id, &hs[0].helpdesk_token);
        let b = headers(&token, &hs[1].helpdesk_id, &hs[1].helpdesk_token);
        // Twelve detail requests in the same instant, six per helpdesk: the app gets ten.
        let now = Instant::now();
        let mut statuses = Vec::new();
        for k in 0..12 {
            let (h, id) = if k % 2 == 0 {
                (&a, ticket_id(0))
            } else {
                (&b, helpdesk_ticket_id(1, 0))
            };
            let response = detail_response(&state, &id, h, now).await;
            statuses.push(response.status().as_u16());
        }
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10);
        assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2);
        // The list's minute limit (here 5) is the app's too: 3 + 3 requests, one refused.
        let mut list_statuses = Vec::new();
        for k in 0..6 {
            let h = if k < 3 { &a } else { &b };
            let response = list_response(&state, &[], h, now).await;
            list_statuses.push(response.status().as_u16());
        }
        assert_eq!(list_statuses, [200, 200, 200, 200, 200, 429]);
        // The catalog's (here 2 a second): one request of each helpdesk, then a refusal.
        let mut catalog_statuses = Vec::new();
        for h in [&a, &b, &a] {
            let response = catalog_response(&state, &[], h, now).await;
            catalog_statuses.push(response.status().as_u16());
        }
        assert_eq!(catalog_statuses, [200, 200, 429]);
    }

    #[test]
    fn window_maximum_counts_every_helpdesk() {
        let state = SimState::new(SimConfig {
            tickets: 0,
            extra_helpdesks: vec![SimHelpdesk::numbered(1, 0)],
            ..SimConfig::default()
        });
        let helpdesk = |id: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                "x-lark-helpdesk-authorization",
                HeaderValue::from_str(&helpdesk_auth(id, "whatever")).unwrap(),
            );
            h
        };
        let (a, b) = (
            helpdesk(HELPDESK_ID),
            helpdesk(&SimHelpdesk::numbered(1, 0).helpdesk_id),
        );
        let at = |ms: u64| state.started() + Duration::from_millis(ms);
        // A at 0, 400, 900 ms; B at 500, 950, 1400 ms; a list request between.
        for (ms, h) in [
            (0, &a),
            (400, &a),
            (500, &b),
            (900, &a),
            (950, &b),
            (1400, &b),
        ] {
            state.record(at(ms), Endpoint::Detail, None, 200, Some(h));
        }
        state.record(at(600), Endpoint::List, None, 200, Some(&a));
        let second = Duration::from_secs(1);
        assert_eq!(state.max_requests_in_window(Endpoint::Detail, second), 5);
        assert_eq!(
            state.max_requests_in_window(Endpoint::Detail, Duration::from_millis(100)),
            2
        );
        assert_eq!(
            state.max_requests_in_window(Endpoint::Detail, Duration::from_secs(60)),
            6
        );
        assert_eq!(state.max_requests_in_window(Endpoint::List, second), 1);
        let only_b = state.max_requests_in_window_where(second, |r| {
            r.endpoint == Endpoint::Detail && r.helpdesk_id.as_deref() != Some(HELPDESK_ID)
        });
        assert_eq!(only_b, 3);
        assert_eq!(state.max_per_second(Endpoint::Detail), 5);
    }

    #[tokio::test]
    async fn a_revoked_helpdesk_token_fails_that_helpdesk_only() {
        let (state, token) = two_helpdesks(SimConfig::default());
        let hs = state.helpdesks().to_vec();
        let a = headers(&token, &hs[0].helpdesk_id, &hs[0].helpdesk_token);
        let b = headers(&token, &hs[1].helpdesk_id, &hs[1].helpdesk_token);
        state.revoke_helpdesk_token(&hs[1].helpdesk_id);
        let (status, answer) = list(&state, &b).await;
        assert_eq!((status, answer["code"].clone()), (401, json!(154001)));
        let (status, _) = detail(&state, &helpdesk_ticket_id(1, 0), &b).await;
        assert_eq!(status, 401);
        assert_eq!(list(&state, &a).await.0, 200);
        assert_eq!(detail(&state, &ticket_id(0), &a).await.0, 200);
        state.restore_helpdesk_token(&hs[1].helpdesk_id);
        assert_eq!(list(&state, &b).await.0, 200);
    }

    #[test]
    fn events_and_changes_work_for_every_helpdesks_tickets() {
        let (state, _) = two_helpdesks(SimConfig::default());
        let it = state.helpdesks()[1].helpdesk_id.clone();
        let id = helpdesk_ticket_id(1, 2);
        state.update_ticket(&id, |t| t["status"] = json!(4));
        assert_eq!(state.ticket(&id).unwrap()["status"], json!(4));
        let updated = state.ticket_event(crate::events::TICKET_UPDATED, &id, "ev-1");
        assert_eq!(updated["event"]["object"]["helpdesk_id"], json!(it));
        let created = state.ticket_event(crate::events::TICKET_CREATED, &id, "ev-2");
        assert_eq!(created["event"]["helpdesk_id"], json!(it));
        let message = state.add_message(&id, messages::Sender::Guest, "hello");
        let event = state.message_event(&id, &message, "ev-3");
        assert_eq!(event["event"]["ticket"]["helpdesk_id"], json!(it));
        let first = state.message_event(&ticket_id(0), &message, "ev-4");
        assert_eq!(first["event"]["ticket"]["helpdesk_id"], json!(HELPDESK_ID));
        // A new ticket goes to the helpdesk it names.
        let mut new = state.ticket(&id).unwrap();
        new["helpdesk_id"] = json!(it);
        state.put_ticket(&helpdesk_ticket_id(1, 3), new);
        assert_eq!(state.helpdesk_ticket_ids(&it).len(), 4);
        state.delete_ticket(&helpdesk_ticket_id(1, 3));
        assert_eq!(state.helpdesk_ticket_ids(&it).len(), 3);
    }

    #[test]
    fn describe_prints_every_helpdesks_config() {
        let addr: SocketAddr = "127.0.0.1:8090".parse().unwrap();
        let one = SimConfig::default().with_helpdesks(1);
        assert!(one.extra_helpdesks.is_empty());
        let text = one.describe(addr);
        assert!(
            text.contains("helpdesk_id = \"6626871355780366330\""),
            "{text}"
        );
        assert!(!text.contains("[[helpdesks]]"), "{text}");
        let three = SimConfig::default().with_helpdesks(3);
        let text = three.describe(addr);
        assert_eq!(text.matches("[[helpdesks]]").count(), 3, "{text}");
        for h in three.helpdesks() {
            assert!(text.contains(&format!("helpdesk_token = \"{}\"", h.helpdesk_token)));
            assert!(text.contains(&format!("name = {:?}", h.name)));
        }
        assert!(text.contains(&helpdesk_ticket_id(2, 499)), "{text}");
    }

    #[test]
    fn sliding_limit_answers_with_reset() {
        let state = SimState::new(SimConfig {
            tickets: 0,
            ..SimConfig::default()
        });
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(state.over_limit(Endpoint::Detail, 10, now), None);
        }
        assert_eq!(state.over_limit(Endpoint::Detail, 10, now), Some(1));
        assert_eq!(
            state.over_limit(Endpoint::Detail, 10, now + Duration::from_secs(1)),
            None
        );
    }
}
