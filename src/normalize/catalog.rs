//! One custom field of the catalog: its wire JSON → a [`CatalogField`] with its dropdown
//! options flattened (nested up to three levels; deeper ones are reported and dropped). An
//! item nested deeper than [`MAX_JSON_DEPTH`] is cut there first, so the field is kept.

use serde::Deserialize;

use super::{Normalizer, clean, repair_surrogate_escapes, sanitize_raw_json};
use crate::domain::{CatalogField, CatalogOption};
use crate::feishu::wire::{Id, Lenient, RawCatalogField, RawOption, RawUserRef};

/// Dropdowns nest at most this deep (the API's documented limit).
pub const MAX_OPTION_LEVELS: i16 = 3;

/// JSON nesting read in one catalog item: below it, values are replaced by `null` (and a
/// warning). Under serde_json's recursion limit (128), which would refuse the whole item, and
/// far below what Postgres' `jsonb` accepts; a dropdown level costs two JSON levels.
pub const MAX_JSON_DEPTH: usize = 64;

/// `text` (JSON) with every array or object opening deeper than `max_depth` replaced by
/// `null`, and whether any was. Strings are skipped as strings; the text is not validated.
pub fn cap_json_depth(text: &str, max_depth: usize) -> (std::borrow::Cow<'_, str>, bool) {
    let mut out = String::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    // While inside a value being cut: nothing is copied until it closes.
    let mut cutting = false;
    let mut copied_until = 0;
    let mut cut_any = false;
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth == max_depth + 1 && !cutting {
                    out.push_str(&text[copied_until..i]);
                    out.push_str("null");
                    cutting = true;
                    cut_any = true;
                }
            }
            b']' | b'}' => {
                if depth == max_depth + 1 && cutting {
                    cutting = false;
                    copied_until = i + 1;
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    if !cut_any {
        return (std::borrow::Cow::Borrowed(text), false);
    }
    if !cutting {
        out.push_str(&text[copied_until..]);
    }
    (std::borrow::Cow::Owned(out), true)
}

/// Why a catalog item could not be read at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogItemError {
    #[error("the catalog item is not a JSON object: {0}")]
    NotAnObject(String),
    #[error("the catalog item has no ticket_customized_field_id")]
    MissingId,
}

/// A catalog field and the field-level problems met on the way (logged by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedField {
    pub field: CatalogField,
    pub warnings: Vec<String>,
}

/// Normalizes one item of the catalog (`data.items[]`).
pub fn normalize_catalog_field(raw_json: &str) -> Result<NormalizedField, CatalogItemError> {
    let raw_json = repair_surrogate_escapes(raw_json);
    let (capped, cut) = cap_json_depth(&raw_json, MAX_JSON_DEPTH);
    let raw_json = capped.into_owned();
    let value: serde_json::Value = serde_json::from_str(&raw_json)
        .map_err(|e| CatalogItemError::NotAnObject(e.to_string()))?;
    if !value.is_object() {
        return Err(CatalogItemError::NotAnObject(
            raw_json.chars().take(40).collect(),
        ));
    }
    let wire = RawCatalogField::deserialize(value)
        .map_err(|e| CatalogItemError::NotAnObject(e.to_string()))?;
    let mut n = Normalizer::default();
    if cut {
        n.warnings.push(format!(
            "the item nests deeper than {MAX_JSON_DEPTH} JSON levels; read (and stored in raw) down to there"
        ));
    }
    let Some(Id(field_id)) = n.take(
        "ticket_customized_field_id",
        wire.ticket_customized_field_id,
    ) else {
        return Err(CatalogItemError::MissingId);
    };
    let by = |n: &mut Normalizer, field: &str, value: Lenient<RawUserRef>| {
        n.take(field, value)
            .and_then(|RawUserRef(id)| id.map(|Id(s)| clean(s)))
    };
    let mut options = Vec::new();
    if let Some(dropdown) = n.take("dropdown_options", wire.dropdown_options) {
        n.options(&mut options, dropdown.children, None, 1);
    }
    let field = CatalogField {
        field_id: clean(field_id),
        helpdesk_id: n
            .take("helpdesk_id", wire.helpdesk_id)
            .map(|Id(s)| clean(s)),
        key_name: n.text("key_name", wire.key_name),
        display_name: n.text("display_name", wire.display_name),
        field_type: n.text("field_type", wire.field_type),
        position: n
            .take("position", wire.position)
            .and_then(|p| i32::try_from(p).ok()),
        description: n.text("description", wire.description),
        visible: n.take("visible", wire.visible),
        editable: n.take("editable", wire.editable),
        required: n.take("required", wire.required),
        dropdown_allow_multiple: n.take("dropdown_allow_multiple", wire.dropdown_allow_multiple),
        created_at: n.epoch("created_at", wire.created_at),
        updated_at: n.epoch("updated_at", wire.updated_at),
        created_by_id: by(&mut n, "created_by", wire.created_by),
        updated_by_id: by(&mut n, "updated_by", wire.updated_by),
        raw: sanitize_raw_json(&raw_json),
        options,
    };
    Ok(NormalizedField {
        field,
        warnings: n.warnings,
    })
}

