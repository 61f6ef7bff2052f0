//! The custom field catalog in Postgres: fields upserted, their options replaced, fields gone
//! from the catalog kept with `removed_at`. One transaction per sync of the whole catalog.

use std::time::Duration;

use super::Store;
use crate::domain::CatalogField;

impl Store {
    /// Whether the catalog (of this store's helpdesk, [`Store::for_helpdesk`]) is due for a
    /// sync: never synced, or last synced `every` ago.
    pub async fn catalog_due(&self, every: Duration) -> anyhow::Result<bool> {
        let synced: Option<bool> = sqlx::query_scalar(
            "SELECT max(synced_at) > now() - make_interval(secs => $1) FROM custom_field_catalog
             WHERE ($2::text IS NULL OR helpdesk_id = $2)",
        )
        .bind(every.as_secs_f64())
        .bind(self.helpdesk())
        .fetch_one(&self.pool)
        .await?;
        Ok(synced != Some(true))
    }

    /// Stores the whole catalog as just read: every field upserted with its options, fields
    /// not in it marked removed (their rows stay: tickets may still name them). Scoped to a
    /// helpdesk, only that helpdesk's fields are marked (each helpdesk has its own catalog).
    pub async fn replace_catalog(&self, fields: &[CatalogField]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        for f in fields {
            sqlx::query(
                "INSERT INTO custom_field_catalog AS c
                    (field_id, helpdesk_id, key_name, display_name, field_type, position,
                     description, visible, editable, required, dropdown_allow_multiple,
                     created_at, updated_at, created_by_id, updated_by_id, raw, synced_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                         $16::jsonb, now())
                 ON CONFLICT (field_id) DO UPDATE SET
                    helpdesk_id = EXCLUDED.helpdesk_id, key_name = EXCLUDED.key_name,
                    display_name = EXCLUDED.display_name, field_type = EXCLUDED.field_type,
                    position = EXCLUDED.position, description = EXCLUDED.description,
                    visible = EXCLUDED.visible, editable = EXCLUDED.editable,
                    required = EXCLUDED.required,
                    dropdown_allow_multiple = EXCLUDED.dropdown_allow_multiple,
                    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
                    created_by_id = EXCLUDED.created_by_id, updated_by_id = EXCLUDED.updated_by_id,
                    raw = EXCLUDED.raw, synced_at = now(), removed_at = NULL",
            )
            .bind(&f.field_id)
            // Read with this helpdesk's token: its fields, whatever the JSON says.
            .bind(self.helpdesk().or(f.helpdesk_id.as_deref()))
            .bind(&f.key_name)
            .bind(&f.display_name)
            .bind(&f.field_type)
            .bind(f.position)
            .bind(&f.description)
            .bind(f.visible)
            .bind(f.editable)
            .bind(f.required)
            .bind(f.dropdown_allow_multiple)
            .bind(f.created_at)
            .bind(f.updated_at)
            .bind(&f.created_by_id)
            .bind(&f.updated_by_id)
            .bind(&f.raw)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM custom_field_options WHERE field_id = $1")
                .bind(&f.field_id)
                .execute(&mut *tx)
                .await?;
            let o = &f.options;
            sqlx::query(
                "INSERT INTO custom_field_options
                    (field_id, option_path, parent_path, level, position, tag, display_name)
                 SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::int2[], $5::int4[],
                                          $6::text[], $7::text[])",
            )
            .bind(&f.field_id)
            .bind(o.iter().map(|o| o.option_path.as_str()).collect::<Vec<_>>())
            .bind(
                o.iter()
                    .map(|o| o.parent_path.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(o.iter().map(|o| o.level).collect::<Vec<_>>())
            .bind(o.iter().map(|o| o.position).collect::<Vec<_>>())
            .bind(o.iter().map(|o| o.tag.as_deref()).collect::<Vec<_>>())
            .bind(
                o.iter()
                    .map(|o| o.display_name.as_deref())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
        }
        let ids: Vec<&str> = fields.iter().map(|f| f.field_id.as_str()).collect();
        sqlx::query(
            "UPDATE custom_field_catalog SET removed_at = now()
             WHERE removed_at IS NULL AND NOT (field_id = ANY($1))
               AND ($2::text IS NULL OR helpdesk_id = $2)",
        )
        .bind(&ids)
        .bind(self.helpdesk())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
