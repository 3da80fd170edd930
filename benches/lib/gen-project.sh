#!/usr/bin/env bash
# Generates a small C project (N translation units + main.c + Makefile) for the "real build"
# benchmark of benches/run.sh:  gen-project.sh DIR [N_FILES] [FUNCS_PER_FILE]
set -euo pipefail
dir=$1 files=${2:-40} funcs=${3:-24}
mkdir -p "$dir/src"
for ((f = 0; f < files; f++)); do
    {
        printf '#include <stdint.h>\n#include <string.h>\n#include <stdio.h>\n\n'
        for ((k = 0; k < funcs; k++)); do
            cat <<C
static uint64_t mix_${f}_${k}(uint64_t x, const char *s) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)${k};
    for (size_t i = 0; s[i]; i++) {
        switch ((s[i] + (int)x) & 7) {
        case 0: h ^= (uint64_t)s[i] * 1099511628211ull; break;
        case 1: h = (h << 13) | (h >> 51); break;
        case 2: h += x * ${k}u + i; break;
        case 3: h ^= h >> 17; h *= 0xed5ad4bbu; break;
        case 4: h -= (x ^ (h << 5)); break;
        case 5: h = h * 31 + (uint64_t)strlen(s + i); break;
        case 6: h ^= (h >> 11) ^ (x << 7); break;
        default: h += 0x9e3779b97f4a7c15ull; break;
        }
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%llu/%d", (unsigned long long)h, ${k});
    for (int r = 0; r < ${k} % 5 + 1; r++)
        h ^= (uint64_t)buf[r % (int)sizeof buf] << (r & 31);
    return h;
}

C
        done
        printf 'uint64_t unit_%d(uint64_t x) {\n    uint64_t h = x;\n' "$f"
        for ((k = 0; k < funcs; k++)); do
            printf '    h ^= mix_%d_%d(h + %d, "unit %d func %d");\n' "$f" "$k" "$k" "$f" "$k"
        done
        printf '    return h;\n}\n'
    } > "$dir/src/unit$f.c"
done
{
    printf '#include <stdint.h>\n#include <stdio.h>\n\n'
    for ((f = 0; f < files; f++)); do printf 'uint64_t unit_%d(uint64_t);\n' "$f"; done
    printf '\nint main(void) {\n    uint64_t h = 0;\n'
    for ((f = 0; f < files; f++)); do printf '    h ^= unit_%d(h + %d);\n' "$f" "$f"; done
    printf '    printf("%%llu\\n", (unsigned long long)h);\n    return 0;\n}\n'
} > "$dir/src/main.c"
cat > "$dir/Makefile" <<'MK'
CC = gcc
CFLAGS = -O2 -pipe -Wall
SRCS := $(wildcard src/*.c)
OBJS := $(SRCS:src/%.c=obj/%.o)

app: $(OBJS)
	$(CC) -o $@ $(OBJS)

obj/%.o: src/%.c | obj
	$(CC) $(CFLAGS) -c -o $@ $<

obj:
	mkdir -p obj

clean:
	rm -rf obj app

.PHONY: clean
MK
