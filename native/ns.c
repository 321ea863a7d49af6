/*
 * Namespaces and mounts: thin wrappers, one system call each (two for the
 * loopback interface), returning 0 or -errno.  Which namespaces a pod gets,
 * what is mounted where and in which order is decided in stage1/isolate.py
 * and stage1/rootfs.py; nothing here knows about pods.
 *
 * The constants stage1.h exports as plain numbers (cffi's parser needs
 * literal enum values) are checked here against the system headers, so a
 * wrong number fails the build instead of a mount.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "stage1.h"

_Static_assert(S1_CLONE_NEWNS == CLONE_NEWNS, "CLONE_NEWNS");
_Static_assert(S1_CLONE_NEWUTS == CLONE_NEWUTS, "CLONE_NEWUTS");
_Static_assert(S1_CLONE_NEWIPC == CLONE_NEWIPC, "CLONE_NEWIPC");
_Static_assert(S1_CLONE_NEWPID == CLONE_NEWPID, "CLONE_NEWPID");
_Static_assert(S1_CLONE_NEWNET == CLONE_NEWNET, "CLONE_NEWNET");
_Static_assert(S1_CLONE_NEWCGROUP == CLONE_NEWCGROUP, "CLONE_NEWCGROUP");
_Static_assert(S1_CLONE_NEWUSER == CLONE_NEWUSER, "CLONE_NEWUSER");
_Static_assert(S1_MS_RDONLY == MS_RDONLY, "MS_RDONLY");
_Static_assert(S1_MS_NOSUID == MS_NOSUID, "MS_NOSUID");
_Static_assert(S1_MS_NODEV == MS_NODEV, "MS_NODEV");
_Static_assert(S1_MS_NOEXEC == MS_NOEXEC, "MS_NOEXEC");
_Static_assert(S1_MS_REMOUNT == MS_REMOUNT, "MS_REMOUNT");
_Static_assert(S1_MS_BIND == MS_BIND, "MS_BIND");
_Static_assert(S1_MS_REC == MS_REC, "MS_REC");
_Static_assert(S1_MS_PRIVATE == MS_PRIVATE, "MS_PRIVATE");
_Static_assert(S1_MS_SLAVE == MS_SLAVE, "MS_SLAVE");
_Static_assert(S1_MS_SHARED == MS_SHARED, "MS_SHARED");
_Static_assert(S1_MNT_DETACH == MNT_DETACH, "MNT_DETACH");
_Static_assert(S1_MOUNT_ATTR_RDONLY == MOUNT_ATTR_RDONLY, "MOUNT_ATTR_RDONLY");

int s1_unshare(int flags)
{
    return unshare(flags) < 0 ? -errno : 0;
}

int s1_setns(int fd, int nstype)
{
    return setns(fd, nstype) < 0 ? -errno : 0;
}

int s1_mount(const char *source, const char *target, const char *fstype,
             unsigned long flags, const char *data)
{
    return mount(source, target, fstype, flags, data) < 0 ? -errno : 0;
}

int s1_umount(const char *target, int flags)
{
    return umount2(target, flags) < 0 ? -errno : 0;
}

/* Set or clear mount attributes on one mount, or (recursive) on the whole
 * tree below it: the one way to make a recursive bind mount read-only in
 * every submount, which MS_REMOUNT cannot do (Linux 5.12). */
int s1_mount_setattr(const char *path, int recursive, uint64_t attr_set, uint64_t attr_clr)
{
    struct mount_attr attr;
    unsigned int flags = recursive ? AT_RECURSIVE : 0;

    memset(&attr, 0, sizeof attr);
    attr.attr_set = attr_set;
    attr.attr_clr = attr_clr;
    if (syscall(SYS_mount_setattr, -1, path, flags, &attr, sizeof attr) < 0)
        return -errno;
    return 0;
}

/* An O_PATH fd of path, resolved without following any symbolic link at any
 * level (ELOOP if there is one).  A host volume is checked and bind-mounted
 * from this fd (through /proc/self/fd), so a symlink swapped into the path
 * after the check cannot redirect the mount. */
int s1_open_nofollow(const char *path)
{
    struct open_how how;
    int fd;

    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
    return fd < 0 ? -errno : fd;
}

/* Mount path's tree over itself with its top mount idmapped through
 * userns_fd's mapping (--private-users): a clone of the tree (open_tree),
 * MOUNT_ATTR_IDMAP on the clone's top mount only (the mounts below it,
 * /proc, /dev, volumes, cannot or must not be shifted), and the clone moved
 * in over the original.  Files owned by 0 on disk are then owned by 0 in
 * the user namespace, and what the namespace's root writes is written as
 * 0, without a chown of the image.  EINVAL/EOPNOTSUPP: the filesystem
 * cannot be idmapped. */
int s1_idmap_bind(const char *path, int userns_fd)
{
    struct mount_attr attr;
    int tree, rc = 0;

    tree = (int)syscall(SYS_open_tree, AT_FDCWD, path,
                        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0)
        return -errno;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_IDMAP;
    attr.userns_fd = (uint64_t)userns_fd;
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0 ||
        syscall(SYS_move_mount, tree, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        rc = -errno;
    close(tree);
    return rc;
}

int s1_sethostname(const char *name)
{
    return sethostname(name, strlen(name)) < 0 ? -errno : 0;
}

/* A new network namespace has `lo`, down: bring it up. */
int s1_loopback_up(void)
{
    struct ifreq ifr;
    int fd, rc = 0;

    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
        rc = -errno;
    } else {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
            rc = -errno;
    }
    close(fd);
    return rc;
}
