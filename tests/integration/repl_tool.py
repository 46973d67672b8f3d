#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Helpers for the replication integration tests (tests/repl-functions.sh).

  repl_tool.py cmd SOCK NAME [ARGS_JSON]
        send {"cmd":NAME,"args":ARGS} to a control socket; print the result
        object as JSON; exit 1 with the daemon's error on stderr if refused.
  repl_tool.py status SOCK
        print the status result object as JSON.
  repl_tool.py wait TIMEOUT EXPR SOCK [SOCK]
        poll status every 100 ms until the Python expression EXPR is true,
        with a (and s) the first socket's status and b the second's; exit 0,
        or 1 after TIMEOUT seconds with both last statuses on stderr.
  repl_tool.py compare DEV_A DEV_B SIZE
        compare the first SIZE bytes of both devices (O_DIRECT); exit 0 if
        identical, 1 with the number of differing 4 KiB blocks and the first
        few offsets otherwise.
  repl_tool.py garbage HOST PORT KIND
        connect to a replication port and send garbage (KIND "random"), an
        oversize frame header with a valid check ("oversize"), or a frame
        header with a bad check ("badcheck"); print what came back.  KIND
        "silent" sends nothing and waits (30 s at most) for the daemon to
        close the connection; exit 1 if it does not.
  repl_tool.py hang-listen HOST PORT SECONDS
        accept connections on HOST:PORT for SECONDS and never answer; print
        "ACCEPTED CLOSED": how many came and how many the other side closed.
  repl_tool.py nbd-flush SOCK EXPORT COUNT LOG REGEX DELTA
        NBD client on a UNIX socket: COUNT times WRITE 4 KiB then FLUSH; when
        a FLUSH reply arrives the daemon log LOG must hold exactly DELTA more
        lines matching REGEX than before the FLUSH was sent.  Prints the
        FLUSH replies' error codes.
  repl_tool.py nbd-write SOCK EXPORT OFFSET LENGTH BYTE
        write LENGTH bytes of BYTE (0..255) at OFFSET, then FLUSH.
  repl_tool.py nbd-cmd SOCK EXPORT CMD OFFSET LENGTH [FLAGS]
        one request without payload (CMD: trim, zero, cache or flush; FLAGS
        the NBD command flags as a number, e.g. 0x12 for NO_HOLE |
        FAST_ZERO); print the reply's error code (0 on success).
  repl_tool.py nbd-late-go SOCK EXPORT GOFILE
        connect and send the client flags, print "ready", wait (up to 120 s)
        until GOFILE exists, then send OPT_GO; print "ok" (and do a
        zero-length READ) or the refusal.
  repl_tool.py nbd-hold SOCK EXPORT GOFILE OFFSET
        connect and WRITE 4 KiB of 0x11 at OFFSET, print "ready", then wait
        (up to 120 s) until GOFILE exists and WRITE 4 KiB of 0x22 at OFFSET
        + 4096 and FLUSH over the same connection; print both error codes
        ("write=E flush=E", or "closed" if the server dropped the client).
  repl_tool.py nbd-seq SOCK EXPORT ACKFILE OFFSET COUNT QD
        write COUNT numbered 4 KiB blocks from OFFSET, QD in flight, and
        append each block's number to ACKFILE as soon as its reply says it
        succeeded (fsync'd); runs until done or the server goes away.
  repl_tool.py nbd-check SOCK EXPORT ACKFILE OFFSET
        read back every block ACKFILE names: each must hold its number
        (an acknowledged write that was lost fails the check).
"""

import json
import mmap
import os
import random
import re
import socket
import struct
import sys
import time

# ---- control protocol ----


def ctl_call(sock_path, cmd, args=None, timeout=10.0):
    """One request, one reply; returns the decoded reply object."""
    req = {"cmd": cmd}
    if args:
        req["args"] = args
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("control socket closed before the reply")
            buf += chunk
    finally:
        s.close()
    return json.loads(buf.split(b"\n", 1)[0])


def status(sock_path):
    rep = ctl_call(sock_path, "status")
    if not rep.get("ok"):
        raise RuntimeError("status refused: %s" % rep.get("error"))
    return rep["result"]


def do_cmd(argv):
    sock_path, name = argv[0], argv[1]
    args = json.loads(argv[2]) if len(argv) > 2 else None
    rep = ctl_call(sock_path, name, args)
    if not rep.get("ok"):
        print("%s: %s" % (name, rep.get("error")), file=sys.stderr)
        return 1
    print(json.dumps(rep.get("result", {})))
    return 0


def do_wait(argv):
    timeout, expr, socks = float(argv[0]), argv[1], argv[2:]
    code = compile("(" + expr + "\n)", "<wait expression>", "eval")
    deadline = time.monotonic() + timeout
    last = [None] * len(socks)
    err = None
    while True:
        try:
            for i, sp in enumerate(socks):
                last[i] = status(sp)
            env = {"a": last[0], "s": last[0],
                   "b": last[1] if len(last) > 1 else None}
            if eval(code, {}, env):
                return 0
            err = None
        except Exception as e:  # daemon restarting, field missing: retry
            err = e
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    print("wait: timeout after %gs: %s" % (timeout, expr), file=sys.stderr)
    if err is not None:
        print("wait: last error: %r" % (err,), file=sys.stderr)
    for sp, st in zip(socks, last):
        print("wait: status of %s: %s" % (sp, json.dumps(st, sort_keys=True)),
              file=sys.stderr)
    return 1


# ---- disk comparison ----


def read_direct(fd, off, length, buf):
    """pread length bytes at off into an aligned mmap buffer (O_DIRECT)."""
    n = os.preadv(fd, [memoryview(buf)[:length]], off)
    if n != length:
        raise IOError("short read at %d: %d of %d" % (off, n, length))
    return buf[:length]


def do_compare(argv):
    a, b, size = argv[0], argv[1], int(argv[2])
    chunk = 1 << 20
    fa = os.open(a, os.O_RDONLY | os.O_DIRECT)
    fb = os.open(b, os.O_RDONLY | os.O_DIRECT)
    ba, bb = mmap.mmap(-1, chunk), mmap.mmap(-1, chunk)
    diff_blocks = 0
    first = []
    off = 0
    while off < size:
        n = min(chunk, size - off)
        da = read_direct(fa, off, n, ba)
        db = read_direct(fb, off, n, bb)
        if da != db:
            for k in range(0, n, 4096):
                if da[k:k + 4096] != db[k:k + 4096]:
                    diff_blocks += 1
                    if len(first) < 8:
                        first.append(off + k)
        off += n
    os.close(fa)
    os.close(fb)
    if diff_blocks:
        print("compare: %s and %s differ in %d blocks of 4 KiB within %d bytes; "
              "first at offsets %s" % (a, b, diff_blocks, size,
                                       ", ".join(str(o) for o in first)),
              file=sys.stderr)
        return 1
    print("compare: %d bytes identical" % size)
    return 0


# ---- replication frames ----

P1, P2, P3, P4, P5 = 0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1
M32 = 0xFFFFFFFF


def _rotl(x, r):
    return ((x << r) | (x >> (32 - r))) & M32


def xxh32(data, seed=0):
    """XXH32 of data (the replication header check)."""
    n, i = len(data), 0
    if n >= 16:
        v = [(seed + P1 + P2) & M32, (seed + P2) & M32, seed & M32,
             (seed - P1) & M32]
        while i + 16 <= n:
            for k in range(4):
                lane = struct.unpack_from("<I", data, i + 4 * k)[0]
                v[k] = (_rotl((v[k] + lane * P2) & M32, 13) * P1) & M32
            i += 16
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) +
             _rotl(v[3], 18)) & M32
    else:
        h = (seed + P5) & M32
    h = (h + n) & M32
    while i + 4 <= n:
        h = (h + struct.unpack_from("<I", data, i)[0] * P3) & M32
        h = (_rotl(h, 17) * P4) & M32
        i += 4
    while i < n:
        h = (h + data[i] * P5) & M32
        h = (_rotl(h, 11) * P1) & M32
        i += 1
    h ^= h >> 15
    h = (h * P2) & M32
    h ^= h >> 13
    h = (h * P3) & M32
    h ^= h >> 16
    return h


def frame_header(mtype, length, good_check=True, epoch=0):
    """A replication frame header (lib/repl_proto.h), big-endian."""
    head = struct.pack(">IHHIIQI", 0x424D5250, 1, mtype, 0, length, epoch, 0)
    check = xxh32(head)
    if not good_check:
        check ^= 0xDEADBEEF
    return head + struct.pack(">I", check)


def garbage_silent(s, host, port, limit=30.0):
    start = time.monotonic()
    s.settimeout(limit)
    got = 0
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += len(chunk)
    except socket.timeout:
        print("garbage: %s:%d silent: still open after %.0f s" % (host, port, limit),
              file=sys.stderr)
        return 1
    except OSError as e:  # reset
        print("garbage: %s:%d silent: %s" % (host, port, e))
    s.close()
    print("garbage: %s:%d silent: closed by the daemon after %.1f s (%d bytes received)"
          % (host, port, time.monotonic() - start, got))
    return 0


def do_garbage(argv):
    host, port, kind = argv[0], int(argv[1]), argv[2]
    if xxh32(b"") != 0x02CC5D05 or xxh32(b"abc") != 0x32D153FF:
        print("garbage: xxh32 self-test failed", file=sys.stderr)
        return 2
    s = socket.create_connection((host, port), timeout=5)
    if kind == "random":
        rnd = random.Random(port)
        payload = bytes(rnd.getrandbits(8) for _ in range(64 * 1024))
    elif kind == "oversize":
        # A HELLO claiming a body of 4 GiB - 1 (and DATA of 1 GiB).
        payload = frame_header(1, 0xFFFFFFFF) + frame_header(8, 1 << 30)
    elif kind == "badcheck":
        payload = frame_header(1, 200, good_check=False) + b"\0" * 200
    elif kind == "silent":
        # Connect and say nothing: the daemon must close it by itself.
        return garbage_silent(s, host, port)
    else:
        print("garbage: unknown kind %s" % kind, file=sys.stderr)
        return 2
    got = b""
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except OSError as e:  # reset, broken pipe, not connected, timeout
        print("garbage: %s:%d %s: %s" % (host, port, kind, e))
    s.close()
    print("garbage: %s:%d %s: sent %d bytes, got %d bytes back"
          % (host, port, kind, len(payload), len(got)))
    return 0


def do_hang_listen(argv):
    """Listen on HOST PORT for SECONDS, accept every connection and never
    answer; print how many came and how many the other side closed."""
    host, port, seconds = argv[0], int(argv[1]), float(argv[2])
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(16)
    conns, closed = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ls.settimeout(0.2)
        try:
            c, _ = ls.accept()
            c.setblocking(False)
            conns.append(c)
        except socket.timeout:
            pass
        for c in list(conns):
            try:
                if c.recv(65536) == b"":
                    closed += 1
                    conns.remove(c)
                    c.close()
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
                conns.remove(c)
                c.close()
    print("%d %d" % (len(conns) + closed, closed))
    return 0


# ---- a minimal NBD client (fixed newstyle, OPT_GO, simple replies) ----

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x0003E889045565A9


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("NBD server closed the connection")
        buf += chunk
    return buf


class Nbd:
    """Just enough NBD for WRITE and FLUSH."""

    def __init__(self, path, export, gofile=None):
        """Handshake up to OPT_GO; with gofile, print "ready" after the
        client flags and wait (120 s at most) for gofile before the GO."""
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(path)
        magic, opt, hflags = struct.unpack(">QQH", recv_exact(self.s, 18))
        if magic != NBDMAGIC or opt != IHAVEOPT:
            raise ConnectionError("not an NBD newstyle server")
        self.s.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
        if gofile is not None:
            print("ready", flush=True)
            wait_file(gofile)
        name = export.encode()
        # asks for NBD_INFO_BLOCK_SIZE (3) and keeps to it, as real clients do
        data = struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, 3)
        self.s.sendall(struct.pack(">QII", IHAVEOPT, 7, len(data)) + data)
        while True:
            rmagic, ropt, rtype, rlen = struct.unpack(">QIII", recv_exact(self.s, 20))
            body = recv_exact(self.s, rlen)
            if rmagic != OPT_REPLY_MAGIC:
                raise ConnectionError("bad option reply magic")
            if rtype == 1:  # ACK
                break
            if rtype & 0x80000000:
                raise ConnectionError("OPT_GO refused (%#x): %r" % (rtype, body))
            if rtype == 3 and len(body) >= 12 and struct.unpack(">H", body[:2])[0] == 0:
                self.size = struct.unpack(">Q", body[2:10])[0]
        self.handle = 0

    def send(self, cmd, offset=0, length=0, data=b"", flags=0):
        """Send one request; returns its handle."""
        self.handle += 1
        self.s.sendall(struct.pack(">IHHQQI", 0x25609513, flags, cmd, self.handle,
                                   offset, length) + data)
        return self.handle

    def reply(self, rlen=0):
        """One simple reply: (handle, error, data of rlen bytes if no error)."""
        magic, err, handle = struct.unpack(">IIQ", recv_exact(self.s, 16))
        if magic != 0x67446698:
            raise ConnectionError("bad NBD reply magic")
        return handle, err, (recv_exact(self.s, rlen) if err == 0 and rlen else b"")

    def request(self, cmd, offset=0, length=0, data=b"", flags=0):
        self.handle += 1
        self.s.sendall(struct.pack(">IHHQQI", 0x25609513, flags, cmd, self.handle,
                                   offset, length) + data)
        magic, err, handle = struct.unpack(">IIQ", recv_exact(self.s, 16))
        if magic != 0x67446698 or handle != self.handle:
            raise ConnectionError("bad NBD reply")
        return err

    def close(self):
        self.s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 2, 0, 0, 0))
        self.s.close()


def count_lines(path, regex):
    with open(path, errors="replace") as f:
        return sum(1 for line in f if regex.search(line))


def do_nbd_flush(argv):
    path, export, count, log, regex = argv[0], argv[1], int(argv[2]), argv[3], argv[4]
    delta = int(argv[5])
    rx = re.compile(regex)
    c = Nbd(path, export)
    errs = []
    for i in range(count):
        if c.request(1, offset=i * 4096, length=4096, data=bytes([i & 255]) * 4096):
            print("nbd-flush: WRITE %d failed" % i, file=sys.stderr)
            return 1
        before = count_lines(log, rx)
        err = c.request(3)
        after = count_lines(log, rx)
        errs.append(err)
        if after != before + delta:
            print("nbd-flush: FLUSH %d replied (error %d) with %d new log lines "
                  "matching /%s/ in %s (expected exactly %d)"
                  % (i, err, after - before, regex, log, delta), file=sys.stderr)
            return 1
    c.close()
    print(" ".join(str(e) for e in errs))
    return 0


def do_nbd_write(argv):
    path, export, off, length, byte = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    flush = len(argv) < 6 or argv[5] != "noflush"
    c = Nbd(path, export)
    err = c.request(1, offset=off, length=length, data=bytes([byte]) * length)
    if err == 0 and flush:
        err = c.request(3)
    c.close()
    if err:
        print("nbd-write: error %d" % err, file=sys.stderr)
        return 1
    return 0


NBD_CMDS = {"flush": 3, "trim": 4, "cache": 5, "zero": 6}


def do_nbd_cmd(argv):
    path, export, cmd, off, length = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    flags = int(argv[5], 0) if len(argv) > 5 else 0
    c = Nbd(path, export)
    print(c.request(NBD_CMDS[cmd], offset=off, length=length, flags=flags))
    c.close()
    return 0


def wait_file(path, limit=120):
    """Wait until path exists; TimeoutError after limit seconds."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError("%s never appeared" % path)
        time.sleep(0.05)


def do_nbd_late_go(argv):
    path, export, gofile = argv[0], argv[1], argv[2]
    try:
        c = Nbd(path, export, gofile)
    except ConnectionError as e:
        print(e)
        return 0
    print("ok" if c.request(0, offset=0, length=0) == 0 else "read failed")
    c.close()
    return 0


def do_nbd_hold(argv):
    path, export, gofile, off = argv[0], argv[1], argv[2], int(argv[3])
    c = Nbd(path, export)
    if c.request(1, offset=off, length=4096, data=b"\x11" * 4096):
        print("nbd-hold: first write failed", file=sys.stderr)
        return 1
    print("ready", flush=True)
    wait_file(gofile)
    try:
        werr = c.request(1, offset=off + 4096, length=4096, data=b"\x22" * 4096)
        ferr = c.request(3)
        c.close()
    except (OSError, ConnectionError):
        print("closed")
        return 0
    print("write=%d flush=%d" % (werr, ferr))
    return 0


def seq_block(i):
    """Block number i: its number, then a fill derived from it."""
    head = struct.pack(">Q", i) + b"BMSEQ\0\0\0"
    return head + bytes([(i * 7 + 1) & 255]) * (4096 - len(head))


def do_nbd_seq(argv):
    path, export, ackfile = argv[0], argv[1], argv[2]
    off, count, qd = int(argv[3]), int(argv[4]), int(argv[5])
    c = Nbd(path, export)
    inflight = {}
    nxt = acked = 0
    with open(ackfile, "a") as f:
        try:
            while acked < count:
                while nxt < count and len(inflight) < qd:
                    h = c.send(1, offset=off + nxt * 4096, length=4096,
                               data=seq_block(nxt))
                    inflight[h] = nxt
                    nxt += 1
                h, err, _ = c.reply()
                i = inflight.pop(h)
                if err:
                    print("nbd-seq: write of block %d failed: %d" % (i, err),
                          file=sys.stderr)
                    return 1
                f.write("%d\n" % i)
                f.flush()
                os.fsync(f.fileno())
                acked += 1
        except (OSError, ConnectionError) as e:
            print("nbd-seq: server gone after %d acknowledged writes: %s"
                  % (acked, e))
            return 0
    print("nbd-seq: %d writes acknowledged" % acked)
    return 0


def do_nbd_check(argv):
    path, export, ackfile, off = argv[0], argv[1], argv[2], int(argv[3])
    with open(ackfile) as f:
        nums = sorted({int(x) for x in f.read().split()})
    c = Nbd(path, export)
    bad = []
    for i in nums:
        h = c.send(0, offset=off + i * 4096, length=4096)
        _, err, data = c.reply(4096)
        if err or data != seq_block(i):
            bad.append(i)
    c.close()
    if bad:
        print("nbd-check: %d of %d acknowledged writes lost, first blocks %s"
              % (len(bad), len(nums), bad[:10]), file=sys.stderr)
        return 1
    print("nbd-check: all %d acknowledged writes present" % len(nums))
    return 0


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmds = {"cmd": do_cmd, "wait": do_wait, "compare": do_compare,
            "garbage": do_garbage, "nbd-flush": do_nbd_flush,
            "nbd-write": do_nbd_write, "nbd-seq": do_nbd_seq,
            "nbd-cmd": do_nbd_cmd, "nbd-late-go": do_nbd_late_go,
            "nbd-hold": do_nbd_hold, "hang-listen": do_hang_listen,
            "nbd-check": do_nbd_check,
            "status": lambda a: print(json.dumps(status(a[0]))) or 0}
    if sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
