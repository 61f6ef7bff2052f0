//! After the tickets of a cycle: the custom field catalog (at most every
//! [`CATALOG_REFRESH`]) and the daily backlog table. Each failing costs only itself: it is
//! logged, reported in the cycle's summary, and tried again next cycle.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::CatalogField;
use crate::feishu::{ApiError, FeishuClient};
use crate::normalize::catalog::normalize_catalog_field;
use crate::store::Store;

/// How often the custom field catalog is read again.
pub const CATALOG_REFRESH: Duration = Duration::from_secs(3600);

/// A catalog longer than this many pages is cut short (a loop in the API's page tokens).
const MAX_CATALOG_PAGES: usize = 100;

/// Reads the whole catalog and stores it, when due. Returns the fields stored (None: not due).
pub(super) async fn refresh_catalog(
    store: &Store,
    client: &FeishuClient,
    stop: &CancellationToken,
) -> Result<Option<u64>, String> {
    if !store
        .catalog_due(CATALOG_REFRESH)
        .await
        .map_err(|e| format!("{e:#}"))?
    {
        return Ok(None);
    }
    let fields = read_catalog(client, stop)
        .await
        .map_err(|e| format!("custom field catalog: {e}"))?;
    store
        .replace_catalog(&fields)
        .await
        .map_err(|e| format!("storing the custom field catalog: {e:#}"))?;
    Ok(Some(fields.len() as u64))
}

/// Every page of the catalog, normalized; an unreadable item is logged and skipped, a field
/// id met again replaces the earlier item (logged; counted once), and a page token met again
/// (a loop in the API's paging) ends the reading (logged; what was read is stored).
async fn read_catalog(
    client: &FeishuClient,
    stop: &CancellationToken,
) -> Result<Vec<CatalogField>, ApiError> {
    let mut fields: Vec<CatalogField> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut token: Option<String> = None;
    let mut seen_tokens: HashSet<String> = HashSet::new();
    for page_number in 1..=MAX_CATALOG_PAGES {
        let page = client.list_custom_fields(token.as_deref(), stop).await?;
        let mut listed_again: Vec<String> = Vec::new();
        for item in &page.items {
            match normalize_catalog_field(item) {
                Ok(n) => {
                    for warning in &n.warnings {
                        tracing::warn!(endpoint = "catalog", field_id = %n.field.field_id, "{warning}");
                    }
                    match index.get(&n.field.field_id) {
                        Some(&at) => {
                            listed_again.push(n.field.field_id.clone());
                            fields[at] = n.field;
                        }
                        None => {
                            index.insert(n.field.field_id.clone(), fields.len());
                            fields.push(n.field);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(endpoint = "catalog", error = %e, "skipping a catalog item")
                }
            }
        }
        if let Some(first) = listed_again.first() {
            tracing::warn!(
                endpoint = "catalog",
                page = page_number,
                fields = listed_again.len(),
                field_id = %first,
                "the catalog lists field ids it listed before; the later item is kept, each field counted once"
            );
        }
        if let Some(current) = token.take() {
            seen_tokens.insert(current);
        }
        match page.next_page_token {
            Some(next) if seen_tokens.contains(&next) => {
                tracing::warn!(
                    endpoint = "catalog",
                    pages = page_number,
                    page_token = %next,
                    "the catalog's page tokens loop (this one was read before); stopped, stored what was read"
                );
                return Ok(fields);
            }
            Some(next) => token = Some(next),
            None => return Ok(fields),
        }
    }
    tracing::warn!(
        endpoint = "catalog",
        pages = MAX_CATALOG_PAGES,
        "the custom field catalog did not end; stored what was read"
    );
    Ok(fields)
}
