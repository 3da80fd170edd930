#!/usr/bin/env python3
"""The text order for the release link, from text-trace runs (benches/text-order.sh).

  text_order.py write SYMBOLS OUT RUSTC TRACE... [--fallback TRACE...]
                                                    write the list (RUSTC: the version, for the header)
  text_order.py check SYMBOLS LIST                  how much of the list a build has (exit 1 under 90 %)

SYMBOLS is `nm --defined-only` of an unstripped build. Each TRACE holds "ROLE ADDR" lines in
first-call order (ROLE 0: the supervisor, 1: init and helpers). The list puts the functions
only the supervisor calls first, then those both call, then those only init calls: each
process's functions are then one run of pages, and init, which calls few, maps few. The
functions only the --fallback traces call (runs under an older kernel's system calls) come
last, grouped the same way: a newer kernel never maps them, an older one maps them together.
"""
import collections
import sys

HEADER = """\
# The order in which the release link places sbx's functions (lld --symbol-ordering-file,
# passed by src/build.rs): those one start calls, supervisor-only first, then shared, then
# init-only, each in first-call order; then, grouped the same way, those that only the runs
# under an older kernel's system calls call. Written by benches/text-order.sh from {runs}
# traced runs with {rustc}; a name this build lacks is ignored.
"""


def text_symbols(path):
    names = collections.defaultdict(list)
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tTwWiI":
                names[int(parts[0], 16)].append(parts[2])
    return names


def write(symbols, out, traces, fallback, rustc):
    names = text_symbols(symbols)
    roles = collections.defaultdict(set)
    first = {}
    usual = set()
    for i, trace in enumerate(traces + fallback):
        with open(trace) as f:
            for line in f:
                role, addr = line.split()
                addr = int(addr, 16)
                first.setdefault(addr, len(first))
                if i < len(traces):
                    usual.add(addr)
                # A usual function keeps its usual roles: the layout a newer kernel maps is the
                # one it would have without the fallback runs.
                if i < len(traces) or addr not in usual:
                    roles[addr].add(int(role))
    missing = [a for a in first if a not in names]
    if missing:
        sys.exit(f"text_order.py: {len(missing)} traced addresses have no symbol, e.g. {missing[0]:#x}")
    groups = [{0}, {0, 1}, {1}]
    order = sorted(first, key=lambda a: (a not in usual, groups.index(roles[a]), first[a]))
    with open(out, "w") as f:
        f.write(HEADER.format(runs=len(traces) + len(fallback), rustc=rustc))
        for addr in order:
            f.write(names[addr][0] + "\n")
    counts = [sum(1 for a in usual if roles[a] == g) for g in groups]
    print(
        f"{len(order)} functions: {counts[0]} supervisor only, {counts[1]} shared, {counts[2]} init only, "
        f"then {len(first) - len(usual)} that only the fallback runs call"
    )


def check(symbols, listed):
    have = {n for ns in text_symbols(symbols).values() for n in ns}
    with open(listed) as f:
        names = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    found = sum(1 for n in names if n in have)
    print(f"{found} of {len(names)} listed functions are in this build ({100 * found // max(len(names), 1)} %)")
    return found, len(names)


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "write":
        rest = sys.argv[5:]
        cut = rest.index("--fallback") if "--fallback" in rest else len(rest)
        write(sys.argv[2], sys.argv[3], rest[:cut], rest[cut + 1 :], sys.argv[4])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        found, total = check(sys.argv[2], sys.argv[3])
        sys.exit(0 if total and found * 10 >= total * 9 else 1)
    else:
        sys.exit(__doc__)
