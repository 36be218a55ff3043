#!/usr/bin/env python3
"""notify_listener.py SOCKET OUT: plays systemd's side of sd_notify for the
tests: binds a datagram socket at SOCKET and appends every message it
receives to OUT, one line per assignment, until killed."""
import os
import socket
import sys

path, out = sys.argv[1], sys.argv[2]
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(out, "a", buffering=1) as f:
    while True:
        data = s.recv(65536).decode("utf-8", "replace")
        for line in data.splitlines():
            f.write(line + "\n")
