#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""An authenticated replication peer that misbehaves (tests/integration/repl-evil-peer.sh).

  repl_evil_peer.py --connect HOST:PORT --secret FILE --resource NAME
                    --node NAME --ctl SOCK --nbd SOCK --scenario NAME

Plays the configured peer of one blkmirrord: connects its data (PORT) and
meta (PORT + 1) connections, runs the real handshake (HELLO, HMAC
challenge and response, AUTH_RESULT) with the daemon's own volume UUID,
size and settings, answers PINGs, and -- unless the scenario says
otherwise -- answers the daemon's STATE with a secondary's STATE that
makes the UUID decision "same generation" (or, when the daemon wrote
alone, "sync source, bitmap": the resync then waits for our BITMAP, which
never comes).  Then it breaks the protocol as SCENARIO says:

  flush-ack-for-write  a client WRITE is shipped; FLUSH_ACK for its seq
  bad-status           a client WRITE is shipped; WRITE_ACK for its seq
                       with status 0x80000000 (not an errno)
  verify-flood         seventeen VERIFY_REQUESTs of 4 MiB at once (68 MiB)
  ack-unsent           (run with small socket buffers on the daemon's
                       side) a 1 MiB WRITE blocks the data connection,
                       a second client's 4 KiB WRITE waits in the
                       daemon's queue; WRITE_ACK for that second one
  data-no-state        (the daemon is secondary) DATA before any STATE
  source-claim         (the daemon is an uptodate primary, in sync) a
                       second STATE announcing a resync from us into it
  state-epoch          a STATE whose epoch is not its frame's
  ack-on-data          WRITE_ACK on the data connection
  ping-flood           never reads the meta connection (a small receive
                       buffer) and sends a million PINGs on it: the
                       daemon's PING_ACKs pile up; prints "closed" once
                       the daemon closed the data connection
  data-flood           (the daemon is secondary, its disk stalled) plays
                       a primary that sends 300 DATA frames of 1 MiB (at 8
                       MiB + i % 48 MiB) as fast as TCP takes them; prints
                       "blocked: N MiB" once sending makes no progress for
                       3 s, waits for --go (a file), then sends the rest and
                       prints "sent: N MiB" (exit 0 when it was blocked)

