/* The entrypoints of the self-contained stage1 image (stage1/rkt/bundle.py).
 *
 * One static binary, usr/lib/stage1/launch; every entrypoint is a symlink
 * to it and its name says what to run:
 *
 *   run, enter, stop, gc            stage1 run|enter|stop|gc ARGS...
 *   app-add, app-start, ...         stage1 app add|start|... ARGS...
 *   stage1                          stage1 ARGS...
 *   anything else                   the CNI plugin usr/lib/cni/<name> ARGS...
 *
 * It execs the image's interpreter (or the plugin) through the image's own
 * loader with the image's libraries, `LOADER --library-path ROOT/lib PROG
 * ...`, so the host needs nothing but a kernel: not its libc, not even
 * /bin/sh.  The rootfs is found from /proc/self/exe (the launcher's own
 * path, whatever symlink or copy of the rootfs rkt ran: the pod's, or its
 * tree store for enter), else from argv[0].  Nothing is added to or taken
 * from the environment (a shell would export PWD), the argument strings
 * are passed as they came, and the process stays the same one (exec), so
 * rkt's lock fd and the caller's fds, signal mask and ignored signals reach
 * stage1 unchanged.
 *
 * Exit 254 (rkt's code for a failure of stage1 itself) with one line on
 * stderr when it cannot exec.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LOADER
#error "LOADER: the loader's path in the rootfs, e.g. lib64/ld-linux-x86-64.so.2"
#endif
#define DEPTH 4            /* usr/lib/stage1/launch: four names below the rootfs */
#define MAIN "from stage1.commands.main import main; raise SystemExit(main())"

static const struct { const char *name, *words[2]; } commands[] = {
    {"stage1", {NULL, NULL}}, {"run", {"run", NULL}}, {"enter", {"enter", NULL}},
    {"stop", {"stop", NULL}}, {"gc", {"gc", NULL}}, {"app-add", {"app", "add"}},
    {"app-start", {"app", "start"}}, {"app-stop", {"app", "stop"}},
    {"app-rm", {"app", "rm"}},
};

static void fail(const char *what, const char *path)
{
    fprintf(stderr, "stage1: %s %s: %s\n", what, path, strerror(errno));
    exit(254);
}

static char *join(const char *a, const char *b)
{
    char *s = malloc(strlen(a) + strlen(b) + 1);
    if (!s) {
        fputs("stage1: out of memory\n", stderr);
        exit(254);
    }
    return strcat(strcpy(s, a), b);
}

int main(int argc, char **argv)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
    } else if (argc > 0 && strchr(argv[0], '/') && realpath(argv[0], self)) {
        /* no /proc: argv[0], through its symlinks */
    } else {
        fail("unable to find the image from", "/proc/self/exe");
    }
    for (int up = 0; up < DEPTH; up++) {
        char *slash = strrchr(self, '/');
        if (!slash) {
            errno = ENOENT;
            fail("not inside a stage1 image:", self);
        }
        *slash = '\0';
    }
    char *root = self;
    const char *name = argc > 0 ? argv[0] : "stage1";
    if (strrchr(name, '/'))
        name = strrchr(name, '/') + 1;

    char **out = calloc(argc + 12, sizeof *out);
    if (!out) {
        fputs("stage1: out of memory\n", stderr);
        return 254;
    }
    int k = 0;
    char *loader = join(root, "/" LOADER);
    out[k++] = loader;
    out[k++] = "--library-path";
    out[k++] = join(root, "/lib");
    size_t i;
    for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0)
            break;
    if (i < sizeof commands / sizeof commands[0]) {
        out[k++] = join(root, "/usr/bin/python3");
        out[k++] = "-I";
        out[k++] = "-B";
        out[k++] = "-c";
        out[k++] = MAIN;
        for (int w = 0; w < 2 && commands[i].words[w]; w++)
            out[k++] = (char *)commands[i].words[w];
    } else {
        char *plugin = join(join(root, "/usr/lib/cni/"), name);
        if (access(plugin, X_OK) != 0)
            fail("no such entrypoint or CNI plugin:", plugin);
        out[k++] = plugin;
    }
    for (int a = 1; a < argc; a++)
        out[k++] = argv[a];
    out[k] = NULL;
    execv(loader, out);
    fail("unable to execute", loader);
    return 254;
}
