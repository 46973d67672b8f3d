#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Run a command the way systemd socket activation does.

  listen_fds.py [--tcp HOST:PORT]... [--unix PATH]... -- CMD [ARGS...]

Creates the listening sockets in the order given, moves them to file
descriptors 3, 4, ..., sets LISTEN_FDS, LISTEN_PID (our own pid, which the
command keeps since we exec it) and LISTEN_FDNAMES, and execs CMD.
"""

import os
import socket
import sys


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__)
    split = argv.index("--")
    opts, cmd = argv[:split], argv[split + 1:]
    if not cmd or len(opts) % 2:
        sys.exit(__doc__)
    socks, names = [], []
    for kind, addr in zip(opts[0::2], opts[1::2]):
        if kind == "--tcp":
            host, port = addr.rsplit(":", 1)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, int(port)))
            names.append("nbd-tcp")
        elif kind == "--unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(addr)
            names.append("nbd-unix")
        else:
            sys.exit("unknown option %s\n%s" % (kind, __doc__))
        s.listen(64)
        socks.append(s)
    # Take the sockets to 3, 4, ... (dup first: a socket may already sit
    # on one of those numbers).
    fds = [os.dup(s.fileno()) for s in socks]
    for s in socks:
        s.close()
    targets = [3 + i for i in range(len(fds))]
    for fd, target in zip(fds, targets):
        os.dup2(fd, target)
        os.set_inheritable(target, True)
    for fd in fds:
        if fd not in targets:
            os.close(fd)
    os.environ["LISTEN_FDS"] = str(len(fds))
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDNAMES"] = ":".join(names)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
