/* A syscall-heavy loop for the runtime-overhead benchmark of benches/run.sh.
 *
 *   sysloop getppid N        N raw getppid(2) calls (the cheapest syscall: pure entry/exit cost,
 *                            which is where a seccomp filter would show)
 *   sysloop stat N [PATH]    N stat(2) calls of PATH (default /usr/bin/env): a path walk through
 *                            the sandbox's mounts each time
 *   sysloop ns getppid|stat|open [--seccomp-floor|--landlock-floor|--landlock-ro-floor|--both-floor]
 *                            prints the cost of one call in ns (for open: an open(2) of
 *                            /usr/bin/env and its close(2)): the fastest of 2000 (getppid) or
 *                            500 batches of 1000 calls, so that preemption by other work on the
 *                            machine drops out. With --seccomp-floor it first installs a minimal seccomp filter
 *                            (allow everything on x86-64 but ptrace; cacheable by the kernel's
 *                            seccomp action cache): the cost any seccomp sandbox pays per call.
 *                            With --landlock-floor it first enforces a minimal landlock domain
 *                            (every filesystem right handled, one rule granting them all
 *                            beneath /): the cost any landlock sandbox pays per path lookup.
 *                            --landlock-ro-floor: the same domain, its one rule granting only
 *                            read and execute: then no rule on the path grants an open's optional
 *                            rights (truncate, device ioctl) and the kernel walks to the root and
 *                            works out what each layer grants, which is what every sandbox with a
 *                            read-only tree (sbx's /usr, bubblewrap with landlock) pays.
 *                            --both-floor: --seccomp-floor and --landlock-ro-floor together.
 *
 * Built by run.sh with `gcc -O2`; it runs both inside and outside the sandbox. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/landlock.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int seccomp_floor(void) {
#if defined(__x86_64__)
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ptrace, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        perror("seccomp");
        return -1;
    }
    return 0;
#else
    fprintf(stderr, "--seccomp-floor: x86-64 only\n");
    return -1;
#endif
}

static int landlock_floor(int read_only) {
#if defined(SYS_landlock_create_ruleset)
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 1) {
        perror("landlock");
        return -1;
    }
    /* Rights by ABI: 1: 13, 2: +REFER, 3: +TRUNCATE, >=5: +IOCTL_DEV. */
    int bits = abi >= 5 ? 16 : abi >= 3 ? 15 : abi >= 2 ? 14 : 13;
    struct landlock_ruleset_attr attr = {.handled_access_fs = (1ULL << bits) - 1};
    int rs = syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    /* read-only: EXECUTE | READ_FILE | READ_DIR, the rights of sbx's read-only binds. */
    __u64 ro = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
    struct landlock_path_beneath_attr rule = {.allowed_access = read_only ? ro : attr.handled_access_fs,
                                              .parent_fd = open("/", O_PATH | O_CLOEXEC)};
    if (rs < 0 || rule.parent_fd < 0 ||
        syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) != 0 ||
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || syscall(SYS_landlock_restrict_self, rs, 0) != 0) {
        perror("landlock");
        return -1;
    }
    close(rule.parent_fd);
    close(rs);
    return 0;
#else
    fprintf(stderr, "--landlock-floor: no landlock syscalls in these headers\n");
    return -1;
#endif
}

static int ns_per_call(const char *mode, const char *floor) {
    int is_stat = strcmp(mode, "stat") == 0, is_open = strcmp(mode, "open") == 0;
    if (!is_stat && !is_open && strcmp(mode, "getppid") != 0) {
        fprintf(stderr, "sysloop ns: unknown mode %s\n", mode);
        return 2;
    }
    int sc = floor && (strcmp(floor, "--seccomp-floor") == 0 || strcmp(floor, "--both-floor") == 0);
    int ll = floor && strcmp(floor, "--landlock-floor") == 0;
    int ro = floor && (strcmp(floor, "--landlock-ro-floor") == 0 || strcmp(floor, "--both-floor") == 0);
    if (floor && !sc && !ll && !ro) {
        fprintf(stderr, "sysloop ns: unknown floor %s\n", floor);
        return 2;
    }
    /* landlock first: seccomp_floor's filter stays out of the setup calls. */
    if ((ll || ro) && landlock_floor(ro) != 0)
        return 1;
    if (sc && seccomp_floor() != 0)
        return 1;
    struct stat st;
    volatile long sink = 0;
    double best = 1e18;
    /* Short batches (well under a scheduler tick), many of them: some run undisturbed. */
    int per = 1000, batches = is_stat || is_open ? 500 : 2000;
    for (int b = 0; b < batches; b++) {
        double t = now_ns();
        for (int i = 0; i < per; i++) {
            if (is_stat) {
                sink += stat("/usr/bin/env", &st);
            } else if (is_open) {
                int fd = open("/usr/bin/env", O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                    perror("/usr/bin/env");
                    return 1;
                }
                sink += close(fd);
            } else {
                sink += syscall(SYS_getppid);
            }
        }
        double d = (now_ns() - t) / per;
        if (d < best)
            best = d;
    }
    printf("%.1f\n", best);
    return sink == -1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: sysloop getppid|stat N [PATH]\n       sysloop ns getppid|stat|open [--seccomp-floor|--landlock-floor|--landlock-ro-floor|--both-floor]\n");
        return 2;
    }
    if (strcmp(argv[1], "ns") == 0)
        return ns_per_call(argv[2], argc > 3 ? argv[3] : NULL);
    long n = atol(argv[2]);
    const char *path = argc > 3 ? argv[3] : "/usr/bin/env";
    volatile long sink = 0;
    if (strcmp(argv[1], "getppid") == 0) {
        for (long i = 0; i < n; i++)
            sink += syscall(SYS_getppid);
    } else if (strcmp(argv[1], "stat") == 0) {
        struct stat st;
        for (long i = 0; i < n; i++) {
            if (stat(path, &st) != 0) {
                perror(path);
                return 1;
            }
            sink += st.st_size;
        }
    } else {
        fprintf(stderr, "sysloop: unknown mode %s\n", argv[1]);
        return 2;
    }
    return sink == -1; /* never true; keeps the loop from being optimised away */
}
