//! The man pages: mapispool(1) carries FILES, ENVIRONMENT and EXIT STATUS, and
//! mapispool-profile(5) lists exactly the keys the profile loader accepts (read from
//! `crates/mapispool/src/profile/raw.rs`, so a key added there and not here fails).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Env, run};

/// The serde field names of each `Raw*` table in raw.rs, by the table's name in a profile.
fn keys_in_raw_rs() -> BTreeMap<&'static str, BTreeSet<String>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mapispool/src/profile/raw.rs"
    );
    let source = std::fs::read_to_string(path).expect("raw.rs");
    let tables = [
        ("struct RawStore {", "store"),
        ("struct RawSpooler {", "spooler"),
        ("struct RawTransport {", "transport"),
        ("struct RawConnect {", "transport.connect_command"),
        (
            "raw_endpoint!(RawOutbound, kind: OutboundKind, {",
            "transport.outbound",
        ),
        (
            "raw_endpoint!(RawInbound, kind: InboundKind, {",
            "transport.inbound",
        ),
        ("struct RawGroup {", "group"),
        ("struct RawWeb {", "web"),
    ];
    let mut keys = BTreeMap::new();
    for (start, table) in tables {
        let body = &source[source.find(start).unwrap_or_else(|| panic!("{start}"))..];
        let body = &body[start.len()..body.find("\n}").expect("end of the table")];
        let mut names: BTreeSet<String> = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#') && !l.starts_with("//"))
            .filter_map(|l| l.split_once(':').map(|(name, _)| name.to_string()))
            .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        if table.starts_with("transport.o") || table.starts_with("transport.i") {
            names.insert("kind".to_string());
        }
        // Sub-tables, documented under their own heading.
        for sub in ["outbound", "inbound", "connect_command"] {
            names.remove(sub);
        }
        assert!(!names.is_empty(), "{table}");
        keys.insert(table, names);
    }
    keys
}

/// The keys mapispool-profile(5) lists, by the `.SS "[table]"` they are under (a heading may
/// name two tables, "transport.outbound, transport.inbound").
fn keys_in_page(roff: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut tables: Vec<String> = Vec::new();
    let mut lines = roff.lines();
    while let Some(line) = lines.next() {
        if let Some(heading) = line.strip_prefix(".SS \"[") {
            let heading = heading.trim_end_matches("]\"");
            tables = heading.split(", ").map(str::to_string).collect();
        } else if line.starts_with(".SH") {
            tables.clear();
        } else if line == ".TP" && !tables.is_empty() {
            let name = lines
                .next()
                .and_then(|l| l.strip_prefix(".B "))
                .expect(".B key");
            for table in &tables {
                keys.entry(table.clone())
                    .or_default()
                    .insert(name.to_string());
            }
        }
    }
    keys
}

#[test]
fn the_profile_page_lists_every_key_the_loader_accepts_and_no_other() {
    let env = Env::new();
    let (roff, _) = run(env.bare_cmd(&["man", "profile"]), 0);
    assert!(roff.starts_with(".TH mapispool-profile 5\n"), "{roff}");
    let from_page = keys_in_page(&roff);
    let from_source = keys_in_raw_rs();
    for (table, names) in &from_source {
        let page = from_page.get(*table).cloned().unwrap_or_default();
        assert_eq!(&page, names, "[{table}]: the page's keys, raw.rs's keys");
    }
    let tables: BTreeSet<&str> = from_page.keys().map(String::as_str).collect();
    let known: BTreeSet<&str> = from_source.keys().copied().collect();
    assert_eq!(tables, known);
    // Only pages we ship are referred to.
    assert!(
        roff.contains(".SH \"SEE ALSO\"\n\\fBmapispool\\fR(1)\n"),
        "{roff}"
    );
}

#[test]
fn the_command_page_has_files_environment_exit_status_and_only_shipped_references() {
    let env = Env::new();
    let (roff, _) = run(env.bare_cmd(&["man"]), 0);
    let (same, _) = run(env.bare_cmd(&["man", "mapispool"]), 0);
    assert_eq!(roff, same);
    for section in [
        ".SH FILES",
        ".SH ENVIRONMENT",
        ".SH \"EXIT STATUS\"",
        ".SH \"SEE ALSO\"",
    ] {
        assert!(roff.contains(&format!("\n{section}\n")), "{section}");
    }
    let section = |name: &str| {
        let start = roff.find(&format!("\n{name}\n")).expect(name) + name.len() + 2;
        let rest = &roff[start..];
        rest[..rest.find("\n.SH ").map_or(rest.len(), |e| e + 1)].to_string()
    };
    // Every variable the code reads is documented.
    let environment = section(".SH ENVIRONMENT");
    for var in [
        "MAPISPOOL_PROFILE",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_RUNTIME_DIR",
        "NO_COLOR",
        "RUST_LOG",
        "JOURNAL_STREAM",
        "NOTIFY_SOCKET",
    ] {
        assert!(environment.contains(var), "{var}");
    }
    let files = section(".SH FILES");
    for file in ["profile.toml", "store.db", ".lock", ".sock"] {
        assert!(files.contains(file), "{file}");
    }
    // The exit codes are those the binary uses (exit.rs), each with its own entry.
    let exit_status = section(".SH \"EXIT STATUS\"");
    let codes: Vec<&str> = exit_status
        .lines()
        .filter_map(|l| l.strip_prefix(".B ").or_else(|| l.strip_prefix(".BR ")))
        .collect();
    assert_eq!(
        codes,
        ["0", "1", "2", "3", "4", "64 \", \" 65 \", \" 75 \", \" 78"]
    );
    // Exit 2 is what a bad command line really gives.
    run(env.bare_cmd(&["man", "nosuchpage"]), 2);
    assert_eq!(
        section(".SH \"SEE ALSO\""),
        "\\fBmapispool\\-profile\\fR(5)\n"
    );
}
