/* Attempts that the jail must contain, one per argument; each prints "<name>: <result>".
 * Built by tests/jail.rs with `gcc -static` and run inside the jail. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/sched.h>

static void report(const char *name, long r) {
    if (r < 0) printf("%s: denied %s\n", name, strerror(errno));
    else printf("%s: allowed %ld\n", name, r);
    fflush(stdout);
}

static void *thread_main(void *arg) { return arg; }

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        errno = 0;
        if (!strcmp(a, "ptrace")) report(a, ptrace(PTRACE_TRACEME, 0, 0, 0));
        else if (!strcmp(a, "mount")) report(a, mount("none", "/tmp", "tmpfs", 0, 0));
        else if (!strcmp(a, "unshare")) report(a, unshare(CLONE_NEWUSER));
        else if (!strcmp(a, "setuid")) report(a, setuid(1000));
        else if (!strcmp(a, "kill-1")) report(a, kill(-1, SIGKILL));
        else if (!strcmp(a, "tgkill-1")) report(a, syscall(SYS_tgkill, -1, 1, SIGKILL));
        else if (!strcmp(a, "chroot")) report(a, chroot("/tmp"));
        else if (!strcmp(a, "bpf")) report(a, syscall(SYS_bpf, 0, 0, 0));
        else if (!strcmp(a, "keyctl")) report(a, syscall(SYS_keyctl, 0, 0, 0, 0, 0));
        else if (!strcmp(a, "add_key")) report(a, syscall(SYS_add_key, "user", "k", "v", 1, 0));
        else if (!strcmp(a, "userfaultfd")) report(a, syscall(SYS_userfaultfd, 0));
        else if (!strcmp(a, "perf_event_open")) report(a, syscall(SYS_perf_event_open, 0, 0, -1, -1, 0));
        else if (!strcmp(a, "init_module")) report(a, syscall(SYS_init_module, 0, 0, ""));
        else if (!strcmp(a, "kexec_load")) report(a, syscall(SYS_kexec_load, 0, 0, 0, 0));
        else if (!strcmp(a, "setns")) report(a, setns(0, 0));
        else if (!strcmp(a, "pivot_root")) report(a, syscall(SYS_pivot_root, "/", "/"));
        else if (!strcmp(a, "io_uring_setup")) report(a, syscall(SYS_io_uring_setup, 1, 0));
        else if (!strcmp(a, "memfd")) report(a, syscall(SYS_memfd_create, "hog", 0));
        else if (!strcmp(a, "int80")) {
            /* getpid through the 32-bit interface: the filter notifies, never kills. */
            long r;
            __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
            if (r < 0) { errno = (int)-r; r = -1; }
            report(a, r);
        }
        else if (!strcmp(a, "spin")) { for (volatile unsigned long n = 0;; n++) {} }
        else if (!strcmp(a, "socket-inet")) report(a, socket(AF_INET, SOCK_STREAM, 0));
        else if (!strcmp(a, "socket-unix")) report(a, socket(AF_UNIX, SOCK_STREAM, 0));
        else if (!strcmp(a, "tcp-connect")) {
            int s = socket(AF_INET, SOCK_STREAM, 0);
            if (s < 0) { report(a, s); continue; }
            struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(80) };
            sin.sin_addr.s_addr = htonl(0x7f000001);
            report(a, connect(s, (struct sockaddr *)&sin, sizeof sin));
        } else if (!strcmp(a, "clone-ns")) {
            long r = syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0);
            if (r == 0) _exit(0);
            if (r > 0) waitpid(r, 0, 0);
            report(a, r);
        } else if (!strcmp(a, "clone3-ns")) {
            struct clone_args ca = { .flags = CLONE_NEWPID, .exit_signal = SIGCHLD };
            long r = syscall(SYS_clone3, &ca, sizeof ca);
            if (r == 0) _exit(0);
            if (r > 0) waitpid(r, 0, 0);
            report(a, r);
        } else if (!strcmp(a, "thread")) {
            pthread_t t;
            int r = pthread_create(&t, 0, thread_main, 0);
            if (r == 0) pthread_join(t, 0); else errno = r;
            report(a, r == 0 ? 0 : -1);
        } else if (!strcmp(a, "forkbomb")) {
            /* Fork until refused; children wait to be killed. Prints how many started. */
            long n = 0;
            for (; n < 2000; n++) {
                pid_t p = fork();
                if (p == 0) { pause(); _exit(0); }
                if (p < 0) break;
            }
            printf("%s: stopped after %ld: %s\n", a, n, strerror(errno));
            fflush(stdout);
            kill(0, SIGKILL);
        } else if (!strcmp(a, "membomb")) {
            /* Allocate and touch 64 MiB at a time until refused. */
            long mib = 0;
            for (;;) {
                char *p = mmap(0, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED) break;
                memset(p, 1, 64 << 20);
                mib += 64;
                if (mib > 64 * 1024) break;
            }
            printf("%s: stopped after %ld MiB: %s\n", a, mib, strerror(errno));
            fflush(stdout);
        } else {
            printf("%s: unknown attempt\n", a);
            return 2;
        }
    }
    return 0;
}
