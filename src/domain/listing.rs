//! List-first ingestion's plain data: where a ticket's stored content came from, how a list
//! row compared with its detail, and which fields list rows are trusted for.

use std::collections::BTreeSet;

/// Where a ticket's stored content came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentSource {
    /// The detail endpoint: the truth.
    #[default]
    Detail,
    /// A list row (every field the list carries and is trusted for, over the last detail).
    List,
}

impl ContentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Detail => "detail",
            Self::List => "list",
        }
    }
}

/// How one field of a list row compared with the detail of the same `updated_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldCheck {
    Agreed,
    Differed,
    /// The detail has the field (not null); the list row lacks it.
    Missing,
}

impl FieldCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agreed => "agreed",
            Self::Differed => "differed",
            Self::Missing => "missing",
        }
    }
}

/// The field every dashboard counts on: if list rows get it wrong, storing them is pointless.
pub const ESSENTIAL_FIELD: &str = "status";

/// Which fields list rows are trusted for, as verified so far (`list_field_agreement`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListTrust {
    /// Fields found to differ from the detail at least once: never taken from list rows.
    pub distrusted: BTreeSet<String>,
    /// Fields compared so far (agreed, differed or missing at least once).
    pub compared: BTreeSet<String>,
}

/// A list row's version stamp: always its own (on the list's clock), never compared with the
/// detail's field by field (`normalize::listed::compare_with_detail`).
pub const VERSION_FIELD: &str = "updated_at";

impl ListTrust {
    /// Whether list rows may provide `field` (not yet compared counts as trusted; the version
    /// stamp always).
    pub fn takes(&self, field: &str) -> bool {
        field == VERSION_FIELD || (field != "tags" && !self.distrusted.contains(field))
    }

    /// The list as a whole is not trustworthy: its status was wrong, or most compared fields
    /// were. Then list rows are not stored at all (discovery only, as before list-first).
    pub fn is_disabled(&self) -> bool {
        self.distrusted.contains(ESSENTIAL_FIELD)
            || (!self.compared.is_empty() && self.distrusted.len() * 2 > self.compared.len())
    }
}

/// A row of `list_field_agreement`: how list rows compared with details, for one field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct FieldAgreement {
    pub field: String,
    pub agreed: i64,
    pub differed: i64,
    pub missing: i64,
    pub trusted: bool,
}

/// List-first ingestion as it stands: the verification so far, and the tickets whose stored
/// content still waits for its detail.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ListRowsState {
    pub fields: Vec<FieldAgreement>,
    /// Tickets whose stored content came from a list row, not yet verified by the detail.
    pub unverified_tickets: i64,
}

impl ListRowsState {
    pub fn trust(&self) -> ListTrust {
        // An older build compared the version stamp too: such a row counts for nothing.
        let fields = || self.fields.iter().filter(|f| f.field != VERSION_FIELD);
        ListTrust {
            distrusted: fields()
                .filter(|f| !f.trusted)
                .map(|f| f.field.clone())
                .collect(),
            compared: fields().map(|f| f.field.clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_is_per_field_and_degrades_as_a_whole() {
        let mut trust = ListTrust::default();
        assert!(trust.takes("status") && !trust.takes("tags") && !trust.is_disabled());
        trust.compared = ["status", "score", "channel", "solve"]
            .map(String::from)
            .into();
        trust.distrusted.insert("score".into());
        assert!(!trust.takes("score") && trust.takes("channel") && !trust.is_disabled());
        trust.distrusted.insert("channel".into());
        assert!(!trust.is_disabled(), "half the fields is not most of them");
        trust.distrusted.insert("solve".into());
        assert!(trust.is_disabled());
        let status_wrong = ListTrust {
            distrusted: ["status".to_string()].into(),
            compared: ["status", "score", "channel"].map(String::from).into(),
        };
        assert!(status_wrong.is_disabled());
    }
}
