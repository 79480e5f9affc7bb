//! Several `mapispool spooler` daemons — the real binary, one profile each — sharing one queue
//! on a real PostgreSQL 15 (scripts/peers/postgres.sh) and sending into Postfix's smtp-sink,
//! all on loopback (issue 14): the cluster view, a node killed with SIGKILL mid-flush, the
//! database stopped for 10 s mid-flush, and three nodes, one killed three times, losing
//! nothing.
//!
//! Every daemon's schedule is a day, so what moves mail is what the cluster adds: NOTIFY on
//! submit, and the heartbeat that finds a dead node's expired leases (lease 1.5 s, heartbeat
//! 300 ms: a dead node's messages move within 1.8 s).

mod common;
#[path = "common/pg_cli.rs"]
mod pg_cli;
#[path = "../../mapispool/tests/peers/postfix.rs"]
mod postfix;
#[path = "../../mapispool/tests/peers/postgres.rs"]
mod postgres;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::sandbox::Sandbox;
use mapispool::store::{NewMessage, NewRecipient, PgStore, Store};
use pg_cli::{PASSWORD_ENV, run_ok, start_daemon as start_node};
use postfix::SmtpSink;
use postgres::Postgres;

/// How long a test waits for the cluster to finish: generous, the machine is small and
/// shared.
const DEADLINE: Duration = Duration::from_secs(180);

/// Node `name`'s profile on `url`, sending to the sink on `smtp_port` over up to 8
/// connections at once.
fn node_profile(sandbox: &Sandbox, name: &str, url: &str, smtp_port: u16) -> PathBuf {
    let path = sandbox.path(&format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = \"{url}\"\npassword_env = \"{PASSWORD_ENV}\"\n\n\
             [spooler]\nnode = \"{name}\"\nupload_interval = \"24h\"\ntimeout = \"10s\"\n\
             heartbeat = \"300ms\"\nlease = \"1500ms\"\n\n\
             [[transport]]\nname = \"smtp\"\naddress = \"alice@example.com\"\n\
             [transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\n\
             security = \"none\"\nconnections = 8\n"
        ),
    )
    .expect("write the profile");
    path
}

/// Queues `count` messages straight into the shared store, as `sendmail` on any node does
/// (each submit notifies the nodes).
fn submit_many(pg: &Postgres, count: usize) {
    let url = pg.url_with_password("mail");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = PgStore::open_for_submit(&url, None)
            .await
            .expect("open the store");
        // A few at a time: they share commits, as concurrent clients' submits do.
        for chunk in (0..count).collect::<Vec<_>>().chunks(16) {
            let submits: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let message = NewMessage {
                            subject: format!("cluster {i}"),
                            sender_address: Some("alice@example.com".into()),
                            transport: Some("smtp".into()),
                            recipients: vec![NewRecipient::to(format!("bob{i}@example.net"))],
                            ..NewMessage::default()
                        };
                        let body = format!(
                            "From: alice@example.com\r\nTo: bob{i}@example.net\r\nSubject: cluster {i}\r\n\r\nbody {i}\r\n"
                        );
                        store.submit(message, body.as_bytes()).await.map(|_| ())
                    })
                })
                .collect();
            for submit in submits {
                submit.await.expect("join").expect("submit");
            }
        }
        store.close().await;
    });
}

