// `sqlx::migrate!` embeds migrations/ at compile time: rebuild when a migration is added.
// The reporting definitions (migrations/reporting/*.sql) are embedded too, in name order, as
// `REPORTING_DEFINITIONS` in `$OUT_DIR/reporting_definitions.rs`.
use std::fmt::Write;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let dir = std::path::Path::new("migrations/reporting");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::from("pub static REPORTING_DEFINITIONS: &[(&str, &str)] = &[\n");
    for name in &names {
        let path = std::fs::canonicalize(dir.join(name)).expect("a definition file");
        writeln!(out, "    ({name:?}, include_str!({:?})),", path.display()).expect("write");
    }
    out.push_str("];\n");
    let target = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR"))
        .join("reporting_definitions.rs");
    std::fs::write(target, out).expect("write reporting_definitions.rs");
}
