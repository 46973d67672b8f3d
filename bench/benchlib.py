# SPDX-License-Identifier: BSD-2-Clause
"""
bench/benchlib.py: helpers shared by the benchmark scripts in bench/ (taken
from bench/nbd-standalone, which has the same functions): running commands,
CPU accounting from /proc, waiting for an idle machine, cleanup at exit,
stopping servers, running one fio job, report formatting.

    import benchlib as bl   (the scripts put their own directory on sys.path)
"""

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000


class BenchError(Exception):
    """A failure that ends the run with one message (cleanup still runs)."""


def log(msg):
    """Progress line on stderr (the tables go to stdout)."""
    print("# " + msg, file=sys.stderr, flush=True)


def run(cmd, check=True, **kw):
    """Run cmd (a list) to completion and return its CompletedProcess;
    raise BenchError if it fails and check is set."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, **kw)
    if check and r.returncode != 0:
        raise BenchError("%s failed (exit %d): %s" %
                         (" ".join(cmd), r.returncode, r.stderr.strip()))
    return r


def parse_size(text):
    """'1G', '512M', '4096' -> bytes (binary units); a whole number of MiB,
    at least 64M (for argparse)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().rstrip("B").rstrip("I")
    num = t.rstrip("KMGT")
    unit = t[len(num):]
    if not num.isdigit() or unit not in units:
        raise argparse.ArgumentTypeError("bad size: %s" % text)
    v = int(num) * units[unit]
    if v < (64 << 20) or v % (1 << 20):
        raise argparse.ArgumentTypeError(
            "size must be a whole number of MiB, at least 64M")
    return v


# ---- CPU accounting ----

def _stat_fields(pid):
    """Fields 3.. of /proc/PID/stat as a list (rest[N - 3] is field N)."""
    with open("/proc/%s/stat" % pid) as f:
        data = f.read()
    # comm (field 2) may contain blanks; fields after it start at ')'.
    return data[data.rindex(")") + 2:].split()


def cpu_ticks(pid):
    """utime+stime (clock ticks) of process pid, all its threads."""
    rest = _stat_fields(pid)
    return int(rest[14 - 3]) + int(rest[15 - 3])


def stat_ticks():
    """(busy, total, task) clock ticks of all CPUs since boot from
    /proc/stat: busy counts user, nice, system, irq and softirq time, task
    only user, nice and system (the time charged to processes)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq, sum(v), user + nice + system


def kthread_ticks():
    """{pid: utime+stime ticks} of every kernel thread (PF_KTHREAD)."""
    ticks = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            rest = _stat_fields(name)
        except OSError:
            continue    # exited meanwhile
        if int(rest[9 - 3]) & PF_KTHREAD:
            ticks[int(name)] = int(rest[14 - 3]) + int(rest[15 - 3])
    return ticks


def kthread_delta(before, after):
    """Ticks the kernel threads used between two kthread_ticks() snapshots
    (threads that exited meanwhile are lost, new ones count in full)."""
    return sum(max(0, t - before.get(pid, 0)) for pid, t in after.items())


def children_seconds():
    """CPU seconds used by this script's waited-for children (fio)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class OtherCpu:
    """The CPU time of everything except the given PIDs, this script's
    children (fio) and kernel threads between start() and stop(), as a
    percentage of all CPUs: load from other processes that disturbs a
    measurement."""

    def start(self):
        self.task0, self.k0 = stat_ticks()[2], kthread_ticks()
        self.f0, self.t0 = children_seconds(), time.monotonic()

    def stop(self, own_seconds):
        """own_seconds: the CPU seconds of the measured processes."""
        task1, k1 = stat_ticks()[2], kthread_ticks()
        f1, t1 = children_seconds(), time.monotonic()
        other = (task1 - self.task0 - kthread_delta(self.k0, k1)) / \
            CLK_TCK - (f1 - self.f0) - own_seconds
        return max(0.0, other) * 100.0 / ((t1 - self.t0) * os.cpu_count())


