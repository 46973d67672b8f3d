#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Feed an NBD server every kind of bad input, over raw sockets.

Each case talks to the server like a broken or hostile client and asserts
the answer the NBD spec asks for (an error reply with the right errno, or a
clean close).  After every case a second, well-behaved client writes and
reads back data, the server process must still be alive, and the server's
log must have gained a line about the bad input.

  nbd_evil.py --unix SOCK|--tcp HOST:PORT --export NAME --pid PID
              --log FILE --mode structured|simple [--ctl SOCK]
              [--case NAME ...] [--list]

With --ctl (the daemon's control socket), cases that need the daemon's
view (how many clients it still holds) ask it for its status; without it
they skip those checks.

Exit status: 0 when every case passed, 1 otherwise (each failure printed).
"""

import argparse
import json
import os
import random
import re
import socket
import struct
import sys
import threading
import time

# ---- protocol constants (NBD spec, doc/proto.md) ----
NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_ERR_UNSUP = 0x80000001
REP_ERR_POLICY = 0x80000002
REP_ERR_INVALID = 0x80000003
REP_ERR_UNKNOWN = 0x80000006
REP_ERR_BLOCK_SIZE_REQD = 0x80000008
REP_ERR_TOO_BIG = 0x80000009

INFO_EXPORT = 0
INFO_BLOCK_SIZE = 3

TFLAG_SEND_FLUSH = 1 << 2
TFLAG_SEND_FUA = 1 << 3
TFLAG_SEND_TRIM = 1 << 5
TFLAG_SEND_WRITE_ZEROES = 1 << 6
TFLAG_CAN_MULTI_CONN = 1 << 8
TFLAG_SEND_CACHE = 1 << 10
TFLAG_SEND_FAST_ZERO = 1 << 11

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

CMD_FLAG_FUA = 1 << 0
CMD_FLAG_DF = 1 << 2
CMD_FLAG_REQ_ONE = 1 << 3

REPLY_FLAG_DONE = 1
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = 0x8001
REPLY_TYPE_ERROR_OFFSET = 0x8002

EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP = 1, 5, 12, 22, 28, 75, 95

MAX_PAYLOAD = 32 << 20
TIMEOUT = 20.0			# seconds any single expected answer may take
RSS_LIMIT_MIB = 512		# the daemon's VmRSS while clients hoard replies


class Closed(Exception):
    """The server closed the connection (EOF or reset)."""


class CaseFailed(Exception):
    """A case saw something the spec does not allow."""


def check(cond, what):
    """Raise CaseFailed(what) unless cond holds."""
    if not cond:
        raise CaseFailed(what)


class Conn:
    """One raw NBD client connection."""

    def __init__(self, args):
        self.args = args
        if args.tcp:
            host, port = args.tcp.rsplit(":", 1)
            self.sock = socket.create_connection((host, int(port)), TIMEOUT)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(TIMEOUT)
            self.sock.connect(args.unix)
        self.structured = False
        self.size = None
        self.tflags = None
        self.min_block = None
        self.pending = {}	# cookie -> (command, offset, length)
        self.next_cookie = 1

    # ---- raw I/O ----
    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        """Exactly n bytes, or raise Closed."""
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise Closed(str(e))
            if not chunk:
                raise Closed("EOF after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return bytes(buf)

    def expect_close(self, what, timeout=TIMEOUT):
        """Read (and drop) whatever comes until EOF; fail on timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                try:
                    chunk = self.sock.recv(1 << 20)
                except (ConnectionResetError, BrokenPipeError):
                    return
                if not chunk:
                    return
        except socket.timeout:
            raise CaseFailed("%s: server did not close the connection "
                             "within %.0f s" % (what, timeout))
        finally:
            self.sock.settimeout(TIMEOUT)

    def close(self):
        self.sock.close()

    def reset(self):
        """Close with SO_LINGER 0: the peer sees a TCP-style reset/abort."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
        self.sock.close()

    # ---- handshake ----
    def hello(self, client_flags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES):
        """Read the server greeting and send our flags."""
        magic, opt, hflags = struct.unpack(">QQH", self.recv_exact(18))
        check(magic == NBDMAGIC, "bad server magic %#x" % magic)
        check(opt == IHAVEOPT, "server is not newstyle (%#x)" % opt)
        check(hflags & FLAG_FIXED_NEWSTYLE, "server is not fixed newstyle")
        self.send(struct.pack(">I", client_flags))
        return hflags

    def send_opt(self, opt, data=b"", length=None):
        if length is None:
            length = len(data)
        self.send(struct.pack(">QII", IHAVEOPT, opt, length) + data)

    def opt_reply(self):
        """One option reply: (option, type, data)."""
        magic, opt, rtype, length = struct.unpack(">QIII", self.recv_exact(20))
        check(magic == OPT_REPLY_MAGIC, "bad option reply magic %#x" % magic)
        check(length <= 1 << 20, "option reply of %d bytes" % length)
        return opt, rtype, self.recv_exact(length)

    def opt_structured(self):
        self.send_opt(OPT_STRUCTURED_REPLY)
        opt, rtype, _ = self.opt_reply()
        check(opt == OPT_STRUCTURED_REPLY and rtype == REP_ACK,
              "STRUCTURED_REPLY answered with %#x" % rtype)
        self.structured = True

    def opt_go(self, name=None, opt=OPT_GO, infos=(INFO_BLOCK_SIZE,)):
        """GO/INFO: returns the final reply type; fills size/flags on ACK."""
        if name is None:
            name = self.args.export
        nb = name.encode()
        data = struct.pack(">I", len(nb)) + nb + struct.pack(">H", len(infos))
        data += b"".join(struct.pack(">H", i) for i in infos)
        self.send_opt(opt, data)
        while True:
            ropt, rtype, rdata = self.opt_reply()
            check(ropt == opt, "reply for option %d, expected %d" % (ropt, opt))
            if rtype != REP_INFO:
                return rtype
            itype = struct.unpack(">H", rdata[:2])[0]
            if itype == INFO_EXPORT:
                check(len(rdata) == 12, "INFO_EXPORT of %d bytes" % len(rdata))
                self.size, self.tflags = struct.unpack(">QH", rdata[2:])
            elif itype == INFO_BLOCK_SIZE:
                check(len(rdata) == 14, "INFO_BLOCK_SIZE of %d bytes" % len(rdata))
                self.min_block = struct.unpack(">III", rdata[2:])[0]

    def opt_meta_allocation(self):
        """SET_META_CONTEXT base:allocation (after STRUCTURED_REPLY)."""
        name = self.args.export.encode()
        query = b"base:allocation"
        self.send_opt(OPT_SET_META_CONTEXT, struct.pack(">I", len(name)) +
                      name + struct.pack(">II", 1, len(query)) + query)
        selected = False
        while True:
            _, rtype, _ = self.opt_reply()
            if rtype != REP_META_CONTEXT:
                break
            selected = True
        check(rtype == REP_ACK and selected,
              "SET_META_CONTEXT base:allocation answered with %#x" % rtype)

    def connect_export(self, structured=None):
        """Full handshake up to transmission."""
        if structured is None:
            structured = self.args.mode == "structured"
        self.hello()
        if structured:
            self.opt_structured()
        rtype = self.opt_go()
        check(rtype == REP_ACK, "GO answered with %#x" % rtype)
        check(self.size is not None, "GO gave no INFO_EXPORT")
        if self.min_block is None:
            self.min_block = 512
        return self

    # ---- transmission ----
    def request(self, cmd, offset, length, flags=0, payload=b"", cookie=None,
                magic=REQUEST_MAGIC):
        """Send one request; returns its cookie."""
        if cookie is None:
            cookie = self.next_cookie
            self.next_cookie += 1
        self.pending[cookie] = (cmd, offset, length)
        self.send(struct.pack(">IHHQQI", magic, flags, cmd, cookie,
                              offset, length) + payload)
        return cookie

    def reply(self):
        """The next complete reply: (cookie, error, data or None).  With
        structured replies negotiated, a simple reply is still allowed for
        everything but READ."""
        magic = struct.unpack(">I", self.recv_exact(4))[0]
        if self.structured and magic == STRUCTURED_REPLY_MAGIC:
            return self._structured_reply()
        check(magic == SIMPLE_REPLY_MAGIC, "bad reply magic %#x" % magic)
        error, cookie = struct.unpack(">IQ", self.recv_exact(12))
        check(cookie in self.pending, "reply for unknown cookie %d" % cookie)
        cmd, _, length = self.pending.pop(cookie)
        check(not (self.structured and cmd == CMD_READ),
              "simple reply to a READ after structured replies were negotiated")
        data = None
        if cmd == CMD_READ and error == 0:
            data = self.recv_exact(length)
        return cookie, error, data

    def _structured_reply(self):
        """Chunks up to DONE (the first chunk's magic already read),
        checking their shape."""
        data = None
        error = 0
        first = True
        while True:
            if first:
                magic = STRUCTURED_REPLY_MAGIC
                hdr = self.recv_exact(16)
            else:
                hdr = self.recv_exact(20)
                magic = struct.unpack(">I", hdr[:4])[0]
                hdr = hdr[4:]
            first = False
            flags, rtype, cookie, length = struct.unpack(">HHQI", hdr)
            check(magic == STRUCTURED_REPLY_MAGIC,
                  "bad structured reply magic %#x" % magic)
            check(cookie in self.pending, "chunk for unknown cookie %d" % cookie)
            cmd, roff, rlen = self.pending[cookie]
            check(length <= MAX_PAYLOAD + 64, "chunk of %d bytes" % length)
            body = self.recv_exact(length)
            if rtype in (REPLY_TYPE_ERROR, REPLY_TYPE_ERROR_OFFSET):
                check(length >= 6, "error chunk of %d bytes" % length)
                err, mlen = struct.unpack(">IH", body[:6])
                extra = 8 if rtype == REPLY_TYPE_ERROR_OFFSET else 0
                check(length == 6 + mlen + extra,
                      "error chunk length %d, message %d" % (length, mlen))
                check(err != 0, "error chunk with error 0")
                error = err
            elif rtype == REPLY_TYPE_OFFSET_DATA:
                check(cmd == CMD_READ, "data chunk for command %d" % cmd)
                off = struct.unpack(">Q", body[:8])[0]
                data = data if data is not None else {}
                data[off] = body[8:]
            elif rtype == REPLY_TYPE_OFFSET_HOLE:
                off, hlen = struct.unpack(">QI", body)
                data = data if data is not None else {}
                data[off] = bytes(hlen)
            elif rtype == REPLY_TYPE_BLOCK_STATUS:
                check(cmd == CMD_BLOCK_STATUS,
                      "block status chunk for command %d" % cmd)
                # a context id, then at least one 8-byte descriptor
                check(length >= 12 and (length - 4) % 8 == 0,
                      "block status chunk of %d bytes" % length)
                data = body
            else:
                check(rtype == REPLY_TYPE_NONE, "unknown chunk type %#x" % rtype)
            if flags & REPLY_FLAG_DONE:
                break
        del self.pending[cookie]
        if cmd == CMD_READ and error == 0:
            data = self._assemble(data or {}, roff, rlen)
        return cookie, error, data

    @staticmethod
    def _assemble(pieces, offset, length):
        """Join OFFSET_DATA/HOLE chunks into the read buffer, checking they
        cover [offset, offset + length) exactly once."""
        out = bytearray(length)
        covered = 0
        for off in sorted(pieces):
            piece = pieces[off]
            check(off >= offset and off + len(piece) <= offset + length,
                  "chunk %d+%d outside the request" % (off, len(piece)))
            out[off - offset:off - offset + len(piece)] = piece
            covered += len(piece)
        check(covered == length, "chunks cover %d of %d bytes" % (covered, length))
        return bytes(out)

    def read(self, offset, length, flags=0):
        """READ and wait: (error, data)."""
        cookie = self.request(CMD_READ, offset, length, flags)
        c, err, data = self.reply()
        check(c == cookie, "reply cookie %d for request %d" % (c, cookie))
        return err, data

    def simple_cmd(self, cmd, offset, length, flags=0, payload=b""):
        """A non-read command; returns its error code."""
        cookie = self.request(cmd, offset, length, flags, payload)
        c, err, _ = self.reply()
        check(c == cookie, "reply cookie %d for request %d" % (c, cookie))
        return err

    def write(self, offset, data, flags=0):
        return self.simple_cmd(CMD_WRITE, offset, len(data), flags, data)


# ---- the checks run after every case ----

def daemon_alive(pid):
    """True while the process runs (zombies count as dead)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


def good_client(args, tag):
    """A well-behaved client writes, flushes and reads back data."""
    c = Conn(args).connect_export()
    try:
        bs = max(c.min_block, 4096)
        slot = (hash(tag) & 0xFF) + 1
        off = slot * 4 * bs
        check(off + 4 * bs <= c.size, "export too small for the good client")
        data = random.randbytes(4 * bs)
        err = c.write(off, data)
        check(err == 0, "good client: write failed with %d" % err)
        err = c.simple_cmd(CMD_FLUSH, 0, 0)
        check(err == 0, "good client: flush failed with %d" % err)
        err, back = c.read(off, 4 * bs)
        check(err == 0, "good client: read failed with %d" % err)
        check(back == data, "good client: data read back differs")
        c.request(CMD_DISC, 0, 0)
        c.expect_close("good client DISC")
    finally:
        c.close()


def rss_mib(pid):
    """The process's resident set (VmRSS) in MiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise CaseFailed("no VmRSS for process %d" % pid)


def peak_rss_mib(pid, seconds):
    """The largest VmRSS (MiB) seen over the next `seconds`."""
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, rss_mib(pid))
        time.sleep(0.02)
    return peak


def ctl_clients(args):
    """The NBD connections the daemon holds (its status \"clients\"), or
    None without --ctl."""
    st = ctl_status(args)
    return None if st is None else st["clients"]


def ctl_status(args):
    """The daemon's status object, or None without --ctl."""
    if not args.ctl:
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        s.connect(args.ctl)
        s.sendall(b'{"cmd":"status"}\n')
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            check(chunk, "control socket closed before the status reply")
            buf += chunk
    finally:
        s.close()
    rep = json.loads(buf)
    check(rep.get("ok"), "status failed: %r" % rep)
    return rep["result"]


def wait_clients(args, most, what, timeout=10.0):
    """Wait until the daemon holds at most `most` NBD connections (no-op
    without --ctl)."""
    deadline = time.monotonic() + timeout
    while True:
        n = ctl_clients(args)
        if n is None or n <= most:
            return
        if time.monotonic() > deadline:
            raise CaseFailed("%s: the daemon still holds %d connections after "
                             "%.0f s (expected at most %d)" % (what, n, timeout,
                                                               most))
        time.sleep(0.05)


class LogWatch:
    """Follows the daemon log: every bad input must add a line about it.

    expect() looks at the lines written since the last matched line, so two
    bad inputs need two lines."""

    def __init__(self, path):
        self.path = path
        self.start = os.path.getsize(path)

    def expect(self, what, *regexes, timeout=5.0):
        """Fail unless a new line matches every regex (case-insensitive)."""
        pats = [re.compile(r, re.I) for r in regexes]
        deadline = time.monotonic() + timeout
        while True:
            with open(self.path, "rb") as f:
                f.seek(self.start)
                data = f.read()
            pos = 0
            for line in data.split(b"\n"):
                pos += len(line) + 1
                text = line.decode(errors="replace")
                if pos <= len(data) and all(p.search(text) for p in pats):
                    self.start += pos
                    return
            if time.monotonic() > deadline:
                tail = data.decode(errors="replace")[-500:]
                raise CaseFailed("%s: no daemon log line matching %s (new "
                                 "lines: %r)" % (what, " and ".join(
                                     "/%s/" % r for r in regexes), tail))
            time.sleep(0.05)

    def count(self, regex):
        """Lines of the whole log matching regex (case-insensitive)."""
        pat = re.compile(regex, re.I)
        with open(self.path, "rb") as f:
            return sum(1 for line in f
                       if pat.search(line.decode(errors="replace")))

    def rejected(self, what, cmd):
        """A request of type cmd ("READ", "WRITE", ...) was refused."""
        self.expect(what, cmd, r"(reject|refus|invalid|error|range|past|"
                    r"beyond|align|unknown|unsupported|exceed|too (big|"
                    r"large|long)|maximum|oversize)")

    def option(self, what):
        """A bad or unsupported option."""
        self.expect(what, r"(option|NBD_OPT|NBD_REP|export|name|meta|context)",
                    r"(unknown|unsupported|unsup|invalid|too|bad|length|"
                    r"bytes|exceed|refus|reject|before|without|missing|"
                    r"not|error)")

    def gone(self, what):
        """A client went away at a bad moment."""
        self.expect(what, r"(closed|reset|lost|ended|eof|hang|disconnect|"
                    r"vanish|broken pipe|incomplete|short)")


# ---- handshake-phase cases ----

def case_bad_option_magic(args, lw):
    """An option header with a wrong magic: the server must close."""
    c = Conn(args)
    c.hello()
    c.send(struct.pack(">QII", 0x1122334455667788, OPT_GO, 0))
    c.expect_close("wrong option magic")
    c.close()
    lw.expect("wrong option magic", r"magic")


def case_bad_request_magic(args, lw):
    """A transmission request with a wrong magic: the server must close."""
    c = Conn(args).connect_export()
    c.request(CMD_READ, 0, 4096, magic=0xDEADBEEF)
    c.expect_close("wrong request magic")
    c.close()
    lw.expect("wrong request magic", r"magic")


def case_unknown_client_flags(args, lw):
    """Client flags the server did not advertise: drop the connection."""
    c = Conn(args)
    c.hello(client_flags=FLAG_FIXED_NEWSTYLE | 0x80000000)
    try:
        c.send_opt(OPT_LIST)
    except (BrokenPipeError, ConnectionResetError):
        pass
    c.expect_close("unknown client flags")
    c.close()
    lw.expect("unknown client flags", r"flag")


def case_oversize_option(args, lw):
    """A 1 MiB option (data sent): ERR_TOO_BIG or close, never a crash."""
    c = Conn(args)
    c.hello()
    c.send_opt(OPT_GO, length=1 << 20)
    try:
        c.send(bytes(1 << 20))
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        opt, rtype, _ = c.opt_reply()
        check(rtype in (REP_ERR_TOO_BIG, REP_ERR_INVALID),
              "oversize option answered with %#x" % rtype)
        # Whatever it decided about the rest, it must stay sane: either
        # the connection works for another option or it gets closed.
        try:
            c.send_opt(OPT_ABORT)
            c.opt_reply()
        except (Closed, BrokenPipeError, ConnectionResetError):
            pass
    except Closed:
        pass
    c.close()
    lw.option("1 MiB option")
    # A huge length without data: the server must not allocate it or hang
    # us up forever; an error, a close, or waiting for data are all fine.
    c = Conn(args)
    c.hello()
    c.send_opt(OPT_GO, length=0xFFFFFFF0)
    c.sock.settimeout(2)
    try:
        c.opt_reply()
    except (Closed, socket.timeout):
        pass
    c.close()
    lw.option("4 GiB option")


def case_too_many_options(args, lw):
    """Thousands of options: the server answers a bounded number, closes."""
    n = 4000
    c = Conn(args)
    c.hello()
    burst = struct.pack(">QII", IHAVEOPT, OPT_LIST, 0) * n

    def sender():
        try:
            c.sock.sendall(burst)
        except OSError:
            pass
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    replies = 0
    try:
        while True:
            opt, rtype, _ = c.opt_reply()
            if rtype == REP_ACK:
                replies += 1
    except Closed:
        pass
    except socket.timeout:
        raise CaseFailed("no close after %d options answered" % replies)
    t.join(TIMEOUT)
    c.close()
    check(replies < n, "all %d options answered: no bound" % n)
    check(replies >= 16, "only %d options answered before the close" % replies)
    lw.expect("too many options", r"(too many|options)")


def case_unknown_option(args, lw):
    """Unknown option: NBD_REP_ERR_UNSUP, then the handshake goes on."""
    c = Conn(args)
    c.hello()
    c.send_opt(0x7777, b"hello")
    opt, rtype, _ = c.opt_reply()
    check(opt == 0x7777, "reply names option %#x" % opt)
    check(rtype == REP_ERR_UNSUP, "unknown option answered with %#x" % rtype)
    lw.option("unknown option")
    if args.mode == "structured":
        c.opt_structured()
    check(c.opt_go() == REP_ACK, "GO after unknown option failed")
    err, _ = c.read(0, 4096)
    check(err == 0, "read after unknown option failed with %d" % err)
    c.close()


def case_bad_option_data(args, lw):
    """Options whose contents do not add up: ERR_INVALID, then go on."""
    c = Conn(args)
    c.hello()
    for opt in (OPT_INFO, OPT_GO):
        c.send_opt(opt, struct.pack(">I", 100) + b"r0")
        ropt, rtype, _ = c.opt_reply()
        check(rtype == REP_ERR_INVALID,
              "inconsistent option %d answered with %#x" % (opt, rtype))
        lw.option("name length overrunning option %d" % opt)
    # the export name is a bounded string: 5000 bytes is over the limit
    c.send_opt(OPT_GO, struct.pack(">I", 5000) + b"x" * 5000 + b"\0\0")
    ropt, rtype, _ = c.opt_reply()
    check(rtype & 0x80000000, "overlong export name accepted (%#x)" % rtype)
    lw.option("5000-byte export name")
    # LIST with data is invalid too
    c.send_opt(OPT_LIST, b"junk")
    ropt, rtype, _ = c.opt_reply()
    check(rtype == REP_ERR_INVALID, "LIST with data answered with %#x" % rtype)
    lw.option("LIST with data")
    # ... and the connection still works
    if args.mode == "structured":
        c.opt_structured()
    check(c.opt_go() == REP_ACK, "GO after invalid options failed")
    c.close()


def case_unknown_export(args, lw):
    """GO with an unknown name: ERR_UNKNOWN and go on; EXPORT_NAME: close."""
    c = Conn(args)
    c.hello()
    check(c.opt_go(name="no-such-export") == REP_ERR_UNKNOWN,
          "GO for an unknown export did not get NBD_REP_ERR_UNKNOWN")
    lw.option("GO for an unknown export")
    check(c.opt_go(opt=OPT_INFO, name="no-such-export") == REP_ERR_UNKNOWN,
          "INFO for an unknown export did not get NBD_REP_ERR_UNKNOWN")
    lw.option("INFO for an unknown export")
    check(c.opt_go() == REP_ACK, "GO after an unknown export failed")
    c.close()
    c = Conn(args)
    c.hello()
    c.send_opt(OPT_EXPORT_NAME, b"no-such-export")
    c.expect_close("EXPORT_NAME of an unknown export")
    c.close()
    lw.option("EXPORT_NAME of an unknown export")


def case_block_size_required(args, lw):
    """An export with blocks over 512 bytes: INFO and GO that do not ask
    for block sizes get them and then ERR_BLOCK_SIZE_REQD; GO that asks
    enters transmission (exports of 512-byte blocks take both)."""
    c = Conn(args)
    c.hello()
    for opt in (OPT_GO, OPT_INFO):
        c.min_block = None
        rtype = c.opt_go(opt=opt, infos=())
        check(c.min_block is not None,
              "option %d without block size request: no INFO_BLOCK_SIZE" % opt)
        if c.min_block > 512:
            check(rtype == REP_ERR_BLOCK_SIZE_REQD,
                  "option %d without block size request on a %d-byte export: %#x"
                  % (opt, c.min_block, rtype))
            lw.option("option %d without block size request" % opt)
        else:
            check(rtype == REP_ACK, "option %d without block size request: %#x"
                  % (opt, rtype))
            if opt == OPT_GO:
                c.close()
                c = Conn(args)
                c.hello()
    c.close()
    c = Conn(args).connect_export()
    err, _ = c.read(0, c.min_block)
    check(err == 0, "read after negotiating block sizes failed with %d" % err)
    c.close()


def case_meta_context(args, lw):
    """SET_META_CONTEXT before STRUCTURED_REPLY: ERR_INVALID (simple
    mode); an unknown namespace is simply not selected, a truncated request
    is invalid (structured mode); BLOCK_STATUS without a context: EINVAL."""
    c = Conn(args)
    c.hello()
    name = args.export.encode()
    query = b"base:allocation"
    data = (struct.pack(">I", len(name)) + name + struct.pack(">I", 1) +
            struct.pack(">I", len(query)) + query)
    if args.mode == "simple":
        c.send_opt(OPT_SET_META_CONTEXT, data)
        _, rtype, _ = c.opt_reply()
        check(rtype == REP_ERR_INVALID,
              "SET_META_CONTEXT without structured replies got %#x" % rtype)
        lw.option("SET_META_CONTEXT before STRUCTURED_REPLY")
    else:
        c.opt_structured()
        q = b"nosuchns:thing"
        bad = (struct.pack(">I", len(name)) + name + struct.pack(">I", 1) +
               struct.pack(">I", len(q)) + q)
        c.send_opt(OPT_SET_META_CONTEXT, bad)
        _, rtype, _ = c.opt_reply()
        check(rtype == REP_ACK, "unknown meta context namespace got %#x" % rtype)
        # the count overruns the data: invalid
        c.send_opt(OPT_SET_META_CONTEXT, data[:-4])
        _, rtype, _ = c.opt_reply()
        check(rtype == REP_ERR_INVALID,
              "truncated SET_META_CONTEXT answered with %#x" % rtype)
        lw.option("truncated SET_META_CONTEXT")
    check(c.opt_go() == REP_ACK, "GO after meta context errors failed")
    err = c.simple_cmd(CMD_BLOCK_STATUS, 0, 4096)
    check(err == EINVAL, "BLOCK_STATUS without a context: error %d" % err)
    lw.rejected("BLOCK_STATUS without a context", "BLOCK_STATUS")
    c.close()


def case_abort_and_vanish(args, lw):
    """ABORT gets an ACK (or a close); clients vanishing in the handshake."""
    c = Conn(args)
    c.hello()
    c.send_opt(OPT_ABORT)
    try:
        _, rtype, _ = c.opt_reply()
        check(rtype == REP_ACK, "ABORT answered with %#x" % rtype)
    except Closed:
        pass
    c.expect_close("ABORT")
    c.close()
    Conn(args).close()				# connect and go
    lw.gone("client gone before the greeting")
    c = Conn(args)
    c.recv_exact(18)
    c.reset()					# reset after the greeting
    lw.gone("client reset after the greeting")
    c = Conn(args)
    c.hello()
    c.send(struct.pack(">QI", IHAVEOPT, OPT_GO))	# half a header
    c.close()
    lw.gone("client gone in an option header")
    c = Conn(args)
    c.hello()
    c.send_opt(OPT_GO, length=64)
    c.send(b"\0" * 10)				# half the option data
    c.reset()
    lw.gone("client reset in option data")


# ---- transmission-phase cases ----

def case_unknown_command(args, lw):
    """Unknown command and unknown flag: EINVAL, connection usable."""
    c = Conn(args).connect_export()
    check(c.simple_cmd(99, 0, 4096) == EINVAL, "unknown command not EINVAL")
    lw.rejected("unknown command", r"(99|unknown)")
    check(c.simple_cmd(CMD_FLUSH, 0, 0, flags=1 << 9) == EINVAL,
          "unknown command flag not EINVAL")
    lw.rejected("FLUSH with an unknown flag", "FLUSH")
    err, _ = c.read(0, 4096, flags=1 << 12)
    check(err == EINVAL, "READ with an unknown flag: %d, not EINVAL" % err)
    lw.rejected("READ with an unknown flag", "READ")
    if args.mode == "simple":
        err, _ = c.read(0, 4096, flags=CMD_FLAG_DF)
        check(err == EINVAL, "DF without structured replies: %d" % err)
        lw.rejected("DF without structured replies", "READ")
    err, _ = c.read(0, 4096)
    check(err == 0, "read after unknown command failed with %d" % err)
    c.close()


def case_read_out_of_range(args, lw):
    """Reads, trims, caches past the end: EINVAL."""
    c = Conn(args).connect_export()
    bs = c.min_block
    for off, ln in ((c.size, bs), (c.size - bs, 2 * bs), (c.size + (1 << 40), bs)):
        err, _ = c.read(off, ln)
        check(err == EINVAL, "read %d+%d past the end: %d" % (off, ln, err))
        lw.rejected("read past the end", "READ")
        err = c.simple_cmd(CMD_TRIM, off, ln)
        check(err == EINVAL, "trim %d+%d past the end: %d" % (off, ln, err))
        lw.rejected("trim past the end", "TRIM")
        err = c.simple_cmd(CMD_CACHE, off, ln)
        check(err == EINVAL, "cache %d+%d past the end: %d" % (off, ln, err))
        lw.rejected("cache past the end", "CACHE")
    err, _ = c.read(c.size - bs, bs)
    check(err == 0, "read of the last block failed with %d" % err)
    c.close()


def case_write_out_of_range(args, lw):
    """Writes and write-zeroes past the end: ENOSPC, payload drained."""
    c = Conn(args).connect_export()
    bs = c.min_block
    for off, ln in ((c.size, bs), (c.size - bs, 2 * bs)):
        err = c.write(off, b"\xee" * ln)
        check(err == ENOSPC, "write %d+%d past the end: %d" % (off, ln, err))
        lw.rejected("write past the end", "WRITE")
        err = c.simple_cmd(CMD_WRITE_ZEROES, off, ln)
        check(err == ENOSPC, "zero %d+%d past the end: %d" % (off, ln, err))
        lw.rejected("write-zeroes past the end", "(WRITE_ZEROES|zero)")
    # the stream is still in sync: a write and read at the end work
    data = random.randbytes(bs)
    check(c.write(c.size - bs, data) == 0, "write of the last block failed")
    err, back = c.read(c.size - bs, bs)
    check(err == 0 and back == data, "last block read back wrong")
    c.close()


def case_wrap_around(args, lw):
    """offset + length wrapping past 2^64: EINVAL/ENOSPC, never success."""
    c = Conn(args).connect_export()
    bs = c.min_block
    off = (1 << 64) - bs
    err, _ = c.read(off, 2 * bs)
    check(err == EINVAL, "wrapping read: %d" % err)
    lw.rejected("wrapping read", "READ")
    err = c.write(off, b"\x55" * (2 * bs))
    check(err in (ENOSPC, EINVAL, EOVERFLOW), "wrapping write: %d" % err)
    lw.rejected("wrapping write", "WRITE")
    err = c.simple_cmd(CMD_TRIM, off, 2 * bs)
    check(err in (EINVAL, ENOSPC), "wrapping trim: %d" % err)
    lw.rejected("wrapping trim", "TRIM")
    err = c.simple_cmd(CMD_WRITE_ZEROES, off, 2 * bs)
    check(err in (ENOSPC, EINVAL), "wrapping write-zeroes: %d" % err)
    lw.rejected("wrapping write-zeroes", "(WRITE_ZEROES|zero)")
    err, _ = c.read(0, bs)
    check(err == 0, "read after wrapping requests failed with %d" % err)
    c.close()


def case_misaligned(args, lw):
    """Requests not aligned to the advertised minimum block: EINVAL."""
    c = Conn(args).connect_export()
    bs = c.min_block
    err, _ = c.read(1, bs)
    check(err == EINVAL, "read at offset 1: %d" % err)
    lw.rejected("misaligned read offset", "READ")
    err, _ = c.read(0, bs - 1 if bs > 1 else 3)
    check(err == EINVAL, "read of %d bytes: %d" % (bs - 1, err))
    lw.rejected("misaligned read length", "READ")
    err = c.write(bs // 2 if bs > 1 else 1, b"\x11" * bs)
    check(err == EINVAL, "misaligned write: %d" % err)
    lw.rejected("misaligned write", "WRITE")
    err = c.simple_cmd(CMD_TRIM, 1, bs)
    check(err == EINVAL, "misaligned trim: %d" % err)
    lw.rejected("misaligned trim", "TRIM")
    data = random.randbytes(bs)
    check(c.write(0, data) == 0, "aligned write after misaligned failed")
    err, back = c.read(0, bs)
    check(err == 0 and back == data, "aligned read back after misaligned wrong")
    c.close()


def case_zero_length(args, lw):
    """Zero-length requests must not disconnect; BLOCK_STATUS of length 0
    is EINVAL (structured mode)."""
    c = Conn(args).connect_export()
    # any answer will do (the spec leaves it open), as long as it comes
    c.read(0, 0)
    c.write(0, b"")
    c.simple_cmd(CMD_TRIM, 0, 0)
    c.simple_cmd(CMD_WRITE_ZEROES, 0, 0)
    err, _ = c.read(0, 4096)
    check(err == 0, "read after zero-length requests failed with %d" % err)
    c.close()
    if args.mode != "structured":
        return
    # BLOCK_STATUS of length 0: its reply could describe nothing, and a
    # BLOCK_STATUS chunk must carry a descriptor: EINVAL (error chunk).
    c = Conn(args)
    c.hello()
    c.opt_structured()
    c.opt_meta_allocation()
    check(c.opt_go() == REP_ACK, "GO after SET_META_CONTEXT failed")
    for flags in (0, CMD_FLAG_REQ_ONE):
        err = c.simple_cmd(CMD_BLOCK_STATUS, 4096, 0, flags=flags)
        check(err == EINVAL, "BLOCK_STATUS of length 0 (flags %d): error %d"
              % (flags, err))
        lw.rejected("BLOCK_STATUS of length 0", "BLOCK_STATUS")
    cookie = c.request(CMD_BLOCK_STATUS, 0, 8192)
    got, err, data = c.reply()
    check(got == cookie and err == 0 and data is not None,
          "BLOCK_STATUS after the zero-length ones: error %d" % err)
    c.close()


def case_oversize_payload(args, lw):
    """Payload over 32 MiB: an error (payload drained) or a clean close."""
    c = Conn(args).connect_export()
    ln = MAX_PAYLOAD + 4096
    cookie = c.request(CMD_WRITE, 0, ln)

    def sender():
        try:
            c.sock.sendall(b"\x77" * ln)
        except OSError:
            pass
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    usable = True
    try:
        got, err, _ = c.reply()
        check(got == cookie and err in (EINVAL, EOVERFLOW, ENOMEM, ENOSPC),
              "over-size write answered with error %d" % err)
    except Closed:
        usable = False
    t.join(TIMEOUT)
    check(not t.is_alive(), "server neither read nor refused the payload")
    if usable:
        try:
            err, _ = c.read(0, 4096)
            check(err == 0, "read after over-size write failed with %d" % err)
        except Closed:
            pass		# closing after the error reply is allowed too
    c.close()
    lw.rejected("32 MiB + 4 KiB write", "WRITE")
    # an over-size READ: an error reply or a close
    c = Conn(args).connect_export()
    try:
        err, _ = c.read(0, 2 * MAX_PAYLOAD)
        check(err in (EINVAL, EOVERFLOW, ENOMEM),
              "over-size read answered with error %d" % err)
    except Closed:
        pass
    c.close()
    lw.rejected("64 MiB read", "READ")
    # a 4 GiB length with no payload: error, close or waiting are fine
    c = Conn(args).connect_export()
    c.request(CMD_WRITE, 0, 0xFFFFF000)
    c.sock.settimeout(2)
    try:
        c.reply()
    except (Closed, socket.timeout):
        pass
    c.close()
    lw.rejected("4 GiB write", "WRITE")


def case_vanish_mid_payload(args, lw):
    """Client gone halfway through a write payload (close and reset)."""
    for how in ("close", "reset"):
        c = Conn(args).connect_export()
        c.request(CMD_WRITE, 0, 16 << 20)
        c.send(b"\x33" * (1 << 20))
        if how == "close":
            c.close()
        else:
            c.reset()
        lw.gone("client %s in a WRITE payload" % how)


def case_reset_during_reads(args, lw):
    """Many 32 MiB reads in flight, then a reset: the server must cope."""
    for rnd in range(4):
        c = Conn(args).connect_export()
        ln = min(MAX_PAYLOAD, c.size)
        ln -= ln % c.min_block
        for _ in range(16):
            c.request(CMD_READ, 0, ln)
        if rnd % 2:
            c.recv_exact(1 << 16)	# let some reply data flow first
        else:
            time.sleep(0.05)
        c.reset()
        lw.gone("client reset with 16 x 32 MiB reads in flight")


def case_rejection_flood(args, lw):
    """5000 bad requests on one connection (more headers than one receive
    holds): each gets its EINVAL, but the log gets the first 10 lines, then
    one per 1000 with the count, and the total in the close line."""
    c = Conn(args).connect_export()
    total, batch = 5000, 500
    before = lw.count(r"rejected")
    for i in range(0, total, batch):
        cookies = [c.request(CMD_READ, 1, c.min_block) for _ in range(batch)]
        for cookie in cookies:
            got, err, _ = c.reply()
            check(got == cookie and err == EINVAL,
                  "misaligned read %d: error %d" % (i, err))
    err, _ = c.read(0, c.min_block)
    check(err == 0, "read after 5000 rejected ones failed with %d" % err)
    c.request(CMD_DISC, 0, 0)
    c.expect_close("DISC after the rejected requests")
    c.close()
    lw.expect("5000th rejection", r"rejected \S*READ .*\b5000 rejected on this connection")
    lw.expect("close line", r"closed:.*\b5001 requests, 5000 rejected")
    lines = lw.count(r"rejected") - before
    # 10 + one per 1000 (1000..5000) + the close line
    check(lines <= 10 + 5 + 1, "%d log lines about 5000 rejected requests"
          % lines)


def greedy_client(args, n, ln=MAX_PAYLOAD):
    """A client that sends n READs of ln bytes (32 MiB) and never reads the
    replies."""
    c = Conn(args).connect_export()
    ln = min(ln, c.size)
    ln -= ln % c.min_block
    stream = b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ,
                                  c.next_cookie + i, (i % 2) * (c.size - ln), ln)
                      for i in range(n))
    c.next_cookie += n
    c.sock.sendall(stream)
    return c


def case_greedy_reads(args, lw):
    """Clients that pipeline 32 MiB READs and never read the replies may
    not run the daemon out of memory (a connection holds at most 64 MiB of
    buffers, all of them at most 256 MiB outside the pool: VmRSS stays under
    512 MiB).  Meanwhile a second client keeps working, a DISC queued behind
    stalled READs is honoured after their replies, a client that reads its
    replies gets them all once the greedy ones go, and the daemon lets go of
    every greedy connection when it closes or resets."""
    wait_clients(args, 0, "before the greedy clients")
    greedy = [greedy_client(args, 24)]		# 768 MiB of READs
    peak = peak_rss_mib(args.pid, 1.5)
    check(peak < RSS_LIMIT_MIB, "VmRSS %d MiB with one client hoarding "
          "24 x 32 MiB READs" % peak)
    good_client(args, "greedy-one")
    # A DISC behind READs that wait for their turn: replies, then the close.
    c = Conn(args).connect_export()
    ln = min(MAX_PAYLOAD, c.size)
    ln -= ln % c.min_block
    cookies = [c.request(CMD_READ, 0, ln) for _ in range(4)]
    c.request(CMD_DISC, 0, 0)
    del c.pending[c.next_cookie - 1]
    time.sleep(0.3)
    for _ in cookies:
        got, err, data = c.reply()
        check(err == 0 and len(data) == ln,
              "READ before a DISC: error %d, %d bytes" % (err, len(data or b"")))
    c.expect_close("DISC after stalled READs")
    c.close()
    # Ten more: 640 MiB of buffers without the daemon-wide limit.
    greedy += [greedy_client(args, 4) for _ in range(10)]
    peak = max(peak, peak_rss_mib(args.pid, 2.0))
    check(peak < RSS_LIMIT_MIB, "VmRSS %d MiB with eleven clients hoarding "
          "32 MiB READs" % peak)
    good_client(args, "greedy-many")
    # This one reads its replies; its buffers may have to wait for memory.
    patient = Conn(args).connect_export()
    cookies = [patient.request(CMD_READ, 0, ln) for _ in range(3)]
    time.sleep(0.3)
    for i, g in enumerate(greedy):
        if i % 2:
            g.reset()
        else:
            g.close()
    for _ in cookies:
        got, err, data = patient.reply()
        check(err == 0 and len(data) == ln,
              "patient READ: error %d, %d bytes" % (err, len(data or b"")))
    patient.request(CMD_DISC, 0, 0)
    patient.expect_close("patient client DISC")
    patient.close()
    lw.gone("greedy clients gone")
    wait_clients(args, 0, "after the greedy clients left")
    print("     greedy-reads: peak VmRSS %d MiB" % peak, flush=True)


def case_hoarded_writes(args, lw):
    """WRITEs pipelined behind a 32 MiB READ whose reply the client leaves
    unread for a while: their replies queue behind it, so the connection
    reaches its limits (2000 x 4 KiB: 256 requests in flight, stalling
    amid payloads received ahead; 96 x 1 MiB: 64 MiB of buffers) and stops
    reading.  Once
    the client reads, every request is answered and the data reads back:
    the stream stayed in sync across the stalls."""
    c = Conn(args).connect_export()
    rlen = min(MAX_PAYLOAD, c.size)
    rlen -= rlen % c.min_block
    for size, count, span in ((4 << 10, 2000, 1000), (1 << 20, 96, 48)):
        check(span * size <= c.size, "export too small for %d x %d" % (span, size))
        blocks = [random.randbytes(size) for _ in range(count)]
        cookies = [c.next_cookie + i for i in range(count + 1)]
        c.next_cookie += count + 1
        c.pending[cookies[0]] = (CMD_READ, c.size - rlen, rlen)
        stream = bytearray(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ,
                                       cookies[0], c.size - rlen, rlen))
        for i, data in enumerate(blocks):
            off = (i % span) * size
            c.pending[cookies[i + 1]] = (CMD_WRITE, off, size)
            stream += struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE,
                                  cookies[i + 1], off, size) + data

        def sender():
            try:
                c.sock.sendall(bytes(stream))
            except OSError:
                pass
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        time.sleep(0.5)			# the daemon fills up and stalls
        seen = set()
        for _ in cookies:
            got, err, data = c.reply()
            check(err == 0, "request %d of the %d-byte round failed with %d"
                  % (got, size, err))
            check(got != cookies[0] or len(data) == rlen, "short READ reply")
            seen.add(got)
        check(seen == set(cookies), "replies missing for pipelined writes")
        t.join(TIMEOUT)
        check(not t.is_alive(), "the daemon stopped reading the writes")
        for j in range(span):
            err, back = c.read(j * size, size)
            want = blocks[j + span * ((count - 1 - j) // span)]
            check(err == 0 and back == want,
                  "block %d of %d bytes reads back wrong" % (j, size))
    c.close()


def case_starved_pool(args, lw):
    """Clients that stop reading hold every buffer they can: five pipeline
    32 MiB READs (the 256 MiB allowed outside the pool, and one waits for
    memory), eight pipeline 4096 READs of 4 KiB (the 4 KiB class, and the
    larger classes as far as small requests may take them).  A new
    client's 4 KiB WRITE and READ are still answered within 3 s each.
    With --stuck-limit S (the daemon's BLKMIRROR_TEST_SEND_STUCK_S) the
    daemon shuts the hoarders down within S + 5 s, as someone waits for
    memory.  Once they are gone, at most 1024 request structs are kept."""
    wait_clients(args, 0, "before the hoarders")
    hoard = [greedy_client(args, 4) for _ in range(5)]
    hoard += [greedy_client(args, 4096, 4096) for _ in range(8)]
    time.sleep(1.0)
    c = Conn(args).connect_export()
    try:
        bs = max(c.min_block, 4096)
        data = random.randbytes(bs)
        c.sock.settimeout(3.0)
        try:
            err = c.write(7 * bs, data)
            check(err == 0, "4 KiB WRITE beside the hoarders: error %d" % err)
            err, back = c.read(7 * bs, bs)
        except socket.timeout:
            raise CaseFailed("a new client's 4 KiB request got no answer within "
                             "3 s while hoarders hold the buffers")
        check(err == 0 and back == data, "4 KiB READ beside the hoarders: "
              "error %d or wrong data" % err)
        if args.stuck_limit:
            lw.expect("hoarders cut", r"replies not read for \d+ s",
                      timeout=args.stuck_limit + 5)
    finally:
        c.close()
        for h in hoard:
            h.reset()
    wait_clients(args, 0, "after the hoarders", timeout=20)
    # Their ~2000 request structs are not all kept for reuse.
    st = ctl_status(args)
    check(st is None or st["nbd_requests_cached"] <= 1024,
          "%d request structs cached after the hoarders left"
          % st["nbd_requests_cached"])


def read_beside_holders(args, lw, what, cut_line, most):
    """The holders (clients holding every buffer outside the pool, made by
    the caller) are in place: a new client's 32 MiB READ waits for memory,
    is answered within --stuck-limit + 10 s (holders shut down: cut_line in
    the log), and afterwards the daemon holds at most `most` connections."""
    c = Conn(args).connect_export()
    try:
        ln = min(MAX_PAYLOAD, c.size)
        ln -= ln % c.min_block
        c.sock.settimeout(args.stuck_limit + 10)
        try:
            err, data = c.read(0, ln)
        except socket.timeout:
            raise CaseFailed("a %d-byte READ waiting for the memory that %s hold "
                             "got no answer within %d s"
                             % (ln, what, args.stuck_limit + 10))
        check(err == 0 and len(data) == ln, "READ beside the %s: error %d, "
              "%d bytes" % (what, err, len(data or b"")))
        lw.expect(what + " cut", cut_line)
        wait_clients(args, most, what + " shut down", timeout=5)
    finally:
        c.close()


def case_closing_hoarders(args, lw):
    """Four clients each send two 32 MiB READs and NBD_CMD_DISC, then read
    nothing: each connection is closing (it takes no more requests) with
    its 64 MiB of replies stuck in its send, and together they hold the
    256 MiB allowed outside the pool.  A new client's 32 MiB READ waits for
    memory; with --stuck-limit S closing connections are shut down within
    S + 5 s (their buffers freed although their clients keep the sockets
    open; as many as it takes) and the READ is answered."""
    if not args.stuck_limit:
        print("     closing-hoarders: needs --stuck-limit", flush=True)
        return
    wait_clients(args, 0, "before the closing hoarders")
    hoard = []
    try:
        for _ in range(4):
            h = greedy_client(args, 2)
            h.request(CMD_DISC, 0, 0)
            del h.pending[h.next_cookie - 1]
            hoard.append(h)
        time.sleep(1.0)
        read_beside_holders(args, lw, "closing hoarders",
                            r"replies not read for \d+ s", 4)
    finally:
        for h in hoard:
            h.reset()
    wait_clients(args, 0, "after the closing hoarders", timeout=20)


def case_stalled_payloads(args, lw):
    """Eight clients each send the header of a 32 MiB WRITE and 4 KiB of its
    payload, then nothing more while keeping their sockets open (a client
    that stopped, or whose host died): the buffers waiting for those
    payloads hold the 256 MiB allowed outside the pool.  A new client's
    32 MiB READ waits for memory; with --stuck-limit S stalled connections
    are shut down within S + 5 s (as many as it takes: at most 8 of the 9
    connections stay) and the READ is answered."""
    if not args.stuck_limit:
        print("     stalled-payloads: needs --stuck-limit", flush=True)
        return
    wait_clients(args, 0, "before the stalled payloads")
    stalled = []
    try:
        for _ in range(8):
            h = Conn(args).connect_export()
            ln = min(MAX_PAYLOAD, h.size)
            ln -= ln % h.min_block
            h.sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE,
                                       h.next_cookie, 0, ln) + bytes(4096))
            stalled.append(h)
            time.sleep(0.2)
        read_beside_holders(args, lw, "stalled payloads",
                            r"no byte of a WRITE payload", 8)
    finally:
        for h in stalled:
            h.reset()
    wait_clients(args, 0, "after the stalled payloads", timeout=20)


