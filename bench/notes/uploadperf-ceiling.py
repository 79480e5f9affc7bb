#!/usr/bin/env python3
# Usage: SINK_PORT=<port> SINK_DIR=<dir of scripts/peers/smtp-sink.sh start> python3 bench/notes/uploadperf-ceiling.py [N]
"""10 MB ceiling: smtp-source -s 1/-s 4 into smtp-sink, with smtp-sink's and smtp-source's CPU,
and raw loopback TCP throughput (python sender/receiver) for comparison."""
import os, subprocess, time, socket, threading, sys
port = int(os.environ["SINK_PORT"])
sinkpid = int(open(os.environ["SINK_DIR"] + "/smtp-sink.pid").read())
CLK = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10
SIZE = 10 * 1000 * 1000
for rep in range(3):
    for s in (1, 4):
        c0 = cpu(sinkpid); r0 = os.times()
        t0 = time.monotonic()
        subprocess.run(["/usr/sbin/smtp-source", "-s", str(s), "-d", "-m", str(N), "-l", str(SIZE),
                        "-f", "bench@localhost", "-t", "rcpt@localhost", f"127.0.0.1:{port}"],
                       check=True, stdout=subprocess.DEVNULL)
        t = time.monotonic() - t0
        r1 = os.times(); c1 = cpu(sinkpid)
        src = (r1.children_user + r1.children_system) - (r0.children_user + r0.children_system)
        print(f"rep {rep+1} smtp-source -s {s}: {N/t:.1f} msg/s, {N*SIZE/t/1e6:.0f} MB/s; "
              f"smtp-sink CPU {c1-c0:.2f} s ({(c1-c0)/t*100:.0f}% of one core, {(c1-c0)/N*1000:.0f} ms/msg); "
              f"smtp-source CPU {src:.2f} s ({src/N*1000:.0f} ms/msg)", flush=True)
# raw loopback: one connection, 1 MiB sends, 64 KiB reads (user space to user space)
def loop(total=2_000_000_000):
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
    got = [0]
    def rd():
        c, _ = srv.accept()
        while True:
            b = c.recv_into(buf)
            if not b: break
            got[0] += b
    buf = bytearray(65536)
    th = threading.Thread(target=rd); th.start()
    cl = socket.create_connection(srv.getsockname())
    data = b"x" * (1 << 20)
    t0 = time.monotonic(); sent = 0
    while sent < total:
        cl.sendall(data); sent += len(data)
    cl.close(); th.join(); t = time.monotonic() - t0
    return got[0] / t / 1e6
for rep in range(3):
    print(f"raw loopback TCP (python, 1 conn): {loop():.0f} MB/s", flush=True)
