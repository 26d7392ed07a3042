/*
 * statx-compat: preloaded (via /etc/ld.so.preload) into every dynamically linked program of a gVisor
 * sandbox. Built on the host by GVisorBackend (cc -shared -fPIC) and placed in the sandbox's private
 * root overlay; never in the shared image.
 *
 * Why: the runsc of Debian 12 (0.0~20221219) answers EINVAL to statx(2) and newfstatat(2) whenever
 * the flags carry AT_NO_AUTOMOUNT (0x800). coreutils 9 (ls, stat, du, cp, ...) always passes it, so
 * `ls -l` and `stat` fail with "Invalid argument" on every path. gVisor has no automounts, so the
 * flag means nothing there: dropping it before the call is exact, not an approximation.
 *
 * Only flags are touched; no path, buffer or result is inspected. Static binaries and programs that
 * issue the raw syscall (libuv) are unaffected, which is fine: they do not pass the flag.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#ifndef AT_NO_AUTOMOUNT
#define AT_NO_AUTOMOUNT 0x800
#endif

/* Not reached with a glibc that lacks the symbol (a program linked against it would not call ours). */
#define MISSING(fn) \
  do {              \
    if (!fn) {      \
      errno = ENOSYS; \
      return -1;    \
    }               \
  } while (0)

typedef int (*statx_fn)(int, const char *, int, unsigned int, struct statx *);
typedef int (*fstatat_fn)(int, const char *, void *, int);

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf) {
  static statx_fn real;
  if (!real) real = (statx_fn)dlsym(RTLD_NEXT, "statx");
  MISSING(real);
  return real(dirfd, path, flags & ~AT_NO_AUTOMOUNT, mask, buf);
}

int fstatat(int dirfd, const char *path, struct stat *buf, int flags) {
  static fstatat_fn real;
  if (!real) real = (fstatat_fn)dlsym(RTLD_NEXT, "fstatat");
  MISSING(real);
  return real(dirfd, path, buf, flags & ~AT_NO_AUTOMOUNT);
}

int fstatat64(int dirfd, const char *path, struct stat64 *buf, int flags) {
  static fstatat_fn real;
  if (!real) real = (fstatat_fn)dlsym(RTLD_NEXT, "fstatat64");
  MISSING(real);
  return real(dirfd, path, buf, flags & ~AT_NO_AUTOMOUNT);
}