def case_dead_while_stuck(args, lw):
    """A connection that dies (bad magic) while its replies are stuck in a
    send (the client reads nothing) is let go at once, with its buffers,
    not when the client finally reads or closes."""
    wait_clients(args, 0, "before the stuck client")
    c = Conn(args).connect_export()
    for i in range(40):
        c.request(CMD_READ, (i % 8) << 20, 1 << 20)
    time.sleep(1.0)			# the replies fill the socket buffers
    c.request(CMD_READ, 0, 4096, magic=0xDEADBEEF)
    lw.expect("bad magic while replies are stuck", r"magic")
    try:
        wait_clients(args, 0, "connection dead with its send stuck")
    finally:
        c.close()


def case_disc_in_flight(args, lw):
    """DISC after reads: their replies come, then the server closes."""
    c = Conn(args).connect_export()
    cookies = [c.request(CMD_READ, i * 65536, 65536) for i in range(8)]
    c.request(CMD_DISC, 0, 0)
    del c.pending[c.next_cookie - 1]
    seen = set()
    for _ in cookies:
        got, err, _ = c.reply()
        check(err == 0, "read before DISC failed with %d" % err)
        seen.add(got)
    check(seen == set(cookies), "missing replies before DISC")
    c.expect_close("DISC")
    c.close()


