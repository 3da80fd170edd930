#!/usr/bin/env python3
"""Server and clients of benches/network.sh (TCP over this machine's own addresses only).

  netbench.py serve PORTFILE ADDR...     listen on ADDR:0 for each ADDR (never a wildcard), write
                                         "ADDR PORT" lines to PORTFILE, serve until killed
  netbench.py bulk HOST PORT BYTES [--connect]
                                         fetch BYTES from the server, discard them; prints the
                                         seconds from connect(2) to the last byte, and to the first
  netbench.py conn HOST PORT N WARMUP MAXSEC [--connect]
                                         N sequential connections, each connect, 1-byte request,
                                         1-byte answer, close (after WARMUP uncounted ones), or
                                         fewer (5 at least) if MAXSEC seconds are over first;
                                         prints a line per connection: the µs connect(2) took
                                         (or the proxy's handshake), and the µs of all of it
With --connect the client goes through the HTTP proxy named by $HTTP_PROXY with CONNECT HOST:PORT
(sbx --net proxy sets it); otherwise it connects directly (what sbx intercepts, if anything).

The protocol: the client sends one byte, b"P" (answer one byte) or b"B" and 8 bytes of length
(send that many bytes); the server closes after the answer.
"""
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse

CHUNK = 4 << 20


def serve(portfile, addrs):
    payload = memoryview(bytes(CHUNK))

    def bulk(conn, n):
        with conn:
            while n > 0:
                k = min(n, CHUNK)
                conn.sendall(payload[:k])
                n -= k
            conn.shutdown(socket.SHUT_WR)

    def loop(lst):
        while True:
            conn, _ = lst.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                op = conn.recv(1)
                if op == b"P":
                    conn.sendall(b"p")
                    conn.close()
                elif op == b"B":
                    (n,) = struct.unpack("!Q", recv_exact(conn, 8))
                    threading.Thread(target=bulk, args=(conn, n), daemon=True).start()
                else:
                    conn.close()
            except OSError:
                conn.close()

    lines = []
    threads = []
    for addr in addrs:
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((addr, 0))
        lst.listen(128)
        lines.append(f"{addr} {lst.getsockname()[1]}\n")
        threads.append(threading.Thread(target=loop, args=(lst,), daemon=True))
    for t in threads:
        t.start()
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(lines)
    os.rename(tmp, portfile)
    threading.Event().wait()


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        got = s.recv(n - len(buf))
        if not got:
            raise ConnectionError("connection closed early")
        buf += got
    return buf


def open_conn(host, port, via_proxy):
    if not via_proxy:
        s = socket.create_connection((host, port))
    else:
        proxy = urllib.parse.urlsplit(os.environ["HTTP_PROXY"])
        s = socket.create_connection((proxy.hostname, proxy.port))
        s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            got = s.recv(1)  # byte by byte: nothing past the header may be consumed
            if not got:
                raise ConnectionError("proxy closed the connection")
            head += got
        status = head.split(b"\r\n", 1)[0]
        if b" 200" not in status:
            raise ConnectionError(f"proxy answered {status!r}")
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def bulk(host, port, n, via_proxy):
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    t0 = time.perf_counter()
    s = open_conn(host, port, via_proxy)
    s.sendall(b"B" + struct.pack("!Q", n))
    got = s.recv_into(view)
    first = time.perf_counter() - t0
    while True:
        k = s.recv_into(view)
        if not k:
            break
        got += k
    t = time.perf_counter() - t0
    s.close()
    if got != n:
        sys.exit(f"bulk: got {got} bytes of {n}")
    print(f"{t:.6f} {first:.6f}")


def conn(host, port, n, warmup, max_seconds, via_proxy):
    lines = []
    start = time.perf_counter()
    for i in range(warmup + n):
        if len(lines) >= 5 and time.perf_counter() - start > max_seconds:
            break
        t0 = time.perf_counter()
        s = open_conn(host, port, via_proxy)
        t1 = time.perf_counter()
        s.sendall(b"P")
        if s.recv(1) != b"p":
            sys.exit("conn: no answer")
        s.close()
        if i >= warmup:
            lines.append(f"{(t1 - t0) * 1e6:.1f} {(time.perf_counter() - t0) * 1e6:.1f}\n")
    sys.stdout.writelines(lines)


def main(argv):
    cmd, args = argv[1], argv[2:]
    via_proxy = "--connect" in args
    args = [a for a in args if a != "--connect"]
    if cmd == "serve":
        serve(args[0], args[1:])
    elif cmd == "bulk":
        bulk(args[0], int(args[1]), int(args[2]), via_proxy)
    elif cmd == "conn":
        conn(args[0], int(args[1]), int(args[2]), int(args[3]), float(args[4]), via_proxy)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
