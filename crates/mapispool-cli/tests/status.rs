//! `mapispool status`: the status table with `--where`, `--columns`, `--sort` and `--json`,
//! and how bad input is refused.

mod common;

use common::{Env, column, json, run, stderr, stdout};
use serde_json::json;

/// The row of the text table whose first cell is `name`.
fn row<'a>(table: &'a str, name: &str) -> Option<&'a str> {
    table
        .lines()
        .find(|l| l.trim_start_matches('│').split_whitespace().next() == Some(name))
}

#[test]
fn the_text_table_names_flag_bits_and_enumerations() {
    let env = Env::new();
    let out = stdout(env.me_cmd(&["status"]), 0);
    for want in [
        "MAPI Subsystem",
        "MAPI Spooler",
        "Personal Folders",
        "MAPI_SUBSYSTEM",
        "MAPI_SPOOLER",
        "MAPI_STORE_PROVIDER",
        "MAPI_TRANSPORT_PROVIDER",
        "AVAILABLE|INBOUND_ENABLED|OUTBOUND_ENABLED",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    // Headings drop PR_ for width; numbers are not shown where a name exists.
    assert!(out.contains("STATUS_CODE") && !out.contains("PR_STATUS_CODE"));
    assert!(!out.contains("1114113"), "raw PR_STATUS_CODE in:\n{out}");
    // home offers FlushQueues on its own status object, work (flush_queues = false) does not.
    let home = row(&out, "home").expect("a row for home");
    let work = row(&out, "work").expect("a row for work");
    assert!(home.contains("VALIDATE_STATE|FLUSH_QUEUES"), "{home}");
    assert!(
        work.contains("VALIDATE_STATE") && !work.contains("FLUSH_QUEUES"),
        "{work}"
    );
}

#[test]
fn where_keeps_only_transports_that_can_flush_themselves() {
    let env = Env::new();
    let out = stdout(
        env.me_cmd(&[
            "status",
            "--where",
            "PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDER && PR_RESOURCE_METHODS & STATUS_FLUSH_QUEUES",
        ]),
        0,
    );
    assert!(row(&out, "home").is_some(), "{out}");
    for gone in ["work", "MAPI", "Personal"] {
        assert!(
            row(&out, gone).is_none(),
            "{gone} should be filtered out:\n{out}"
        );
    }

    // Without the bitmask both transports, and nothing else.
    let table = json(
        env.me_cmd(&[
            "status",
            "--json",
            "--where",
            "PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDER",
        ]),
        0,
    );
    assert_eq!(column(&table, "PR_DISPLAY_NAME"), ["home", "work"]);
}

#[test]
fn where_content_match_can_ignore_case() {
    let env = Env::new();
    let names = |expr: &str| {
        column(
            &json(env.me_cmd(&["status", "--json", "--where", expr]), 0),
            "PR_DISPLAY_NAME",
        )
    };
    assert_eq!(names(r#"PR_DISPLAY_NAME ~= "WORK"i"#), ["work"]);
    assert!(names(r#"PR_DISPLAY_NAME ~= "WORK""#).is_empty());
    assert_eq!(
        names(r#"PR_DISPLAY_NAME ^= "mapi s"i"#),
        ["MAPI Subsystem", "MAPI Spooler"]
    );
    assert_eq!(
        names("!(PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDER)"),
        ["MAPI Subsystem", "MAPI Spooler", "Personal Folders"]
    );
}

#[test]
fn columns_by_name_and_by_hex() {
    let env = Env::new();
    let table = json(
        env.me_cmd(&[
            "status",
            "--json",
            "--columns",
            "PR_DISPLAY_NAME,0x3E030003, pr_status_code ,PR_ENTRYID",
            "--where",
            "PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDER",
        ]),
        0,
    );
    assert_eq!(
        table["columns"],
        json!([
            { "name": "PR_DISPLAY_NAME", "tag": "0x3001001F" },
            { "name": "PR_RESOURCE_TYPE", "tag": "0x3E030003" },
            { "name": "PR_STATUS_CODE", "tag": "0x3E040003" },
            { "name": "PR_ENTRYID", "tag": "0x0FFF0102" },
        ])
    );
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    for r in rows {
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(
            !keys.contains(&"PR_STATUS_STRING"),
            "column not asked for: {r}"
        );
        assert_eq!(r["PR_RESOURCE_TYPE"], json!(36));
        assert_eq!(r["PR_RESOURCE_TYPE_text"], json!("MAPI_TRANSPORT_PROVIDER"));
        assert_eq!(r["PR_STATUS_CODE"], json!(0x0011_0001));
        assert_eq!(
            r["PR_STATUS_CODE_text"],
            json!("AVAILABLE|INBOUND_ENABLED|OUTBOUND_ENABLED")
        );
        let id = r["PR_ENTRYID"].as_str().expect("entry ID as hex");
        assert!(common::is_entry_id(id), "{id}");
    }
    assert_ne!(rows[0]["PR_ENTRYID"], rows[1]["PR_ENTRYID"]);

    // The text table has exactly the columns asked for, in that order.
    let out = stdout(
        env.me_cmd(&["status", "--columns", "PR_RESOURCE_TYPE,PR_DISPLAY_NAME"]),
        0,
    );
    let heading = out.lines().nth(1).expect("a heading line");
    let words: Vec<&str> = heading
        .split(|c: char| c.is_whitespace() || c == '│')
        .filter(|w| !w.is_empty())
        .collect();
    assert_eq!(words, ["RESOURCE_TYPE", "DISPLAY_NAME"], "{out}");
}

#[test]
fn json_has_tags_values_and_text_names() {
    let env = Env::new();
    let table = json(env.me_cmd(&["status", "--json"]), 0);
    let names: Vec<&str> = table["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "PR_DISPLAY_NAME",
            "PR_RESOURCE_TYPE",
            "PR_STATUS_CODE",
            "PR_RESOURCE_METHODS",
            "PR_STATUS_STRING"
        ]
    );
    let rows = table["rows"].as_array().unwrap();
    let by_name = |n: &str| {
        rows.iter()
            .find(|r| r["PR_DISPLAY_NAME"] == json!(n))
            .unwrap_or_else(|| panic!("no row {n}"))
    };
    let spooler = by_name("MAPI Spooler");
    assert_eq!(spooler["PR_RESOURCE_TYPE"], json!(37));
    assert_eq!(spooler["PR_RESOURCE_TYPE_text"], json!("MAPI_SPOOLER"));
    assert_eq!(
        spooler["PR_RESOURCE_METHODS_text"],
        json!("VALIDATE_STATE|FLUSH_QUEUES")
    );
    assert!(spooler["PR_STATUS_STRING"].is_string());
    // A string column gets no _text twin.
    assert!(spooler.get("PR_DISPLAY_NAME_text").is_none());
    let work = by_name("work");
    assert_eq!(work["PR_RESOURCE_METHODS_text"], json!("VALIDATE_STATE"));
    assert_eq!(
        work["PR_STATUS_CODE_text"],
        json!("AVAILABLE|INBOUND_ENABLED|OUTBOUND_ENABLED")
    );
}

#[test]
fn sort_descending_and_by_several_keys() {
    let env = Env::new();
    let sorted = |args: &[&str]| {
        let mut all = vec!["status", "--json"];
        all.extend_from_slice(args);
        column(&json(env.me_cmd(&all), 0), "PR_DISPLAY_NAME")
    };
    let unsorted = sorted(&[]);
    let asc = sorted(&["--sort", "PR_DISPLAY_NAME"]);
    let mut desc = sorted(&["--sort", "PR_DISPLAY_NAME:desc"]);
    assert_eq!(asc.len(), 5);
    assert_ne!(asc, desc);
    desc.reverse();
    assert_eq!(asc, desc, "desc is asc backwards");
    let mut expected = unsorted.clone();
    expected.sort_by_key(|s| s.to_lowercase());
    assert_eq!(asc, expected);

    // Resource type descending (39, 37, 36, 36, 33), ties by name descending.
    assert_eq!(
        sorted(&[
            "--sort",
            "PR_RESOURCE_TYPE:desc",
            "--sort",
            "0x3001001F:desc"
        ]),
        [
            "MAPI Subsystem",
            "MAPI Spooler",
            "work",
            "home",
            "Personal Folders"
        ]
    );
    assert_eq!(
        sorted(&[
            "--sort",
            "PR_RESOURCE_TYPE:desc",
            "--sort",
            "PR_DISPLAY_NAME:asc"
        ])[2..4],
        ["home", "work"]
    );
}

#[test]
fn a_bad_where_points_at_the_column_with_what_was_expected() {
    let env = Env::new();
    let err = stderr(env.me_cmd(&["status", "--where", "PR_RESOURCE_TYPE =="]), 2);
    assert_eq!(
        err,
        "mapispool: --where is not a restriction:\n\
         PR_RESOURCE_TYPE ==\n\
         \x20                  ^ expected a value after '==': an integer or a constant name for PR_RESOURCE_TYPE (PT_LONG), found end of input\n"
    );

    // In the middle of the text: the caret is under the misspelt constant, with a suggestion.
    let err = stderr(
        env.me_cmd(&[
            "status",
            "--where",
            "PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDR && exists(PR_DISPLAY_NAME)",
        ]),
        2,
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert_eq!(
        lines[1],
        "PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDR && exists(PR_DISPLAY_NAME)"
    );
    let caret = lines[2];
    assert_eq!(
        caret.find('^'),
        Some(lines[1].find("MAPI_").unwrap()),
        "{err}"
    );
    assert!(caret[..caret.find('^').unwrap()].trim().is_empty());
    assert!(
        caret.contains("did you mean MAPI_TRANSPORT_PROVIDER?"),
        "{err}"
    );
    assert!(
        caret.contains("found unknown name 'MAPI_TRANSPORT_PROVIDR'"),
        "{err}"
    );

    // A value of the wrong type for the tag.
    let err = stderr(
        env.me_cmd(&["status", "--where", "PR_DISPLAY_NAME == 5"]),
        2,
    );
    let caret = err.lines().nth(2).expect("a caret line");
    assert_eq!(
        caret,
        "                   ^ expected a value after '==': a string in double quotes for PR_DISPLAY_NAME (PT_UNICODE), found '5'"
    );
    // Nothing on stdout when the input is refused.
    let (out, _) = run(env.me_cmd(&["status", "--where", "PR_DISPLAY_NAME =="]), 2);
    assert_eq!(out, "");
}

#[test]
fn an_unknown_column_or_sort_key_is_refused_helpfully() {
    let env = Env::new();
    let (out, err) = run(
        env.me_cmd(&["status", "--columns", "PR_DISPLAY_NAME,PR_DISPLAYNAME"]),
        2,
    );
    assert_eq!(out, "");
    assert!(err.contains("\"PR_DISPLAYNAME\""), "{err}");
    assert!(err.contains("--columns"), "which option: {err}");
    assert!(err.contains("did you mean PR_DISPLAY_NAME?"), "{err}");
    assert_eq!(err.lines().count(), 1, "printed once: {err}");

    let err = stderr(env.me_cmd(&["status", "--columns", "0x12G"]), 2);
    assert!(
        err.contains("\"0x12G\"") && err.contains("0x3001001F"),
        "{err}"
    );

    let err = stderr(env.me_cmd(&["status", "--sort", "PR_NOPE:desc"]), 2);
    assert!(
        err.contains("--sort") && err.contains("\"PR_NOPE\""),
        "{err}"
    );
    let err = stderr(env.me_cmd(&["status", "--sort", "PR_DISPLAY_NAME:down"]), 2);
    assert!(
        err.contains("\"down\" is not an order") && err.contains("TAG:desc"),
        "{err}"
    );
}
