//! Several helpdesks in one database: the `helpdesks` name table (seeded by the upgrade from
//! the stored tickets, registered by the daemon), and what the reporting views show per
//! helpdesk.

use chrono::{DateTime, NaiveDate, Utc};
use helpdesk_sync::config::Settings;
use helpdesk_sync::store::Store;
use helpdesk_sync::store::helpdesks::{HelpdeskName, StoredHelpdesk};
use serde_json::json;

use super::{id, ms, setup, sync_ids, user};
use crate::helpers::*;

/// Applies the migrations whose file names sort before `before`, as an older release would have.
pub(super) async fn migrate_before(db: &TestDb, before: &str) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.is_file() && name.as_str() < before {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    let old = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    old.run(&db.pool).await.unwrap();
}

pub(super) async fn store(db: &TestDb) -> Store {
    let settings =
        Settings::from_toml_str("", [("DATABASE_URL".to_owned(), db.url.clone())]).unwrap();
    Store::connect(&settings.database).await.unwrap()
}

fn stored(id: &str, name: &str) -> StoredHelpdesk {
    StoredHelpdesk {
        helpdesk_id: id.into(),
        name: name.into(),
    }
}

fn named(id: &str, name: &str) -> HelpdeskName {
    HelpdeskName {
        helpdesk_id: id.into(),
        name: name.into(),
    }
}

