#!/usr/bin/env python3
"""Measurement helpers for the bench scripts (Linux /proc only).

  measure.py cpu PID            CPU seconds of PID's process tree: live processes' utime+stime plus the
                                root's cutime+cstime (children it already reaped, e.g. Postfix's smtpd)
  measure.py pss PID            PSS of the tree in KiB (smaps_rollup)
  measure.py peak-pss PID FILE  samples pss every 100 ms until killed; keeps the peak (KiB) in FILE
  measure.py wait-count FILE N TIMEOUT
                                waits until smtp-sink -c output in FILE says mesg>=N; prints the epoch time
                                at which it saw it (exit 1 on timeout)
  measure.py wait-port HOST PORT TIMEOUT
                                polls a TCP connect every 5 ms; prints the epoch time of the first that
                                succeeds (exit 1 on timeout)
  measure.py first-line CMD...  runs CMD, its output read and thrown away; prints the seconds until its first
                                line and until its end
  measure.py metric URL NAME    the value of one Prometheus sample (no labels) at URL
  measure.py peak-metric URL NAME FILE
                                samples that value every 100 ms until killed; keeps the peak in FILE
  measure.py peak-proc PID FIELD FILE
                                samples FIELD of /proc/PID/status (e.g. RssAnon) every 100 ms until killed;
                                keeps the peak (KiB) in FILE
  measure.py median X...        median of the numbers
  measure.py now                epoch time, float
"""
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    # Fields after the parenthesised command name, which may contain spaces.
    rest = s[s.rindex(")") + 2:].split()
    return {"ppid": int(rest[1]), "utime": int(rest[11]), "stime": int(rest[12]),
            "cutime": int(rest[13]), "cstime": int(rest[14])}


def tree(root):
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                children.setdefault(stat(d)["ppid"], []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [int(root)]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu(root):
    total = 0
    for p in tree(root):
        try:
            s = stat(p)
        except OSError:
            continue
        total += s["utime"] + s["stime"]
        if p == int(root):
            total += s["cutime"] + s["cstime"]
    return total / TICK


def pss(root):
    total = 0
    for p in tree(root):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def sink_count(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 4096))
            data = f.read().decode(errors="replace")
    except OSError:
        return 0
    found = re.findall(r"mesg=(\d+)", data)
    return int(found[-1]) if found else 0


def metric(url, name):
    with urllib.request.urlopen(url, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == name:
                return float(parts[1])
    raise ValueError(f"{name} not found at {url}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "cpu":
        print(f"{cpu(args[0]):.2f}")
    elif cmd == "pss":
        print(pss(args[0]))
    elif cmd == "peak-pss":
        peak = 0
        while True:
            try:
                peak = max(peak, pss(args[0]))
            except OSError:
                pass
            with open(args[1] + ".tmp", "w") as f:
                f.write(f"{peak}\n")
            os.replace(args[1] + ".tmp", args[1])
            time.sleep(0.1)
    elif cmd == "wait-count":
        path, n, timeout = args[0], int(args[1]), float(args[2])
        deadline = time.time() + timeout
        while time.time() < deadline:
            if sink_count(path) >= n:
                print(f"{time.time():.6f}")
                return 0
            time.sleep(0.005)
        print(f"timeout: sink at {sink_count(path)} of {n}", file=sys.stderr)
        return 1
    elif cmd == "wait-port":
        host, port, timeout = args[0], int(args[1]), float(args[2])
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                socket.create_connection((host, port), 1).close()
                print(f"{time.time():.6f}")
                return 0
            except OSError:
                time.sleep(0.005)
        return 1
    elif cmd == "first-line":
        t0 = time.time()
        p = subprocess.Popen(args, stdout=subprocess.PIPE)
        first = None
        for _ in p.stdout:
            if first is None:
                first = time.time() - t0
        p.wait()
        total = time.time() - t0
        print(f"{first if first is not None else total:.3f} {total:.3f}")
        return p.returncode
    elif cmd == "metric":
        print(f"{metric(args[0], args[1]):.0f}")
    elif cmd == "peak-metric":
        peak = 0
        while True:
            try:
                peak = max(peak, metric(args[0], args[1]))
            except (OSError, ValueError):
                pass
            with open(args[2] + ".tmp", "w") as f:
                f.write(f"{peak:.0f}\n")
            os.replace(args[2] + ".tmp", args[2])
            time.sleep(0.1)
    elif cmd == "peak-proc":
        peak = 0
        while True:
            try:
                with open(f"/proc/{args[0]}/status") as f:
                    for line in f:
                        if line.startswith(args[1] + ":"):
                            peak = max(peak, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            with open(args[2] + ".tmp", "w") as f:
                f.write(f"{peak}\n")
            os.replace(args[2] + ".tmp", args[2])
            time.sleep(0.1)
    elif cmd == "median":
        print(f"{statistics.median(float(a) for a in args):.6g}" if args else "n/a")
    elif cmd == "now":
        print(f"{time.time():.6f}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