def case_many_idle(args, lw):
    """300 idle connections (in every phase) while a second client works."""
    conns = []
    try:
        for i in range(300):
            c = Conn(args)
            if i % 3 == 1:
                c.hello()
            elif i % 3 == 2:
                c.connect_export()
            conns.append(c)
        t0 = time.monotonic()
        good_client(args, "idle")
        dt = time.monotonic() - t0
        check(dt < 10, "good client took %.1f s with 300 idle clients" % dt)
    finally:
        for c in conns:
            c.close()


CASES = [
    ("bad-option-magic", case_bad_option_magic),
    ("bad-request-magic", case_bad_request_magic),
    ("unknown-client-flags", case_unknown_client_flags),
    ("oversize-option", case_oversize_option),
    ("too-many-options", case_too_many_options),
    ("unknown-option", case_unknown_option),
    ("bad-option-data", case_bad_option_data),
    ("unknown-export", case_unknown_export),
    ("block-size-required", case_block_size_required),
    ("meta-context", case_meta_context),
    ("abort-and-vanish", case_abort_and_vanish),
    ("unknown-command", case_unknown_command),
    ("read-out-of-range", case_read_out_of_range),
    ("write-out-of-range", case_write_out_of_range),
    ("wrap-around", case_wrap_around),
    ("misaligned", case_misaligned),
    ("zero-length", case_zero_length),
    ("oversize-payload", case_oversize_payload),
    ("vanish-mid-payload", case_vanish_mid_payload),
    ("reset-during-reads", case_reset_during_reads),
    ("rejection-flood", case_rejection_flood),
    ("disc-in-flight", case_disc_in_flight),
    ("greedy-reads", case_greedy_reads),
    ("hoarded-writes", case_hoarded_writes),
    ("starved-pool", case_starved_pool),
    ("closing-hoarders", case_closing_hoarders),
    ("stalled-payloads", case_stalled_payloads),
    ("dead-while-stuck", case_dead_while_stuck),
    ("many-idle", case_many_idle),
]


