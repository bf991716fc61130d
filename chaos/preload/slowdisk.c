/*
 * The chaos harness's slow disk: preloaded into a node (LD_PRELOAD), it
 * makes every fsync and fdatasync of that process wait as many
 * milliseconds as the file named by STRATA_SLOW_DISK_FILE says (no file,
 * 0 or garbage: no wait; at most 10 s), then calls the C library's own.
 * strata itself knows nothing of it. Built by the harness at run time:
 *   cc -shared -fPIC -O2 -o slowdisk.so slowdisk.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void slow_down(void) {
    const char *path = getenv("STRATA_SLOW_DISK_FILE");
    if (path == NULL) return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[24];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = '\0';
    long ms = strtol(buf, NULL, 10);
    if (ms <= 0) return;
    if (ms > 10000) ms = 10000;
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

typedef int (*sync_fn)(int);

static int call_next(const char *name, int fd) {
    int saved = errno;
    slow_down();
    errno = saved;
    sync_fn next = (sync_fn)dlsym(RTLD_NEXT, name);
    if (next == NULL) {
        errno = ENOSYS;
        return -1;
    }
    return next(fd);
}

int fsync(int fd) { return call_next("fsync", fd); }
int fdatasync(int fd) { return call_next("fdatasync", fd); }
