/*
 * The escape suite's probe, compiled static by the tests (cc -static) into
 * app roots: each operation makes one system call an escape would need,
 * with arguments that do no harm when the call goes through (an invalid
 * reboot magic, too many kexec segments, a made-up file handle, a map of
 * one element), and prints one line:
 *
 *   OP RESULT ERRNO        RESULT is the call's return value, ERRNO 0 on success
 *
 * so the test tells a refusal by the seccomp filter (EPERM before the
 * kernel looks at anything) from one the call would give itself.
 *
 *   probe mount DIR | unshare-user | unshare-mnt | keyctl | bpf | ptrace PID |
 *         reboot | kexec_load | open_by_handle_at | mkdir DIR | getppid |
 *         write FILE TEXT | read FILE | int80-getppid | int80-keyctl
 * The int80 ones make the call through the i386 ABI (x86_64 only).
 * Several operations may follow one another: probe getppid mkdir /x ...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/bpf.h>

static void report(const char *op, long rc)
{
    printf("%s %ld %d\n", op, rc, rc < 0 ? errno : 0);
    fflush(stdout);
}

static long do_bpf(void)
{
    union bpf_attr attr;
    long fd;

    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    if (fd >= 0)
        close((int)fd);
    return fd < 0 ? fd : 0;
}

static long do_ptrace(pid_t pid)
{
    int status;

    if (ptrace(PTRACE_ATTACH, pid, NULL, NULL) < 0)
        return -1;
    waitpid(pid, &status, __WALL);
    ptrace(PTRACE_DETACH, pid, NULL, NULL);
    return 0;
}

static long do_open_by_handle(void)
{
    struct { struct file_handle fh; unsigned char bytes[8]; } h;
    int mount_fd = open("/", O_RDONLY | O_DIRECTORY);
    long fd;

    memset(&h, 0, sizeof h);
    h.fh.handle_bytes = 8;
    h.fh.handle_type = 1;
    fd = syscall(SYS_open_by_handle_at, mount_fd, &h.fh, O_RDONLY);
    if (fd >= 0)
        close((int)fd);
    return fd < 0 ? fd : 0;
}

#if defined(__x86_64__)
/* A system call through the i386 ABI: int $0x80 with the i386 numbers. */
static long int80(long nr, long a, long b, long c)
{
    long ret;

    __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}
#else
static long int80(long nr, long a, long b, long c)
{
    errno = ENOSYS;
    return -1;
}
#endif

static long do_write(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    long rc;

    if (fd < 0)
        return -1;
    rc = write(fd, text, strlen(text));
    close(fd);
    return rc;
}

static long do_read(const char *path)
{
    char buf[4096];
    long total = 0;
    ssize_t n;
    int fd = open(path, O_RDONLY);

    if (fd < 0)
        return -1;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        total += n;
    close(fd);
    return n < 0 ? -1 : total;
}

int main(int argc, char **argv)
{
    int i = 1;

    while (i < argc) {
        const char *op = argv[i++];
        const char *a = i < argc ? argv[i] : "";
        const char *b = i + 1 < argc ? argv[i + 1] : "";

        errno = 0;
        if (!strcmp(op, "mount")) {
            report(op, mount("stage1-probe", a, "tmpfs", 0, "size=4k"));
            i++;
        } else if (!strcmp(op, "unshare-user")) {
            report(op, unshare(CLONE_NEWUSER));
        } else if (!strcmp(op, "unshare-mnt")) {
            report(op, unshare(CLONE_NEWNS));
        } else if (!strcmp(op, "keyctl")) {
            /* KEYCTL_GET_KEYRING_ID of the session keyring, not created */
            report(op, syscall(SYS_keyctl, 0, -3, 0) < 0 ? -1 : 0);
        } else if (!strcmp(op, "bpf")) {
            report(op, do_bpf());
        } else if (!strcmp(op, "ptrace")) {
            report(op, do_ptrace((pid_t)atoi(a)));
            i++;
        } else if (!strcmp(op, "reboot")) {
            report(op, syscall(SYS_reboot, 0, 0, 0, NULL));     /* no valid magic */
        } else if (!strcmp(op, "kexec_load")) {
            report(op, syscall(SYS_kexec_load, 0, 1000, NULL, 0)); /* > KEXEC_SEGMENT_MAX */
        } else if (!strcmp(op, "open_by_handle_at")) {
            report(op, do_open_by_handle());
        } else if (!strcmp(op, "mkdir")) {
            report(op, mkdir(a, 0755));
            i++;
        } else if (!strcmp(op, "getppid")) {
            report(op, getppid() > 0 ? 0 : -1);
        } else if (!strcmp(op, "write")) {
            report(op, do_write(a, b));
            i += 2;
        } else if (!strcmp(op, "int80-getppid")) {
            report(op, int80(64, 0, 0, 0) > 0 ? 0 : -1);
        } else if (!strcmp(op, "int80-keyctl")) {
            report(op, int80(288, 0, -3, 0) < 0 ? -1 : 0);
        } else if (!strcmp(op, "read")) {
            report(op, do_read(a));
            i++;
        } else {
            fprintf(stderr, "probe: unknown operation %s\n", op);
            return 2;
        }
    }
    return 0;
}
