#!/usr/bin/env python3
"""The issue-7 benchmark harness: mapispool against Postfix, smtp-source and msmtp on loopback.

Run through `bash bench/run [--quick]` (which installs the peers and builds the release binary).
Everything here is measured in one run on one machine; only the ratios mean something.

Scenarios (see BENCHMARKS.md for what each measures exactly):
  upload   N queued messages -> smtp-sink: `mapispool flush --upload` (no daemon, and through a
           warm daemon) vs Postfix `postqueue -f`, `smtp-source -d` on 1 and on 4 connections
           (mapispool's default `connections = 4`), msmtp per message
  submit   N messages accepted durably: `mapispool submit` per process vs Postfix `sendmail`
           per process; bulk through the daemon's API (batches of 50 per request, and one
           message per request) vs Postfix smtpd over one SMTP connection
  latency  `mapispool flush` start -> first SMTP command on the wire (warm daemon); `status`
  memory   daemon peak RSS while taking and sending a 10 MB / 100 MB message, the CLI's while
           receiving a 100 MB one over IMAP and POP3; idle RSS and CPU
  download IMAP/POP3 vs mbsync and fetchmail (only once the transports are committed)
  scale    1k, 10k, 100k queued 2 KB messages: flush throughput, `status` and `queue --where`
           latency, lease latency (the store's `lease_due` debug event), store size; 1, 10, 100
           transports in one profile: `status` and a flush with nothing queued
  web      upload through a warm daemon with `[web]` on (and /metrics scraped every 100 ms)
           against the same with `[web]` off (issue 15's target: >= 0.98x)

Each run compares its ratios with those the previous BENCHMARKS.md held and flags any that fell
by more than 10 % (bench/compare.py); sections and rows a run did not measure are kept.
"""

import argparse
import datetime
import glob
import http.client
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import compare

SIZES = {"2 KB": 2048, "100 KB": 102400, "10 MB": 10 * 1024 * 1024}
FROM = "bench@localhost"
RCPT = "sink@example.com"


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


def median(xs):
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------------------------
# Messages


