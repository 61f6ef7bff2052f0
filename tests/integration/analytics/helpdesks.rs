//! Several helpdesks in one database: the `helpdesks` name table (seeded by the upgrade from
//! the stored tickets, registered by the daemon), and what the reporting views show per
//! helpdesk.

use helpdesk_sync::config::Settings;
use helpdesk_sync::store::Store;
use helpdesk_sync::store::helpdesks::{HelpdeskName, StoredHelpdesk};

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
