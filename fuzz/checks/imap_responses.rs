//! IMAP responses as the IMAP transport consumes them: the bytes are a server's side of a
//! session, cut into responses by async-imap's own parser (imap-proto, as its stream does), then
//! handed to `transport::imap`'s consumers: the greeting's verdict, the SELECT answer's
//! UIDVALIDITY, each command's FETCH responses up to its tagged completion, the new-message
//! listing and its batches, the UID set sent back. Never a panic; the listing is ascending,
//! unique, above the last UID and made only of UIDs the server sent; the batches cover it
//! exactly, in order, within their caps; a UID set lists exactly the UIDs it was made from.
//!
//! Shared by the fuzz target (`fuzz_targets/imap_responses.rs`) and the replay of seeds and crashes in
//! the normal suite (`crates/mapispool/tests/fuzz_replay.rs`).

use async_imap::imap_proto::{self, MailboxDatum, RequestId, Response, ResponseCode, Status};
use mapispool::transport::imap::{
    FetchStep, Fetched, RANGE, batches, check_greeting, fetch_step, new_messages,
    selected_validity, uid_set,
};
use mapispool::transport::{BATCH_BYTES, BATCH_COUNT};

/// The most responses read from one input (a bound on time, not a finding).
const MAX_RESPONSES: usize = 2000;

/// One input, as the fuzz target `imap_responses` runs it: panics on a finding.
pub fn check(data: &[u8]) {
    // imap-proto 0.17 panics on a non-ASCII byte right after a `]` (a response code's end; it
    // slices the lossily decoded text at byte 1): found by this target, caught in the transport
    // (`parser_panic_is_an_error`, test `faults::imap_a_response_that_panics_the_parser_is_an_error`).
    // Skipped here so the run goes on to other findings.
    if data.windows(2).any(|w| w[0] == b']' && w[1] >= 0x80) {
        return;
    }
    // Like async-imap's stream: parse a response, go on after it; stop where the parser wants
    // more bytes (the connection would wait) or gives up (a parse error, fatal for the session).
    let mut responses = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && responses.len() < MAX_RESPONSES {
        match Response::parse(rest) {
            Ok((left, response)) => {
                assert!(left.len() < rest.len(), "the parser consumed nothing");
                rest = left;
                responses.push(response);
            }
            Err(_) => break,
        }
    }
    let Some(first) = responses.first() else {
        return;
    };

    // The greeting: on only for an untagged OK / PREAUTH.
    let greeted = check_greeting("127.0.0.1:143", first);
    let ok_greeting = matches!(
        first,
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            ..
        }
    );
    assert_eq!(greeted.is_ok(), ok_greeting, "{greeted:?}");
    if let Err(e) = greeted {
        assert!(!e.message.is_empty());
    }

    // The SELECT answer, gathered as async-imap's `parse_mailbox` does, up to a tagged line.
    let mut mailbox = async_imap::types::Mailbox::default();
    let mut validity_seen = None;
    for r in &responses {
        match r {
            Response::Data {
                status: Status::Ok,
                outcome,
            } => {
                if let Some(ResponseCode::UidValidity(v)) = outcome.code {
                    mailbox.uid_validity = Some(v);
                    validity_seen = Some(v);
                }
            }
            Response::MailboxData(MailboxDatum::Exists(n)) => mailbox.exists = *n,
            Response::Done { .. } => break,
            _ => {}
        }
    }
    assert_eq!(selected_validity(&mailbox), validity_seen);

    // Each tagged completion ends a command: the FETCH responses before it are that command's
    // answer. Consumed once under the command's own tag, and once under another tag (the
    // completion is then someone else's and must not end our command).
    let last_uid = u32::from(data[0]) * 3;
    let mut start = 0;
    for (end, r) in responses.iter().enumerate() {
        let Response::Done { tag, status, .. } = r else {
            continue;
        };
        let answer = &responses[start..=end];
        start = end + 1;

        let (fetched, verdict) = consume(answer, tag);
        let verdict = verdict.expect("our own tagged completion ends the command");
        assert_eq!(verdict.is_ok(), *status == Status::Ok);
        let fetch_count = answer
            .iter()
            .filter(|r| matches!(r, Response::Fetch(..)))
            .count();
        assert_eq!(fetched.len(), fetch_count);

        let other = RequestId(format!("{}x", tag.0));
        let (all, none) = consume(answer, &other);
        assert!(none.is_none(), "another tag's completion ended our command");
        assert_eq!(all.len(), fetch_count);

        check_listing(fetched, last_uid);
    }
}

/// Feeds responses to `fetch_step` as `uid_fetch` does: FETCH data until our completion.
fn consume(
    responses: &[Response<'_>],
    tag: &RequestId,
) -> (Vec<Fetched>, Option<Result<(), async_imap::error::Error>>) {
    let mut out = Vec::new();
    for r in responses {
        match fetch_step(r, tag) {
            FetchStep::Fetched(f) => out.push(f),
            FetchStep::Done(verdict) => return (out, Some(verdict)),
            FetchStep::Other => {}
        }
    }
    (out, None)
}

fn check_listing(fetched: Vec<Fetched>, last_uid: u32) {
    let sent: Vec<u32> = fetched.iter().filter_map(|f| f.uid).collect();
    let listed = new_messages(fetched, last_uid);
    for pair in listed.windows(2) {
        assert!(
            pair[0].uid < pair[1].uid,
            "listing not ascending and unique"
        );
    }
    for m in &listed {
        assert!(
            m.uid > last_uid,
            "UID {} at or below the last {last_uid}",
            m.uid
        );
        assert!(sent.contains(&m.uid), "UID {} the server never sent", m.uid);
    }
    let mut expected: Vec<u32> = sent.into_iter().filter(|&u| u > last_uid).collect();
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(listed.iter().map(|m| m.uid).collect::<Vec<_>>(), expected);

    // Batches: the listing exactly, in order; within the caps (a large message counts at one
    // range: several share a batch, each streamed in ranges).
    let parts = batches(&listed);
    let flat: Vec<u32> = parts.iter().flat_map(|b| b.iter().map(|m| m.uid)).collect();
    assert_eq!(flat, expected);
    for b in &parts {
        assert!(!b.is_empty() && b.len() <= BATCH_COUNT);
        let (_, before) = b.split_last().unwrap();
        let bytes: u64 = before.iter().map(|m| m.size.min(u64::from(RANGE))).sum();
        assert!(
            bytes < BATCH_BYTES,
            "a batch went on past {BATCH_BYTES} bytes"
        );
    }

    // The UID set sent back (STORE, EXPUNGE, the body fetch) names exactly these UIDs.
    let set = uid_set(expected.iter().copied());
    if expected.is_empty() {
        assert!(set.is_empty());
        return;
    }
    let text = format!("{set} ");
    let (left, ranges) = imap_proto::core::sequence_set(text.as_bytes())
        .unwrap_or_else(|e| panic!("uid set {set:?} does not parse: {e:?}"));
    assert_eq!(left, b" ");
    let named: Vec<u32> = ranges.into_iter().flatten().collect();
    assert_eq!(named, expected, "uid set {set:?}");
}
