//! The reporting schema is the BI contract: its views and columns (`tests/fixtures/
//! reporting_contract.txt`) only ever grow, ids are text, every view names its default time
//! column and every column is commented; a fresh database and an upgraded one end with the same
//! definitions; definitions are applied again only when they change; the read-only role reads
//! the reporting schema and nothing else.

use std::collections::BTreeMap;

use sqlx::Connection;
use sqlx::postgres::PgConnectOptions;

use crate::helpers::*;

/// The contract file: view → [(column, type)], in order.
fn contract() -> BTreeMap<String, Vec<(String, String)>> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reporting_contract.txt"
    ))
    .expect("reporting_contract.txt");
    let mut views: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (qualified, data_type) = line.split_once(' ').expect("view.column type");
        let (view, column) = qualified.split_once('.').expect("view.column");
        views
            .entry(view.to_owned())
            .or_default()
            .push((column.to_owned(), data_type.to_owned()));
    }
    views
}

/// The reporting schema as the database has it: view → [(column, type)], in order.
async fn reporting_columns(db: &TestDb) -> BTreeMap<String, Vec<(String, String)>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text
         FROM information_schema.columns WHERE table_schema = 'reporting'
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut views: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (view, column, data_type) in rows {
        views.entry(view).or_default().push((column, data_type));
    }
    views
}

async fn migrated_db() -> TestDb {
    let db = TestDb::new().await;
    let ws = Workspace::with_toml("", &db);
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    db
}

#[tokio::test]
async fn the_reporting_schema_keeps_its_contract() {
    let db = migrated_db().await;
    let actual = reporting_columns(&db).await;
    let promised = contract();
    assert!(promised.len() >= 13, "the contract lists every view");
    for (view, columns) in &promised {
        let have = actual
            .get(view)
            .unwrap_or_else(|| panic!("reporting.{view} is gone"));
        assert!(
            have.len() >= columns.len() && have[..columns.len()] == columns[..],
            "reporting.{view} changed its promised columns (only appending is allowed):\n\
             promised {columns:?}\nhave {have:?}"
        );
    }
    for (view, columns) in &actual {
        assert!(
            promised.contains_key(view),
            "reporting.{view} is new: add it to tests/fixtures/reporting_contract.txt"
        );
        for (column, data_type) in columns {
            // Ids above 2^53 are rounded by JavaScript: every id a browser sees is text.
            if column.ends_with("_id") {
                assert_eq!(data_type, "text", "reporting.{view}.{column} must be text");
            }
            assert!(
                !matches!(data_type.as_str(), "json" | "jsonb"),
                "reporting.{view}.{column}: no raw JSON in the reporting schema"
            );
        }
    }

    // Every view says which column is its default time column, and that column exists.
    let comments: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT c.relname::text, obj_description(c.oid, 'pg_class')
         FROM pg_class c WHERE c.relnamespace = 'reporting'::regnamespace AND c.relkind = 'v'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(comments.len(), actual.len());
    for (view, comment) in &comments {
        let comment = comment
            .as_deref()
            .unwrap_or_else(|| panic!("reporting.{view} has no comment"));
        let time_column = comment
            .split("Default time column: ")
            .nth(1)
            .and_then(|rest| {
                rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
            })
            .unwrap_or_else(|| panic!("reporting.{view}'s comment names no default time column"));
        let (_, data_type) = actual[view]
            .iter()
            .find(|(c, _)| c == time_column)
            .unwrap_or_else(|| panic!("reporting.{view} has no column {time_column}"));
        assert!(
            data_type.starts_with("timestamp") || data_type == "date",
            "reporting.{view}.{time_column} is a time ({data_type})"
        );
    }
    let uncommented: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname || '.' || a.attname FROM pg_class c
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.relnamespace = 'reporting'::regnamespace
           AND coalesce(col_description(c.oid, a.attnum), '') = ''",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        uncommented.is_empty(),
        "columns without a comment: {uncommented:?}"
    );
}

