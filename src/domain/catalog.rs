//! The custom field catalog as rows: a field and its dropdown options (nested up to three levels,
//! flattened with their position path).

use chrono::{DateTime, Utc};

/// A `custom_field_catalog` row.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogField {
    pub field_id: String,
    pub helpdesk_id: Option<String>,
    pub key_name: Option<String>,
    pub display_name: Option<String>,
    pub field_type: Option<String>,
    pub position: Option<i32>,
    pub description: Option<String>,
    pub visible: Option<bool>,
    pub editable: Option<bool>,
    pub required: Option<bool>,
    pub dropdown_allow_multiple: Option<bool>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub created_by_id: Option<String>,
    pub updated_by_id: Option<String>,
    /// The item as the API sent it (JSON text).
    pub raw: String,
    pub options: Vec<CatalogOption>,
}

/// A `custom_field_options` row.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogOption {
    /// Positions from the top, `/`-separated: `2/0` is the third option's first child.
    pub option_path: String,
    pub parent_path: Option<String>,
    /// 1 at the top level.
    pub level: i16,
    /// Order among its siblings, from 0.
    pub position: i32,
    pub tag: Option<String>,
    pub display_name: Option<String>,
}