def wait_idle(seconds):
    """Wait (at most seconds) until the machine is idle: under 10% of all
    CPUs busy over one second.  Returns the seconds waited, or -1 if it
    never got idle (0 at once when seconds is 0)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        b0, a0, _ = stat_ticks()
        time.sleep(1)
        b1, a1, _ = stat_ticks()
        if a1 > a0 and (b1 - b0) / (a1 - a0) < 0.10:
            return time.monotonic() - t0
    return -1 if seconds > 0 else 0


def loadavg():
    """The 1/5/15 minute load averages as text."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def drop_caches():
    """sync and drop the page cache (root; silently skipped otherwise)."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


# ---- processes ----

class Cleanup:
    """Everything the run created, undone in reverse order at exit."""

    def __init__(self):
        self.actions = []

    def add(self, what, fn):
        """Register fn (no arguments) to run at exit, described by what."""
        self.actions.append((what, fn))

    def run_all(self):
        """Run every registered action once, newest first; report failures."""
        while self.actions:
            what, fn = self.actions.pop()
            try:
                fn()
            except Exception as e:  # keep cleaning up whatever fails
                log("cleanup: %s: %s" % (what, e))


def stop_process(proc, name):
    """SIGTERM a process we started (by its PID); SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log("%s (pid %d) ignored SIGTERM for 10 s; killing it" %
            (name, proc.pid))
        proc.kill()
        proc.wait(timeout=10)


def read_tail(path, lines=15):
    """Last lines of a log file, for error messages."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)


def check_pid_is(proc, exe_name):
    """Make sure the PID we measure is the program itself, not a wrapper."""
    try:
        exe = os.path.basename(os.readlink("/proc/%d/exe" % proc.pid))
    except OSError as e:
        raise BenchError("cannot inspect pid %d: %s" % (proc.pid, e))
    if exe != exe_name:
        raise BenchError("pid %d is %s, expected %s itself"
                         % (proc.pid, exe, exe_name))


# ---- fio ----

def fio_job(uri, rw, bs, qd, runtime, size, out, name, extra=()):
    """Run one time-based fio job with the nbd engine against uri over the
    first size bytes; return the job's JSON result (raises BenchError if
    fio or the job failed)."""
    cmd = ["fio", "--name=" + name, "--ioengine=nbd", "--uri=" + uri,
           "--rw=" + rw, "--bs=" + bs, "--iodepth=%d" % qd, "--numjobs=1",
           "--size=%d" % size, "--time_based", "--runtime=%d" % runtime,
           "--norandommap", "--randrepeat=0", "--lat_percentiles=1",
           "--clat_percentiles=0", "--percentile_list=50:99:99.9",
           "--output-format=json", "--output=" + out] + list(extra)
    r = run(cmd, check=False, timeout=runtime + 120)
    if r.returncode != 0:
        raise BenchError("fio failed (exit %d) on %s: %s %s" % (
            r.returncode, uri, r.stdout.strip(), r.stderr.strip()))
    with open(out) as f:
        job = json.load(f)["jobs"][0]
    if job.get("error"):
        raise BenchError("fio job %s reported error %s" % (name, job["error"]))
    return job


def fio_summary(d):
    """IOPS, MB/s, mean and p99 latency (us) and I/O count of one direction
    ("read" or "write" member) of a fio JSON job."""
    pct = d["lat_ns"].get("percentile", {})
    p99 = next((v for k, v in pct.items() if k.startswith("99.0")), None)
    return {
        "iops": d["iops"],
        "mbs": d["bw_bytes"] / 1e6,
        "lat_mean_us": d["lat_ns"]["mean"] / 1000.0,
        "lat_p99_us": p99 / 1000.0 if p99 is not None else float("nan"),
        "ios": d["total_ios"],
    }


# ---- report ----

def fmt(v, nd=1):
    """Number for a table; n/a for None and NaN."""
    if v is None or v != v:
        return "n/a"
    return "%.*f" % (nd, v)


def ratio(a, b):
    """a/b as '1.23x', or n/a."""
    if a is None or b is None or b == 0:
        return "n/a"
    return "%.2fx" % (a / b)


class CtxCounter:
    """Counts the context switches of processes, threads created later
    included, with `perf stat -e context-switches -p PID,...` (a counting
    software event, not sampling).  Counts nothing without perf."""

    def __init__(self, pids, path):
        self.path = path
        self.proc = None
        if shutil.which("perf") is None:
            return
        self.proc = subprocess.Popen(
            ["perf", "stat", "-x", ",", "-e", "context-switches", "-o", path,
             "-p", ",".join(str(p) for p in pids)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)     # let it attach before the run starts

    def stop(self):
        """Stop counting; the count, or None if perf is missing or failed."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        try:
            with open(self.path) as f:
                for ln in f:
                    parts = ln.strip().split(",")
                    if len(parts) > 2 and parts[2] == "context-switches":
                        return int(parts[0])
        except (OSError, ValueError):
            pass
        return None
