//! The crate's layering (see the `//!` map in `src/lib.rs`): a module imports only from its own
//! layer or below, and no two modules import each other, directly or around a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules by layer, bottom first.
const LAYERS: [&[&str]; 5] = [
    &["config", "domain", "pace", "metrics", "telemetry"],
    &["feishu", "normalize", "store"],
    &["discover", "sync", "events", "reprocess"],
    &["scheduler", "http", "status", "sim"],
    &["console", "cli", "demo"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer: add it to LAYERS and lib.rs"))
}

/// `crate::module` imports of every top-level module, test modules left out.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(&src).expect("under src");
            let Some(first) = rel.iter().next().and_then(|c| c.to_str()) else {
                continue;
            };
            let module = first.trim_end_matches(".rs").to_owned();
            if matches!(module.as_str(), "lib" | "main") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read file");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let used = graph.entry(module.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    used.insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn modules_import_only_their_own_layer_or_below() {
    let graph = imports();
    let mut upward = Vec::new();
    for (module, used) in &graph {
        for target in used {
            if layer_of(target) > layer_of(module) {
                upward.push(format!("{module} -> {target}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports pointing up: {upward:?}");
}

/// The first import circle of a graph, if any (depth-first search for a back edge).
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|r| r == module) {
            return Some(path[at..].to_vec());
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_circles() {
    let circle = find_circle(&imports());
    assert!(circle.is_none(), "import circle: {circle:?}");
}

/// Inside each module folder, which sibling module each file imports (`super::x`,
/// `self::x` in a folder's own modules, `crate::folder::x`), test modules left out. A folder's
/// `mod.rs` is its entry point (its children reach its handle types through `super::`), so it
/// is not a node: the circles looked for are between siblings.
fn folder_imports() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut folders: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        let siblings: BTreeSet<String> = std::fs::read_dir(&dir)
            .expect("read folder")
            .filter_map(|e| {
                let path = e.expect("entry").path();
                let name = path.file_name()?.to_str()?.to_owned();
                match name.strip_suffix(".rs") {
                    Some("mod" | "lib" | "main") => None,
                    Some(stem) => Some(stem.to_owned()),
                    None if path.is_dir() => Some(name),
                    None => None,
                }
            })
            .collect();
        let folder = dir
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('/', "::");
        for entry in std::fs::read_dir(&dir).expect("read folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if folder.is_empty() || !siblings.contains(stem) {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read file");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let used = folders
                .entry(folder.clone())
                .or_default()
                .entry(stem.to_owned())
                .or_default();
            let absolute = format!("crate::{folder}::");
            for prefix in ["super::", absolute.as_str()] {
                for (i, _) in code.match_indices(prefix) {
                    let name: String = code[i + prefix.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if name != stem && siblings.contains(&name) {
                        used.insert(name);
                    }
                }
            }
        }
    }
    folders
}

#[test]
fn no_import_circles_inside_a_module_folder() {
    let folders = folder_imports();
    assert!(
        folders.get("store").is_some_and(|g| g.len() > 10),
        "the store folder was read: {:?}",
        folders.keys()
    );
    for (folder, graph) in &folders {
        let circle = find_circle(graph);
        assert!(
            circle.is_none(),
            "import circle inside src/{folder}/: {circle:?}"
        );
    }
}
