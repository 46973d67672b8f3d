#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Stop blkmirrord while raw NBD clients have requests and options pending.

  nbd_shutdown.py --unix SOCK --tcp HOST:PORT --export NAME --pid PID
                  --log FILE --ctl SOCK --fault-file FILE --disk FILE

The daemon (started with BLKMIRROR_FAULT_FILE=FILE) is told to stall every
write to its first 4 MiB.  Then, over raw sockets:

  A (TCP, structured + base:allocation), B (UNIX, simple), C (UNIX,
  structured) each send 256 WRITEs into the stalled range: all are
  started and held by the disk, and NBD_MAX_INFLIGHT (256) stops the
  parsing of what follows.  Behind them:
    A: a mix of every command (WRITEs of 4 KiB, one of 16 KiB, READ,
       FLUSH, TRIM, WRITE_ZEROES, CACHE, BLOCK_STATUS);
    B: READ, WRITE, WRITE, NBD_CMD_DISC, then a WRITE and a READ the
       server must ignore;
    C: READ, WRITE, then a WRITE whose payload is cut in half.
  D (UNIX, structured) is idle after four WRITEs of 4 KiB outside the
  stalled range (its next receive is posted with receive-ahead buffers);
  I (UNIX, simple) has sent a 128 KiB WRITE's header and its first 16 KiB
  (the rest is being received straight into the request's buffer);
  G (TCP) is idle; E, F (UNIX) and H (TCP) are in the option handshake.

The daemon is SIGSTOPped, sent SIGTERM, and while it is stopped D sends
WRITEs and a READ, E the options GO and LIST and half an option header,
F the options INFO and ABORT, I the rest of its WRITE's payload and a
READ; then SIGCONT: the stop runs before those bytes are taken, with D's,
E's and I's receives in flight.

Asserted: every request sent gets exactly one reply with its cookie: the
768 started WRITEs success, everything behind them (up to DISC, not the
cut WRITE) and all of D's and I's NBD_ESHUTDOWN (108); E's GO and LIST and F's
INFO get NBD_REP_ERR_SHUTDOWN, F's ABORT its ACK; every connection then
ends; the daemon exits; on the disk file the started WRITEs are there
and the bytes every refused WRITE, TRIM or WRITE_ZEROES aimed at kept
their earlier contents; the log has one close line per connection with
the number of requests (options) refused.

Exit status: 0 when all of it holds, 1 otherwise.
"""

import argparse
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbd_evil import (  # noqa: E402
    CMD_BLOCK_STATUS, CMD_CACHE, CMD_DISC, CMD_FLUSH, CMD_READ, CMD_TRIM,
    CMD_WRITE, CMD_WRITE_ZEROES, OPT_ABORT, OPT_GO, OPT_INFO, OPT_LIST,
    REP_ACK, REQUEST_MAGIC, CaseFailed, Closed, Conn, check, ctl_status,
    daemon_alive)

ESHUTDOWN = 108
REP_ERR_SHUTDOWN = 0x80000007
MAX_INFLIGHT = 256			# NBD_MAX_INFLIGHT in daemon/nbd.h
BS = 4096
MIB = 1 << 20
STALL_END = 4 * MIB			# writes below are held by the disk
KEEP = 8 * MIB				# 4 MiB written first, that must stay
WARM = 16 * MIB				# D's WRITEs before the stop


def opts(args, transport, structured):
    """A Conn argument object for one transport and reply mode."""
    a = argparse.Namespace(**vars(args))
    if transport == "tcp":
        a.unix = None
    else:
        a.tcp = None
    a.mode = "structured" if structured else "simple"
    return a


def header(cmd, cookie, offset, length, flags=0):
    """One request header."""
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie, offset,
                       length)


class Client:
    """A raw connection and what it was sent: expected[cookie] is the
    error its reply must carry (None: no reply at all)."""

    def __init__(self, name, conn):
        self.name = name
        self.c = conn
        self.expected = {}
        self.got = {}
        self.stream = bytearray()	# requests not sent yet

    def add(self, cmd, offset, length, expect, payload=b"", flags=0):
        """Queue one request (sent by flush()); returns its cookie."""
        cookie = self.c.next_cookie
        self.c.next_cookie += 1
        self.stream += header(cmd, cookie, offset, length, flags) + payload
        if expect is not None:
            self.c.pending[cookie] = (cmd, offset, length)
        self.expected[cookie] = expect
        return cookie

    def flush(self):
        data = bytes(self.stream)
        self.stream = bytearray()
        self.c.send(data)

    def read_to_eof(self):
        """Every reply until the server closes; each cookie once."""
        while True:
            try:
                first = self.c.sock.recv(1, socket.MSG_PEEK)
            except ConnectionResetError:
                first = b""
            if not first:
                break
            cookie, err, _ = self.c.reply()
            check(cookie not in self.got, "%s: two replies for cookie %d"
                  % (self.name, cookie))
            self.got[cookie] = err

    def verify(self):
        for cookie, want in sorted(self.expected.items()):
            if want is None:
                check(cookie not in self.got, "%s: request %d was answered "
                      "(error %s) though it came after DISC or was incomplete"
                      % (self.name, cookie, self.got.get(cookie)))
                continue
            check(cookie in self.got, "%s: request %d got no reply (expected "
                  "error %d)" % (self.name, cookie, want))
            check(self.got[cookie] == want, "%s: request %d answered with "
                  "error %d, expected %d" % (self.name, cookie,
                                             self.got[cookie], want))


def connect(args, transport, structured, meta=False):
    """A connection in transmission."""
    c = Conn(opts(args, transport, structured))
    c.hello()
    if structured:
        c.opt_structured()
        if meta:
            c.opt_meta_allocation()
    check(c.opt_go() == REP_ACK, "GO refused")
    return c


def stalled_writes(cl, base, disk):
    """256 WRITEs into the stalled range: started, then held; disk[off]
    records what they write."""
    for i in range(MAX_INFLIGHT):
        data = random.randbytes(BS)
        disk[base + i * BS] = data
        cl.add(CMD_WRITE, base + i * BS, BS, 0, data)


def refused_write(cl, off, length):
    cl.add(CMD_WRITE, off, length, ESHUTDOWN, random.randbytes(length))


def build_a(cl, keep):
    """Everything behind A's stalled WRITEs: one of each, all refused."""
    refused_write(cl, keep, BS)			# lands in a receive-ahead slot
    refused_write(cl, keep + BS, BS)
    cl.add(CMD_READ, keep, BS, ESHUTDOWN)
    refused_write(cl, keep + 2 * BS, BS)
    cl.add(CMD_FLUSH, 0, 0, ESHUTDOWN)
    cl.add(CMD_TRIM, keep + 4 * BS, 4 * BS, ESHUTDOWN)
    cl.add(CMD_WRITE_ZEROES, keep + 8 * BS, 4 * BS, ESHUTDOWN)
    cl.add(CMD_CACHE, keep, BS, ESHUTDOWN)
    cl.add(CMD_BLOCK_STATUS, 0, MIB, ESHUTDOWN)
    refused_write(cl, keep + 16 * BS, 16 << 10)
    for i in range(4):
        refused_write(cl, keep + (40 + i) * BS, BS)
        cl.add(CMD_READ, keep + i * BS, BS, ESHUTDOWN)


def build_b(cl, keep):
    """B: DISC ends what the server reads; the rest is never executed."""
    cl.add(CMD_READ, keep, BS, ESHUTDOWN)
    refused_write(cl, keep, BS)
    refused_write(cl, keep + BS, BS)
    cl.add(CMD_DISC, 0, 0, None)
    cl.add(CMD_WRITE, keep + 2 * BS, BS, None, random.randbytes(BS))
    cl.add(CMD_READ, keep, BS, None)


def build_c(cl, keep):
    """C: the last WRITE's payload is cut: it gets nothing."""
    cl.add(CMD_READ, keep, BS, ESHUTDOWN)
    refused_write(cl, keep, BS)
    cookie = cl.c.next_cookie
    cl.c.next_cookie += 1
    cl.expected[cookie] = None
    cl.stream += header(CMD_WRITE, cookie, keep + BS, BS) + random.randbytes(BS // 2)


def send_all(clients):
    """Send every client's stream at once (threads: the server reads only
    part of them before it stalls)."""
    errors = []

    def run(cl):
        try:
            cl.flush()
        except OSError as e:
            errors.append("%s: %s" % (cl.name, e))

    threads = [threading.Thread(target=run, args=(cl,)) for cl in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
        check(not t.is_alive(), "a client could not send its requests")
    check(not errors, "sending failed: %s" % errors)


def wait_status(args, what, pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        st = ctl_status(args)
        if pred(st):
            return st
        check(time.monotonic() < deadline, "%s (status: %r)" % (what, st))
        time.sleep(0.05)


def arm_stall(args):
    """Stall every write below STALL_END (BLKMIRROR_FAULT_FILE + SIGUSR1)."""
    spec = "write:0-%d:stall" % (STALL_END - 1)
    line = "SIGUSR1: fault injection armed: " + spec
    with open(args.fault_file, "w") as f:
        f.write(spec + "\n")
    os.kill(args.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while line not in open(args.log, errors="replace").read():
        check(time.monotonic() < deadline, "the stall was not armed")
        time.sleep(0.05)


def wait_state(pid, states, what):
    """Wait until the process state (/proc/PID/stat) is one of states."""
    deadline = time.monotonic() + 10
    while True:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read().rsplit(")", 1)[1].split()[0]
        if st in states:
            return
        check(time.monotonic() < deadline, "%s: process state %s" % (what, st))
        time.sleep(0.01)


def handshake_replies(c, name):
    """Option replies until EOF: [(option, type)]."""
    out = []
    while True:
        try:
            first = c.sock.recv(1, socket.MSG_PEEK)
        except ConnectionResetError:
            first = b""
        if not first:
            return out
        try:
            opt, rtype, _ = c.opt_reply()
        except Closed as e:
            raise CaseFailed("%s: option reply cut: %s" % (name, e))
        out.append((opt, rtype))


def expect_eof(c, name):
    c.sock.settimeout(20)
    try:
        data = c.sock.recv(1 << 16)
    except ConnectionResetError:
        data = b""
    check(data == b"", "%s: %d unexpected bytes before EOF" % (name, len(data)))


def close_lines(args):
    """The close lines of the stop: (requests refused list, options
    refused list, text)."""
    text = open(args.log, errors="replace").read()
    req = [int(n) for n in re.findall(
        r"closed: daemon shutting down \(.*; (\d+) not started, refused "
        r"with NBD_ESHUTDOWN", text)]
    opt = [int(n) for n in re.findall(
        r"closed: (?:daemon shutting down|client aborted) \(.*; (\d+) options "
        r"refused with NBD_REP_ERR_SHUTDOWN", text)]
    return sorted(req), sorted(opt), text


def run(args):
    disk = {}			# offset -> bytes the disk must hold afterwards
    keep = random.randbytes(4 * MIB)

    # The bytes refused commands aim at, written first.
    setup = connect(args, "unix", False)
    for i in range(4):
        check(setup.write(KEEP + i * MIB, keep[i * MIB:(i + 1) * MIB]) == 0,
              "setup write failed")
    check(setup.simple_cmd(CMD_FLUSH, 0, 0) == 0, "setup flush failed")
    setup.request(CMD_DISC, 0, 0)
    setup.expect_close("setup DISC")
    setup.close()
    for i in range(4):
        disk[KEEP + i * MIB] = keep[i * MIB:(i + 1) * MIB]

    # D: WRITEs that complete, then idle with a receive-ahead receive.
    d = Client("D", connect(args, "unix", True))
    for i in range(4):
        data = random.randbytes(BS)
        disk[WARM + i * BS] = data
        check(d.c.write(WARM + i * BS, data) == 0, "D: write failed")
    g = Client("G", connect(args, "tcp", True))
    i_conn = Client("I", connect(args, "unix", False))
    big = random.randbytes(128 << 10)
    i_conn.add(CMD_WRITE, KEEP + 3 * MIB + 64 * BS, len(big), ESHUTDOWN,
               big[:16 << 10])
    i_conn.flush()
    i_conn.stream += big[16 << 10:]
    i_conn.add(CMD_READ, WARM, BS, ESHUTDOWN)
    e = Conn(opts(args, "unix", True))
    e.hello()
    e.opt_structured()
    f = Conn(opts(args, "unix", False))
    f.hello()
    h = Conn(opts(args, "tcp", False))
    h.recv_exact(18)			# the greeting; nothing sent

    a = Client("A", connect(args, "tcp", True, meta=True))
    b = Client("B", connect(args, "unix", False))
    c = Client("C", connect(args, "unix", True))
    base = ctl_status(args)["ops"]["writes"]
    arm_stall(args)
    for i, cl in enumerate((a, b, c)):
        stalled_writes(cl, i * MIB, disk)
    build_a(a, KEEP)
    build_b(b, KEEP + MIB)
    build_c(c, KEEP + 2 * MIB)
    send_all((a, b, c))
    wait_status(args, "the 768 stalled WRITEs were not all started",
                lambda st: st["ops"]["writes"] >= base + 3 * MAX_INFLIGHT)
    time.sleep(0.5)		# TCP: the rest of A's stream reaches the daemon
    st = ctl_status(args)
    check(st["ops"]["writes"] == base + 3 * MAX_INFLIGHT,
          "%d WRITEs started, expected %d: the limit did not stop parsing"
          % (st["ops"]["writes"] - base, 3 * MAX_INFLIGHT))

    # The stop, with bytes arriving while the daemon is stopped.
    for i in range(3):
        refused_write(d, KEEP + 3 * MIB + i * BS, BS)
    d.add(CMD_READ, WARM, BS, ESHUTDOWN)
    refused_write(d, KEEP + 3 * MIB + 4 * BS, BS)
    name = args.export.encode()
    go = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    os.kill(args.pid, signal.SIGSTOP)
    try:
        wait_state(args.pid, ("T", "t"), "SIGSTOP")
        os.kill(args.pid, signal.SIGTERM)
        d.flush()
        i_conn.flush()
        e.send_opt(OPT_GO, go)
        e.send_opt(OPT_LIST)
        e.send(struct.pack(">Q", 0x49484156454F5054))	# half a header
        f.send_opt(OPT_INFO, go)
        f.send_opt(OPT_ABORT)
        time.sleep(0.2)
    finally:
        os.kill(args.pid, signal.SIGCONT)

    for cl in (a, b, c, d, g, i_conn):
        cl.read_to_eof()
        cl.verify()
    re_e = handshake_replies(e, "E")
    check(re_e == [(OPT_GO, REP_ERR_SHUTDOWN), (OPT_LIST, REP_ERR_SHUTDOWN)],
          "E: option replies %r" % re_e)
    re_f = handshake_replies(f, "F")
    check(re_f == [(OPT_INFO, REP_ERR_SHUTDOWN), (OPT_ABORT, REP_ACK)],
          "F: option replies %r" % re_f)
    expect_eof(h, "H")

    deadline = time.monotonic() + 15
    while daemon_alive(args.pid):
        check(time.monotonic() < deadline, "the daemon did not exit")
        time.sleep(0.05)

    # The disk: started WRITEs done, refused ones not.
    with open(args.disk, "rb") as fd:
        for off, data in sorted(disk.items()):
            fd.seek(off)
            got = fd.read(len(data))
            check(got == data, "disk bytes at %d (%d bytes) differ from what "
                  "they must be" % (off, len(data)))

    req, opt, text = close_lines(args)
    want_req = sorted([sum(1 for v in cl.expected.values() if v == ESHUTDOWN)
                       for cl in (a, b, c, d, i_conn)] + [0])
    check(req == want_req, "close lines count %r requests refused, expected %r"
          % (req, want_req))
    check(opt == [0, 1, 2], "close lines count %r options refused, expected "
          "[0, 1, 2]" % opt)
    check(re.search(r"not started, refused with NBD_ESHUTDOWN; client "
                    r"disconnected \(NBD_CMD_DISC\)", text),
          "no close line says B's input ended at NBD_CMD_DISC")
    check(re.search(r"not started, refused with NBD_ESHUTDOWN; an incomplete "
                    r"request dropped", text),
          "no close line says C's cut WRITE was dropped")
    print("all %d stalled WRITEs answered, %d requests and 3 options refused"
          % (3 * MAX_INFLIGHT, sum(want_req)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--unix", required=True)
    p.add_argument("--tcp", required=True)
    p.add_argument("--export", default="r0")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--ctl", required=True)
    p.add_argument("--fault-file", required=True)
    p.add_argument("--disk", required=True)
    args = p.parse_args()
    try:
        run(args)
    except (CaseFailed, Closed) as e:
        print("FAIL: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