impl Normalizer {
    /// Appends `children` (at `level`, under `parent`) and their descendants, depth first.
    fn options(
        &mut self,
        out: &mut Vec<CatalogOption>,
        children: Lenient<Vec<Lenient<RawOption>>>,
        parent: Option<&str>,
        level: i16,
    ) {
        let Some(children) = self.take("dropdown_options.children", children) else {
            return;
        };
        if level > MAX_OPTION_LEVELS {
            self.warnings.push(format!(
                "dropdown options nested deeper than {MAX_OPTION_LEVELS} levels under {}; not stored",
                parent.unwrap_or("the top")
            ));
            return;
        }
        for (position, child) in children.into_iter().enumerate() {
            let Some(option) = self.take("dropdown_options.children[]", child) else {
                continue;
            };
            let path = match parent {
                Some(p) => format!("{p}/{position}"),
                None => position.to_string(),
            };
            out.push(CatalogOption {
                option_path: path.clone(),
                parent_path: parent.map(str::to_owned),
                level,
                position: position as i32,
                tag: self.text("tag", option.tag),
                display_name: self.text("display_name", option.display_name),
            });
            self.options(out, option.children, Some(&path), level + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_dropdown_flattens_with_paths_and_levels() {
        let raw = r#"{"ticket_customized_field_id": "6794281200000000003", "helpdesk_id": "1",
            "key_name": "category", "display_name": "Category", "position": "3",
            "field_type": "dropdown_nested", "visible": true, "editable": true, "required": false,
            "created_at": "1616920429000", "updated_at": "1616920429000",
            "created_by": {"id": "ou_admin", "name": "Admin"}, "updated_by": "ou_admin2",
            "dropdown_allow_multiple": false,
            "dropdown_options": {"children": [
                {"tag": "hw", "display_name": "Hardware", "children": [
                    {"tag": "hw-laptop", "display_name": "Laptop", "children": [
                        {"tag": "hw-laptop-battery", "display_name": "Battery",
                         "children": [{"tag": "too-deep", "display_name": "Too deep"}]}]}]},
                {"tag": "sw", "display_name": "Software"}]}}"#;
        let n = normalize_catalog_field(raw).unwrap();
        let f = &n.field;
        assert_eq!(f.field_id, "6794281200000000003");
        assert_eq!(f.position, Some(3));
        assert_eq!(f.created_by_id.as_deref(), Some("ou_admin"));
        assert_eq!(f.updated_by_id.as_deref(), Some("ou_admin2"));
        assert_eq!(f.created_at.unwrap().timestamp_millis(), 1616920429000);
        let rows: Vec<(&str, Option<&str>, i16, Option<&str>)> = f
            .options
            .iter()
            .map(|o| {
                (
                    o.option_path.as_str(),
                    o.parent_path.as_deref(),
                    o.level,
                    o.display_name.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("0", None, 1, Some("Hardware")),
                ("0/0", Some("0"), 2, Some("Laptop")),
                ("0/0/0", Some("0/0"), 3, Some("Battery")),
                ("1", None, 1, Some("Software")),
            ]
        );
        assert_eq!(n.warnings.len(), 1, "{:?}", n.warnings);
        assert!(n.warnings[0].contains("deeper than 3"));
    }

    #[test]
    fn nesting_is_capped_outside_strings_only() {
        let (same, cut) = cap_json_depth(r#"{"a":[1,{"b":"[[[{"}]}"#, 3);
        assert!(!cut);
        assert_eq!(same, r#"{"a":[1,{"b":"[[[{"}]}"#);
        let (capped, cut) = cap_json_depth(r#"{"a":[1,{"b":[[2]],"c":"]\"}"}],"d":{}}"#, 2);
        assert!(cut);
        assert_eq!(capped, r#"{"a":[1,null],"d":{}}"#);
        serde_json::from_str::<serde_json::Value>(&capped).unwrap();
    }

    #[test]
    fn a_200_level_option_tree_keeps_its_field_and_three_levels() {
        let mut children = "[]".to_owned();
        for level in (1..=200).rev() {
            children = format!(r#"[{{"tag":"l{level}","children":{children}}}]"#);
        }
        let raw = format!(
            r#"{{"ticket_customized_field_id":"1","dropdown_options":{{"children":{children}}}}}"#
        );
        let n = normalize_catalog_field(&raw).unwrap();
        assert_eq!(n.field.options.len(), 3);
        assert_eq!(n.warnings.len(), 2, "{:?}", n.warnings);
        serde_json::from_str::<serde_json::Value>(&n.field.raw).unwrap();
    }

    #[test]
    fn an_item_without_id_or_object_is_refused() {
        assert_eq!(
            normalize_catalog_field(r#"{"key_name": "x"}"#),
            Err(CatalogItemError::MissingId)
        );
        assert!(normalize_catalog_field("[1]").is_err());
        let odd = normalize_catalog_field(
            r#"{"ticket_customized_field_id": 42, "visible": "maybe", "position": "x"}"#,
        )
        .unwrap();
        assert_eq!(odd.field.field_id, "42");
        assert_eq!(odd.field.visible, None);
        assert_eq!(odd.warnings.len(), 2, "{:?}", odd.warnings);
    }
}