#[tokio::test]
async fn the_upgrade_seeds_helpdesks_from_tickets_and_the_daemon_names_them() {
    let db = TestDb::new().await;
    migrate_before(&db, "20261206230141").await;
    // A single-helpdesk database: its tickets name helpdesk 7001; one ticket has no helpdesk.
    sqlx::raw_sql(
        "INSERT INTO tickets (ticket_id, helpdesk_id, status, created_at, raw, fetched_at)
         VALUES ('1001', '7001', 1, '2026-01-01 00:00Z', '{}', '2026-01-01 00:00Z'),
                ('1002', '7001', 1, '2026-01-02 00:00Z', '{}', '2026-01-02 00:00Z'),
                ('1003', NULL, 1, '2026-01-03 00:00Z', '{}', '2026-01-03 00:00Z');",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let ws = TestConfig::empty(&db).workspace();
    assert_ok(&ws.run(&["migrate"], &[], None).await);

    let store = store(&db).await;
    assert_eq!(
        store.helpdesks().await.unwrap(),
        vec![stored("7001", "7001")]
    );

    // The daemon's start: the configured names; a second helpdesk; an empty name is the id;
    // an id listed twice keeps its last name.
    let changed = store
        .register_helpdesks(&[
            named("7001", "Customer support"),
            named("7002", "IT"),
            named("7003", " "),
            named("7002", "IT desk"),
        ])
        .await
        .unwrap();
    assert_eq!(changed, 3);
    assert_eq!(
        store.helpdesks().await.unwrap(),
        vec![
            stored("7001", "Customer support"),
            stored("7002", "IT desk"),
            stored("7003", "7003"),
        ]
    );
    // The same again changes nothing; a helpdesk left out of the config keeps its row.
    assert_eq!(
        store
            .register_helpdesks(&[named("7001", "Customer support")])
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.helpdesks().await.unwrap().len(), 3);
}

/// Two helpdesks, each with its own calendar and its own first-reply target (the IT target
/// named by the helpdesk's name, with a worse priority than the general one: the helpdesk's
/// own target still wins).
const TWO_HELPDESKS_SLA: &str = r#"
[sla]
default_calendar = "london"

[sla.calendars.london]
timezone = "UTC"
hours = { weekdays = ["09:00-17:00"] }

[sla.calendars.shanghai]
timezone = "Asia/Shanghai"
hours = { weekdays = ["09:00-18:00"] }

[sla.helpdesk_calendars]
"7002" = "shanghai"

[[sla.targets]]
id = "reply"
metric = "first_reply"
minutes = 120

[[sla.targets]]
id = "it-reply"
metric = "first_reply"
minutes = 60
priority = 200
helpdesk = "IT"
"#;

/// reporting.sla: ticket, target, started, due, elapsed, breached, calendar, helpdesk id, name.
type SlaRow = (
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<i64>,
    Option<bool>,
    Option<String>,
    String,
    String,
);
/// reporting.tickets: ticket, helpdesk id, calendar, first reply (wall clock, business), name.
type TicketRow = (
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    String,
);
/// reporting.people: person, helpdesk id, name, role, is_agent, is_guest.
type PersonRow = (String, Option<String>, Option<String>, String, bool, bool);

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn two_helpdesks_show_in_every_view_with_their_own_sla_calendars_and_daily_rows() {
    let (db, sim, _) = setup().await;
    let ws = Workspace::configured(
        &sim,
        &db,
        "",
        &format!("discover = false\n{TWO_HELPDESKS_SLA}"),
    );
    // What the daemon does at start: the configured helpdesks' names.
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    store(&db)
        .await
        .register_helpdesks(&[named("7001", "Support"), named("7002", "IT")])
        .await
        .unwrap();

    // P (Support, 7001): created Monday 2026-03-02 10:00 UTC, first reply 12:30, closed
    // Tuesday 03:00. Support's calendar is the default (UTC 09-17), its target the general
    // one (120 business minutes): due Monday 12:00, replied 12:30: breached, 9000 business s.
    let p_created = utc("2026-03-02T10:00:00Z");
    let p_reply = utc("2026-03-02T12:30:00Z");
    let p_closed = utc("2026-03-03T03:00:00Z");
    // Q (IT, 7002): created at the same instant, 18:00 in Shanghai: IT's calendar
    // (Shanghai 09-18) is closed until Tuesday 09:00 (01:00 UTC); IT's target (60 minutes)
    // is due Tuesday 10:00 Shanghai (02:00 UTC); replied 01:30 UTC: met, 1800 business s.
    // (The general target in UTC hours would have been due Monday 12:00: breached.)
    let q_created = p_created;
    let q_reply = utc("2026-03-03T01:30:00Z");
    let q_closed = utc("2026-03-03T05:00:00Z");
    let p = id(80);
    let q = id(81);
    sim.state.put_ticket(
        &p,
        json!({"ticket_id": p, "helpdesk_id": "7001", "status": 51, "channel": 9,
               "ticket_type": 2, "guest": user("ou_pia", "Pia"),
               "agents": [user("ou_bob", "Bob")], "agent_owner": user("ou_bob", "Bob"),
               "created_at": ms(p_created), "updated_at": ms(p_closed),
               "closed_at": ms(p_closed), "agent_entry_time": ms(p_reply),
               "agent_first_response_time": ms(p_reply),
               "tags": [{"id": "7", "name": "vip"}],
               "customized_fields": [{"id": "6794281200000000001", "value": "iOS",
                                      "key_name": "platform", "display_name": "Platform",
                                      "position": 1}],
               "comments": {"content": "call back", "created_at": ms(p_reply), "id": 12,
                            "user_id": 7262656095919128578u64, "user_name": "Bob"}}),
    );
    sim.state.put_ticket(
        &q,
        json!({"ticket_id": q, "helpdesk_id": "7002", "status": 51, "channel": 9,
               "ticket_type": 2, "guest": user("ou_quin", "Quin"),
               "agents": [user("ou_bob", "Bob")], "agent_owner": user("ou_bob", "Bob"),
               "created_at": ms(q_created), "updated_at": ms(q_closed),
               "closed_at": ms(q_closed), "agent_entry_time": ms(q_reply),
               "agent_first_response_time": ms(q_reply)}),
    );
    sim.state.put_messages(
        &q,
        vec![
            json!({"id": 1, "message_id": "om_1", "message_type": "text",
                   "created_at": ms(q_created), "content": json!({"text": "help"}).to_string(),
                   "user_name": "Quin", "avatar_url": "https://a", "user_id": "ou_quin"}),
            json!({"id": 2, "message_id": "om_2", "message_type": "text",
                   "created_at": ms(q_reply), "content": json!({"text": "on it"}).to_string(),
                   "user_name": "Bob", "avatar_url": "https://a", "user_id": "ou_bob"}),
        ],
    );
    sync_ids(&ws, &[p.clone(), q.clone()]).await;
    let pool = &db.pool;

    // SLA: each ticket's clock, by hand above.
    let sla: Vec<SlaRow> = sqlx::query_as(
        "SELECT ticket_id, target_id, started_at, breach_at, elapsed_seconds, is_breached,
                    calendar_id, helpdesk_id, helpdesk_name
             FROM reporting.sla ORDER BY ticket_id, target_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        sla,
        vec![
            (
                p.clone(),
                "reply".into(),
                p_created,
                Some(utc("2026-03-02T12:00:00Z")),
                Some(9000),
                Some(true),
                Some("london".into()),
                "7001".into(),
                "Support".into()
            ),
            (
                q.clone(),
                "it-reply".into(),
                q_created,
                Some(utc("2026-03-03T02:00:00Z")),
                Some(1800),
                Some(false),
                Some("shanghai".into()),
                "7002".into(),
                "IT".into()
            ),
        ]
    );

    // tickets: the business columns in each helpdesk's calendar; the helpdesk appended.
    let tickets: Vec<TicketRow> = sqlx::query_as(
        "SELECT ticket_id, helpdesk_id, business_calendar_id, first_reply_seconds,
                    first_reply_business_seconds, helpdesk_name
             FROM reporting.tickets ORDER BY ticket_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        tickets,
        vec![
            (
                p.clone(),
                Some("7001".into()),
                Some("london".into()),
                Some(9000),
                Some(9000),
                "Support".into()
            ),
            // 15 h 30 min on the wall clock; 30 min of Shanghai business time.
            (
                q.clone(),
                Some("7002".into()),
                Some("shanghai".into()),
                Some(55_800),
                Some(1800),
                "IT".into()
            ),
        ]
    );

    // Every view of one ticket carries its helpdesk.
    for (view, ticket, expected) in [
        ("status_spans", &p, ("7001", "Support")),
        ("status_spans", &q, ("7002", "IT")),
        ("time_in_status", &p, ("7001", "Support")),
        ("time_in_status", &q, ("7002", "IT")),
        ("ticket_tags", &p, ("7001", "Support")),
        ("custom_field_values", &p, ("7001", "Support")),
        ("notes", &p, ("7001", "Support")),
        ("messages", &q, ("7002", "IT")),
        ("replies", &q, ("7002", "IT")),
    ] {
        let found: Vec<(Option<String>, Option<String>)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT DISTINCT helpdesk_id, helpdesk_name FROM reporting.{view}
                 WHERE ticket_id = $1"
            )))
            .bind(ticket)
            .fetch_all(pool)
            .await
            .unwrap();
        assert_eq!(
            found,
            vec![(Some(expected.0.into()), Some(expected.1.into()))],
            "reporting.{view}"
        );
    }
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM reporting.messages WHERE ticket_id = '{q}'"
        ))
        .await,
        2
    );

    // people: one row per person and helpdesk; Bob works in both.
    let people: Vec<PersonRow> = sqlx::query_as(
        "SELECT user_id, helpdesk_id, helpdesk_name, role, is_agent, is_guest
             FROM reporting.people ORDER BY user_id, helpdesk_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let person = |u: &str, h: &str, n: &str, role: &str, agent: bool, guest: bool| {
        (
            u.to_owned(),
            Some(h.to_owned()),
            Some(n.to_owned()),
            role.to_owned(),
            agent,
            guest,
        )
    };
    assert_eq!(
        people,
        vec![
            person("ou_bob", "7001", "Support", "agent", true, false),
            person("ou_bob", "7002", "IT", "agent", true, false),
            person("ou_pia", "7001", "Support", "guest", false, true),
            person("ou_quin", "7002", "IT", "guest", false, true),
        ]
    );

    // daily_stats: a row per day and helpdesk. Monday: one ticket created in each (first
    // reply 9000 s and 55,800 s); Tuesday: one closed in each (resolution 17 h and 19 h).
    type Daily = (
        NaiveDate,
        Option<String>,
        String,
        i64,
        i64,
        Option<f64>,
        Option<f64>,
    );
    let daily: Vec<Daily> = sqlx::query_as(
        "SELECT day, helpdesk_id, helpdesk_name, tickets_created, tickets_closed,
                first_reply_seconds_median, resolution_seconds_median
         FROM reporting.daily_stats WHERE day <= '2026-03-04' ORDER BY day, helpdesk_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let d = |day: u32| NaiveDate::from_ymd_opt(2026, 3, day).unwrap();
    let s = |h: &str| Some(h.to_owned());
    assert_eq!(
        daily,
        vec![
            (d(2), s("7001"), "Support".into(), 1, 0, Some(9000.0), None),
            (d(2), s("7002"), "IT".into(), 1, 0, Some(55_800.0), None),
            (
                d(3),
                s("7001"),
                "Support".into(),
                0,
                1,
                None,
                Some(61_200.0)
            ),
            (d(3), s("7002"), "IT".into(), 0, 1, None, Some(68_400.0)),
            (d(4), s("7001"), "Support".into(), 0, 0, None, None),
            (d(4), s("7002"), "IT".into(), 0, 0, None, None),
        ]
    );
    // Every day to today, for each helpdesk; volumes add up to the whole database's.
    assert_eq!(
        db.count("SELECT count(*) FROM reporting.daily_stats").await,
        2 * db.count("SELECT count(*) FROM daily_ticket_stats").await
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM (SELECT day, sum(tickets_created) c, sum(tickets_closed) x
                                   FROM reporting.daily_stats GROUP BY day) d
             JOIN daily_ticket_stats a USING (day)
             WHERE d.c <> a.tickets_created OR d.x <> a.tickets_closed"
        )
        .await,
        0
    );

    // Backlog: Monday's end, each helpdesk has its one ticket open; Tuesday's end, none.
    let backlog: Vec<(NaiveDate, Option<String>, String, i32)> = sqlx::query_as(
        "SELECT day, helpdesk_id, helpdesk_name, open_tickets FROM reporting.backlog
         ORDER BY day, helpdesk_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        backlog,
        vec![
            (d(2), s("7001"), "Support".into(), 1),
            (d(2), s("7002"), "IT".into(), 1),
        ]
    );
    let totals: Vec<(NaiveDate, Option<String>, String, i32)> = sqlx::query_as(
        "SELECT day, helpdesk_id, helpdesk_name, open_tickets FROM reporting.backlog_totals
         WHERE day <= '2026-03-03' ORDER BY day, helpdesk_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        totals,
        vec![
            (d(2), s("7001"), "Support".into(), 1),
            (d(2), s("7002"), "IT".into(), 1),
            (d(3), s("7001"), "Support".into(), 0),
            (d(3), s("7002"), "IT".into(), 0),
        ]
    );
    let all: Vec<(NaiveDate, Option<String>, String, i32)> = sqlx::query_as(
        "SELECT day, helpdesk_id, helpdesk_name, open_tickets FROM reporting.backlog_totals_all
         WHERE day <= '2026-03-03' ORDER BY day",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        all,
        vec![
            (d(2), None, "All helpdesks".into(), 2),
            (d(3), None, "All helpdesks".into(), 0),
        ]
    );
    // Every day from the first to today: two rows a day in backlog_totals, one in _all.
    let days = db
        .count("SELECT count(*) FROM reporting.backlog_totals_all")
        .await;
    assert_eq!(days, (Utc::now().date_naive() - d(2)).num_days() + 1);
    assert_eq!(
        db.count("SELECT count(*) FROM reporting.backlog_totals")
            .await,
        2 * days
    );

    // Renaming a helpdesk shows at once, and (a target names it) makes the SLA results stale:
    // the IT target no longer matches "IT" once the helpdesk is "IT desk".
    store(&db)
        .await
        .register_helpdesks(&[named("7002", "IT desk")])
        .await
        .unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM reporting.tickets WHERE helpdesk_name = 'IT desk'")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM sla_refresh_state WHERE stale_since IS NOT NULL")
            .await,
        1
    );
    sqlx::query("SELECT refresh_sla()")
        .execute(pool)
        .await
        .unwrap();
    // Now the general target (120 min) in IT's own calendar: due Tuesday 11:00 Shanghai
    // (03:00 UTC), replied 01:30: met, 1800 s.
    let q_sla: (String, Option<DateTime<Utc>>, Option<i64>, Option<bool>) = sqlx::query_as(
        "SELECT target_id, breach_at, elapsed_seconds, is_breached FROM reporting.sla
         WHERE ticket_id = $1",
    )
    .bind(&q)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        q_sla,
        (
            "reply".into(),
            Some(utc("2026-03-03T03:00:00Z")),
            Some(1800),
            Some(false)
        )
    );
}

