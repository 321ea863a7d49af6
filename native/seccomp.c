/*
 * Seccomp filters, built in the parent with libseccomp and handed over as a
 * classic BPF program: which syscalls a filter allows or blocks, and how,
 * is decided in stage1/isolation/seccomp.py; this file only turns a list of
 * (name, action) rules into instructions.
 *
 * libseccomp 2.5 (Debian 12) can only export a program to a file
 * descriptor, so it is exported to a memfd and read back into memory the
 * caller owns.  The child installs it with the raw seccomp(2) call
 * (spawn.c), so nothing of libseccomp runs between fork and exec.
 *
 * The filter also covers the 32-bit ABI of the native architecture (i386
 * on x86_64, arm on aarch64), as Docker's and systemd's do, so 32-bit
 * programs run and are judged by the same rules.  Not x32: kernels rarely
 * have it (Debian's do not by default), and it would add half again to the
 * program, whose size the kernel pays for at every install (it emulates the
 * filter for each syscall number to cache the allowed ones).  A syscall
 * through any other ABI gets libseccomp's action for a bad architecture:
 * the kill.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <seccomp.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "stage1.h"

_Static_assert(S1_SECCOMP_INSN_SIZE == 8, "struct sock_filter is 8 bytes");

static uint32_t s1_action(int action)
{
    if (action == S1_SECCOMP_ALLOW)
        return SCMP_ACT_ALLOW;
    if (action == S1_SECCOMP_KILL)
        return SCMP_ACT_KILL_PROCESS;
    return SCMP_ACT_ERRNO((uint32_t)action);
}

int s1_seccomp_known(const char *name)
{
    /* A name of another architecture only (chown32 on x86_64) resolves to
     * a negative pseudo-number: known, and skipped where it does not exist. */
    return seccomp_syscall_resolve_name(name) != __NR_SCMP_ERROR;
}

static int s1_add_compat_archs(scmp_filter_ctx ctx)
{
    static const uint32_t x86_64[] = { SCMP_ARCH_X86, 0 };
    static const uint32_t aarch64[] = { SCMP_ARCH_ARM, 0 };
    const uint32_t *archs = NULL;
    int i, rc;

    if (seccomp_arch_native() == SCMP_ARCH_X86_64)
        archs = x86_64;
    else if (seccomp_arch_native() == SCMP_ARCH_AARCH64)
        archs = aarch64;
    for (i = 0; archs && archs[i]; i++) {
        rc = seccomp_arch_add(ctx, archs[i]);
        if (rc < 0 && rc != -EEXIST)
            return rc;
    }
    return 0;
}

static int s1_read_all(int fd, char *out, size_t size)
{
    size_t got = 0;
    ssize_t rc;

    while (got < size) {
        rc = pread(fd, out + got, size - got, (off_t)got);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return rc < 0 ? -errno : -EIO;
        got += (size_t)rc;
    }
    return 0;
}

static int s1_export(scmp_filter_ctx ctx, void *out, int max_insns)
{
    off_t size;
    int fd, rc;

    fd = memfd_create("stage1-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0)
        goto out;
    size = lseek(fd, 0, SEEK_END);
    if (size < 0) {
        rc = -errno;
        goto out;
    }
    if (size == 0 || size % S1_SECCOMP_INSN_SIZE) {
        rc = -EINVAL;
        goto out;
    }
    if (size / S1_SECCOMP_INSN_SIZE > max_insns) {
        rc = -E2BIG;
        goto out;
    }
    rc = s1_read_all(fd, out, (size_t)size);
    if (rc == 0)
        rc = (int)(size / S1_SECCOMP_INSN_SIZE);
out:
    close(fd);
    return rc;
}

/* default_action and actions[i] are S1_SECCOMP_ALLOW, S1_SECCOMP_KILL or an
 * errno.  Returns the number of instructions written to out, or -errno;
 * -EINVAL with *bad_out = i when libseccomp does not know names[i]. */
int s1_seccomp_build(int default_action, const char *const *names, const int *actions,
                     int n, int *bad_out, void *out, int max_insns)
{
    scmp_filter_ctx ctx;
    int i, nr, rc;

    *bad_out = -1;
    ctx = seccomp_init(s1_action(default_action));
    if (!ctx)
        return -EINVAL;
    rc = s1_add_compat_archs(ctx);
    if (rc < 0)
        goto out;
    /* A binary tree of the syscall numbers rather than a list: a long
     * whitelist costs a few comparisons per syscall, not hundreds.  Older
     * libseccomp lacks the attribute and builds the list. */
    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    for (i = 0; i < n; i++) {
        nr = seccomp_syscall_resolve_name(names[i]);
        if (nr == __NR_SCMP_ERROR) {
            *bad_out = i;
            rc = -EINVAL;
            goto out;
        }
        rc = seccomp_rule_add(ctx, s1_action(actions[i]), nr, 0);
        if (rc < 0) {
            *bad_out = i;
            goto out;
        }
    }
    rc = s1_export(ctx, out, max_insns);
out:
    seccomp_release(ctx);
    return rc;
}