def run_case(args, name, fn):
    """One case (which checks its log lines), then the liveness and
    good-client checks."""
    fn(args, LogWatch(args.log))
    check(daemon_alive(args.pid), "daemon died")
    good_client(args, name)
    check(daemon_alive(args.pid), "daemon died")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--unix", help="server UNIX socket")
    p.add_argument("--tcp", help="server TCP HOST:PORT (instead of --unix)")
    p.add_argument("--export", default="r0")
    p.add_argument("--pid", type=int, help="server process id")
    p.add_argument("--log", help="server log file")
    p.add_argument("--ctl", help="server control socket (status checks)")
    p.add_argument("--mode", choices=("structured", "simple"),
                   default="structured")
    p.add_argument("--stuck-limit", type=int, default=0,
                   help="the daemon's BLKMIRROR_TEST_SEND_STUCK_S (0: unset)")
    p.add_argument("--case", action="append", help="run only these cases")
    p.add_argument("--list", action="store_true", help="list the cases")
    args = p.parse_args()
    if args.list:
        print("\n".join(n for n, _ in CASES))
        return 0
    if not ((args.unix or args.tcp) and args.pid and args.log):
        p.error("--unix or --tcp, --pid and --log are required")
    transport = "tcp" if args.tcp else "unix"
    random.seed(os.getpid())
    failed = 0
    for name, fn in CASES:
        if args.case and name not in args.case:
            continue
        t0 = time.monotonic()
        try:
            run_case(args, name, fn)
            print("ok   %-22s %-10s %-4s %.2fs" % (
                name, args.mode, transport, time.monotonic() - t0), flush=True)
        except (CaseFailed, Closed, OSError) as e:
            failed += 1
            print("FAIL %-22s %-10s %-4s %s: %s" % (
                name, args.mode, transport, type(e).__name__, e), flush=True)
        if not daemon_alive(args.pid):
            print("FAIL the daemon is dead; stopping", flush=True)
            return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
