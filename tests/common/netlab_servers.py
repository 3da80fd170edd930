# The servers of the network lab (tests/common/netlab.rs), run as root inside the lab's own
# network namespaces: `netlab_servers.py internet LOG [v6]` in peer B, `netlab_servers.py host
# LOG PORT [v6]` in namespace A (with `v6`, the IPv6 servers too). Every connection, datagram
# and DNS question is appended to LOG, one line each (IPv6 addresses as [ADDR]:PORT); "ready"
# is printed on stdout once every socket is bound.
import socket, struct, sys, threading

ROLE, LOG = sys.argv[1], sys.argv[2]
LOCK = threading.Lock()

# The lab's DNS table: A records; every other name is NXDOMAIN.
TABLE = {
    "allowed.test": "203.0.113.10",
    "other.test": "198.51.100.7",
    "rebind.test": "127.0.0.1",
    "meta.test": "169.254.169.254",
}


def log(*words):
    with LOCK, open(LOG, "a") as f:
        f.write(" ".join(str(w) for w in words) + "\n")


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def where(addr, port):
    """ADDR:PORT, or [ADDR]:PORT for IPv6."""
    return ("[%s]:%d" if ":" in addr else "%s:%d") % (addr, port)


def serve_http(addr, port, body):
    """Answers each connection, whatever it sends, with an HTTP response whose body is `body`."""
    ls = socket.socket(family(addr), socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(64)

    def one(c, peer):
        log("tcp", body, where(addr, port), "from", where(peer[0], peer[1]))
        c.settimeout(2)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        b = body.encode()
        try:
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n%s" % (len(b), b))
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        c.close()

    def loop():
        while True:
            c, peer = ls.accept()
            threading.Thread(target=one, args=(c, peer), daemon=True).start()

    return loop


def serve_udp_echo(addr, port):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.bind((addr, port))

    def loop():
        while True:
            data, peer = s.recvfrom(65535)
            log("udp", "echo", where(addr, port), "from", where(peer[0], peer[1]))
            s.sendto(b"echo:" + data, peer)

    return loop


def dns_answer(query):
    """The response to a DNS query (bytes), and the name and type asked (for the log)."""
    ident, flags, qd = struct.unpack("!HHH", query[:6])
    pos, labels = 12, []
    while query[pos] != 0:
        n = query[pos]
        labels.append(query[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    qtype, qclass = struct.unpack("!HH", query[pos + 1:pos + 5])
    question = query[12:pos + 5]
    name = ".".join(labels).lower()
    rd = flags & 0x0100
    answers = b""
    count = 0
    if name in TABLE:
        rcode = 0
        if qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4)
            answers += socket.inet_aton(TABLE[name])
            count = 1
    else:
        rcode = 3  # NXDOMAIN
    head = struct.pack("!HHHHHH", ident, 0x8400 | rd | 0x0080 | rcode, 1, count, 0, 0)
    return head + question + answers, name, qtype


def serve_dns_udp(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 53))

    def loop():
        while True:
            data, peer = s.recvfrom(65535)
            try:
                reply, name, qtype = dns_answer(data)
            except Exception:
                log("dns-bad", "udp", "from", "%s:%d" % peer)
                continue
            log("dns", name, qtype, "udp", "from", "%s:%d" % peer)
            s.sendto(reply, peer)

    return loop


def serve_dns_tcp(addr):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, 53))
    ls.listen(16)

    def recv_exact(c, n):
        out = b""
        while len(out) < n:
            chunk = c.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def one(c, peer):
        c.settimeout(5)
        try:
            while True:
                (n,) = struct.unpack("!H", recv_exact(c, 2))
                reply, name, qtype = dns_answer(recv_exact(c, n))
                log("dns", name, qtype, "tcp", "from", "%s:%d" % peer)
                c.sendall(struct.pack("!H", len(reply)) + reply)
        except Exception:
            pass
        c.close()

    def loop():
        while True:
            c, peer = ls.accept()
            threading.Thread(target=one, args=(c, peer), daemon=True).start()

    return loop


if ROLE == "internet":
    loops = [
        serve_http("203.0.113.10", 80, "public"),
        serve_http("198.51.100.7", 80, "public2"),
        serve_http("169.254.169.254", 80, "metadata"),
        serve_udp_echo("203.0.113.10", 7),
        serve_dns_udp("203.0.113.10"),
        serve_dns_tcp("203.0.113.10"),
    ]
    if sys.argv[3:] == ["v6"]:
        loops += [
            serve_http("2001:db8:1::10", 80, "public6"),
            serve_http("fd00:ec2::254", 80, "metadata6"),
            serve_udp_echo("2001:db8:1::10", 7),
            serve_udp_echo("fd00:ec2::254", 7),
        ]
elif ROLE == "host":
    port = int(sys.argv[3])
    loops = [
        serve_http("127.0.0.1", port, "host-loopback"),
        serve_http("10.77.0.1", port, "host-private"),
    ]
    if sys.argv[4:] == ["v6"]:
        loops += [
            serve_http("::1", port, "host-loopback6"),
            serve_http("fd00:77::1", port, "host-private6"),
            serve_http("2001:db8:1::1", port, "host-public6"),
            serve_udp_echo("::1", 7),
            serve_udp_echo("fd00:77::1", 7),
        ]
else:
    sys.exit("unknown role %r" % ROLE)

for loop in loops:
    threading.Thread(target=loop, daemon=True).start()
print("ready", flush=True)
# Serve until killed; stdin is kept open by the lab and closes when it goes.
sys.stdin.read()