It prints what happened: "disconnect: REASON TEXT" when the daemon sent
DISCONNECT, "closed" when it closed without one, and for the scenarios
with a client write "write: ERR" (the NBD reply's error).  Exit status 0
when the daemon took the link down within 10 s, 1 otherwise.
"""

import argparse
import hashlib
import hmac
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from repl_tool import Nbd, frame_header, recv_exact, status  # noqa: E402

HELLO, CHALLENGE, RESPONSE, RESULT, REJECT, STATE = 1, 2, 3, 4, 5, 6
BITMAP, DATA, FLUSH_ACK, WRITE_ACK, PING, PING_ACK = 7, 8, 14, 13, 15, 16
VERIFY_REQUEST, DISCONNECT = 21, 25
CONN_DATA, CONN_META = 1, 2
NBD_CMD_WRITE = 1


class Frame:
    def __init__(self, mtype, epoch, body):
        self.type, self.epoch, self.body = mtype, epoch, body


def read_frame(s):
    head = recv_exact(s, 32)
    magic, _ver, mtype, _flags, length, epoch, _res, _check = struct.unpack(
        ">IHHIIQII", head)
    if magic != 0x424D5250:
        raise ConnectionError("bad frame magic %#x" % magic)
    return Frame(mtype, epoch, recv_exact(s, length) if length else b"")


def text_of(body):
    reason = struct.unpack(">I", body[:4])[0]
    return reason, body[8:].split(b"\0", 1)[0].decode(errors="replace")


class Peer:
    def __init__(self, a):
        self.a = a
        host, port = a.connect.rsplit(":", 1)
        self.host, self.port = host, int(port)
        with open(a.secret, "rb") as f:
            key = f.read()
        self.key = key[:-1] if key.endswith(b"\n") else key
        self.nonce = struct.unpack(">Q", os.urandom(8))[0]
        self.epoch = 0
        self.hello = None
        self.state = None
        self.down = threading.Event()
        self.result = "no disconnect"
        self.lock = threading.Lock()

    def handshake(self, kind, rcvbuf=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(20)
        s.connect((self.host, self.port + (0 if kind == CONN_DATA else 1)))
        f = read_frame(s)
        if f.type != HELLO:
            raise ConnectionError("expected HELLO, got type %d" % f.type)
        self.epoch = f.epoch
        h = f.body
        self.hello = h
        challenge = read_frame(s)
        if challenge.type != CHALLENGE:
            raise ConnectionError("expected AUTH_CHALLENGE, got %d" % challenge.type)
        (vmin, vmax, _conn, mode, _feat, bsize, size, gran, node_id, _nonce,
         cur) = struct.unpack(">HHHHIIQIIQQ", h[:48])
        vol = h[48:64]
        mine = struct.pack(">HHHHIIQIIQQ", 1, 1, kind, mode, 0, bsize, size, gran,
                           node_id ^ 1, self.nonce, cur) + vol
        mine += self.a.resource.encode().ljust(64, b"\0")
        mine += self.a.node.encode().ljust(64, b"\0")
        my_nonce = os.urandom(32)
        label = b"blkmirror-auth-v1" + self.a.resource.encode().ljust(64, b"\0") + \
            self.a.node.encode().ljust(64, b"\0")
        mac = hmac.new(self.key, label + challenge.body + my_nonce, hashlib.sha256).digest()
        s.sendall(self.frame(HELLO, mine) + self.frame(CHALLENGE, my_nonce) +
                  self.frame(RESPONSE, mac))
        f = read_frame(s)
        if f.type == REJECT:
            raise ConnectionError("rejected: %s" % (text_of(f.body),))
        if f.type != RESPONSE:
            raise ConnectionError("expected AUTH_RESPONSE, got %d" % f.type)
        s.sendall(self.frame(RESULT, struct.pack(">IHH", 0, 1, 0)))
        f = read_frame(s)
        if f.type != RESULT or struct.unpack(">I", f.body[:4])[0] != 0:
            raise ConnectionError("authentication refused (type %d)" % f.type)
        s.settimeout(None)
        return s

    def frame(self, mtype, body):
        return frame_header(mtype, len(body), epoch=self.epoch) + body

    def meta_loop(self):
        """Answer PINGs; note the daemon's DISCONNECT or close."""
        try:
            while True:
                f = read_frame(self.meta)
                if f.type == PING:
                    with self.lock:
                        self.meta.sendall(self.frame(PING_ACK, f.body))
                elif f.type == DISCONNECT:
                    self.result = "disconnect: %d %s" % text_of(f.body)
                    self.down.set()
                    return
        except (ConnectionError, OSError):
            if not self.down.is_set():
                self.result = "closed"
            self.down.set()

    def send_meta(self, mtype, body):
        with self.lock:
            self.meta.sendall(self.frame(mtype, body))

    def data_until(self, want, limit=20.0):
        """Read data frames until one of type want; return it."""
        self.data.settimeout(limit)
        while True:
            f = read_frame(self.data)
            if f.type == want:
                return f

    def answer_state(self, repl=0, epoch_skew=0, role=0):
        """Read the daemon's STATE; answer as a secondary of its generation
        (repl: the replication state we claim; epoch_skew: added to the
        epoch inside the STATE, not to the frame's)."""
        st = self.state or self.data_until(STATE).body
        self.state = st
        (_role, _disk, _repl, _flags, _mdf, _r, epoch, cur, bm) = struct.unpack(
            ">IIIIIIQQQ", st[:48])
        hist = st[48:80]
        # A peer that missed what the daemon wrote alone holds the
        # daemon's bitmap UUID as its current one (rule 70), else the same
        # generation (rule 44).
        mine = struct.pack(">IIIIIIQQQ", role, 4, repl, 0, 0x3, 0, epoch + epoch_skew,
                           bm or cur, 0)
        self.data.sendall(self.frame(STATE, mine + hist + struct.pack(">Q", 0)))

    def wait_linked(self, limit=20.0):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if status(self.a.ctl)["replication"] not in ("connecting", "off"):
                return
            time.sleep(0.1)
        raise TimeoutError("the daemon did not decide on our STATE")


def ping_flood(p):
    """See ping-flood above."""
    p.answer_state()
    ping = p.frame(PING, struct.pack(">QQ", 1, 2))
    batch = ping * 4096

    def sender():
        try:
            for _ in range(1000000 // 4096 + 1):
                p.meta.sendall(batch)
        except OSError:
            pass

    threading.Thread(target=sender, daemon=True).start()
    p.data.settimeout(60)
    try:
        while p.data.recv(65536):
            pass
    except socket.timeout:
        print("still open", flush=True)
        return 1
    except OSError:
        pass
    print("closed", flush=True)
    return 0


def flood(p, a):
    """See data-flood above."""
    p.answer_state(role=1)
    p.wait_linked()
    total, sent = 300, [0]

    def sender():
        for i in range(total):
            body = struct.pack(">QQII", i + 1, (8 + i % 48) << 20, 1 << 20, 0)
            p.data.sendall(p.frame(DATA, body + bytes([i & 0xff]) * (1 << 20)))
            sent[0] = i + 1

    p.data.settimeout(None)
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    last, since = -1, time.monotonic()
    while t.is_alive() and time.monotonic() - since < 3:
        if sent[0] != last:
            last, since = sent[0], time.monotonic()
        time.sleep(0.1)
    blocked = t.is_alive()
    print("blocked: %d MiB" % sent[0] if blocked else "not blocked", flush=True)
    end = time.monotonic() + 120
    while a.go and not os.path.exists(a.go) and time.monotonic() < end:
        time.sleep(0.1)
    t.join(120)
    print("sent: %d MiB" % sent[0], flush=True)
    if p.down.is_set():
        print(p.result, flush=True)
    return 0 if blocked and sent[0] == total and not p.down.is_set() else 1


def main():
    ap = argparse.ArgumentParser()
    for opt in ("--connect", "--secret", "--resource", "--node", "--ctl", "--nbd",
                "--scenario"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--go")
    a = ap.parse_args()
    p = Peer(a)
    sc = a.scenario
    p.data = p.handshake(CONN_DATA, rcvbuf=4096 if sc == "ack-unsent" else None)
    p.meta = p.handshake(CONN_META, rcvbuf=4096 if sc == "ping-flood" else None)
    if sc == "ping-flood":
        return ping_flood(p)
    threading.Thread(target=p.meta_loop, daemon=True).start()
    clients = []
    if sc == "data-flood":
        return flood(p, a)
    if sc == "state-epoch":
        p.answer_state(epoch_skew=5)
    elif sc == "data-no-state":
        time.sleep(0.5)
        p.data.sendall(p.frame(DATA, struct.pack(">QQII", 1, 0, 4096, 0) +
                               b"\x66" * 4096))
    else:
        p.answer_state()
        p.wait_linked()
        if sc in ("flush-ack-for-write", "bad-status"):
            c = Nbd(a.nbd, a.resource)
            clients.append(c)
            c.send(NBD_CMD_WRITE, 1 << 20, 4096, b"\x5c" * 4096)
            seq = struct.unpack(">Q", p.data_until(DATA).body[:8])[0]
            if sc == "flush-ack-for-write":
                p.send_meta(FLUSH_ACK, struct.pack(">QII", seq, 0, 0))
            else:
                p.send_meta(WRITE_ACK, struct.pack(">QII", seq, 0x80000000, 0))
        elif sc == "source-claim":
            p.answer_state(repl=2)
        elif sc == "ack-on-data":
            p.data.sendall(p.frame(WRITE_ACK, struct.pack(">QII", 1, 0, 0)))
        elif sc == "verify-flood":
            reqs = b"".join(p.frame(VERIFY_REQUEST, struct.pack(
                ">QIIQ", (i % 8) << 22, 4 << 20, 0, 0)) for i in range(17))
            p.data.sendall(reqs)
        elif sc == "ack-unsent":
            big = Nbd(a.nbd, a.resource)
            clients.append(big)
            big.send(NBD_CMD_WRITE, 2 << 20, 1 << 20, b"\x71" * (1 << 20))
            time.sleep(0.5)
            small = Nbd(a.nbd, a.resource)
            clients.append(small)
            small.send(NBD_CMD_WRITE, 4 << 20, 4096, b"\x72" * 4096)
            time.sleep(0.5)
            p.send_meta(WRITE_ACK, struct.pack(">QII", 2, 0, 0))
        else:
            print("unknown scenario %s" % sc, file=sys.stderr)
            return 2
    ok = p.down.wait(10)
    print(p.result, flush=True)
    for c in clients:
        _h, err, _d = c.reply()
        print("write: %d" % err, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
