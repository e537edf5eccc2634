#!/usr/bin/env python3
"""Scrape benchmark: Kiln and Prometheus scrape the same N loopback targets.

Each target serves 10,000 series (50 ML-exporter-like families x 200 label sets) as
text exposition; values change every scrape (4 precomputed bodies rotate). The servers
run one after the other with the same prometheus.yml, each in a fresh temp data dir:
after a warm-up, CPU seconds of the server process (utime+stime from /proc) and the
samples it appended (prometheus_tsdb_head_samples_appended_total from its /metrics) are
measured over a fixed window, RSS (VmRSS) every 2 s of it (the median is reported:
one reading depends on whether a scrape is in flight, or a Go GC just ran), then active
series (prometheus_tsdb_head_series).

Run from the repository root (writes only to a temp dir, loopback only):

    cargo build --release -p kiln
    python3 bench/scrape/run.py [--targets 10] [--interval 10] [--window 120]

Needs `/usr/bin/prometheus` (Debian package `prometheus`). Prints a markdown table.
"""

import argparse
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SERIES_PER_TARGET = 10_000
FAMILIES = 50
LABEL_SETS = SERIES_PER_TARGET // FAMILIES
VARIANTS = 4
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_bodies(target):
    """VARIANTS exposition bodies of one target, values differing between them."""
    bodies = []
    for v in range(VARIANTS):
        out = []
        for f in range(FAMILIES):
            kind = "counter" if f % 3 == 0 else "gauge"
            name = f"mlfleet_metric_{f:02d}" + ("_total" if kind == "counter" else "")
            out.append(f"# HELP {name} Benchmark family {f}.\n# TYPE {name} {kind}\n")
            for i in range(LABEL_SETS):
                node, gpu = divmod(i, 8)
                if kind == "counter":
                    value = (target * 7 + f * 13 + i) * 100 + v * (i % 17 + 1)
                else:
                    value = round(((i * 31 + f * 7 + v * 3) % 1000) / 10.0, 1)
                out.append(
                    f'{name}{{node="node-{node:03d}",gpu="{gpu}",model="m{i % 5}",'
                    f'cluster="bench"}} {value}\n'
                )
        bodies.append("".join(out).encode())
    return bodies


def serve_target(port, bodies):
    state = {"n": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            body = bodies[state["n"] % VARIANTS]
            state["n"] += 1
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def metric(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name) and re.match(re.escape(name) + r"(\{|\s)", line):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    if not found:
        raise RuntimeError(f"{name} not in /metrics of port {port}")
    return total


def wait_ready(port, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2)
            return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError(f"server on {port} not ready")


def run_server(name, cmd, port, args):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        time.sleep(args.warmup)
        c0, s0 = cpu_seconds(proc.pid), metric(port, "prometheus_tsdb_head_samples_appended_total")
        readings = []
        end = time.time() + args.window
        while time.time() < end:
            time.sleep(min(2.0, max(0.0, end - time.time())))
            readings.append(rss_bytes(proc.pid))
        c1, s1 = cpu_seconds(proc.pid), metric(port, "prometheus_tsdb_head_samples_appended_total")
        series = metric(port, "prometheus_tsdb_head_series")
        readings.sort()
        rss = readings[len(readings) // 2]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    samples = s1 - s0
    return {
        "name": name,
        "cpu_s": c1 - c0,
        "samples": samples,
        "cpu_per_m": (c1 - c0) / max(samples, 1) * 1e6,
        "series": series,
        "rss": rss,
        "rss_per_series": rss / max(series, 1),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=int, default=10)
    p.add_argument("--interval", type=int, default=10, help="scrape interval, seconds")
    p.add_argument("--warmup", type=int, default=30, help="seconds before measuring")
    p.add_argument("--window", type=int, default=120, help="seconds measured")
    p.add_argument("--kiln-bin", default="target/release/kiln")
    p.add_argument("--prometheus-bin", default="/usr/bin/prometheus")
    args = p.parse_args()

    print(f"building {args.targets} targets x {SERIES_PER_TARGET} series ...", file=sys.stderr)
    ports = []
    for t in range(args.targets):
        port = free_port()
        serve_target(port, make_bodies(t))
        ports.append(port)
    tmp = tempfile.mkdtemp(prefix="kiln-scrape-bench-")
    try:
        config = os.path.join(tmp, "prometheus.yml")
        targets = ", ".join(f"'127.0.0.1:{port}'" for port in ports)
        with open(config, "w") as f:
            f.write(
                f"global:\n  scrape_interval: {args.interval}s\n  scrape_timeout: {args.interval}s\n"
                f"scrape_configs:\n  - job_name: fleet\n    static_configs:\n      - targets: [{targets}]\n"
            )
        results = []
        for name, binary in [("kiln", args.kiln_bin), ("prometheus", args.prometheus_bin)]:
            port = free_port()
            data = os.path.join(tmp, name)
            if name == "kiln":
                cmd = [binary, "server"]
            else:
                cmd = [binary]
            cmd += [f"--config.file={config}", f"--storage.tsdb.path={data}",
                    f"--web.listen-address=127.0.0.1:{port}"]
            print(f"running {name} ...", file=sys.stderr)
            results.append(run_server(name, cmd, port, args))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    kiln, prom = results
    print(f"Scrape benchmark: {args.targets} targets x {SERIES_PER_TARGET} series, "
          f"interval {args.interval}s, {args.window}s measured after {args.warmup}s warm-up\n")
    print("| server | samples appended | CPU s | CPU s per 1M samples | active series | RSS MiB (median) | RSS bytes per series |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['samples']:.0f} | {r['cpu_s']:.2f} | {r['cpu_per_m']:.3f} | "
              f"{r['series']:.0f} | {r['rss'] / 2**20:.1f} | {r['rss_per_series']:.0f} |")
    print(f"\nKiln / Prometheus: CPU per sample {kiln['cpu_per_m'] / prom['cpu_per_m']:.2f}x, "
          f"RSS per series {kiln['rss_per_series'] / prom['rss_per_series']:.2f}x")


if __name__ == "__main__":
    main()