/// A database a single-helpdesk release synced, upgraded: BI queries with the old column
/// names read the same rows (one per day, one per person), now with the helpdesk beside them,
/// before and after the backlog's next refresh.
#[tokio::test]
async fn an_upgraded_single_helpdesk_database_keeps_its_rows_for_bi() {
    let db = TestDb::new().await;
    migrate_before(&db, "20261206230141").await;
    // As the release before stored them: helpdesk 7001; T1 (guest Ann) created 2026-01-01
    // and open since; T2 (owner Ben) created 2026-01-02 and closed 2026-01-03 12:00.
    sqlx::raw_sql(
        "INSERT INTO helpdesk_users (user_id, name, last_seen_at)
         VALUES ('ou_ann', 'Ann', now()), ('ou_ben', 'Ben', now());
         INSERT INTO tickets (ticket_id, helpdesk_id, status, created_at, updated_at, closed_at,
                              guest_id, agent_owner_id, raw, fetched_at)
         VALUES ('1001', '7001', 2, '2026-01-01 00:00Z', '2026-01-01 00:00Z', NULL, 'ou_ann',
                 NULL, '{}', '2026-01-01 00:00Z'),
                ('1002', '7001', 51, '2026-01-02 00:00Z', '2026-01-03 12:00Z',
                 '2026-01-03 12:00Z', NULL, 'ou_ben', '{}', '2026-01-03 13:00Z');
         INSERT INTO ticket_status_history
             (ticket_id, from_status, to_status, changed_at, changed_at_source, observed_at)
         VALUES ('1001', NULL, 2, '2026-01-01 00:00Z', 'updated_at', '2026-01-01 00:10Z'),
                ('1002', NULL, 2, '2026-01-02 00:00Z', 'updated_at', '2026-01-02 00:10Z'),
                ('1002', 2, 51, '2026-01-03 12:00Z', 'updated_at', '2026-01-03 13:00Z');
         SELECT rebuild_ticket_status_stays(ARRAY['1001', '1002']);
         SELECT refresh_daily_backlog();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let ws = TestConfig::empty(&db).workspace();
    assert_ok(&ws.run(&["migrate"], &[], None).await);

    let today = Utc::now().date_naive();
    let d = |day: u32| NaiveDate::from_ymd_opt(2026, 1, day).unwrap();
    let days = (today - d(1)).num_days() + 1;
    // By hand: open at the end of Jan 1: T1; Jan 2: T1 and T2; from Jan 3 on: T1.
    let expected_backlog = |day: NaiveDate| if day == d(2) { 2 } else { 1 };
    for round in ["after the upgrade", "after the next refresh"] {
        let totals: Vec<(NaiveDate, i32)> =
            sqlx::query_as("SELECT day, open_tickets FROM reporting.backlog_totals ORDER BY day")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        assert_eq!(totals.len() as i64, days, "{round}: one row per day");
        for (day, open) in &totals {
            assert_eq!(*open, expected_backlog(*day), "{round}: {day}");
        }
        assert_eq!(
            db.count(
                "SELECT count(*) FROM reporting.backlog_totals
                 WHERE helpdesk_id IS DISTINCT FROM '7001' OR helpdesk_name <> '7001'"
            )
            .await,
            0,
            "{round}: the helpdesk, named by its id until the daemon registers its name"
        );
        assert_eq!(
            db.count("SELECT count(*) FROM reporting.backlog WHERE helpdesk_id = '7001'")
                .await,
            days,
            "{round}: one group a day (status 2, no owner, no channel)"
        );
        sqlx::query("SELECT refresh_daily_backlog()")
            .execute(&db.pool)
            .await
            .unwrap();
    }

    // daily_stats: one row per day; T1 created Jan 1, T2 created Jan 2 and closed Jan 3
    // after 36 hours.
    let daily: Vec<(NaiveDate, i64, i64, Option<f64>)> = sqlx::query_as(
        "SELECT day, tickets_created, tickets_closed, resolution_seconds_median
         FROM reporting.daily_stats WHERE day <= '2026-01-04' ORDER BY day",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        daily,
        vec![
            (d(1), 1, 0, None),
            (d(2), 1, 0, None),
            (d(3), 0, 1, Some(129_600.0)),
            (d(4), 0, 0, None),
        ]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM reporting.daily_stats").await,
        days
    );

    // people: one row per person, as before, with the roles they had.
    let people: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT user_id, role, helpdesk_id FROM reporting.people ORDER BY user_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        people,
        vec![
            ("ou_ann".into(), "guest".into(), Some("7001".into())),
            ("ou_ben".into(), "agent".into(), Some("7001".into())),
        ]
    );
}

