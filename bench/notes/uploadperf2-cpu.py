#!/usr/bin/env python3
"""CPU and system calls a message of `mapispool flush --upload` (no daemon) into smtp-sink, on
the same queued store copied fresh for every run, binaries alternating (A/B on a loaded machine).

  uploadperf2-cpu.py --work DIR --bin A=/path/a --bin B=/path/b [--size 2KB:4000] [--runs 3]
                     [--strace | --callgrind]

The stores are filled once per size through a daemon's batch API (the bench's message
generator), then copied for each run. Prints task-clock (perf stat) / N and, with --strace,
`strace -c -f` system calls / N, with --callgrind the instructions a message (valgrind's
callgrind, all threads: a count a loaded machine does not move).
"""
import argparse, os, re, shutil, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bench  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--work", required=True)
ap.add_argument("--bin", action="append", required=True)
ap.add_argument("--size", action="append", default=[])
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--strace", action="store_true")
ap.add_argument("--callgrind", action="store_true")
a = ap.parse_args()
root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
bins = [b.split("=", 1) for b in a.bin]
sizes = [s.split(":") for s in (a.size or ["2KB:4000"])]
os.makedirs(a.work, exist_ok=True)
sink = bench.Sink(root, a.work)
msgs = bench.Messages(a.work)
try:
    for label, n in sizes:
        n = int(n)
        key = {"2KB": "2 KB", "100KB": "100 KB", "10MB": "10 MB"}[label]
        tmpl = os.path.join(a.work, f"tmpl-{label}-{n}")
        if not os.path.exists(os.path.join(tmpl, "done")):
            shutil.rmtree(tmpl, ignore_errors=True)
            prof = bench.Profile(bins[0][1], a.work, sink.port)
            prof.start_daemon()
            try:
                conn = prof.api()
                bodies = [open(p, "rb").read() for p in msgs.files(key, n)]
                for g in bench.batches(bodies):
                    bench.api_submit_batch(conn, g)
                conn.close()
            finally:
                prof.stop_daemon()
            shutil.copytree(prof.dir, tmpl, ignore=shutil.ignore_patterns("run", "*.sock"))
            open(os.path.join(tmpl, "done"), "w").close()
        for run in range(a.runs):
            for name, path in bins:
                d = os.path.join(a.work, "run")
                shutil.rmtree(d, ignore_errors=True)
                shutil.copytree(tmpl, d)
                os.makedirs(os.path.join(d, "run"), mode=0o700, exist_ok=True)
                prof_path = os.path.join(d, "profile.toml")
                text = open(prof_path).read()
                text = re.sub(r'path = "[^"]*store.db"', f'path = "{d}/store.db"', text)
                text = re.sub(r"port = \d+", f"port = {sink.port}", text)
                open(prof_path, "w").write(text)
                env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(d, "run"), NO_COLOR="1")
                env.pop("RUST_LOG", None)
                before = sink.count()
                cmd = [path, "--profile", prof_path, "flush", "--upload"]
                out = os.path.join(d, "stat.txt")
                if a.callgrind:
                    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.cg",
                            f"--log-file={out}"]
                elif a.strace:
                    wrap = ["strace", "-c", "-f", "-o", out]
                else:
                    wrap = ["perf", "stat", "-e", "task-clock,context-switches", "-x,", "-o", out]
                t0 = time.monotonic()
                r = subprocess.run(wrap + cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                t = time.monotonic() - t0
                got = sink.count() - before
                s = open(out).read()
                if a.callgrind:
                    m = re.search(r"Collected : (\d+)", s)
                    ir = int(m.group(1)) if m else -1
                    print(f"{label} {name}: rc={r.returncode} sent={got}/{n} {t:.2f}s "
                          f"instructions/msg={ir / n:.0f}", flush=True)
                elif a.strace:
                    tot = [l for l in s.splitlines() if l.strip().endswith("total")]
                    calls = int(tot[0].split()[3]) if tot else -1
                    top = []
                    for l in s.splitlines()[2:]:
                        f = l.split()
                        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                            top.append((int(f[3]), f[-1]))
                    top.sort(reverse=True)
                    det = ", ".join(f"{c} {k / n:.1f}" for k, c in top[:10])
                    print(f"{label} {name}: rc={r.returncode} sent={got}/{n} {t:.2f}s "
                          f"syscalls/msg={calls / n:.1f} ({det})", flush=True)
                else:
                    tc = cs = 0.0
                    for l in s.splitlines():
                        f = l.split(",")
                        if len(f) > 3 and f[2].startswith("task-clock"):
                            tc = float(f[0])
                        if len(f) > 3 and f[2].startswith("context-switches"):
                            cs = float(f[0])
                    print(f"{label} {name}: rc={r.returncode} sent={got}/{n} {t:.2f}s "
                          f"cpu/msg={tc * 1000 / n:.1f}us cs/msg={cs / n:.1f} {n / t:.0f} msg/s", flush=True)
                if r.returncode != 0:
                    print(r.stderr.decode()[-400:])
finally:
    sink.stop()
