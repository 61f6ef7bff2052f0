//! The custom field catalog: synced with the tickets, joined to their values and options;
//! a failing catalog call costs only the catalog.

use helpdesk_sync::sim::{Endpoint, Fault};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_catalog_is_synced_and_ticket_values_join_their_options() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(40)).await;
    let ws = TestConfig::new(&sim, &db).fast_list().workspace();
    // The first two reads fail (twice the retries' worth): the tickets are stored anyway.
    sim.state
        .inject_catalog(std::iter::repeat_n(Fault::InternalError, 6));
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert!(
        stdout(&out).contains("not refreshed: custom field catalog"),
        "{}",
        stdout(&out)
    );
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 40);
    assert_eq!(
        db.count("SELECT count(*) FROM custom_field_catalog").await,
        0
    );
    let run_error: Option<String> =
        sqlx::query_scalar("SELECT error FROM sync_runs ORDER BY run_id DESC LIMIT 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        run_error.as_deref().unwrap_or_default().contains("catalog"),
        "{run_error:?}"
    );

    // Next cycle: the catalog is still due and now answers.
    assert_ok(&ws.run(&["sync"], &[], None).await);
    type Field = (String, String, Option<String>, Option<i32>, Option<bool>);
    let fields: Vec<Field> = sqlx::query_as(
        "SELECT field_id, key_name, field_type, position, dropdown_allow_multiple
         FROM custom_field_catalog ORDER BY position",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        fields,
        vec![
            (
                "6794281200000000001".into(),
                "platform".into(),
                Some("dropdown".into()),
                Some(1),
                Some(false)
            ),
            (
                "6794281200000000002".into(),
                "order_no".into(),
                Some("string".into()),
                Some(2),
                None
            ),
            (
                "6794281200000000003".into(),
                "category".into(),
                Some("dropdown_nested".into()),
                Some(3),
                Some(false)
            ),
        ]
    );
    let options: Vec<(String, i16, Option<String>)> = sqlx::query_as(
        "SELECT option_path, level, tag FROM custom_field_options
         WHERE field_id = '6794281200000000003' ORDER BY option_path",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        options,
        vec![
            ("0".into(), 1, Some("hardware".into())),
            ("0/0".into(), 2, Some("laptop".into())),
            ("0/0/0".into(), 3, Some("battery".into())),
            ("0/0/1".into(), 3, Some("screen".into())),
            ("1".into(), 1, Some("software".into())),
        ]
    );
    // Values join their option; a string field has none.
    let joined: Vec<(String, Option<String>, Option<i16>, String)> = sqlx::query_as(
        "SELECT DISTINCT value, option_tag, option_level, field_label
         FROM ticket_custom_field_values
         WHERE field_id IN ('6794281200000000001', '6794281200000000003')
         ORDER BY value",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(joined.contains(&(
        "Battery".into(),
        Some("battery".into()),
        Some(3),
        "Category".into()
    )));
    assert!(joined.contains(&(
        "Laptop".into(),
        Some("laptop".into()),
        Some(2),
        "Category".into()
    )));
    assert!(joined.contains(&("iOS".into(), Some("ios".into()), Some(1), "Platform".into())));
    assert_eq!(
        db.count(
            "SELECT count(*) FROM ticket_custom_field_values
             WHERE field_id = '6794281200000000002' AND option_tag IS NOT NULL"
        )
        .await,
        0
    );

    // Read at most hourly: the next cycle does not ask again.
    let asked = sim.state.count_status(Endpoint::Catalog, 200);
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(sim.state.count_status(Endpoint::Catalog, 200), asked);

    // A field gone from the catalog keeps its row, marked removed, once the hour is up.
    let mut catalog = helpdesk_sync::sim::data::catalog();
    catalog.retain(|f| f["key_name"] != json!("order_no"));
    sim.state.set_catalog(catalog);
    sqlx::query("UPDATE custom_field_catalog SET synced_at = now() - interval '2 hours'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_ok(&ws.run(&["sync"], &[], None).await);
    let removed: Vec<String> = sqlx::query_scalar(
        "SELECT key_name FROM custom_field_catalog WHERE removed_at IS NOT NULL",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(removed, vec!["order_no".to_owned()]);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM ticket_custom_field_values
             WHERE field_id = '6794281200000000002' AND NOT in_catalog"
        )
        .await,
        db.count(
            "SELECT count(*) FROM ticket_custom_fields WHERE field_id = '6794281200000000002'"
        )
        .await
    );
}
