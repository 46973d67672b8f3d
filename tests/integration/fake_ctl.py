#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""A scripted stand-in for blkmirrord's control socket (tests/integration/ctl-args.sh).

    fake_ctl.py SOCKET SCENARIO LOG

Listens on SOCKET, speaks the control protocol (lib/ctl_proto.h: one JSON
request per line, one reply per line, "events" turns a connection into a
subscription) and answers as a two-node daemon would in SCENARIO, so that
blkmirrorctl's waiting, event handling and status table can be checked
deterministically, without two nodes.  Every request is appended to LOG as
one JSON line {"conn": N, "cmd": ..., "args": ...}, in the order received.

Scenarios:
  promote-slow      status says "secondary" three times, then "primary"
  promote-never     status always says "secondary"
  verify            "verify" emits verify-done BEFORE its ok reply (a client
                    that subscribes late misses it); 3 MiB differ
  verify-again      a first verify-done while status still reports a
                    verify running (the peer's), a second one 0.2 s later
  verify-link-down  after verify, a state event: replication connecting
  verify-gone       after verify, every connection is closed
  verify-old-state  "verify" emits a state event (replication sync-source,
                    an earlier change) before verify-start, then as "verify"
  verify-overflow   after verify, the subscription ends with an "overflow"
                    event (the subscriber fell behind), then closes
  verify-slow       verify-start, then nothing: the verify never ends
  events-overflow   a subscription gets two state events, then "overflow",
                    then the connection is closed
  resync-wait       sync-source for three status requests, then in sync
  resync-off        replication "off" (the link was closed)
  table             status: a resync running, every replication field
"""
import json
import os
import socket
import sys
import threading
import time

SOCK, SCENARIO, LOG = sys.argv[1], sys.argv[2], sys.argv[3]
lock = threading.Lock()
subscribers = []          # sockets subscribed to events
counts = {"status": 0}    # status requests answered so far
conn_ids = [0]


def status_base():
    """A two-node status result as daemon/control.c + admin.c build it."""
    return {
        "resource": "r0", "node": "alpha", "role": "primary", "disk": "uptodate",
        "connection": "connected", "io_engine": "io_uring",
        "size_bytes": 67108864, "block_size": 4096, "protocol": "sync",
        "clients": 0, "clients_total": 0, "uptime_s": 5, "listeners": [],
        "ops": {}, "in_flight": 0, "stopping": False,
        "peer": {"node": "beta", "address": "192.0.2.2:7789", "role": "secondary",
                 "disk": "uptodate", "connection": "connected",
                 "last_error": "connect to 192.0.2.2:7789: Connection refused"},
        "replication": "established", "epoch": 4, "out_of_sync_bytes": 0,
        "resync": {"done_bytes": 0, "total_bytes": 0, "rate_bytes_per_s": 0,
                   "shipped_bytes": 0, "same_bytes": 0, "paused": False,
                   "verify_running": False, "verify_diff_bytes": 0},
        "uuids": {"current": "00000000000000a5", "bitmap": "0000000000000000",
                  "history": ["00000000000000a4", "0000000000000000",
                              "0000000000000000", "0000000000000000"],
                  "volume": "caf9d6fe-8636-7fe4-8b4e-0bb4ab907645"},
        "bytes_sent": 1048576, "bytes_received": 2048,
        "resync_bytes_shipped": 0, "resync_bytes_received": 0, "connects": 2,
        "split_brains": 0, "state_changes": 7, "pending_writes": 0, "lag_bytes": 0,
        "metadata_writes": 12,
    }


def status(n):
    """The status result of the n-th status request (1-based) in SCENARIO."""
    s = status_base()
    if SCENARIO == "promote-slow":
        s["role"] = "secondary" if n <= 3 else "primary"
    elif SCENARIO == "promote-never":
        s["role"] = "secondary"
    elif SCENARIO in ("verify", "verify-again", "verify-link-down", "verify-gone",
                      "verify-old-state", "verify-overflow"):
        s["resync"]["verify_diff_bytes"] = 3145728
        s["resync"]["verify_running"] = SCENARIO == "verify-again" and n == 1
    elif SCENARIO == "resync-wait":
        if n <= 3:
            s["replication"] = "sync-source"
            s["out_of_sync_bytes"] = (4 - n) << 20
        s["resync"]["done_bytes"] = min(n, 4) << 20
        s["resync"]["total_bytes"] = 4 << 20
    elif SCENARIO == "resync-off":
        s["replication"] = "off"
        s["connection"] = s["peer"]["connection"] = "standalone"
        s["peer"]["last_error"] = "disconnected by blkmirrorctl"
        s["out_of_sync_bytes"] = 8192
    elif SCENARIO == "table":
        s["replication"] = "sync-source"
        s["out_of_sync_bytes"] = 48 << 20
        s["resync"].update(done_bytes=16 << 20, total_bytes=64 << 20,
                           rate_bytes_per_s=8 << 20, shipped_bytes=16 << 20)
        s["peer"]["disk"] = "inconsistent"
        s["resync_bytes_shipped"] = 16 << 20
    return s


def send(conn, obj):
    """One line to conn; a closed peer is ignored."""
    try:
        conn.sendall((json.dumps(obj) + "\n").encode())
    except OSError:
        pass


def emit(name, **fields):
    """An event to every subscriber."""
    ev = {"event": name, "time": time.time(), "resource": "r0"}
    ev.update(fields)
    with lock:
        for s in subscribers:
            send(s, ev)


OVERFLOW_MESSAGE = ("events lost from here on: this subscriber fell more than "
                    "1048576 bytes behind")


def overflow():
    """As daemon/control.c ends a subscription that fell too far behind."""
    emit("overflow", message=OVERFLOW_MESSAGE)
    with lock:
        for s in subscribers:
            s.shutdown(socket.SHUT_RDWR)
        subscribers.clear()


def after_events():
    """The scenario's events for a new subscriber."""
    time.sleep(0.1)
    if SCENARIO == "events-overflow":
        for repl in ("sync-source", "established"):
            emit("state", change="resync", role="primary", disk="uptodate",
                 connection="connected", replication=repl)
        overflow()


def after_verify():
    """The scenario's events once the verify was acknowledged."""
    time.sleep(0.2)
    if SCENARIO == "verify-again":
        emit("verify-done", message="3145728 bytes differ")
    elif SCENARIO == "verify-link-down":
        emit("state", change="link down", role="primary", disk="uptodate",
             connection="connecting", replication="connecting",
             reason="peer: link down: timeout")
    elif SCENARIO == "verify-overflow":
        overflow()
    elif SCENARIO == "verify-gone":
        with lock:
            for s in subscribers:
                s.shutdown(socket.SHUT_RDWR)
        os._exit(0)


def answer(conn, req):
    """Reply to one request; True when conn became a subscriber."""
    cmd = req["cmd"]
    if cmd == "status":
        with lock:
            counts["status"] += 1
            n = counts["status"]
        send(conn, {"ok": True, "result": status(n)})
    elif cmd == "events":
        send(conn, {"ok": True, "result": {}})
        with lock:
            subscribers.append(conn)
        threading.Thread(target=after_events, daemon=True).start()
        return True
    elif cmd == "verify":
        if SCENARIO == "verify-old-state":
            # Queued before the request was taken: a resync's end, say.
            emit("state", change="resync started", role="primary", disk="uptodate",
                 connection="connected", replication="sync-source")
        emit("verify-start", message="67108864 bytes")
        if SCENARIO in ("verify", "verify-again", "verify-old-state"):
            # Before the ok: a client that subscribes only now misses it.
            emit("verify-done", message="3145728 bytes differ")
        send(conn, {"ok": True, "result": {}})
        threading.Thread(target=after_verify, daemon=True).start()
    else:
        send(conn, {"ok": True, "result": {}})
    return False


def serve(conn):
    """One client: log and answer its requests until it closes."""
    with lock:
        conn_ids[0] += 1
        cid = conn_ids[0]
    buf = b""
    while True:
        try:
            data = conn.recv(65536)
        except OSError:
            return
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            with lock, open(LOG, "a") as f:
                f.write(json.dumps({"conn": cid, "cmd": req["cmd"],
                                    "args": req.get("args")}) + "\n")
            if answer(conn, req):
                return      # subscribed: the connection stays open, input ignored


def main():
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(SOCK + ".tmp")
    os.rename(SOCK + ".tmp", SOCK)
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


main()
