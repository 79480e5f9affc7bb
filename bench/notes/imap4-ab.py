#!/usr/bin/env python3
"""Interleaved A/B of `mapispool flush --download` over IMAP against a private Dovecot, with mbsync
`FSync no` in the same rounds (imap4.md).

  imap4-ab.py --work DIR --variant NAME=BIN ... [--n 500] [--reps 5] [--size 100KB] [--no-mbsync]

Every client pulls its own freshly filled user (the bench's own message files, dropped into
`new/` as bench.py does), so nobody pulls a mailbox someone else has already indexed. Within a
rep the clients run one after another, their order rotated from rep to rep (the machine is
shared). Each runs under `perf stat -e task-clock`: per client and rep it prints msg/s (wall)
and CPU ms per message (task-clock of the process and its threads), then the medians.
DIR must be at most ~50 characters and searchable by others (Dovecot's sockets and users).
"""
import argparse, os, shutil, statistics, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bench  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--work", required=True)
ap.add_argument("--variant", action="append", default=[])
ap.add_argument("--n", type=int, default=500)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--size", default="100KB")
ap.add_argument("--no-mbsync", action="store_true")
a = ap.parse_args()
root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
key = {"2KB": "2 KB", "100KB": "100 KB", "10MB": "10 MB"}[a.size]
os.makedirs(a.work, exist_ok=True)
os.chmod(a.work, 0o755)
clients = [tuple(v.split("=", 1)) for v in a.variant]
if not a.no_mbsync:
    clients.append(("mbsync-no", None))
files = bench.Messages(a.work).files(key, a.n)

users = [f"r{r}c{i}" for r in range(a.reps) for i in range(len(clients))]
ddir = os.path.join(a.work, "dc")
imap_port, pop3_port = bench.free_port(), bench.free_port()
env = dict(os.environ, DOVECOT_USERS=" ".join(f"{u}:pw" for u in users))
subprocess.run(["bash", f"{root}/scripts/peers/dovecot.sh", "start", ddir, str(imap_port), str(pop3_port)],
               check=True, env=env, stdout=subprocess.DEVNULL)
st = os.stat(os.path.join(ddir, "mail", users[0]))


def preload(user):
    md = os.path.join(ddir, "mail", user)
    for i, p in enumerate(files):
        name = f"{int(time.time())}.B{i}.bench"
        tmp = os.path.join(md, "tmp", name)
        shutil.copyfile(p, tmp)
        os.chown(tmp, st.st_uid, st.st_gid)
        os.rename(tmp, os.path.join(md, "new", name))


def perf_run(cmd, penv, out):
    """Runs cmd under perf stat; returns (seconds, task-clock ms, exit code)."""
    t0 = time.monotonic()
    p = subprocess.run(["perf", "stat", "-x,", "-e", "task-clock", "-o", out, "--", *cmd], env=penv,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t = time.monotonic() - t0
    ms = float("nan")
    for line in open(out):
        f = line.strip().split(",")
        if len(f) > 2 and f[2].startswith("task-clock"):
            ms = float(f[0])
    return t, ms, p.returncode, p.stderr.decode(errors="replace")


results = {name: [] for name, _ in clients}
try:
    for r in range(a.reps):
        order = list(range(len(clients)))
        k = r % len(order)
        order = order[k:] + order[:k]
        for i in order:
            name, binp = clients[i]
            user = f"r{r}c{i}"
            preload(user)
            work = os.path.join(a.work, f"w-{user}")
            os.makedirs(work)
            out = os.path.join(work, "perf.txt")
            if binp:
                prof = bench.Profile(binp, work, 9, inbound=("imap", imap_port, user))
                t, ms, rc, err = perf_run(prof.cmd("flush", "--download"), prof.env, out)
                got = prof.count_inbox()
            else:
                near = os.path.join(work, "near")
                os.makedirs(near)
                rc_path = os.path.join(work, "mbsyncrc")
                with open(rc_path, "w") as f:
                    f.write(f"FSync no\n\nIMAPAccount a\nHost 127.0.0.1\nPort {imap_port}\nUser {user}\nPass pw\n"
                            f"SSLType None\nAuthMechs LOGIN\n\nIMAPStore far\nAccount a\n\n"
                            f"MaildirStore near\nPath {near}/\nInbox {near}/INBOX\n\n"
                            f"Channel c\nFar :far:INBOX\nNear :near:INBOX\nSync Pull\nCreate Near\n"
                            f"SyncState *\n")
                t, ms, rc, err = perf_run(["mbsync", "-c", rc_path, "-q", "c"], os.environ, out)
                got = sum(len(os.listdir(os.path.join(near, "INBOX", d))) for d in ("new", "cur")
                          if os.path.isdir(os.path.join(near, "INBOX", d)))
            if rc != 0 or got < a.n:
                print(f"rep {r + 1} {name}: exit {rc}, got {got}/{a.n}: {err[-300:]}", flush=True)
            else:
                results[name].append((a.n / t, ms / a.n))
                print(f"rep {r + 1} {name}: {a.n / t:.0f} msg/s, {ms / a.n:.3f} CPU ms/msg "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
            shutil.rmtree(work, ignore_errors=True)
finally:
    subprocess.run(["bash", f"{root}/scripts/peers/dovecot.sh", "stop", ddir])
print(f"\n{a.n} x {key}, {a.reps} reps, medians:")
for name, rs in results.items():
    if rs:
        print(f"  {name}: {statistics.median(x for x, _ in rs):.0f} msg/s "
              f"({', '.join(f'{x:.0f}' for x, _ in rs)}), "
              f"{statistics.median(c for _, c in rs):.3f} CPU ms/msg")