def make_message(size, i, tag):
    head = (
        f"From: Bench <{FROM}>\n"
        f"To: <{RCPT}>\n"
        f"Subject: bench {tag} {i}\n"
        f"Message-ID: <bench-{tag}-{i}-{os.getpid()}@localhost>\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\n"
        f"MIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset=us-ascii\n\n"
    ).encode()
    body_len = max(size - len(head), 80)
    line = (b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+/abcdefghijkl" + b"\n")
    n = body_len // len(line) + 1
    body = (line * n)[:body_len]
    if not body.endswith(b"\n"):
        body = body[:-1] + b"\n"
    return head + body


class Messages:
    """Message files per size, generated once; each has a unique Message-ID."""

    def __init__(self, base):
        self.base = base
        self.cache = {}

    def files(self, label, n):
        d = os.path.join(self.base, "msgs", label.replace(" ", ""))
        os.makedirs(d, exist_ok=True)
        have = self.cache.setdefault(label, [])
        while len(have) < n:
            i = len(have)
            path = os.path.join(d, f"{i}.eml")
            with open(path, "wb") as f:
                f.write(make_message(SIZES[label], i, label.replace(" ", "")))
            have.append(path)
        return have[:n]


# --------------------------------------------------------------------------------------------
# Peers


class Sink:
    def __init__(self, root, base):
        self.root = root
        self.dir = os.path.join(base, "sink")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        env = dict(os.environ, SMTP_SINK_OPTS="")
        subprocess.run(["bash", f"{root}/scripts/peers/smtp-sink.sh", "start", self.dir, str(self.port)],
                       check=True, env=env)

    def count(self):
        try:
            with open(os.path.join(self.dir, "smtp-sink.out"), "rb") as f:
                data = f.read()
        except OSError:
            return 0
        m = re.findall(rb"mesg=(\d+)", data[-4096:])
        return int(m[-1]) if m else 0

    def wait_for(self, target, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.count()
            if c >= target:
                return time.monotonic(), c
            time.sleep(0.002)
        return None, self.count()

    def stop(self):
        subprocess.run(["bash", f"{self.root}/scripts/peers/smtp-sink.sh", "stop", self.dir])


class Postfix:
    def __init__(self, root, base, sink_port):
        self.root = root
        self.dir = os.path.join(base, "postfix")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(base, 0o755)
        self.port = free_port()
        self.etc = os.path.join(self.dir, "etc")
        # defer_transports: enqueue first, then `postqueue -f` flushes (peers.md §4);
        # connection caching on (Postfix's own default; postfix.sh turns it off for tests);
        # no 10 MB size limit.
        extra = ("defer_transports=smtp,relay smtp_connection_cache_on_demand=yes "
                 "message_size_limit=0 mailbox_size_limit=0")
        env = dict(os.environ, POSTFIX_EXTRA=extra)
        subprocess.run(["bash", f"{root}/scripts/peers/postfix.sh", "start", self.dir, str(self.port),
                        f"127.0.0.1:{sink_port}"], check=True, env=env)

    def queue_counts(self):
        out = {}
        for q in ("maildrop", "incoming", "active", "deferred"):
            n = 0
            for _, _, files in os.walk(os.path.join(self.dir, "spool", q)):
                n += len(files)
            out[q] = n
        return out

    def wait_deferred(self, n, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.queue_counts()
            if c["maildrop"] == 0 and c["incoming"] == 0 and c["active"] == 0 and c["deferred"] >= n:
                return True
            time.sleep(0.02)
        log("postfix queue did not settle:", self.queue_counts())
        return False

    def sendmail(self, path):
        with open(path, "rb") as f:
            subprocess.run(["/usr/sbin/sendmail", "-C", self.etc, "-f", FROM, RCPT], stdin=f, check=True)

    def flush(self):
        subprocess.run(["/usr/sbin/postqueue", "-c", self.etc, "-f"], check=True)

    def purge(self):
        subprocess.run(["/usr/sbin/postsuper", "-c", self.etc, "-d", "ALL"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        subprocess.run(["bash", f"{self.root}/scripts/peers/postfix.sh", "stop", self.dir])


# --------------------------------------------------------------------------------------------
# mapispool


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Profile:
    """A throwaway mapispool profile whose one transport sends by SMTP to 127.0.0.1:port."""

    counter = 0

    def __init__(self, bin_path, base, port, upload_interval=None, inbound=None, web_port=None, transports=1):
        Profile.counter += 1
        self.bin = bin_path
        self.dir = os.path.join(base, f"mp{Profile.counter}")
        os.makedirs(self.dir)
        self.runtime = os.path.join(self.dir, "run")
        os.makedirs(self.runtime, mode=0o700)
        self.path = os.path.join(self.dir, "profile.toml")
        sched = f'upload_interval = "{upload_interval}"\n' if upload_interval else ""
        with open(self.path, "w") as f:
            f.write(
                f'[store]\npath = "{self.dir}/store.db"\n\n[spooler]\n{sched}timeout = "60s"\n'
                # The 100 MB download is above the default limit (64 MiB): it measures memory.
                f'retry_initial = "1h"\nmax_message_size = {200 * 1024 * 1024}\n\n'
            )
            if web_port:
                f.write(f'[web]\nlisten = "127.0.0.1:{web_port}"\n\n')
            for t in range(transports):
                # The first is "smtp" whatever the count, so submits route as in one-transport runs.
                name = "smtp" if t == 0 else f"smtp{t}"
                f.write(
                    f'[[transport]]\nname = "{name}"\naddress = "{FROM}"\n'
                    f'[transport.outbound]\nkind = "smtp"\nhost = "127.0.0.1"\nport = {port}\n'
                    f'security = "none"\n'
                )
            if inbound:
                kind, iport, user = inbound
                f.write(f'[transport.inbound]\nkind = "{kind}"\nhost = "127.0.0.1"\nport = {iport}\n'
                        f'security = "none"\nallow_plaintext_auth = true\nusername = "{user}"\npassword_env = "MAPISPOOL_BENCH_PW"\n')
        self.env = dict(os.environ, XDG_RUNTIME_DIR=self.runtime, NO_COLOR="1", MAPISPOOL_BENCH_PW="pw")
        self.last_stderr = ""
        self.env.pop("RUST_LOG", None)
        self.daemon = None

    def cmd(self, *args):
        return [self.bin, "--profile", self.path, *args]

    def run(self, *args, stdin=None, check=True):
        r = subprocess.run(self.cmd(*args), stdin=stdin, env=self.env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if check and r.returncode != 0:
            raise RuntimeError(f"mapispool {' '.join(args)}: exit {r.returncode}: {r.stderr.decode()[-500:]}")
        return r

    def run_rusage(self, *args, stdin=None):
        """Runs a command; returns (seconds, exit code, peak RSS in KiB)."""
        t0 = time.monotonic()
        # Peak RSS through GNU time: a child's own ru_maxrss would include this (large) harness's
        # memory from before exec.
        err = open(os.path.join(self.dir, "stderr.log"), "wb")
        rss_file = os.path.join(self.dir, "maxrss")
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file, *self.cmd(*args)], env=self.env,
                             stdout=subprocess.DEVNULL, stderr=err, stdin=stdin)
        _, status, _ = os.wait4(p.pid, 0)
        err.close()
        self.last_stderr = open(os.path.join(self.dir, "stderr.log"), errors="replace").read()
        try:
            maxrss = int(open(rss_file).read().split()[-1])
        except (OSError, ValueError, IndexError):
            maxrss = -1
        t = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        return t, p.returncode, maxrss

    def count_inbox(self):
        r = self.run("messages", "--folder", "inbox", "--json", check=False)
        try:
            data = json.loads(r.stdout)
        except ValueError:
            return -1
        if isinstance(data, dict):
            data = data.get("rows") or data.get("messages") or []
        return len(data)

    # -- the daemon
    def start_daemon(self):
        self.log = open(os.path.join(self.dir, "spooler.log"), "wb")
        self.daemon = subprocess.Popen(self.cmd("spooler"), env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            socks = glob.glob(os.path.join(self.runtime, "mapispool", "spooler-*.sock"))
            if socks:
                try:
                    c = UnixHTTP(socks[0], timeout=5)
                    c.request("GET", "/v1/hello")
                    r = c.getresponse()
                    r.read()
                    c.close()
                    if r.status == 200:
                        self.socket = socks[0]
                        return self.daemon.pid
                except OSError:
                    pass
            if self.daemon.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"the spooler daemon did not start; see {self.dir}/spooler.log")

    def api(self):
        return UnixHTTP(self.socket)

    def stop_daemon(self):
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        self.daemon = None


def api_submit(conn, body):
    conn.request("POST", "/v1/submit", body=body, headers={"Content-Type": "message/rfc822"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"/v1/submit: {r.status} {data[:300]!r}")


# Messages per `POST /v1/submit-batch` in the "submit bulk" scenario, and the most bytes one
# batch holds (the daemon reads a batch whole); a message larger than that goes alone through
# `/v1/submit`, which streams, as the README tells clients to do.
BATCH = 50
BATCH_BYTES = 8 * 1024 * 1024


def batches(bodies):
    """Consecutive groups of at most BATCH messages and BATCH_BYTES bytes (a larger message
    alone)."""
    group, size = [], 0
    for b in bodies:
        if group and (len(group) == BATCH or size + len(b) > BATCH_BYTES):
            yield group
            group, size = [], 0
        group.append(b)
        size += len(b)
    if group:
        yield group


def api_submit_batch(conn, bodies):
    """One /v1/submit-batch request: each message framed as "<envelope len> <message len>\\n",
    an empty envelope (the defaults: recipients from the headers), then the message. False if
    the binary has no such route (an older build, measured for a before/after)."""
    payload = b"".join(b"0 %d\n" % len(b) + b for b in bodies)
    conn.request("POST", "/v1/submit-batch", body=payload)
    r = conn.getresponse()
    data = r.read()
    if r.status == 404:
        return False
    if r.status != 200:
        raise RuntimeError(f"/v1/submit-batch: {r.status} {data[:300]!r}")
    results = json.loads(data).get("results", [])
    if len(results) != len(bodies) or any("entry_id" not in x for x in results):
        raise RuntimeError(f"/v1/submit-batch: not every message accepted: {data[:300]!r}")
    return True


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "Threads"):
                out[k] = int(v.split()[0])
    return out


def proc_cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


# --------------------------------------------------------------------------------------------
# A tiny SMTP server that timestamps the first command after accept (latency scenario).


class StampServer:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stamps = []  # (accept time, first byte time)
        self.running = True
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        self.sock.settimeout(0.5)
        while self.running:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t_accept = time.monotonic()
            threading.Thread(target=self.serve, args=(c, t_accept), daemon=True).start()

    def serve(self, c, t_accept):
        c.settimeout(30)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            c.sendall(b"220 stamp.test ESMTP\r\n")
            buf = b""
            first = None
            in_data = False
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                if first is None:
                    first = time.monotonic()
                    self.stamps.append((t_accept, first))
                buf += chunk
                while True:
                    if in_data:
                        i = buf.find(b"\r\n.\r\n")
                        if buf.startswith(b".\r\n"):
                            i, skip = 0, 3
                        elif i >= 0:
                            skip = i + 5
                        else:
                            buf = buf[-4:]
                            break
                        buf = buf[skip:]
                        in_data = False
                        c.sendall(b"250 2.0.0 queued\r\n")
                        continue
                    i = buf.find(b"\r\n")
                    if i < 0:
                        break
                    line, buf = buf[:i], buf[i + 2:]
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        c.sendall(b"250-stamp.test\r\n250 8BITMIME\r\n")
                    elif verb == b"DATA":
                        in_data = True
                        c.sendall(b"354 go\r\n")
                    elif verb == b"QUIT":
                        c.sendall(b"221 bye\r\n")
                        return
                    else:
                        c.sendall(b"250 ok\r\n")
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.running = False
        self.sock.close()


# --------------------------------------------------------------------------------------------
# The run


class Bench:
    def __init__(self, args):
        self.args = args
        self.root = args.root
        # MAPISPOOL_BIN: a binary built elsewhere (a worktree sharing one CARGO_TARGET_DIR).
        self.bin = os.environ.get("MAPISPOOL_BIN") or os.path.join(self.root, "target", "release", "mapispool")
        self.base = tempfile.mkdtemp(prefix="mapispool-bench-", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.msgs = Messages(self.base)
        # A private copy: the target directory is shared, and another build may replace it mid-run.
        shutil.copy2(self.bin, os.path.join(self.base, "mapispool"))
        self.bin = os.path.join(self.base, "mapispool")
        self.samples = {}  # (scenario, size, who) -> [msg/s or value]
        self.ns = {}  # (scenario, size, who) -> N
        self.extra = {}
        self.notes = []
        self.cleanups = []

    def add(self, scenario, size, who, value, n=None):
        self.samples.setdefault((scenario, size, who), []).append(value)
        if n is not None:
            self.ns[(scenario, size, who)] = n

    def sizes(self):
        q = self.args.quick
        n = {"2 KB": 200 if q else 1000, "100 KB": 100 if q else 500, "10 MB": 3 if q else 10}
        if self.args.n:
            n["2 KB"] = self.args.n
        return n

    # -- upload + submit (they share the queued messages)
    def upload_submit(self, sink, postfix, do_upload, do_submit):
        ns = self.sizes()
        reps = self.args.reps
        msmtp_n = {"2 KB": 20 if self.args.quick else 50, "100 KB": 20 if self.args.quick else 50,
                   "10 MB": 3 if self.args.quick else 10}
        msmtp_rc = os.path.join(self.base, "msmtprc")
        with open(msmtp_rc, "w") as f:
            f.write(f"defaults\nauth off\ntls off\n\naccount bench\nhost 127.0.0.1\nport {sink.port}\n"
                    f"from {FROM}\n\naccount default : bench\n")
        os.chmod(msmtp_rc, 0o600)
        for label, n in ns.items():
            files = self.msgs.files(label, n)
            bodies = None
            if do_submit:
                bodies = [open(p, "rb").read() for p in files]
            timeout = 120 + n * (SIZES[label] / 1e6) * 2
            for rep in range(reps):
                log(f"{label} rep {rep + 1}/{reps}: mapispool (no daemon)")
                # A. mapispool without a daemon: submit per process, then flush --upload.
                prof = Profile(self.bin, self.base, sink.port)
                t0 = time.monotonic()
                for p in files:
                    with open(p, "rb") as f:
                        prof.run("submit", stdin=f)
                t_sub = time.monotonic() - t0
                self.add("submit per process", label, "mapispool submit", n / t_sub, n)
                base_count = sink.count()
                t, rc, rss = prof.run_rusage("flush", "--upload")
                got = sink.count() - base_count
                if rc != 0 or got < n:
                    self.notes.append(f"upload {label}: mapispool flush exit {rc}, sink got {got}/{n}")
                self.add("upload", label, "mapispool flush --upload", n / t, n)
                self.extra.setdefault(f"flush --upload peak RSS KiB ({label})", []).append(rss)
                shutil.rmtree(prof.dir, ignore_errors=True)

                # B. through a warm daemon: bulk submit over the API, then flush via the daemon.
                log(f"{label} rep {rep + 1}/{reps}: mapispool daemon")
                prof = Profile(self.bin, self.base, sink.port)
                prof.start_daemon()
                self.cleanups.append(prof.stop_daemon)
                try:
                    if do_submit:
                        conn = prof.api()
                        t0 = time.monotonic()
                        for b in bodies:
                            api_submit(conn, b)
                        t_bulk = time.monotonic() - t0
                        conn.close()
                        self.add("submit bulk", label, "mapispool daemon API", n / t_bulk, n)
                    else:
                        for p in files:
                            with open(p, "rb") as f:
                                prof.run("submit", stdin=f)
                    base_count = sink.count()
                    t, rc, _ = prof.run_rusage("flush", "--upload")
                    got = sink.count() - base_count
                    if rc != 0 or got < n:
                        self.notes.append(f"upload {label}: daemon flush exit {rc}, sink got {got}/{n}")
                    self.add("upload", label, "mapispool flush --upload (warm daemon)", n / t, n)
                finally:
                    prof.stop_daemon()
                shutil.rmtree(prof.dir, ignore_errors=True)

                # B2. the same messages through the batch API, BATCH per request (a daemon of
                # its own, so the flush above sent exactly N).
                if do_submit:
                    prof = Profile(self.bin, self.base, sink.port)
                    prof.start_daemon()
                    self.cleanups.append(prof.stop_daemon)
                    try:
                        conn = prof.api()
                        # An empty batch first: an older build answers 404 (and then closes
                        # the connection on a large body).
                        supported = api_submit_batch(conn, [])
                        t0 = time.monotonic()
                        if supported:
                            for group in batches(bodies):
                                if len(group) == 1 and len(group[0]) > BATCH_BYTES:
                                    api_submit(conn, group[0])
                                else:
                                    api_submit_batch(conn, group)
                        t_batch = time.monotonic() - t0
                        conn.close()
                        if supported:
                            self.add("submit bulk", label, f"mapispool daemon API (batches of {BATCH})", n / t_batch, n)
                        elif "no /v1/submit-batch" not in " ".join(self.notes):
                            self.notes.append("this mapispool build has no /v1/submit-batch: the batch row is missing")
                    finally:
                        prof.stop_daemon()
                    shutil.rmtree(prof.dir, ignore_errors=True)

                # C. Postfix: sendmail per process, then postqueue -f.
                log(f"{label} rep {rep + 1}/{reps}: postfix")
                t0 = time.monotonic()
                for p in files:
                    postfix.sendmail(p)
                t_sm = time.monotonic() - t0
                self.add("submit per process", label, "Postfix sendmail", n / t_sm, n)
                if postfix.wait_deferred(n, timeout):
                    base_count = sink.count()
                    t0 = time.monotonic()
                    postfix.flush()
                    t1, c = sink.wait_for(base_count + n, timeout)
                    if t1 is None:
                        self.notes.append(f"upload {label}: postqueue -f, sink got {c - base_count}/{n}")
                    else:
                        self.add("upload", label, "Postfix postqueue -f", n / (t1 - t0), n)
                postfix.purge()

                # D. Postfix over SMTP (one connection), then postqueue -f again.
                if do_submit:
                    s = smtplib.SMTP("127.0.0.1", postfix.port, timeout=120)
                    s.ehlo("bench.localhost")
                    t0 = time.monotonic()
                    for b in bodies:
                        s.sendmail(FROM, [RCPT], b)
                    t_smtp = time.monotonic() - t0
                    s.quit()
                    self.add("submit bulk", label, "Postfix smtpd (1 SMTP conn)", n / t_smtp, n)
                    if postfix.wait_deferred(n, timeout):
                        base_count = sink.count()
                        t0 = time.monotonic()
                        postfix.flush()
                        t1, c = sink.wait_for(base_count + n, timeout)
                        if t1 is not None:
                            self.add("upload", label, "Postfix postqueue -f", n / (t1 - t0), n)
                    postfix.purge()

                if not do_upload:
                    continue
                # E. smtp-source, the wire's ceiling: on one connection, and on as many as
                # mapispool uses by default (`connections = 4`), the target's "same count".
                log(f"{label} rep {rep + 1}/{reps}: smtp-source, msmtp")
                for sessions in (1, 4):
                    base_count = sink.count()
                    t0 = time.monotonic()
                    subprocess.run(["/usr/sbin/smtp-source", "-s", str(sessions), "-d", "-m", str(n),
                                    "-l", str(SIZES[label]), "-f", FROM, "-t", RCPT,
                                    f"127.0.0.1:{sink.port}"], check=True, stdout=subprocess.DEVNULL)
                    t = time.monotonic() - t0
                    t1, c = sink.wait_for(base_count + n, 30)
                    self.add("upload", label, f"smtp-source -s {sessions}", n / t, n)

                # F. msmtp, one process per message (fewer messages: ~20 msg/s).
                mn = min(msmtp_n[label], n)
                t0 = time.monotonic()
                for p in files[:mn]:
                    with open(p, "rb") as f:
                        subprocess.run(["msmtp", "-C", msmtp_rc, RCPT], stdin=f, check=True)
                t = time.monotonic() - t0
                self.add("upload", label, "msmtp (process per msg)", mn / t, mn)

    # -- latency and status
    def latency(self, sink):
        srv = StampServer()
        self.cleanups.append(srv.stop)
        prof = Profile(self.bin, self.base, srv.port, upload_interval="1h")
        pid = prof.start_daemon()
        self.cleanups.append(prof.stop_daemon)
        body = make_message(2048, 0, "lat")
        k = 10 if self.args.quick else 30
        conn = prof.api()
        # Warm up: one flush.
        api_submit(conn, body)
        prof.run("flush", "--upload")
        for _ in range(k):
            api_submit(conn, body)
            before = len(srv.stamps)
            t0 = time.monotonic()
            prof.run("flush", "--upload")
            t_end = time.monotonic()
            if len(srv.stamps) > before:
                t_accept, t_first = srv.stamps[before]
                self.add("latency", "-", "flush -> first SMTP command (CLI, warm daemon) ms", (t_first - t0) * 1000)
                self.add("latency", "-", "flush -> TCP accept ms", (t_accept - t0) * 1000)
                self.add("latency", "-", "whole flush of 1 msg (CLI, warm daemon) ms", (t_end - t0) * 1000)
        conn.close()
        # Process start alone, for scale: `mapispool --version`.
        for _ in range(k):
            t0 = time.monotonic()
            subprocess.run([self.bin, "--version"], stdout=subprocess.DEVNULL)
            self.add("latency", "-", "mapispool --version (process start) ms", (time.monotonic() - t0) * 1000)
        # status through the warm daemon, and without one.
        self.status_time(prof, "status (warm daemon) ms")
        # Idle: RSS and CPU over a window with no schedule due.
        window = 5 if self.args.quick else 10
        time.sleep(0.5)
        c0 = proc_cpu_ticks(pid)
        t0 = time.monotonic()
        time.sleep(window)
        c1 = proc_cpu_ticks(pid)
        el = time.monotonic() - t0
        st = proc_status(pid)
        if "VmRSS" not in st:
            raise RuntimeError(f"the daemon died while idle; see {prof.dir}/spooler.log: "
                               + open(os.path.join(prof.dir, "spooler.log"), errors="replace").read()[-500:])
        hz = os.sysconf("SC_CLK_TCK")
        self.add("idle", "-", "daemon idle RSS MiB", st["VmRSS"] / 1024)
        self.add("idle", "-", "daemon idle CPU %", 100 * (c1 - c0) / hz / el)
        self.extra["idle window s"] = [round(el, 1)]
        self.extra["idle daemon threads"] = [st["Threads"]]
        prof.stop_daemon()
        prof2 = Profile(self.bin, self.base, srv.port)
        prof2.run("status")  # creates the store
        self.status_time(prof2, "status (no daemon, in-process) ms")
        srv.stop()
        self.disk_limits()

    def disk_limits(self):
        """What the disk and the CPU cost alone, on the filesystem the stores are on: the floor
        under any durable write (issue 16 asks for the measurement where a target cannot be met,
        not a guess). Medians; the 4 KiB fsync over 100 runs, the 10 MiB ones over 10."""
        d = os.path.join(self.base, "disk")
        os.makedirs(d, exist_ok=True)

        def write(size, sync, dirsync=False):
            buf = os.urandom(size)
            times = []
            for i in range(100 if size <= 4096 else 10):
                path = os.path.join(d, f"f{i}")
                t0 = time.perf_counter()
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                for off in range(0, size, 256 * 1024):
                    os.write(fd, buf[off:off + 256 * 1024])
                if sync:
                    os.fsync(fd)
                os.close(fd)
                if dirsync:
                    dfd = os.open(d, os.O_RDONLY)
                    os.fsync(dfd)
                    os.close(dfd)
                times.append((time.perf_counter() - t0) * 1000)
                os.unlink(path)
            return times

        for t in write(4096, True):
            self.add("latency", "-", "disk: 4 KiB write + fsync ms", t)
        for t in write(4096, True, dirsync=True):
            self.add("latency", "-", "disk: 4 KiB write + fsync + directory fsync ms", t)
        for t in write(10 << 20, False):
            self.add("latency", "-", "disk: 10 MiB write, no fsync ms", t)
        for t in write(10 << 20, True):
            self.add("latency", "-", "disk: 10 MiB write + fsync ms", t)
        buf = os.urandom(10 << 20)
        for _ in range(10):
            t0 = time.perf_counter()
            hashlib.sha256(buf).digest()
            self.add("latency", "-", "CPU: SHA-256 of 10 MiB (OpenSSL) ms", (time.perf_counter() - t0) * 1000)
        shutil.rmtree(d, ignore_errors=True)
        self.extra["load average (1, 5, 15 min) at the disk measurement"] = [round(x, 2) for x in os.getloadavg()]

    def status_time(self, prof, name):
        runs = 10 if self.args.quick else 30
        if shutil.which("hyperfine"):
            out = os.path.join(self.base, "hf.json")
            cmd = " ".join(f"'{a}'" for a in prof.cmd("status"))
            r = subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", out,
                                "--style", "none", cmd], env=prof.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            if r.returncode == 0:
                with open(out) as f:
                    res = json.load(f)["results"][0]
                for t in res["times"]:
                    self.add("latency", "-", name, t * 1000)
                return
            log("hyperfine failed:", r.stderr.decode()[-300:])
        for _ in range(runs):
            t0 = time.monotonic()
            prof.run("status")
            self.add("latency", "-", name, (time.monotonic() - t0) * 1000)

    # -- cost as the queue and the profile grow
    def timed(self, prof, *args, runs=5):
        """Median wall time in ms of `mapispool ARGS` over `runs` runs (after one warm-up)."""
        prof.run(*args)
        times = []
        for _ in range(runs):
            t0 = time.monotonic()
            prof.run(*args)
            times.append((time.monotonic() - t0) * 1000)
        return median(times)

    def scale_counts(self):
        if self.args.scale_n:
            return [int(x) for x in self.args.scale_n.split(",")]
        return [1000, 10000] if self.args.quick else [1000, 10000, 100000]

    def scale(self, sink):
        """N queued 2 KB messages (put there through the daemon's batch API, the daemon then
        stopped): `status` and `queue --where` with and without a daemon, the store's size, then
        one `flush --upload` (no daemon) sending them all, with each lease's time from the
        store's debug event. The rows are medians over the repetitions."""
        runs = 3 if self.args.quick else 5
        where = "PR_MSP_ATTEMPTS > 0"
        for rep in range(self.args.reps):
            for n in self.scale_counts():
                log(f"scale: {n} queued, rep {rep + 1}/{self.args.reps}")
                prof = Profile(self.bin, self.base, sink.port, upload_interval="24h")
                prof.start_daemon()
                self.cleanups.append(prof.stop_daemon)
                conn = prof.api()
                base_count = sink.count()
                t0 = time.monotonic()
                group = []
                for i in range(n):
                    group.append(make_message(2048, i, f"scale{n}r{rep}"))
                    if len(group) == BATCH:
                        api_submit_batch(conn, group)
                        group = []
                if group:
                    api_submit_batch(conn, group)
                t_fill = time.monotonic() - t0
                conn.close()
                if sink.count() != base_count:
                    self.notes.append(f"scale {n}: the daemon sent while the queue was filled")
                key = f"{n:,}"
                self.add("scale", key, "fill msg/s (daemon API, batches of 50)", n / t_fill, n)
                self.add("scale", key, "status ms (warm daemon)", self.timed(prof, "status", runs=runs))
                self.add("scale", key, "queue --where ms (warm daemon)",
                         self.timed(prof, "queue", "--where", where, runs=runs))
                prof.stop_daemon()
                self.add("scale", key, "status ms (no daemon)", self.timed(prof, "status", runs=runs))
                self.add("scale", key, "queue --where ms (no daemon)",
                         self.timed(prof, "queue", "--where", where, runs=runs))
                size = 0
                for root, _, files in os.walk(prof.dir):
                    for f in files:
                        if f.startswith("store.db"):
                            size += os.path.getsize(os.path.join(root, f))
                self.add("scale", key, "store size MiB", size / (1024 * 1024))
                env = dict(prof.env, RUST_LOG="mapispool::store::sqlite=debug")
                err_path = os.path.join(prof.dir, "flush.err")
                with open(err_path, "wb") as err:
                    t0 = time.monotonic()
                    r = subprocess.run(prof.cmd("flush", "--upload"), env=env, stdout=subprocess.DEVNULL,
                                       stderr=err)
                    t = time.monotonic() - t0
                got = sink.count() - base_count
                if r.returncode != 0 or got < n:
                    self.notes.append(f"scale {n}: flush exit {r.returncode}, sink got {got}/{n}")
                self.add("scale", key, "flush msg/s (no daemon)", n / t, n)
                leases = [int(x) / 1000 for x in re.findall(r"took_us=(\d+)", open(err_path, errors="replace").read())]
                if leases:
                    self.add("scale", key, "lease ms (median of a flush's leases)", median(leases))
                    self.add("scale", key, "lease ms (slowest of a flush)", max(leases))
                shutil.rmtree(prof.dir, ignore_errors=True)
        # Transports in one profile: the status table and a flush with nothing to send.
        for rep in range(self.args.reps):
            for t in (1, 10, 100):
                log(f"scale: {t} transports, rep {rep + 1}/{self.args.reps}")
                prof = Profile(self.bin, self.base, sink.port, upload_interval="24h", transports=t)
                key = str(t)
                self.add("transports", key, "status ms (no daemon)", self.timed(prof, "status", runs=runs))
                self.add("transports", key, "flush, nothing queued, ms (no daemon)",
                         self.timed(prof, "flush", runs=runs))
                prof.start_daemon()
                self.cleanups.append(prof.stop_daemon)
                self.add("transports", key, "status ms (warm daemon)", self.timed(prof, "status", runs=runs))
                self.add("transports", key, "flush, nothing queued, ms (warm daemon)",
                         self.timed(prof, "flush", runs=runs))
                prof.stop_daemon()
                shutil.rmtree(prof.dir, ignore_errors=True)

    # -- [web] on and off (issue 15's overhead target)
    def web(self, sink):
        """N queued 2 KB messages sent through a warm daemon, once with `[web]` listening (and
        /metrics scraped every 100 ms while the flush runs: far more often than Prometheus does)
        and once without; the order alternates per repetition."""
        n = 1000 if self.args.quick else 4000
        bodies = [make_message(2048, i, "web") for i in range(n)]
        for rep in range(self.args.reps):
            order = (False, True) if rep % 2 == 0 else (True, False)
            for on in order:
                log(f"web: [web] {'on' if on else 'off'}, rep {rep + 1}/{self.args.reps}")
                port = free_port() if on else None
                prof = Profile(self.bin, self.base, sink.port, upload_interval="24h", web_port=port)
                prof.start_daemon()
                self.cleanups.append(prof.stop_daemon)
                try:
                    conn = prof.api()
                    for group in batches(bodies):
                        api_submit_batch(conn, group)
                    conn.close()
                    stop = threading.Event()
                    scrapes = []

                    def scrape():
                        while not stop.is_set():
                            try:
                                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                                    r.read()
                                scrapes.append(1)
                            except OSError as e:
                                self.notes.append(f"web: /metrics: {e}")
                                return
                            stop.wait(0.1)

                    scraper = threading.Thread(target=scrape, daemon=True) if on else None
                    if scraper:
                        scraper.start()
                    base_count = sink.count()
                    t, rc, _ = prof.run_rusage("flush", "--upload")
                    stop.set()
                    if scraper:
                        scraper.join()
                    got = sink.count() - base_count
                    if rc != 0 or got < n:
                        self.notes.append(f"web: flush exit {rc}, sink got {got}/{n}")
                    who = "[web] on, /metrics scraped" if on else "[web] off"
                    self.add("web", "2 KB", who, n / t, n)
                finally:
                    prof.stop_daemon()
                shutil.rmtree(prof.dir, ignore_errors=True)

    # -- memory while taking and sending a large message
    def memory(self, sink):
        sizes = [10]
        if not self.args.no_100mb:
            sizes.append(100)
        for mb in sizes:
            label = f"{mb} MB"
            body = make_message(mb * 1024 * 1024, 0, f"mem{mb}")
            prof = Profile(self.bin, self.base, sink.port)
            pid = prof.start_daemon()
            self.cleanups.append(prof.stop_daemon)
            try:
                idle = proc_status(pid)["VmHWM"]
                conn = prof.api()
                api_submit(conn, body)
                conn.close()
                after_submit = proc_status(pid)["VmHWM"]
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM
                base_count = sink.count()
                t, rc, _ = prof.run_rusage("flush", "--upload")
                sent = sink.count() - base_count
                during_send = proc_status(pid)["VmHWM"]
                self.add("memory", label, "daemon peak RSS before any work MiB", idle / 1024)
                self.add("memory", label, "daemon peak RSS taking the message (API submit) MiB", after_submit / 1024)
                self.add("memory", label, "daemon peak RSS sending it (flush) MiB", during_send / 1024)
                if rc != 0 or sent < 1:
                    self.notes.append(f"memory {label}: flush exit {rc}, sink got {sent}/1")
            finally:
                prof.stop_daemon()
            # Without a daemon: the CLI's own peak while submitting and while flushing.
            prof2 = Profile(self.bin, self.base, sink.port)
            path = os.path.join(self.base, f"mem{mb}.eml")
            with open(path, "wb") as f:
                f.write(body)
            with open(path, "rb") as f:
                _, _, rss = prof2.run_rusage("submit", stdin=f)
            self.add("memory", label, "`mapispool submit` peak RSS MiB", rss / 1024)
            t, rc, rss = prof2.run_rusage("flush", "--upload")
            self.add("memory", label, "`mapispool flush --upload` (no daemon) peak RSS MiB", rss / 1024)
            os.unlink(path)
            shutil.rmtree(prof.dir, ignore_errors=True)
            shutil.rmtree(prof2.dir, ignore_errors=True)

    def run_download(self):
        """N messages in a Dovecot INBOX, pulled into a durable local store: mapispool over IMAP
        and POP3 (`flush --download`, no daemon) vs mbsync (FSync yes / no) and fetchmail (POP3,
        bsmtp file, no MDA). Every client gets its own freshly filled user, so nobody pulls a
        mailbox someone else has already indexed or emptied."""
        ns = {k: v for k, v in self.sizes().items()}
        reps = self.args.reps
        clients = ["imap", "pop3", "mbsync-yes", "mbsync-no", "fetchmail"]
        users = [f"u{si}r{r}{c.replace('-', '')}" for si in range(len(ns)) for r in range(reps) for c in clients]
        big = [] if self.args.no_100mb else ["m100imap", "m100pop3"]
        users += big
        ddir = os.path.join(self.base, "dc")
        os.makedirs(ddir)
        imap_port, pop3_port = free_port(), free_port()
        env = dict(os.environ, DOVECOT_USERS=" ".join(f"{u}:pw" for u in users))
        subprocess.run(["bash", f"{self.root}/scripts/peers/dovecot.sh", "start", ddir, str(imap_port),
                        str(pop3_port)], check=True, env=env, stdout=subprocess.DEVNULL)
        self.cleanups.append(lambda: subprocess.run(["bash", f"{self.root}/scripts/peers/dovecot.sh", "stop", ddir]))
        uid = gid = None
        if os.geteuid() == 0:
            st = os.stat(os.path.join(ddir, "mail", users[0]))
            uid, gid = st.st_uid, st.st_gid

        def preload(user, files):
            md = os.path.join(ddir, "mail", user)
            for i, p in enumerate(files):
                name = f"{int(time.time())}.B{i}.bench"
                tmp = os.path.join(md, "tmp", name)
                shutil.copyfile(p, tmp)
                if uid is not None:
                    os.chown(tmp, uid, gid)
                os.rename(tmp, os.path.join(md, "new", name))

        for si, (label, n) in enumerate(ns.items()):
            files = self.msgs.files(label, n)
            timeout = 120 + n * (SIZES[label] / 1e6) * 2
            for r in range(reps):
                log(f"download {label} rep {r + 1}/{reps}")
                for c in clients:
                    user = f"u{si}r{r}{c.replace('-', '')}"
                    preload(user, files)
                    work = os.path.join(self.base, f"dl-{user}")
                    os.makedirs(work)
                    if c in ("imap", "pop3"):
                        prof = Profile(self.bin, self.base, 9, inbound=(c, imap_port if c == "imap" else pop3_port,
                                                                          user))
                        t, rc, rss = prof.run_rusage("flush", "--download")
                        got = prof.count_inbox()
                        if rc != 0 or got < n:
                            self.notes.append(f"download {label} {c}: flush exit {rc}, inbox has {got}/{n}: "
                                              f"{prof.last_stderr[-300:]}")
                        else:
                            self.add(f"download {c.upper()}", label, f"mapispool flush --download ({c.upper()})",
                                     n / t, n)
                            self.extra.setdefault(f"flush --download ({c.upper()}) peak RSS KiB ({label})",
                                                  []).append(rss)
                        shutil.rmtree(prof.dir, ignore_errors=True)
                    elif c.startswith("mbsync"):
                        near = os.path.join(work, "near")
                        os.makedirs(near)
                        rc_path = os.path.join(work, "mbsyncrc")
                        with open(rc_path, "w") as f:
                            f.write(f"FSync {'yes' if c == 'mbsync-yes' else 'no'}\n\n"
                                    f"IMAPAccount a\nHost 127.0.0.1\nPort {imap_port}\nUser {user}\nPass pw\n"
                                    f"SSLType None\nAuthMechs LOGIN\n\n"
                                    f"IMAPStore far\nAccount a\n\n"
                                    f"MaildirStore near\nPath {near}/\nInbox {near}/INBOX\n\n"
                                    f"Channel c\nFar :far:INBOX\nNear :near:INBOX\nSync Pull\nCreate Near\n"
                                    f"SyncState *\n")
                        t0 = time.monotonic()
                        p = subprocess.run(["mbsync", "-c", rc_path, "-q", "c"], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE, timeout=timeout)
                        t = time.monotonic() - t0
                        got = sum(len(os.listdir(os.path.join(near, "INBOX", d))) for d in ("new", "cur")
                                  if os.path.isdir(os.path.join(near, "INBOX", d)))
                        if p.returncode != 0 or got < n:
                            self.notes.append(f"download {label} {c}: exit {p.returncode}, got {got}/{n}: "
                                              f"{p.stderr.decode()[-300:]}")
                        else:
                            self.add("download IMAP", label,
                                     f"mbsync FSync {'yes' if c == 'mbsync-yes' else 'no'}", n / t, n)
                    else:
                        out = os.path.join(work, "bsmtp")
                        rc_path = os.path.join(work, "fetchmailrc")
                        with open(rc_path, "w") as f:
                            f.write(f'set no bouncemail\npoll 127.0.0.1 service {pop3_port} protocol pop3 '
                                    f'user "{user}" password "pw" sslproto "" bsmtp "{out}" fetchall nokeep\n')
                        os.chmod(rc_path, 0o600)
                        fenv = dict(os.environ, FETCHMAILHOME=work, HOME=work)
                        t0 = time.monotonic()
                        p = subprocess.run(["fetchmail", "-f", rc_path, "-N", "--nosyslog"], env=fenv,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
                        t = time.monotonic() - t0
                        got = 0
                        if os.path.exists(out):
                            with open(out, "rb") as f:
                                got = sum(1 for line in f if line.startswith(b"MAIL FROM:"))
                        if p.returncode not in (0,) or got < n:
                            self.notes.append(f"download {label} fetchmail: exit {p.returncode}, got {got}/{n}: "
                                              f"{p.stderr.decode()[-300:]}")
                        else:
                            self.add("download POP3", label, "fetchmail (bsmtp)", n / t, n)
                    shutil.rmtree(work, ignore_errors=True)

        # Memory while receiving: one 100 MB message pulled over IMAP (ranges) and POP3
        # (streamed into the store), the CLI's own peak RSS.
        if big:
            path = os.path.join(self.base, "mem100-dl.eml")
            with open(path, "wb") as f:
                f.write(make_message(100 * 1024 * 1024, 0, "mem100dl"))
            for user in big:
                kind = "imap" if user.endswith("imap") else "pop3"
                log(f"download 100 MB: {kind}")
                preload(user, [path])
                prof = Profile(self.bin, self.base, 9, inbound=(kind, imap_port if kind == "imap" else pop3_port,
                                                                user))
                _, rc, rss = prof.run_rusage("flush", "--download")
                got = prof.count_inbox()
                if rc != 0 or got < 1:
                    # The report says why (stdout); the profile stays for a look with --keep.
                    report = prof.run("flush", "--download", "--json", check=False)
                    self.notes.append(f"download 100 MB {kind}: flush exit {rc}, inbox has {got}/1: "
                                      f"{prof.last_stderr[-300:]} {report.stdout.decode(errors='replace')[-600:]}")
                else:
                    self.add("memory", "100 MB", f"`mapispool flush --download` ({kind.upper()}) peak RSS MiB",
                             rss / 1024)
                    shutil.rmtree(prof.dir, ignore_errors=True)
            os.unlink(path)

    def download_ready(self):
        def committed(path):
            r = subprocess.run(["git", "-C", self.root, "ls-files", "--error-unmatch", path],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return r.returncode == 0
        return all(committed(p) for p in ("crates/mapispool/src/transport/imap.rs",
                                          "crates/mapispool/src/transport/pop3.rs",
                                          "scripts/peers/dovecot.sh"))

    def run(self):
        only = set(self.args.only.split(",")) if self.args.only else {"upload", "submit", "latency", "memory",
                                                                       "download", "scale", "web"}
        self.only = only
        self.started = datetime.datetime.now(datetime.timezone.utc)
        # The machine may be shared (other builds beside the run): the load says how much.
        self.extra["load average (1, 5, 15 min) at start"] = [round(x, 2) for x in os.getloadavg()]
        sink = Sink(self.root, self.base)
        self.cleanups.append(sink.stop)
        try:
            if "upload" in only or "submit" in only:
                postfix = Postfix(self.root, self.base, sink.port)
                self.cleanups.append(postfix.stop)
                self.upload_submit(sink, postfix, "upload" in only, "submit" in only)
                postfix.stop()
            for name, fn in (("latency", self.latency), ("memory", self.memory), ("scale", self.scale),
                             ("web", self.web)):
                if name in only:
                    log(name)
                    try:
                        fn(sink)
                    except Exception as e:  # noqa: BLE001 - one scenario's failure must not lose the others
                        self.notes.append(f"{name}: {type(e).__name__}: {e}")
            self.download = "skipped"
            if "download" in only:
                if self.download_ready():
                    log("download")
                    self.run_download()
                    self.download = "measured: see the download rows above"
                else:
                    self.download = "not yet: needs the IMAP/POP3 transports (and scripts/peers/dovecot.sh) committed"
        finally:
            for c in reversed(self.cleanups):
                try:
                    c()
                except Exception as e:  # noqa: BLE001
                    log("cleanup:", e)
            if not self.args.keep:
                shutil.rmtree(self.base, ignore_errors=True)
        self.finished = datetime.datetime.now(datetime.timezone.utc)
        self.extra["load average (1, 5, 15 min) at the end"] = [round(x, 2) for x in os.getloadavg()]

    # -- report
    TARGETS = {
        ("upload", "2 KB", "Postfix postqueue -f"): 3.0,
        ("upload", "2 KB", "smtp-source -s 4"): 0.8,
        ("upload", "100 KB", "Postfix postqueue -f"): 2.0,
        ("upload", "10 MB", "Postfix postqueue -f"): 1.5,
        ("submit per process", "*", "Postfix sendmail"): 2.0,
        ("submit bulk", "*", "Postfix smtpd (1 SMTP conn)"): 3.0,
        ("download IMAP", "*", "mbsync FSync no"): 1.0,
        ("download IMAP", "*", "mbsync FSync yes"): 10.0,
        ("download POP3", "*", "fetchmail (bsmtp)"): 1.0,
    }
    OURS = {"upload": ["mapispool flush --upload", "mapispool flush --upload (warm daemon)"],
            "submit per process": ["mapispool submit"],
            "submit bulk": [f"mapispool daemon API (batches of {BATCH})", "mapispool daemon API"],
            "download IMAP": ["mapispool flush --download (IMAP)"],
            "download POP3": ["mapispool flush --download (POP3)"]}

    def rows(self):
        rows = []
        for scen, ours_names in self.OURS.items():
            for label in SIZES:
                peers = sorted({w for (s, l, w) in self.samples
                                if s == scen and l == label and not w.startswith("mapispool")})
                for our in ours_names:
                    ours = self.samples.get((scen, label, our))
                    if not ours:
                        continue
                    mine = median(ours)
                    for who in peers:
                        theirs = median(self.samples[(scen, label, who)])
                        ratio = mine / theirs if theirs else None
                        target = None
                        if our == ours_names[0]:
                            target = self.TARGETS.get((scen, label, who)) or self.TARGETS.get((scen, "*", who))
                        rows.append({
                            "scenario": scen, "size": label, "n": self.ns.get((scen, label, our)),
                            "mapispool": our, "mapispool_msg_s": mine,
                            "peer": who, "peer_n": self.ns.get((scen, label, who)), "peer_msg_s": theirs,
                            "ratio": ratio, "target": target,
                            "met": None if target is None or ratio is None else ratio >= target,
                            "samples_mapispool": ours, "samples_peer": self.samples[(scen, label, who)],
                        })
        return rows

    def single(self, scen, label, who):
        return median(self.samples.get((scen, label, who), []))

    def report(self):
        rows = self.rows()
        mem = {}
        for line in open("/proc/meminfo"):
            k, _, v = line.partition(":")
            mem[k] = v.strip()
        cpu = ""
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        machine = {
            "nproc": os.cpu_count(), "cpu": cpu, "memory": mem.get("MemTotal"),
            "kernel": platform.release(), "os": _os_release(),
        }
        command = "bash bench/run " + " ".join(self.args.argv)
        commit = subprocess.run(["git", "-C", self.root, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", self.root, "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, text=True).stdout.strip()
        others = {f"{s} | {l} | {w}": v for (s, l, w), v in self.samples.items()
                  if s in ("latency", "idle", "memory", "scale", "transports", "web")}
        data = {"machine": machine, "started": self.started.isoformat(), "finished": self.finished.isoformat(),
                "command": command, "commit": commit, "worktree_dirty": bool(dirty), "reps": self.args.reps,
                "quick": self.args.quick, "rows": rows, "single": others, "extra": self.extra,
                "notes": self.notes, "download": self.download}
        if self.args.json:
            with open(self.args.json, "w") as f:
                json.dump(data, f, indent=1)
        preamble, sections = self.markdown(data, rows)
        out = self.args.out or os.path.join(self.root, "BENCHMARKS.md")
        old = open(out).read() if os.path.exists(out) else ""
        i = old.find("<!-- analysis -->")
        keep = "\n" + old[i:] if i >= 0 else ""
        old_generated = old[:i] if i >= 0 else old
        _, old_sections = compare.sections(old)
        parts, measured = [], []
        titles = [t for t, _, _ in sections]
        for title, text, key_of in sections:
            if text is None:
                # Not measured in this run: as the previous file had it (its own run line says when).
                if title in old_sections:
                    parts.append(old_sections[title])
                continue
            measured.append(text)
            if key_of and title in old_sections:
                text = compare.merge_rows(old_sections[title], text, key_of)
            parts.append(text)
        for title, text in old_sections.items():
            if title not in titles and title not in (compare.SECTION, PROBLEMS):
                parts.append(text)
        measured_keys = set(compare.ratios("\n".join(measured)))
        compared = compare.compare(old_generated, "\n".join(parts), only_keys=measured_keys)
        for key, before, now, fell in compared:
            if fell:
                log(f"ratio fell by more than {compare.TOLERANCE:.0%}: {key}: {before:.2f}× → {now:.2f}×")
        parts.append(compare.markdown(compared, "the previous BENCHMARKS.md"))
        if data["notes"]:
            parts.append(f"## {PROBLEMS}\n\n" + "\n".join(f"- {n}" for n in data["notes"]) + "\n")
        md = preamble.rstrip() + "\n\n" + "\n".join(p.rstrip() + "\n" for p in parts)
        with open(out, "w") as f:
            f.write(md + keep)
        print(md)

    def run_line(self, data):
        return (f"_Measured by `{data['command']}` (repetitions: {data['reps']}), "
                f"{data['started'][:16]}Z, commit {data['commit']}._\n")

    def markdown(self, data, rows):
        """(the file's head, [(section title, its text or None when this run did not measure it,
        the key of a table row for keeping the previous file's other rows, or None)])."""
        m = data["machine"]
        L = []
        L.append("# Benchmarks\n")
        L.append("Generated by `bench/run` (issue 7). Each section says which run measured it (a run of some "
                 "scenarios keeps the other sections as they were); within a run everything was measured on the "
                 "machine named here, on loopback; the machine is shared and noisy, so only the ratios (both sides "
                 "measured in the same run, interleaved per repetition) mean something. Figures are medians over the "
                 "repetitions.\n")
        L.append("Latest run:\n")
        L.append(f"- command: `{data['command']}` (repetitions: {data['reps']})")
        L.append(f"- date: {data['started'][:19]}Z → {data['finished'][:19]}Z")
        L.append(f"- commit: {data['commit']}" + (" (with uncommitted changes of other engineers in the tree)"
                                                    if data["worktree_dirty"] else ""))
        L.append(f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, kernel {m['kernel']}, {m['os']}")
        L.append("- fsync: **on** for mapispool (SQLite WAL; bodies of 256 KiB or more in files beside it, each "
                 "fsynced with its directory before the commit that names it): a submit returns after its own "
                 "fsynced commit "
                 "(`synchronous = FULL`); downloaded messages are fsynced, one barrier per batch, before anything "
                 "is deleted or flagged on the server; leases and delivery outcomes are group-committed "
                 "(`synchronous = NORMAL`, fsynced by the next FULL commit or checkpoint: a power cut can make a "
                 "message go out twice, never lose one). Postfix on (queue files are fsynced before "
                 "`250`/`sendmail` returns); smtp-sink and smtp-source write nothing to disk.")
        L.append("- peers: Postfix " + _postfix_version() + " (private instance, `defer_transports` then "
                 "`postqueue -f`, connection cache on), `smtp-sink` (Postfix's, counting only), `smtp-source -d` "
                 "on 1 and on 4 connections (`-s 4` is mapispool's default `connections = 4`), msmtp " + _msmtp_version() + " (one process per message, "
                 "fewer messages)\n")
        preamble = "\n".join(L)
        sections = []
        only = getattr(self, "only", set())
        run = self.run_line(data)

        # Throughput
        if rows:
            L = [f"## Throughput\n", run]
            L.append("| scenario | size | N | mapispool | msg/s | peer | peer N | peer msg/s | ratio | target | met? |")
            L.append("|---|---|---|---|---|---|---|---|---|---|---|")
            for r in rows:
                tgt = f"≥ {r['target']:g}×" if r["target"] else "—"
                met = "—" if r["met"] is None else ("yes" if r["met"] else f"**no** ({r['ratio'] / r['target']:.0%} of target)")
                L.append(f"| {r['scenario']} | {r['size']} | {r['n']} | {r['mapispool']} | {r['mapispool_msg_s']:.0f} | {r['peer']} | "
                         f"{r['peer_n']} | {r['peer_msg_s']:.0f} | {r['ratio']:.2f}× | {tgt} | {met} |")
            L.append("")
            L.append("`flush --upload` runs the spooler in the CLI's own process (no daemon: process start and store "
                     "open are included); `(warm daemon)` is the same command asking a running `mapispool spooler` over "
                     "its socket. Targets apply to the first. msg/s are per run: N / wall time from the command's start "
                     "until the sink has counted all N (Postfix: from `postqueue -f` until then). "
                     f"`submit bulk`: `daemon API (batches of {BATCH})` sends up to {BATCH} messages (at most "
                     f"{BATCH_BYTES // (1024 * 1024)} MiB) per `POST /v1/submit-batch` on one connection, a larger message "
                     "alone through `/v1/submit`, and is answered once every one of them is fsynced (the daemon "
                     "group-commits them: about one fsync per batch), where Postfix smtpd fsyncs each message before its `250`; "
                     "`daemon API` is one `POST /v1/submit` per message, one commit (fsync) each. Rows of scenarios "
                     "this run did not measure are those of the previous file (see the run line of that file's "
                     "history).\n")
            sections.append(("Throughput", "\n".join(L), lambda c, h: c[0]))
        else:
            sections.append(("Throughput", None, None))

        # Latency, memory, idle
        lat = [(k, v) for k, v in self.samples.items() if k[0] in ("latency", "idle", "memory")]
        if lat:
            L = ["## Latency, memory, idle\n", run]
            L.append("| measure | size | median | min | max | samples | target | met? |")
            L.append("|---|---|---|---|---|---|---|---|")
            tg = {
                "flush -> first SMTP command (CLI, warm daemon) ms": ("< 20 ms", lambda v: v < 20),
                "daemon idle RSS MiB": ("< 20 MiB", lambda v: v < 20),
                "daemon idle CPU %": ("≈ 0 (no CPU between schedules)", lambda v: v < 0.1),
            }
            for (s, l, w), v in sorted(lat, key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
                med = median(v)
                target, ok = tg.get(w, ("—", None))
                if s == "memory" and l == "100 MB" and ("sending" in w or "--download" in w):
                    target, ok = "< 64 MiB", (lambda x: x < 64)
                met = "—" if ok is None else ("yes" if ok(med) else "**no**")
                L.append(f"| {w} | {l} | {med:.2f} | {min(v):.2f} | {max(v):.2f} | {len(v)} | {target} | {met} |")
            L.append("")
            for k, v in self.extra.items():
                L.append(f"- {k}: {', '.join(str(x) for x in v)}")
            L.append("")
            sections.append(("Latency, memory, idle", "\n".join(L), lambda c, h: (c[0], c[1])))
        else:
            sections.append(("Latency, memory, idle", None, None))

        if "download" in only:
            sections.append(("Download (IMAP/POP3 vs mbsync, fetchmail)",
                             f"## Download (IMAP/POP3 vs mbsync, fetchmail)\n\n{run}\n{data['download']}.\n", None))
        else:
            sections.append(("Download (IMAP/POP3 vs mbsync, fetchmail)", None, None))

        sections.append(("Scale", self.scale_markdown(run) if "scale" in only else None, None))
        sections.append(("[web] overhead", self.web_markdown(run) if "web" in only else None, None))
        return preamble, sections

    def scale_markdown(self, run):
        def med(scen, key, who):
            v = self.samples.get((scen, key, who))
            return median(v) if v else None

        def f(x, fmt="{:.1f}"):
            return "—" if x is None else fmt.format(x)

        counts = [f"{n:,}" for n in self.scale_counts()]
        base = med("scale", counts[0], "flush msg/s (no daemon)")
        L = ["## Scale\n", run]
        L.append("N queued 2 KB messages (put there through the daemon's batch API); `status` and "
                 "`queue --where 'PR_MSP_ATTEMPTS > 0'` (which matches none, so the time is the query's, "
                 "not the printing's) with and without a daemon, medians of 5 runs after a warm-up; the store's "
                 "size (`store.db` with its WAL and body files); then one `flush --upload` (no daemon) sending "
                 f"all N to smtp-sink, with each lease's time (`lease_due`'s debug event). The ratio is the flush "
                 f"rate against the one with {counts[0]} queued.\n")
        L.append("| queued | fill msg/s | store MiB | status ms (no daemon) | status ms (warm daemon) | "
                 "queue --where ms (no daemon) | queue --where ms (warm daemon) | lease ms (median) | "
                 "lease ms (slowest) | flush msg/s | ratio | target | met? |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for key in counts:
            rate = med("scale", key, "flush msg/s (no daemon)")
            ratio = rate / base if rate and base else None
            target = "≥ 0.8×" if key != counts[0] else "—"
            met = "—" if key == counts[0] or ratio is None else ("yes" if ratio >= 0.8 else f"**no** ({ratio / 0.8:.0%} of target)")
            L.append(
                f"| {key} | {f(med('scale', key, 'fill msg/s (daemon API, batches of 50)'), '{:.0f}')} | "
                f"{f(med('scale', key, 'store size MiB'))} | {f(med('scale', key, 'status ms (no daemon)'))} | "
                f"{f(med('scale', key, 'status ms (warm daemon)'))} | "
                f"{f(med('scale', key, 'queue --where ms (no daemon)'))} | "
                f"{f(med('scale', key, 'queue --where ms (warm daemon)'))} | "
                f"{f(med('scale', key, 'lease ms (median of a flush' + chr(39) + 's leases)'), '{:.2f}')} | "
                f"{f(med('scale', key, 'lease ms (slowest of a flush)'), '{:.2f}')} | "
                f"{f(rate, '{:.0f}')} | {f(ratio, '{:.2f}×')} | {target} | {met} |")
        L.append("")
        last = counts[-1]
        for who, limit in (("status ms (no daemon)", 50), ("status ms (warm daemon)", 50),
                           ("queue --where ms (no daemon)", 200), ("queue --where ms (warm daemon)", 200)):
            v = med("scale", last, who)
            if v is not None:
                L.append(f"- {who.replace(' ms', '')} with {last} queued: {v:.1f} ms (target < {limit} ms: "
                         f"{'met' if v < limit else '**not met**'})")
        L.append("")
        L.append("Transports in one profile (all SMTP to the same sink, nothing queued): the status table, and a "
                 "whole `flush` that finds nothing to send (its set-up and tear-down), medians of 5 runs.\n")
        L.append("| transports | status ms (no daemon) | status ms (warm daemon) | flush ms (no daemon) | flush ms (warm daemon) |")
        L.append("|---|---|---|---|---|")
        for t in ("1", "10", "100"):
            L.append(f"| {t} | {f(med('transports', t, 'status ms (no daemon)'))} | "
                     f"{f(med('transports', t, 'status ms (warm daemon)'))} | "
                     f"{f(med('transports', t, 'flush, nothing queued, ms (no daemon)'))} | "
                     f"{f(med('transports', t, 'flush, nothing queued, ms (warm daemon)'))} |")
        L.append("")
        return "\n".join(L)

    def web_markdown(self, run):
        on = self.samples.get(("web", "2 KB", "[web] on, /metrics scraped"))
        off = self.samples.get(("web", "2 KB", "[web] off"))
        L = ["## [web] overhead\n", run]
        L.append("Upload through a warm daemon (N 2 KB messages queued through the batch API, then `flush --upload` "
                 "to smtp-sink) with `[web] listen` set and `/metrics` scraped every 100 ms during the flush, against "
                 "the same daemon without `[web]`; the two alternate, in both orders (issue 15).\n")
        L.append("| scenario | size | N | mapispool | msg/s | peer | peer msg/s | ratio | target | met? |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        if on and off:
            ratio = median(on) / median(off)
            met = "yes" if ratio >= 0.98 else f"**no** ({ratio / 0.98:.0%} of target)"
            L.append(f"| upload, warm daemon | 2 KB | {self.ns.get(('web', '2 KB', '[web] off'))} | "
                     f"[web] on, /metrics scraped | {median(on):.0f} | [web] off | {median(off):.0f} | "
                     f"{ratio:.2f}× | ≥ 0.98× | {met} |")
            L.append("")
            L.append(f"- samples, on: {', '.join(f'{x:.0f}' for x in on)}; off: {', '.join(f'{x:.0f}' for x in off)}")
        L.append("")
        return "\n".join(L)


PROBLEMS = "Problems seen during the run"


def _os_release():
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def _postfix_version():
    r = subprocess.run(["/usr/sbin/postconf", "-dh", "mail_version"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    return r.stdout.strip() or "?"


def _msmtp_version():
    r = subprocess.run(["msmtp", "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    m = re.search(r"version (\S+)", r.stdout)
    return m.group(1) if m else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--n", type=int, help="N for 2 KB (others scale as documented)")
    ap.add_argument("--json")
    ap.add_argument("--out")
    ap.add_argument("--only")
    ap.add_argument("--no-100mb", action="store_true")
    ap.add_argument("--scale-n", help="queue lengths for the scale scenario, e.g. 1000,10000,100000")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    args.argv = [a for a in sys.argv[1:] if a not in ("--root", args.root)]
    if args.reps is None:
        args.reps = 3 if args.quick else 5
    if os.geteuid() != 0:
        sys.exit("bench: needs root (a private Postfix instance owns its queue)")
    b = Bench(args)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    b.run()
    b.report()


if __name__ == "__main__":
    main()