/// Two helpdesks of one simulated app synced by one daemon (`[[helpdesks]]`): each view and
/// daily series splits them as the simulator's own tickets say.
#[tokio::test]
async fn two_simulated_helpdesks_synced_together_split_in_the_daily_series() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(30).with_helpdesks(2)).await;
    let c = sim.state.config().clone();
    let helpdesks = c.helpdesks();
    let mut raw = String::new();
    for h in &helpdesks {
        raw.push_str(&format!(
            "\n[[helpdesks]]\nname = {:?}\nhelpdesk_id = \"{}\"\nhelpdesk_token = \"{}\"\n",
            h.name, h.helpdesk_id, h.helpdesk_token
        ));
    }
    let ws = TestConfig::empty(&db)
        .feishu("base_url", sim.base_url())
        .feishu("app_id", c.app_id.as_str())
        .feishu("app_secret", c.app_secret.as_str())
        .detail_rate(200.0)
        .message_rate(40.0)
        .request_timeout("3s")
        .set("database", "url", db.url.as_str())
        .set("database", "max_connections", 4)
        .sync("batch_size", 25)
        .fast_list()
        .raw(&raw)
        .workspace();
    assert_ok(&ws.run(&["sync"], &[], None).await);
    // What the daemon registers at start, from the same [[helpdesks]].
    store(&db)
        .await
        .register_helpdesks(
            &helpdesks
                .iter()
                .map(|h| named(&h.helpdesk_id, &h.name))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();

    let today = Utc::now().date_naive();
    let mut open_in_all = 0;
    for h in &helpdesks {
        let ids = sim.state.helpdesk_ticket_ids(&h.helpdesk_id);
        assert_eq!(ids.len(), 30);
        // Open now: the simulator's tickets of this helpdesk with an open status.
        let open = ids
            .iter()
            .filter(|id| sim.state.ticket(id).unwrap()["status"].as_i64().unwrap() < 50)
            .count() as i64;
        open_in_all += open;
        let name = h.name.replace('\'', "''");
        let hd = &h.helpdesk_id;
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM reporting.tickets
                 WHERE helpdesk_id = '{hd}' AND helpdesk_name = '{name}'"
            ))
            .await,
            30,
            "{}",
            h.name
        );
        assert_eq!(
            db.count(&format!(
                "SELECT COALESCE(sum(tickets_created), 0)::bigint FROM reporting.daily_stats
                 WHERE helpdesk_id = '{hd}' AND helpdesk_name = '{name}'"
            ))
            .await,
            30,
            "{}: every ticket created on some day",
            h.name
        );
        assert_eq!(
            db.count(&format!(
                "SELECT open_tickets::bigint FROM reporting.backlog_totals
                 WHERE helpdesk_id = '{hd}' AND day = '{today}'"
            ))
            .await,
            open,
            "{}: open today",
            h.name
        );
    }
    assert_eq!(
        db.count(&format!(
            "SELECT open_tickets::bigint FROM reporting.backlog_totals_all WHERE day = '{today}'"
        ))
        .await,
        open_in_all
    );
    // Two rows a day in the per-helpdesk series, one in the whole database's.
    assert_eq!(
        db.count("SELECT count(*) FROM reporting.daily_stats").await,
        2 * db.count("SELECT count(*) FROM daily_ticket_stats").await
    );
    assert_eq!(
        db.count("SELECT count(*) FROM reporting.backlog_totals")
            .await,
        2 * db
            .count("SELECT count(*) FROM reporting.backlog_totals_all")
            .await
    );
}