fn wait_long(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Messages the node of process `pid` holds a lease on now (its in-flight bound).
fn leased_by(pg: &Postgres, pid: u32) -> i64 {
    pg.count(
        "mail",
        &format!("messages WHERE in_queue AND lease_owner LIKE '%:{pid}:%'"),
    )
}

fn queued(pg: &Postgres) -> i64 {
    pg.count("mail", "messages WHERE in_queue")
}

fn sent(pg: &Postgres) -> i64 {
    pg.count("mail", "messages WHERE folder = 3")
}

/// The cluster view's rows as JSON, through `profile`'s daemon (`GET /v1/cluster`).
fn cluster_view(sandbox: &Sandbox, profile: &Path) -> serde_json::Value {
    let out = run_ok(sandbox, profile, &["status", "--cluster", "--json"]);
    serde_json::from_str(&out).expect("status --cluster --json")
}

/// `(name, state)` of every row of a cluster view.
fn states(view: &serde_json::Value) -> Vec<(String, String)> {
    view["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["PR_DISPLAY_NAME"].as_str().unwrap_or_default().to_owned(),
                r["PR_MSP_NODE_STATE"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// The spooler's and the store's status strings, through `profile`'s daemon.
fn status_strings(sandbox: &Sandbox, profile: &Path) -> String {
    run_ok(
        sandbox,
        profile,
        &["status", "--columns", "PR_DISPLAY_NAME,PR_STATUS_STRING"],
    )
}

#[test]
fn a_node_killed_mid_flush_is_listed_dead_and_its_messages_are_taken_over() {
    const N: i64 = 12;
    let pg = Postgres::start();
    // Each DATA answered after a second: the flush is long enough to be cut.
    let sink = SmtpSink::start("-w 1");
    let sandbox = Sandbox::new();
    let a = node_profile(&sandbox, "node-a", &pg.url(), sink.port);
    let b = node_profile(&sandbox, "node-b", &pg.url(), sink.port);
    let mut node_a = start_node(&sandbox, &a);
    let mut node_b = start_node(&sandbox, &b);
    let view = cluster_view(&sandbox, &b);
    let listed = states(&view);
    assert!(
        listed.contains(&("node-a".into(), "alive".into()))
            && listed.contains(&("node-b".into(), "alive".into()))
            && listed.contains(&("shared queue".into(), "queue".into())),
        "both nodes alive and the queue in the cluster view: {listed:?}"
    );

    submit_many(&pg, N as usize);
    // A node leases a batch at a time, so one of them may hold all: kill the one that sends.
    let (pid_a, pid_b) = (node_a.pid(), node_b.pid());
    wait_long("a node to be sending", || {
        sink.messages() >= 1 && leased_by(&pg, pid_a) + leased_by(&pg, pid_b) > 0
    });
    let (victim, survivor, victim_name, survivor_name) = if leased_by(&pg, pid_a) > 0 {
        (&mut node_a, &b, "node-a", "node-b")
    } else {
        (&mut node_b, &a, "node-b", "node-a")
    };
    let in_flight = leased_by(&pg, victim.pid());
    victim.kill();

    wait_long("the queue to empty", || queued(&pg) == 0);
    assert_eq!(sent(&pg), N, "every message is in Sent Items: none lost");
    let delivered = sink.messages() as i64;
    assert!(delivered >= N, "the sink took {delivered} of {N}");
    assert!(
        delivered - N <= in_flight,
        "{} duplicates, more than the {in_flight} the killed node held",
        delivered - N
    );
    let view = cluster_view(&sandbox, survivor);
    let listed = states(&view);
    assert!(
        listed.contains(&(victim_name.into(), "dead".into()))
            && listed.contains(&(survivor_name.into(), "alive".into())),
        "the killed node is listed dead: {listed:?}"
    );
    let queue_row = view["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["PR_MSP_NODE_STATE"] == "queue"))
        .cloned()
        .expect("the queue row");
    assert_eq!(queue_row["PR_MSP_QUEUED_COUNT"], 0, "{queue_row}");
    assert_eq!(queue_row["PR_MSP_SENDING_COUNT"], 0, "{queue_row}");
    println!(
        "{victim_name} killed holding {in_flight} leases: {N} messages, {delivered} delivered"
    );
    let survivor_daemon = if victim_name == "node-a" {
        node_b
    } else {
        node_a
    };
    survivor_daemon.stop();
}

#[test]
fn nodes_pause_while_postgres_is_down_for_10s_mid_flush_and_resume() {
    const N: i64 = 16;
    let pg = Postgres::start();
    let sink = SmtpSink::start("-w 1");
    let sandbox = Sandbox::new();
    let a = node_profile(&sandbox, "node-a", &pg.url(), sink.port);
    let b = node_profile(&sandbox, "node-b", &pg.url(), sink.port);
    let node_a = start_node(&sandbox, &a);
    let node_b = start_node(&sandbox, &b);

    submit_many(&pg, N as usize);
    wait_long("the nodes to be sending", || sink.messages() >= 2);
    let stopped = Instant::now();
    pg.stop();
    for profile in [&a, &b] {
        wait_long("the status table to say the store is unreachable", || {
            status_strings(&sandbox, profile).contains("store unreachable")
        });
    }
    let text = status_strings(&sandbox, &a);
    assert!(
        text.contains("retrying every 300ms"),
        "the status says it retries:\n{text}"
    );
    // The outage lasts 10 s, as the issue asks; the nodes keep running through it.
    if let Some(rest) = Duration::from_secs(10).checked_sub(stopped.elapsed()) {
        std::thread::sleep(rest);
    }
    pg.restart();

    wait_long("the queue to empty after the outage", || queued(&pg) == 0);
    assert_eq!(sent(&pg), N, "every message is in Sent Items: none lost");
    let delivered = sink.messages() as i64;
    assert!(delivered >= N, "the sink took {delivered} of {N}");
    for profile in [&a, &b] {
        wait_long("the status to say the store is back", || {
            !status_strings(&sandbox, profile).contains("store unreachable")
        });
    }
    println!(
        "postgres down 10 s mid-flush: {N} messages, {delivered} delivered ({} duplicates)",
        delivered - N
    );
    node_a.stop();
    node_b.stop();
}

/// A pseudo-random number below `below`, from the clock (no dependency for one number).
fn roll(below: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0);
    nanos % below.max(1)
}

/// Issue 14's figure: three nodes work `n` messages into the sink while a node is killed with
/// SIGKILL three times at random points of the flush (one in each of the first three quarters
/// of the queue) — each time one that holds leases then, so mid-flush — and restarted in the
/// background, the others flushing on; nothing is lost, and the duplicates are at most what
/// the killed nodes held leased when they died.
fn three_nodes_one_killed_three_times(n: usize, sink_opts: &str) {
    let pg = Postgres::start();
    let sink = SmtpSink::start(sink_opts);
    let sandbox = Sandbox::new();
    let profiles: Vec<PathBuf> = (1..=3)
        .map(|i| node_profile(&sandbox, &format!("node-{i}"), &pg.url(), sink.port))
        .collect();
    // Queued first, so the queue runs dry only at the end: the nodes' first flush takes it.
    submit_many(&pg, n);
    let started = Instant::now();
    // All three at once, so that no node has the queue to itself while the others start.
    let mut nodes: Vec<Option<Daemon>> = std::thread::scope(|scope| {
        let starting: Vec<_> = profiles
            .iter()
            .map(|p| {
                let sandbox = &sandbox;
                scope.spawn(move || start_node(sandbox, p))
            })
            .collect();
        starting
            .into_iter()
            .map(|s| Some(s.join().expect("a node starts")))
            .collect()
    });
    let mut in_flight_at_kills = 0;
    let mut killed = Vec::new();
    std::thread::scope(|scope| {
        // A killed node restarts on its own thread while the others flush on and the next
        // kill is chosen among the nodes that run.
        let mut restarting: Vec<(usize, std::thread::ScopedJoinHandle<Daemon>)> = Vec::new();
        for kill in 0..3 {
            // A random point of the flush (somewhere in the next quarter of the queue, plus
            // up to half a second: the fault schedule, not a wait for a condition), then a
            // node that holds leases there (one mid-flush): a node leases a batch at a time,
            // so which one varies.
            let at = kill * n / 4 + roll(n / 8);
            std::thread::sleep(Duration::from_millis(roll(500) as u64));
            let mut victim = None;
            wait_long("the kill point, and a node holding leases", || {
                if queued(&pg) == 0 {
                    return true;
                }
                if (sent(&pg) as usize) < at {
                    return false;
                }
                // A node restarted after an earlier kill is a candidate again once it is up:
                // with only the never-killed ones to choose from, the queue could run dry
                // while none of them happened to hold a lease.
                let mut i = 0;
                while i < restarting.len() {
                    if restarting[i].1.is_finished() {
                        let (v, restart) = restarting.swap_remove(i);
                        nodes[v] = Some(restart.join().expect("the node restarts"));
                    } else {
                        i += 1;
                    }
                }
                victim = nodes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, d)| d.as_ref().map(|d| (leased_by(&pg, d.pid()), i)))
                    .filter(|(held, _)| *held > 0)
                    .max()
                    .map(|(_, i)| i);
                victim.is_some()
            });
            println!(
                "kill {kill}: sent {}, queued {}, victim {victim:?}",
                sent(&pg),
                queued(&pg)
            );
            let Some(v) = victim else { break };
            let Some(mut daemon) = nodes[v].take() else {
                break;
            };
            in_flight_at_kills += leased_by(&pg, daemon.pid());
            daemon.kill();
            killed.push(v + 1);
            let (sandbox, profile) = (&sandbox, &profiles[v]);
            restarting.push((v, scope.spawn(move || start_node(sandbox, profile))));
        }
        for (v, restart) in restarting {
            nodes[v] = Some(restart.join().expect("the node restarts"));
        }
    });
    assert_eq!(
        killed.len(),
        3,
        "three kills mid-flush (killed: {killed:?})"
    );
    wait_long("the queue to empty", || queued(&pg) == 0);
    let took = started.elapsed();
    let stored = sent(&pg);
    let delivered = sink.messages() as i64;
    let n = n as i64;
    println!(
        "3 nodes, {n} messages, SIGKILL of nodes {killed:?} mid-flush: lost {}, duplicates {} (bound: {in_flight_at_kills} leased by the killed nodes), {:.1} s",
        n - stored,
        delivered - n,
        took.as_secs_f64()
    );
    assert_eq!(stored, n, "every message is in Sent Items: none lost");
    assert!(delivered >= n, "the sink took {delivered} of {n}");
    assert!(
        delivered - n <= in_flight_at_kills,
        "{} duplicates, more than the {in_flight_at_kills} the killed node held",
        delivered - n
    );
    for node in nodes.into_iter().flatten() {
        node.stop();
    }
}

#[test]
fn three_nodes_one_killed_three_times_lose_nothing() {
    // Each DATA answered after a second: 3 nodes x 8 connections send ~24 messages a second,
    // so the flush lasts long enough to be cut three times, and what a node holds when killed
    // is really in flight.
    three_nodes_one_killed_three_times(200, "-w 1");
}

/// The long form behind RELIABILITY.md's figures: `cargo test -p mapispool-cli --test cluster
/// -- --ignored --nocapture`; `MAPISPOOL_CLUSTER_N` (3000) messages, `MAPISPOOL_CLUSTER_SINK`
/// the sink's options ("-w 1", a second per DATA; "" for full speed, where a kill lands
/// while messages are on the wire).
#[test]
#[ignore = "the long form (3,000 messages), run by hand for RELIABILITY.md"]
fn three_nodes_3000_messages_one_killed_three_times() {
    let n = std::env::var("MAPISPOOL_CLUSTER_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let opts = std::env::var("MAPISPOOL_CLUSTER_SINK").unwrap_or_else(|_| "-w 1".into());
    three_nodes_one_killed_three_times(n, &opts);
}

#[test]
fn the_cluster_view_works_without_a_daemon_too() {
    let pg = Postgres::start();
    let sandbox = Sandbox::new();
    let a = node_profile(&sandbox, "node-a", &pg.url(), 9);
    let out = run_ok(&sandbox, &a, &["status", "--cluster"]);
    assert!(
        out.contains("shared queue"),
        "the queue row is shown:\n{out}"
    );
}

/// The environment that runs a process with its clock `skew` off this machine's (libfaketime;
/// the monotonic clock left alone, so its timers run as they should). `None` where libfaketime
/// is not installed.
fn skewed_clock(skew: &str) -> Option<Vec<(&'static str, String)>> {
    let lib = std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|arch| arch.path().join("faketime/libfaketime.so.1"))
        .find(|lib| lib.exists())?;
    Some(vec![
        ("LD_PRELOAD", lib.display().to_string()),
        ("FAKETIME", skew.to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
    ])
}

#[test]
fn a_node_whose_clock_runs_ten_minutes_fast_takes_no_live_lease() {
    // One message: whatever node B leases is node A's.
    const N: i64 = 1;
    let Some(fast) = skewed_clock("+600s") else {
        common::ci::cannot_run("no libfaketime (Debian's faketime package)");
        return;
    };
    let fast: Vec<(&str, &str)> = fast.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let pg = Postgres::start();
    // Each DATA answered after 8 s (within the profile's 10 s timeout): node A holds its
    // leases, renewed by its heartbeat, for far longer than node B needs to beat five times.
    let sink = SmtpSink::start("-w 8");
    let sandbox = Sandbox::new();
    let a = node_profile(&sandbox, "node-a", &pg.url(), sink.port);
    let b = node_profile(&sandbox, "node-b", &pg.url(), sink.port);
    let reader = node_profile(&sandbox, "reader", &pg.url(), sink.port);
    let node_a = start_node(&sandbox, &a);
    submit_many(&pg, N as usize);
    wait_long("node A to lease the message", || {
        leased_by(&pg, node_a.pid()) == N
    });

    // A reader whose clock is 10 minutes fast sees node A as it is: alive (by its own clock,
    // node A's last heartbeat plus its lease is long past).
    let mut status = pg_cli::cli(&sandbox, &reader);
    status.envs(fast.iter().copied());
    let out = status
        .args(["status", "--cluster", "--json"])
        .output()
        .expect("mapispool runs");
    assert!(
        out.status.success(),
        "{}",
        common::sandbox::all_output(&out)
    );
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        states(&view).contains(&("node-a".into(), "alive".into())),
        "node A alive for a reader with a fast clock: {:?}",
        states(&view)
    );

    // Node B, 10 minutes fast, beats five times while node A holds the lease: by its own
    // clock it expired long ago, by the database's it has not.
    let node_b = pg_cli::start_daemon_with(&sandbox, &b, &fast);
    let beat_of_b = || pg.psql("mail", "SELECT heartbeat FROM nodes WHERE name = 'node-b'");
    let mut beats = Vec::new();
    wait_long("five heartbeats of node B", || {
        assert_eq!(
            leased_by(&pg, node_b.pid()),
            0,
            "node B took a lease node A holds"
        );
        let beat = beat_of_b();
        if !beat.is_empty() && beats.last() != Some(&beat) {
            beats.push(beat);
        }
        beats.len() > 5
    });
    assert_eq!(leased_by(&pg, node_b.pid()), 0, "node B took a live lease");
    assert_eq!(
        leased_by(&pg, node_a.pid()),
        N,
        "node A still held the lease while node B beat (else the check proved nothing)"
    );
    assert!(
        node_b
            .log()
            .contains("clock is 600.0 s ahead of the database server's"),
        "node B says its clock is off:\n{}",
        node_b.log()
    );
    // The cluster view shows each node's skew as the node measured it.
    let view = cluster_view(&sandbox, &a);
    let offset_of = |name: &str| {
        view["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["PR_DISPLAY_NAME"] == name))
            .and_then(|r| r["PR_MSP_NODE_CLOCK_OFFSET"].as_i64())
    };
    let (a_ms, b_ms) = (offset_of("node-a"), offset_of("node-b"));
    assert!(
        a_ms.is_some_and(|ms| ms.abs() < 1_000)
            && b_ms.is_some_and(|ms| (599_000..601_000).contains(&ms)),
        "node A's clock agrees, node B's is 600 s ahead: {a_ms:?} {b_ms:?}\n{view}"
    );

    wait_long("the queue to empty", || queued(&pg) == 0);
    assert_eq!(sent(&pg), N);
    assert_eq!(sink.messages() as i64, N, "sent once");
    node_a.stop();
    node_b.stop();
}
