// text-trace: which functions of a binary a run of it calls, in first-call order, for the
// link-time text order (benches/text-order.sh).
//
//   text-trace ADDRS OUT [--linux-5.10] -- BINARY ARGS...
//
// ADDRS lists function start addresses (hex, as in `nm`, relative to the image base). The
// tracer runs BINARY under ptrace, puts a breakpoint on every listed address right after the
// exec, and notes each function the first time a process calls it; the breakpoint is then
// put back to the original byte in that process only, and every new process is armed again,
// so each process's first calls trap. OUT gets one line per function and role, at its first
// call in that role: "ROLE ADDR", ROLE 0 for the first process and its threads (sbx's
// supervisor), 1 for every other process (init, helpers). A process that execs again (the
// sandboxed command) is let go. Run as root, the command runs as nobody. One trap per
// function and process: a run costs seconds, where single-stepping costs minutes.
//
// sbx unmaps its own code (madvise MADV_DONTNEED: sys::release_code), which takes the
// breakpoints with it: the pages come back from the file. The tracer stops each process at
// its system calls' exits too, and after an madvise arms again every function that process's
// role has not called yet.
//
// --linux-5.10 runs BINARY with the system calls of Linux 5.10 only (a seccomp filter: every
// call numbered after 5.10's last answers ENOSYS, close_range's CLOSE_RANGE_CLOEXEC EINVAL),
// so that the trace takes the fallbacks a 5.10 kernel sends sbx down (no landlock, no
// mount_setattr, descriptors listed from /proc/self/fd).
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PIDS (1 << 22)

static unsigned char role_of[MAX_PIDS];
static unsigned char known[MAX_PIDS];
static uint64_t *addrs;
static unsigned char *orig;
static size_t naddrs;
static unsigned char *seen[2];

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static long find(uint64_t a) {
    size_t lo = 0, hi = naddrs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (addrs[mid] < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < naddrs && addrs[lo] == a ? (long)lo : -1;
}

// The load address of the process's main binary: its first mapping at file offset 0.
static uint64_t image_base(pid_t pid) {
    char path[64], exe[512], line[1024];
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    ssize_t n = readlink(path, exe, sizeof exe - 1);
    if (n < 0)
        return 0;
    exe[n] = 0;
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    uint64_t base = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long start, off;
        char file[512] = "";
        if (sscanf(line, "%lx-%*x %*s %lx %*s %*s %511s", &start, &off, file) == 3 && off == 0 &&
            strcmp(file, exe) == 0) {
            base = start;
            break;
        }
    }
    fclose(f);
    return base;
}

static int poke_byte(pid_t pid, uint64_t at, unsigned char byte, unsigned char *old) {
    errno = 0;
    long word = ptrace(PTRACE_PEEKTEXT, pid, (void *)at, 0);
    if (errno)
        return -1;
    if (old)
        *old = (unsigned char)word;
    word = (word & ~0xffL) | byte;
    return (int)ptrace(PTRACE_POKETEXT, pid, (void *)at, (void *)word);
}

static int tgid_of(pid_t tid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", tid);
    FILE *f = fopen(path, "r");
    int tgid = tid;
    if (!f)
        return tgid;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Tgid: %d", &tgid) == 1)
            break;
    fclose(f);
    return tgid;
}

static uint64_t base;

// The first arming (right after the exec) saves the original bytes; a new process's copy may
// still hold breakpoints, so later armings only write.
static int arm(pid_t pid, int first) {
    for (size_t i = 0; i < naddrs; i++)
        if (poke_byte(pid, base + addrs[i], 0xcc, first ? &orig[i] : NULL) != 0) {
            fprintf(stderr, "text-trace: cannot write a breakpoint at %#lx in pid %d: %s\n",
                    (unsigned long)addrs[i], pid, strerror(errno));
            return -1;
        }
    return 0;
}

// After an madvise that may have dropped the process's breakpoints: the functions its role
// has not called yet trap again.
static int rearm(pid_t pid, int role) {
    for (size_t i = 0; i < naddrs; i++)
        if (!seen[role][i] && poke_byte(pid, base + addrs[i], 0xcc, NULL) != 0)
            return -1;
    return 0;
}

// 5.10's last system call on x86_64 is process_madvise (440); CLOSE_RANGE_CLOEXEC came in
// 5.11. The numbers are x86_64's (the text order is used on x86_64 builds only); calls of
// another ABI (i386's int 0x80) answer ENOSYS.
#ifndef __x86_64__
#error "text-trace --linux-5.10 knows x86_64's system call numbers only"
#endif
static int linux_5_10(void) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 441, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_close_range, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 4 /* CLOSE_RANGE_CLOEXEC */, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

