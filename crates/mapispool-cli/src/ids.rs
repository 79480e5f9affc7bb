//! Entry IDs as people type them: the whole hex form, or (as git takes a hash) a unique
//! prefix of it, case-insensitive. Too short, no match or several matches is
//! `MAPI_E_INVALID_ENTRYID` (exit 2) with a message that says which, listing the candidates of
//! an ambiguous prefix.

use anyhow::Result;
use mapi::table::hr_query_all_rows;
use mapi::tag::PR_ENTRYID;
use mapi::{EntryId, MapiError, PropValue};
use mapispool::Session;
use mapispool::store::MessageId;

/// The fewest hex digits a prefix may have (git's minimum too).
pub const MIN_PREFIX: usize = 4;

/// The most candidates an "ambiguous" message lists.
const LISTED: usize = 10;

/// A message's entry ID from `text` (`what` names the argument in errors): any message of the
/// store, in any folder (queued ones are in the Outbox).
pub async fn message(session: &Session, text: &str, what: &str) -> Result<EntryId> {
    // A whole message entry ID of this store is no prefix of another (they all have one
    // length): it is taken as it is.
    if let Ok(id) = text.trim().parse::<EntryId>()
        && MessageId::from_entry_id(&id).is_ok()
    {
        return Ok(id);
    }
    // A prefix: an entry ID is a fixed header and then the message's id, so the messages it
    // names are a range of ids, which the store reads from its primary key (the first few, and
    // how many) instead of listing every folder.
    let trimmed = text.trim();
    if !is_hex(trimmed) || trimmed.len() < MIN_PREFIX {
        return resolve(text, &[], what);
    }
    let (found, total) = session
        .message_entry_ids(trimmed, (LISTED + 1) as u32)
        .await?;
    let found: Vec<&EntryId> = found.iter().collect();
    verdict(
        trimmed,
        &found,
        usize::try_from(total).unwrap_or(usize::MAX),
        what,
    )
}

/// A transport named by `text`: its name, its entry ID, or a unique prefix of its entry ID
/// (among the status table's transport rows); the name or whole entry ID to open it by.
pub fn transport(session: &Session, text: &str, what: &str) -> Result<String> {
    if session.profile().transport(text).is_some() {
        return Ok(text.to_string());
    }
    let mut table = session.status_table();
    let known = ids_in(&mut table)?;
    match resolve(text, &known, what) {
        Ok(id) => Ok(id.to_string()),
        // Not hex at all: a name the profile lacks, which the session's own error explains.
        Err(_) if !is_hex(text) => Ok(text.to_string()),
        Err(e) => Err(e),
    }
}

/// The entry IDs in `table`'s rows.
fn ids_in(table: &mut mapi::table::Table) -> Result<Vec<EntryId>> {
    let rows = hr_query_all_rows(table, Some(&[PR_ENTRYID]), None, None, 0)?;
    Ok(rows
        .iter()
        .filter_map(|r| match r.get(PR_ENTRYID) {
            Some(PropValue::Binary(b)) => Some(EntryId::from_bytes(b.clone())),
            _ => None,
        })
        .collect())
}

fn is_hex(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// `text` against the `known` entry IDs: the one it is, or the one it is a prefix of.
pub fn resolve(text: &str, known: &[EntryId], what: &str) -> Result<EntryId> {
    let text = text.trim();
    if !is_hex(text) {
        // Not hex: the parser's own words say what an entry ID looks like.
        return text
            .parse::<EntryId>()
            .map_err(|e| MapiError::invalid_entry_id(format!("{what}: {}", e.cause)).into());
    }
    let wanted = text.to_ascii_uppercase();
    let mut matches: Vec<&EntryId> = Vec::new();
    for id in known {
        let hex = id.to_string().to_ascii_uppercase();
        if hex == wanted {
            return Ok(id.clone());
        }
        if hex.starts_with(&wanted) && !matches.contains(&id) {
            matches.push(id);
        }
    }
    verdict(text, &matches, matches.len(), what)
}

/// What the `matches` of the hex prefix `text` make of it, `total` being how many entry IDs
/// start with it (of which `matches` may hold only the first few).
fn verdict(text: &str, matches: &[&EntryId], total: usize, what: &str) -> Result<EntryId> {
    if text.len() < MIN_PREFIX {
        return Err(MapiError::invalid_entry_id(format!(
            "{what}: \"{text}\" is too short to stand for an entry ID; give at least {MIN_PREFIX} hex digits of it (more where entry IDs share their start)"
        ))
        .into());
    }
    match matches {
        [one] if total == 1 => Ok((*one).clone()),
        [] => match text.parse::<EntryId>() {
            // A whole entry ID nobody here has: the command's own call says what that means.
            Ok(id) => Ok(id),
            Err(_) => Err(MapiError::invalid_entry_id(format!(
                "{what}: no entry ID starts with {text}; the PR_ENTRYID columns of `mapispool queue`, `mapispool messages` and `mapispool status` list them"
            ))
            .into()),
        },
        many => {
            let mut list: Vec<String> = many
                .iter()
                .take(LISTED)
                .map(|id| format!("  {id}"))
                .collect();
            if total > LISTED {
                list.push(format!("  … and {} more", total - LISTED));
            }
            Err(MapiError::invalid_entry_id(format!(
                "{what}: {text} is ambiguous: {total} entry IDs start with it; give more digits:\n{}",
                list.join("\n")
            ))
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(hex: &str) -> EntryId {
        hex.parse().expect("an entry ID")
    }

    #[test]
    fn a_unique_prefix_is_the_entry_id_and_others_say_why_not() {
        let a = id("000000006D61706973706F6F6C2D73746F7265314D0000000000000001");
        let b = id("000000006D61706973706F6F6C2D73746F7265314D0000000000000002");
        let t = id("000000007D61706973706F6F6C2D73746F7265315400");
        let known = [a.clone(), b.clone(), t.clone()];
        assert_eq!(resolve(&a.to_string(), &known, "x").unwrap(), a);
        assert!(resolve("00000000", &known, "x").is_err());
        assert!(resolve("0000000075", &known, "x").is_err());
        assert_eq!(resolve("000000007d", &known, "x").unwrap(), t);
        // One digit short: both messages start with it.
        let full_a = a.to_string();
        assert!(resolve(&full_a[..full_a.len() - 1], &known, "x").is_err());
        let ambiguous = resolve("00000000", &known, "--message")
            .unwrap_err()
            .to_string();
        assert!(
            ambiguous.contains("--message: 00000000 is ambiguous: 3 entry IDs"),
            "{ambiguous}"
        );
        assert!(ambiguous.contains(&format!("  {b}")), "{ambiguous}");
        let short = resolve("000", &known, "x").unwrap_err().to_string();
        assert!(short.contains("too short"), "{short}");
        let none = resolve("ABCD", &known, "x").unwrap_err().to_string();
        assert!(none.contains("no entry ID starts with ABCD"), "{none}");
        let not_hex = resolve("xyz", &known, "x").unwrap_err().to_string();
        assert!(not_hex.contains("not an entry ID"), "{not_hex}");
    }
}