/// Every view and function definition and every comment, as text, for comparing databases.
async fn definitions(db: &TestDb) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT n.nspname || '.' || c.relname, pg_get_viewdef(c.oid)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('public', 'reporting') AND c.relkind IN ('v', 'm')
         UNION ALL
         SELECT 'function ' || p.oid::regprocedure::text, pg_get_functiondef(p.oid)
         FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prokind = 'f'
         UNION ALL
         SELECT 'comment ' || n.nspname || '.' || c.relname || '.' || coalesce(a.attname, ''),
                coalesce(d.description, '')
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0
         WHERE n.nspname IN ('public', 'reporting')
         UNION ALL
         SELECT 'grant ' || table_name, string_agg(privilege_type, ',' ORDER BY privilege_type)
         FROM information_schema.role_table_grants
         WHERE grantee = 'helpdesk_sync_reader' GROUP BY table_name
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_fresh_and_an_upgraded_database_end_with_identical_definitions() {
    let fresh = migrated_db().await;
    // An installation of the release before the reporting schema, with data in it.
    let upgraded = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.is_file() && name.as_str() < "20261206" {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    let old = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    old.run(&upgraded.pool).await.unwrap();
    let sim = start_sim(unlimited_sim(20)).await;
    let ws = Workspace::new(&sim, &upgraded, "");
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(
        upgraded
            .count("SELECT count(*) FROM reporting.tickets")
            .await,
        20
    );

    let (a, b) = (definitions(&fresh).await, definitions(&upgraded).await);
    assert!(a.len() > 100, "definitions were read ({})", a.len());
    let differing: Vec<&String> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| &x.0)
        .collect();
    assert_eq!(a.len(), b.len(), "the same objects");
    assert!(differing.is_empty(), "definitions differ: {differing:?}");
}

#[tokio::test]
async fn definitions_are_applied_again_only_when_they_change() {
    let db = migrated_db().await;
    let ws = Workspace::with_toml("", &db);
    let again = ws.run(&["migrate"], &[], None).await;
    assert_ok(&again);
    assert!(
        !stderr(&again).contains("applied reporting definitions"),
        "an unchanged definition is not applied again: {}",
        stderr(&again)
    );
    // As if notes.sql had changed since it was applied: only it is applied again.
    sqlx::query("UPDATE sql_definitions SET sha256 = 'old' WHERE name = 'notes.sql'")
        .execute(&db.pool)
        .await
        .unwrap();
    let changed = ws.run(&["migrate"], &[], None).await;
    assert_ok(&changed);
    let log = stderr(&changed);
    assert!(log.contains("applied reporting definitions"), "{log}");
    assert!(
        log.contains("notes.sql") && !log.contains("tickets.sql"),
        "{log}"
    );
}

#[tokio::test]
async fn the_reader_role_reads_the_reporting_schema_and_nothing_else() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(30)).await;
    let sla = "\n[sla]\ndefault_calendar = \"office\"\n\n[sla.calendars.office]\n\
               timezone = \"Asia/Shanghai\"\nhours = { weekdays = [\"09:00-18:00\"] }\n\n\
               [[sla.targets]]\nid = \"first-reply\"\nmetric = \"first_reply\"\nminutes = 240\n";
    let ws = Workspace::configured(&sim, &db, "", sla);
    assert_ok(&ws.run(&["sync"], &[], None).await);

    // A BI login, as README "Connect your BI tool" makes it.
    let login = format!("bi_{}", db.name());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {login} LOGIN PASSWORD 'bi-password' IN ROLE helpdesk_sync_reader"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let options: PgConnectOptions = db.url.parse().unwrap();
    let mut reader =
        sqlx::PgConnection::connect_with(&options.username(&login).password("bi-password"))
            .await
            .expect("connect as the reader");
    let views: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.views WHERE table_schema = 'reporting'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(views.len() >= 13);
    for view in &views {
        let sql = format!("SELECT count(*) FROM reporting.{view}");
        let rows: Result<i64, _> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut reader)
            .await;
        assert!(rows.is_ok(), "the reader reads reporting.{view}: {rows:?}");
    }
    let clocks: i64 = sqlx::query_scalar("SELECT count(*) FROM reporting.sla")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(clocks, 30, "SLA results are readable (functions and all)");
    for denied in [
        "SELECT count(*) FROM public.tickets",
        "SELECT raw FROM public.ticket_messages LIMIT 1",
        "SELECT count(*) FROM public.ticket_facts",
        "SELECT count(*) FROM public.ticket_sync_state",
        "SELECT count(*) FROM public.sync_runs",
        "SELECT count(*) FROM public.report_settings",
        "SELECT count(*) FROM public.sla_targets",
        "CREATE TABLE reporting.mine (a int)",
        "CREATE TABLE public.mine (a int)",
        "CREATE VIEW reporting.mine AS SELECT 1",
        "UPDATE reporting.people SET name = 'x'",
        "DELETE FROM reporting.notes",
    ] {
        let result = sqlx::raw_sql(sqlx::AssertSqlSafe(denied))
            .execute(&mut reader)
            .await;
        let message = format!("{:?}", result.as_ref().err());
        // Writes to a view that could never take them fail before the privilege check.
        let refused = message.contains("permission denied")
            || (denied.starts_with("UPDATE") || denied.starts_with("DELETE"))
                && message.contains("cannot");
        assert!(
            result.is_err() && refused,
            "the reader must not: {denied} ({message})"
        );
    }
    reader.close().await.ok();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {login}; DROP ROLE {login}"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
}