int main(int argc, char **argv) {
    int old_kernel = argc > 3 && strcmp(argv[3], "--linux-5.10") == 0;
    if (old_kernel) {
        argv[3] = argv[2];
        argv[2] = argv[1];
        argv++;
        argc--;
    }
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: text-trace ADDRS OUT [--linux-5.10] -- BINARY ARGS...\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        perror(argv[1]);
        return 2;
    }
    size_t cap = 1024;
    addrs = malloc(cap * sizeof *addrs);
    unsigned long a;
    while (fscanf(in, "%lx", &a) == 1) {
        if (naddrs == cap)
            addrs = realloc(addrs, (cap *= 2) * sizeof *addrs);
        addrs[naddrs++] = a;
    }
    fclose(in);
    qsort(addrs, naddrs, sizeof *addrs, cmp_u64);
    size_t unique = 0;
    for (size_t i = 0; i < naddrs; i++)
        if (unique == 0 || addrs[unique - 1] != addrs[i])
            addrs[unique++] = addrs[i];
    naddrs = unique;
    orig = calloc(naddrs, 1);
    seen[0] = calloc(naddrs, 1);
    seen[1] = calloc(naddrs, 1);
    FILE *out = fopen(argv[2], "w");
    if (!out) {
        perror(argv[2]);
        return 2;
    }

    pid_t child = fork();
    if (child == 0) {
        // sbx makes its processes undumpable, which closes their memory to a tracer without
        // CAP_SYS_PTRACE over their user namespace: trace as root, run the command as nobody.
        // The kernel keeps the credentials of the PTRACE_TRACEME call as the tracer's, so it
        // comes before the drop.
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        if (geteuid() == 0 && (setgroups(0, NULL) || setgid(65534) || setuid(65534)))
            _exit(126);
        if (old_kernel && linux_5_10() != 0)
            _exit(125);
        raise(SIGSTOP);
        execvp(argv[4], argv + 4);
        _exit(127);
    }
    int status;
    waitpid(child, &status, 0);
    ptrace(PTRACE_SETOPTIONS, child, 0,
           PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC |
               PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD);
    ptrace(PTRACE_CONT, child, 0, 0);

    int armed = 0, exit_code = 1;
    size_t traps = 0;
    for (;;) {
        pid_t t = waitpid(-1, &status, __WALL);
        if (t < 0) {
            if (errno == ECHILD)
                break;
            continue;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            // Its pid may come back as a new task, which must be armed and given its role.
            if (t < MAX_PIDS)
                known[t] = 0;
            if (t == child)
                exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            continue;
        }
        if (!WIFSTOPPED(status))
            continue;
        int sig = WSTOPSIG(status), event = status >> 16, deliver = 0;
        if (event == PTRACE_EVENT_EXEC) {
            if (armed) {
                ptrace(PTRACE_DETACH, t, 0, 0);
                continue;
            }
            base = image_base(t);
            if (!base) {
                fprintf(stderr, "text-trace: no image base for pid %d\n", t);
                return 1;
            }
            if (arm(t, 1) != 0)
                return 1;
            armed = 1;
            if (t < MAX_PIDS) {
                known[t] = 1;
                role_of[t] = 0;
            }
        } else if (event == 0 && sig == SIGTRAP && armed) {
            struct user_regs_struct regs;
            ptrace(PTRACE_GETREGS, t, 0, &regs);
            long i = find(regs.rip - 1 - base);
            if (i >= 0) {
                int role = t < MAX_PIDS && known[t] ? role_of[t] : 1;
                if (!seen[role][i]) {
                    seen[role][i] = 1;
                    fprintf(out, "%d %lx\n", role, (unsigned long)addrs[i]);
                }
                if (poke_byte(t, base + addrs[i], orig[i], NULL) != 0) {
                    fprintf(stderr, "text-trace: cannot restore %#lx in pid %d: %s\n",
                            (unsigned long)addrs[i], t, strerror(errno));
                    kill(child, SIGKILL);
                    return 1;
                }
                regs.rip -= 1;
                ptrace(PTRACE_SETREGS, t, 0, &regs);
                traps++;
            } else {
                deliver = sig;
            }
        } else if (event == 0 && sig == (SIGTRAP | 0x80)) {
            // A system call's entry or exit; at an entry, rax holds -ENOSYS.
            struct user_regs_struct regs;
            ptrace(PTRACE_GETREGS, t, 0, &regs);
            int role = t < MAX_PIDS && known[t] ? role_of[t] : 1;
            if (armed && regs.orig_rax == SYS_madvise && (long)regs.rax != -ENOSYS &&
                rearm(t, role) != 0) {
                fprintf(stderr, "text-trace: cannot arm pid %d again: %s\n", t, strerror(errno));
                kill(child, SIGKILL);
                return 1;
            }
        } else if (event == 0 && sig == SIGSTOP) {
            // A new task's first stop. A new process starts with its parent's memory, where
            // the functions the parent called have their bytes back: arm them all again, so
            // that it reports its own first calls.
            if (armed && t < MAX_PIDS && !known[t]) {
                known[t] = 1;
                int tgid = tgid_of(t);
                if (tgid != t) {
                    role_of[t] = tgid < MAX_PIDS ? role_of[tgid] : 1;
                } else {
                    role_of[t] = 1;
                    if (arm(t, 0) != 0)
                        return 1;
                }
            }
        } else if (event == 0 && sig != SIGTRAP) {
            deliver = sig;
        }
        ptrace(armed ? PTRACE_SYSCALL : PTRACE_CONT, t, 0, deliver);
    }
    fclose(out);
    fprintf(stderr, "text-trace: %zu first calls recorded, command exit %d\n", traps, exit_code);
    return exit_code;
}
