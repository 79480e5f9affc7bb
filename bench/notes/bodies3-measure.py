#!/usr/bin/env python3
"""Per-message cost of `mapispool submit` (one process a message) and of the `flush --upload` that
follows, on stores of different SQLite page sizes and with different binaries (bodies3.md).

  bodies3-measure.py --work DIR --variant NAME=BIN[:PAGE_SIZE][@VAR=VALUE...] ... [--n 200] [--runs 3]
                     [--size 100KB] [--strace]

A variant with a PAGE_SIZE gets its store created beforehand with that page size (an empty
database, WAL mode, the size fixed by one table created and dropped); without one, mapispool
creates the store itself. Variants are interleaved within each run (the machine is shared).

Per variant and run it prints, per message: the submit processes' CPU (utime + stime from
wait4), bytes written (the harness's /proc/self/io write_bytes delta, which takes in its reaped
children) and wall time; then the flush's CPU (the same) and wall time, and the store's size.
With --strace, every process runs under `strace -f -c` and the system calls per message
(fsync, pwrite64, pread64, total) are printed instead of the CPU figures (strace inflates CPU).
"""
import argparse, os, re, shutil, sqlite3, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bench  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--work", required=True)
ap.add_argument("--variant", action="append", required=True)
ap.add_argument("--n", type=int, default=200)
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--size", default="100KB")
ap.add_argument("--strace", action="store_true")
ap.add_argument("--no-flush", action="store_true")
a = ap.parse_args()
root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
variants = []
for v in a.variant:
    name, rest = v.split("=", 1)
    rest, *envs = rest.split("@")
    binp, _, ps = rest.partition(":")
    variants.append((name, binp, int(ps) if ps else None, dict(e.split("=", 1) for e in envs)))
key = {"2KB": "2 KB", "100KB": "100 KB", "10MB": "10 MB"}[a.size]
os.makedirs(a.work, exist_ok=True)
sink = bench.Sink(root, a.work)
files = bench.Messages(a.work).files(key, a.n)


def written():
    for line in open("/proc/self/io"):
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def strace_counts(out):
    counts = {}
    for line in open(out).read().splitlines():
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            calls = int(f[3])
            counts[f[-1]] = counts.get(f[-1], 0) + calls
        elif f and f[-1] == "total" and len(f) >= 4:
            counts["total"] = counts.get("total", 0) + int(f[2] if len(f) == 4 else f[3])
    return counts


def run(cmd, env, stdin, out):
    if a.strace:
        cmd = ["strace", "-f", "-c", "-o", out] + cmd
    p = subprocess.Popen(cmd, env=env, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise RuntimeError(f"{cmd}: exit {rc}: {err.decode()[-400:]}")
    return ru.ru_utime + ru.ru_stime, strace_counts(out) if a.strace else {}


def add(total, counts):
    for k, v in counts.items():
        total[k] = total.get(k, 0) + v


def show(counts, n):
    keys = ["fsync", "fdatasync", "pwrite64", "pread64", "write", "read", "total"]
    return " ".join(f"{k}={counts.get(k, 0) / n:.1f}" for k in keys if k in counts or k == "total")


try:
    for r in range(a.runs):
        for name, binp, ps, envs in variants:
            prof = bench.Profile(binp, a.work, sink.port)
            prof.env.update(envs)
            store = os.path.join(prof.dir, "store.db")
            if ps:
                con = sqlite3.connect(store)
                con.execute(f"PRAGMA page_size = {ps}")
                con.execute("PRAGMA journal_mode = WAL")
                con.execute("CREATE TABLE p(x)")
                con.execute("DROP TABLE p")
                con.close()
                os.chmod(store, 0o600)
            out = os.path.join(prof.dir, "strace.txt")
            cpu = 0.0
            sc = {}
            w0 = written()
            t0 = time.monotonic()
            for p in files:
                with open(p, "rb") as f:
                    c, counts = run(prof.cmd("submit"), prof.env, f, out)
                cpu += c
                add(sc, counts)
            t_sub = time.monotonic() - t0
            w_sub = written() - w0
            n = len(files)
            line = f"run {r} {name}: submit {n / t_sub:.0f} msg/s"
            if a.strace:
                line += f" syscalls/msg {show(sc, n)}"
            else:
                line += f" cpu/msg {cpu * 1e3 / n:.2f} ms"
            line += f" written/msg {w_sub / n / 1024:.0f} KiB"
            if not a.no_flush:
                before = sink.count()
                w0 = written()
                t0 = time.monotonic()
                c, counts = run(prof.cmd("flush", "--upload"), prof.env, subprocess.DEVNULL, out)
                t_fl = time.monotonic() - t0
                w_fl = written() - w0
                got = sink.count() - before
                line += f" | flush {n / t_fl:.0f} msg/s sent {got}/{n}"
                if a.strace:
                    line += f" syscalls/msg {show(counts, n)}"
                else:
                    line += f" cpu/msg {c * 1e6 / n:.0f} us"
                line += f" written/msg {w_fl / n / 1024:.1f} KiB"
            size = sum(os.path.getsize(os.path.join(prof.dir, f)) for f in os.listdir(prof.dir)
                       if f.startswith("store.db"))
            line += f" | store {size / 1e6:.1f} MB"
            print(line, flush=True)
            shutil.rmtree(prof.dir, ignore_errors=True)
finally:
    sink.stop()