/// `migrate` seeds the helpdesk conditions of `[sla]` as written, rewrites them when the section
/// changes, and exits 2 naming the key of a bad one.
#[tokio::test]
async fn helpdesk_conditions_are_seeded_and_bad_ones_exit_2() {
    let db = TestDb::new().await;
    let base = format!("[database]\nurl = {:?}\n", db.url);
    let ws = Workspace::with_toml(&format!("{base}{TWO_HELPDESKS_SLA}"), &db);
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    let seeded: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT target_id, helpdesk FROM sla_targets ORDER BY target_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        seeded,
        vec![
            ("it-reply".into(), Some("IT".into())),
            ("reply".into(), None)
        ]
    );
    let calendars: Vec<(String, String, String)> =
        sqlx::query_as("SELECT helpdesk, calendar_id, source FROM helpdesk_calendars")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        calendars,
        vec![("7002".into(), "shanghai".into(), "config".into())]
    );
    // The assignment moves to helpdesk 7001 (by name): the old one is gone.
    let moved = TWO_HELPDESKS_SLA.replace("\"7002\" = \"shanghai\"", "\"Support\" = \"shanghai\"");
    let ws = Workspace::with_toml(&format!("{base}{moved}"), &db);
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    assert_eq!(
        db.count("SELECT count(*) FROM helpdesk_calendars WHERE helpdesk = 'Support'")
            .await,
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM helpdesk_calendars").await, 1);
    for (section, key) in [
        (
            "[sla.helpdesk_calendars]\n\"7002\" = \"nowhere\"\n",
            "sla.helpdesk_calendars.7002",
        ),
        (
            "[[sla.targets]]\nid = \"t\"\nmetric = \"first_reply\"\nminutes = 5\nhelpdesk = \"\"\n",
            "sla.targets[0].helpdesk",
        ),
    ] {
        let bad = Workspace::with_toml(&format!("{base}[sla]\n{section}"), &db);
        let out = bad.run(&["migrate"], &[], None).await;
        assert_eq!(out.status.code(), Some(2), "{section}: {}", stderr(&out));
        assert!(stderr(&out).contains(key), "{section}: {}", stderr(&out));
    }
    assert_eq!(db.count("SELECT count(*) FROM helpdesk_calendars").await, 1);
}
