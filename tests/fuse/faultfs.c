// faultfs: a passthrough FUSE file system that mirrors a backing directory and, on command,
// answers an errno (or waits) instead of doing the operation. guardmap's tests mount it to make
// the kernel raise real I/O faults on mapped pages: a READ answered with EIO makes the page fault
// fail (SIGBUS), a WRITE answered with EIO makes write-back fail (msync reports it), a FALLOCATE
// answered with ENOSPC is a full disk.
//
//   faultfs [--log FILE] [--max-readahead BYTES] [--writeback-cache 0|1] BACKING MOUNTPOINT
//           [libfuse options...]
//
// It runs in the foreground (-f), multithreaded, until it is unmounted or gets SIGTERM/SIGINT
// (then libfuse unmounts); its parent's death sends it SIGTERM. It is controlled without remounting through a virtual file in the
// root of the mount, /.faultfs-control (see tests/fuse/README.md for the whole grammar):
//
//   write  "fail OPS PATH ERRNO [offset=N] [length=N] [after=N] [times=N] [delay=MS]"
//          "delay OPS PATH MS [offset=N] [length=N] [after=N] [times=N]"
//          "outage"            every operation on every file fails with EIO
//          "heal"              lifts the outage and removes every rule
//          "invalidate PATH"   drops the kernel's cached pages (and attributes) of PATH
//   read   the state: the outage flag, operation counters and every rule with its hit count
//
// OPS is a comma-separated list of read, write, fsync, flush, fallocate, open, getattr,
// truncate, other (every other operation), or any. PATH is a path in the mount ("/data.bin") or "*". A write of an invalid
// command fails with EINVAL, so a test never runs with a fault it did not get.
//
// Why C and not Zig: translate-c (and so @cImport) turns libfuse's `struct fuse_file_info` into
// an opaque type because of its bitfields (direct_io, keep_cache), and this file system must set
// those. It is still built by the project's pinned Zig (`zig build` in this directory compiles
// it with Zig's clang), so no other compiler is needed; only Debian's libfuse3-dev.
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <fuse3/fuse.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define CONTROL_PATH "/.faultfs-control"
#define RULES_MAX 64
#define COMMAND_BYTES_MAX 65536
#define STATUS_BYTES_MAX 65536
// A delay can never hang the caller for long: the test process may be blocked in a page fault
// or msync (a synchronous FFI call) that no JavaScript timeout can interrupt.
#define DELAY_MS_MAX 10000u

enum op {
    OP_READ = 1u << 0,
    OP_WRITE = 1u << 1,
    OP_FSYNC = 1u << 2,
    OP_FLUSH = 1u << 3,
    OP_FALLOCATE = 1u << 4,
    OP_OPEN = 1u << 5,
    OP_GETATTR = 1u << 6,
    OP_TRUNCATE = 1u << 7,
    // Everything else (readdir, unlink, mkdir, rename, chmod, utimens, statfs, access): only an
    // outage or an "any" rule fails them.
    OP_OTHER = 1u << 8,
};
#define OP_COUNT 9
#define OP_ANY ((1u << OP_COUNT) - 1u)
static const char *const op_names[OP_COUNT] = {
    "read", "write", "fsync", "flush", "fallocate", "open", "getattr", "truncate", "other",
};

struct rule {
    unsigned ops;
    char path[PATH_MAX]; // "*" matches every path
    int error;           // 0: only delay
    uint64_t start;      // byte range [start, end) for read, write and fallocate
    uint64_t end;
    uint64_t after; // the first `after` matching operations pass untouched
    uint64_t times; // fail at most this often; 0 = no limit
    unsigned delay_ms;
    uint64_t seen; // matching operations so far
    uint64_t hits; // operations this rule failed or delayed
};

static struct {
    int backing_fd;
    pthread_mutex_t lock;
    bool outage;
    struct rule rules[RULES_MAX];
    unsigned rule_count;
    unsigned next_rule_id;
    unsigned rule_ids[RULES_MAX];
    uint64_t counters[OP_COUNT];
    long max_readahead; // -1: the kernel's default (128 KiB)
    bool writeback_cache; // --writeback-cache 1: let the kernel cache writes (see faultfs_init)
} state = {.backing_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER, .max_readahead = -1};

static void log_line(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("faultfs: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    fflush(stderr);
}

static unsigned op_index(unsigned op) {
    for (unsigned i = 0; i < OP_COUNT; i++) {
        if (op == 1u << i) return i;
    }
    return OP_COUNT - 1;
}

static void sleep_ms(unsigned ms) {
    if (ms > DELAY_MS_MAX) ms = DELAY_MS_MAX;
    struct timespec left = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    // nanosleep stops early on a signal; finish the rest (bounded: it only ever shrinks).
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
}

// Decides the fate of one operation: 0 to do it, or -errno. `has_range` is false for operations
// without a byte range (they match a rule whatever its range). Delays happen here, unlocked.
static int inject(unsigned op, const char *path, bool has_range, uint64_t offset, uint64_t size) {
    if (strcmp(path, CONTROL_PATH) == 0) return 0; // the control file never fails
    unsigned delay_ms = 0;
    int error = 0;
    pthread_mutex_lock(&state.lock);
    state.counters[op_index(op)]++;
    // The root directory's attributes stay readable in an outage, so that the control file can
    // still be looked up (and the mount point stat()ed) to heal it.
    bool is_root_getattr = op == OP_GETATTR && strcmp(path, "/") == 0;
    if (state.outage && !is_root_getattr) {
        error = EIO;
    } else {
        for (unsigned i = 0; i < state.rule_count; i++) {
            struct rule *rule = &state.rules[i];
            if ((rule->ops & op) == 0) continue;
            if (strcmp(rule->path, "*") != 0 && strcmp(rule->path, path) != 0) continue;
            if (has_range) {
                uint64_t end = size > UINT64_MAX - offset ? UINT64_MAX : offset + size;
                // An empty request (size 0) still matches when it sits inside the range.
                bool overlaps = size == 0 ? offset >= rule->start && offset < rule->end
                                          : offset < rule->end && end > rule->start;
                if (!overlaps) continue;
            }
            rule->seen++;
            if (rule->seen <= rule->after) continue;
            if (rule->times != 0 && rule->hits >= rule->times) continue;
            rule->hits++;
            delay_ms += rule->delay_ms;
            if (error == 0) error = rule->error;
        }
    }
    pthread_mutex_unlock(&state.lock);
    if (delay_ms != 0) sleep_ms(delay_ms);
    return -error;
}

// Paths from libfuse start with "/"; the backing directory is opened once and every file is
// reached relative to it, so the daemon never depends on its working directory.
static const char *relative(const char *path) {
    while (*path == '/') path++;
    return *path == '\0' ? "." : path;
}

// --- the control file ---------------------------------------------------------------------

struct errno_name {
    const char *name;
    int value;
};
static const struct errno_name errno_names[] = {
    {"EIO", EIO},         {"ENOSPC", ENOSPC},     {"EDQUOT", EDQUOT},       {"EROFS", EROFS},
    {"EACCES", EACCES},   {"EPERM", EPERM},       {"ENOENT", ENOENT},       {"EAGAIN", EAGAIN},
    {"EINTR", EINTR},     {"ENOMEM", ENOMEM},     {"EFBIG", EFBIG},         {"ENXIO", ENXIO},
    {"EBADF", EBADF},     {"EINVAL", EINVAL},     {"ETIMEDOUT", ETIMEDOUT}, {"ENOSYS", ENOSYS},
    {"ENOTSUP", ENOTSUP}, {"EOPNOTSUPP", EOPNOTSUPP}, {"ESTALE", ESTALE},  {"ENOTCONN", ENOTCONN},
};
#define ERRNO_NAME_COUNT (sizeof(errno_names) / sizeof(errno_names[0]))

static const char *errno_name(int value) {
    for (size_t i = 0; i < ERRNO_NAME_COUNT; i++) {
        if (errno_names[i].value == value) return errno_names[i].name;
    }
    return NULL;
}

static bool parse_u64(const char *text, uint64_t *out) {
    if (*text == '\0' || *text == '-') return false;
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 0);
    if (errno != 0 || *end != '\0') return false;
    *out = value;
    return true;
}

static bool parse_errno(const char *text, int *out) {
    for (size_t i = 0; i < ERRNO_NAME_COUNT; i++) {
        if (strcmp(errno_names[i].name, text) == 0) {
            *out = errno_names[i].value;
            return true;
        }
    }
    uint64_t value = 0;
    if (!parse_u64(text, &value) || value == 0 || value > 4095) return false;
    *out = (int)value;
    return true;
}

static bool parse_ops(char *text, unsigned *out) {
    unsigned ops = 0;
    char *saved = NULL;
    for (char *name = strtok_r(text, ",", &saved); name != NULL;
         name = strtok_r(NULL, ",", &saved)) {
        if (strcmp(name, "any") == 0) {
            ops |= OP_ANY;
            continue;
        }
        unsigned i = 0;
        while (i < OP_COUNT && strcmp(op_names[i], name) != 0) i++;
        if (i == OP_COUNT) return false;
        ops |= 1u << i;
    }
    if (ops == 0) return false;
    *out = ops;
    return true;
}

// "fail OPS PATH ERRNO [key=value...]" or "delay OPS PATH MS [key=value...]".
static int add_rule(bool is_delay, char **words, int count) {
    if (count < 4) return -EINVAL;
    struct rule rule = {.end = UINT64_MAX};
    if (!parse_ops(words[1], &rule.ops)) return -EINVAL;
    if (words[2][0] != '/' && strcmp(words[2], "*") != 0) return -EINVAL;
    if (strlen(words[2]) >= sizeof(rule.path)) return -ENAMETOOLONG;
    strcpy(rule.path, words[2]);
    if (is_delay) {
        uint64_t ms = 0;
        if (!parse_u64(words[3], &ms) || ms > DELAY_MS_MAX) return -EINVAL;
        rule.delay_ms = (unsigned)ms;
    } else if (!parse_errno(words[3], &rule.error)) {
        return -EINVAL;
    }
    uint64_t length = UINT64_MAX;
    for (int i = 4; i < count; i++) {
        char *equals = strchr(words[i], '=');
        if (equals == NULL) return -EINVAL;
        *equals = '\0';
        const char *key = words[i];
        uint64_t value = 0;
        if (!parse_u64(equals + 1, &value)) return -EINVAL;
        if (strcmp(key, "offset") == 0) {
            rule.start = value;
        } else if (strcmp(key, "length") == 0) {
            if (value == 0) return -EINVAL;
            length = value;
        } else if (strcmp(key, "after") == 0) {
            rule.after = value;
        } else if (strcmp(key, "times") == 0) {
            rule.times = value;
        } else if (strcmp(key, "delay") == 0 && !is_delay) {
            if (value > DELAY_MS_MAX) return -EINVAL;
            rule.delay_ms = (unsigned)value;
        } else {
            return -EINVAL;
        }
    }
    rule.end = length > UINT64_MAX - rule.start ? UINT64_MAX : rule.start + length;
    pthread_mutex_lock(&state.lock);
    int result = 0;
    if (state.rule_count == RULES_MAX) {
        result = -ENOSPC;
    } else {
        state.rule_ids[state.rule_count] = ++state.next_rule_id;
        state.rules[state.rule_count++] = rule;
    }
    pthread_mutex_unlock(&state.lock);
    return result;
}

// Runs one command line; returns 0 or -errno.
static int run_command(char *line) {
    char *words[16];
    int count = 0;
    char *saved = NULL;
    for (char *word = strtok_r(line, " \t\r", &saved); word != NULL;
         word = strtok_r(NULL, " \t\r", &saved)) {
        if (count == (int)(sizeof(words) / sizeof(words[0]))) return -E2BIG;
        words[count++] = word;
    }
    if (count == 0 || words[0][0] == '#') return 0; // blank line or comment
    if (strcmp(words[0], "fail") == 0) return add_rule(false, words, count);
    if (strcmp(words[0], "delay") == 0) return add_rule(true, words, count);
    if (count != 1 && strcmp(words[0], "invalidate") != 0) return -EINVAL;
    if (strcmp(words[0], "outage") == 0) {
        pthread_mutex_lock(&state.lock);
        state.outage = true;
        pthread_mutex_unlock(&state.lock);
        return 0;
    }
    if (strcmp(words[0], "heal") == 0) {
        pthread_mutex_lock(&state.lock);
        state.outage = false;
        state.rule_count = 0;
        pthread_mutex_unlock(&state.lock);
        return 0;
    }
    if (strcmp(words[0], "invalidate") == 0) {
        if (count != 2 || words[1][0] != '/') return -EINVAL;
        // Tells the kernel to drop the file's cached pages, unmapping them from every process
        // (invalidate_inode_pages2), so the next touch of a mapped page asks this daemon again.
        // Dirty pages are written back first, which another libfuse worker thread serves.
        int result = fuse_invalidate_path(fuse_get_context()->fuse, words[1]);
        // ENOENT: the kernel never looked the file up, so it has nothing cached.
        return result == -ENOENT ? 0 : result;
    }
    return -EINVAL;
}

static int control_write(const char *buffer, size_t size) {
    if (size > COMMAND_BYTES_MAX) return -EFBIG;
    char *text = malloc(size + 1);
    if (text == NULL) return -ENOMEM;
    memcpy(text, buffer, size);
    text[size] = '\0';
    int result = 0;
    char *saved = NULL;
    for (char *line = strtok_r(text, "\n", &saved); line != NULL && result == 0;
         line = strtok_r(NULL, "\n", &saved)) {
        result = run_command(line);
        if (result != 0) log_line("control: command failed (%s): %s", strerror(-result), line);
    }
    free(text);
    return result == 0 ? (int)size : result;
}

struct text {
    char *bytes;
    size_t length;
};

static void append(struct text *text, const char *format, ...) {
    if (text->length >= STATUS_BYTES_MAX) return;
    va_list args;
    va_start(args, format);
    int written = vsnprintf(text->bytes + text->length, STATUS_BYTES_MAX - text->length, format,
                            args);
    va_end(args);
    if (written > 0) text->length += (size_t)written;
    if (text->length > STATUS_BYTES_MAX) text->length = STATUS_BYTES_MAX;
}

// A snapshot of the state, taken when the control file is opened, served by its reads.
static struct text *status_snapshot(void) {
    struct text *text = calloc(1, sizeof(*text));
    if (text == NULL) return NULL;
    text->bytes = malloc(STATUS_BYTES_MAX + 1);
    if (text->bytes == NULL) {
        free(text);
        return NULL;
    }
    pthread_mutex_lock(&state.lock);
    append(text, "outage %d\nops", state.outage ? 1 : 0);
    for (unsigned i = 0; i < OP_COUNT; i++) {
        append(text, " %s=%" PRIu64, op_names[i], state.counters[i]);
    }
    append(text, "\n");
    for (unsigned i = 0; i < state.rule_count; i++) {
        const struct rule *rule = &state.rules[i];
        append(text, "rule %u %s ", state.rule_ids[i], rule->error != 0 ? "fail" : "delay");
        bool first = true;
        for (unsigned bit = 0; bit < OP_COUNT; bit++) {
            if ((rule->ops & (1u << bit)) == 0) continue;
            append(text, "%s%s", first ? "" : ",", op_names[bit]);
            first = false;
        }
        const char *name = errno_name(rule->error);
        if (rule->error == 0) {
            append(text, " %s %u", rule->path, rule->delay_ms);
        } else if (name != NULL) {
            append(text, " %s %s delay=%u", rule->path, name, rule->delay_ms);
        } else {
            append(text, " %s %d delay=%u", rule->path, rule->error, rule->delay_ms);
        }
        append(text,
               " offset=%" PRIu64 " end=%" PRIu64 " after=%" PRIu64 " times=%" PRIu64
               " seen=%" PRIu64 " hits=%" PRIu64 "\n",
               rule->start, rule->end, rule->after, rule->times, rule->seen, rule->hits);
    }
    pthread_mutex_unlock(&state.lock);
    return text;
}

static bool is_control(const char *path) { return strcmp(path, CONTROL_PATH) == 0; }

// --- passthrough operations -----------------------------------------------------------------

static void *faultfs_init(struct fuse_conn_info *conn, struct fuse_config *config) {
    // Report the backing files' inode numbers, and cache no attributes or names: the tests look
    // at the backing directory directly and must see the file system as it is now.
    config->use_ino = 1;
    config->attr_timeout = 0;
    config->entry_timeout = 0;
    config->negative_timeout = 0;
    // Mapped pages need the page cache (direct_io would refuse or bypass MAP_SHARED). Keep it,
    // but never let libfuse keep it across opens (kernel_cache/auto_cache), and stop the kernel
    // from dropping it on its own when the attributes change (auto_inval_data): the tests decide
    // when cached pages go, with "invalidate", so a fault is never hidden or invented by chance.
    config->kernel_cache = 0;
    config->auto_cache = 0;
    config->direct_io = 0;
    conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
    // Without the writeback cache every dirty mapped page goes to this daemon as a WRITE, so a
    // failing WRITE is exactly a failing write-back. With it (--writeback-cache 1), write(2)
    // also only dirties the page cache, as on ext4, and a failing WRITE is a failing write-back
    // of pages written through the descriptor too.
    if (state.writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE) != 0) {
        conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    } else {
        conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
    }
    // The readahead window (fuse_main has no option for it): how much the kernel asks for
    // around a page fault, so how far a failing READ can reach beyond the faulting page.
    if (state.max_readahead >= 0) conn->max_readahead = (unsigned)state.max_readahead;
    log_line("ready (max_readahead %u, max_write %u, writeback_cache %d)", conn->max_readahead,
             conn->max_write, (conn->want & FUSE_CAP_WRITEBACK_CACHE) != 0);
    return NULL;
}

static int faultfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    if (is_control(path)) {
        memset(st, 0, sizeof(*st));
        st->st_mode = S_IFREG | 0600;
        st->st_nlink = 1;
        st->st_uid = getuid();
        st->st_gid = getgid();
        return 0;
    }
    int injected = inject(OP_GETATTR, path, false, 0, 0);
    if (injected != 0) return injected;
    int result = fi != NULL ? fstat((int)fi->fh, st)
                            : fstatat(state.backing_fd, relative(path), st, AT_SYMLINK_NOFOLLOW);
    return result == 0 ? 0 : -errno;
}

static int faultfs_access(const char *path, int mask) {
    if (is_control(path)) return 0;
    int injected = inject(OP_OTHER, path, false, 0, 0);
    if (injected != 0) return injected;
    return faccessat(state.backing_fd, relative(path), mask, 0) == 0 ? 0 : -errno;
}

static int faultfs_readdir(const char *path, void *buffer, fuse_fill_dir_t fill, off_t offset,
                           struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
    (void)offset;
    (void)fi;
    (void)flags;
    int injected = inject(OP_OTHER, path, false, 0, 0);
    if (injected != 0) return injected;
    int fd = openat(state.backing_fd, relative(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    DIR *dir = fdopendir(fd);
    if (dir == NULL) {
        int error = errno;
        close(fd);
        return -error;
    }
    // The control file is not listed: the mount mirrors the backing directory exactly.
    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
        struct stat st = {.st_ino = entry->d_ino, .st_mode = (mode_t)entry->d_type << 12};
        if (fill(buffer, entry->d_name, &st, 0, 0) != 0) break;
    }
    closedir(dir);
    return 0;
}

static int faultfs_mkdir(const char *path, mode_t mode) {
    int injected = inject(OP_OTHER, path, false, 0, 0);
    if (injected != 0) return injected;
    return mkdirat(state.backing_fd, relative(path), mode) == 0 ? 0 : -errno;
}

static int faultfs_unlink(const char *path) {
    if (is_control(path)) return -EPERM;
    int injected = inject(OP_OTHER, path, false, 0, 0);
    if (injected != 0) return injected;
    return unlinkat(state.backing_fd, relative(path), 0) == 0 ? 0 : -errno;
}

static int faultfs_rmdir(const char *path) {
    int injected = inject(OP_OTHER, path, false, 0, 0);
    if (injected != 0) return injected;
    return unlinkat(state.backing_fd, relative(path), AT_REMOVEDIR) == 0 ? 0 : -errno;
}

static int faultfs_rename(const char *from, const char *to, unsigned int flags) {
    if (is_control(from) || is_control(to)) return -EPERM;
    if (flags != 0) return -EINVAL; // RENAME_NOREPLACE/EXCHANGE: not needed by the tests
    int injected = inject(OP_OTHER, from, false, 0, 0);
    if (injected != 0) return injected;
    int result = renameat(state.backing_fd, relative(from), state.backing_fd, relative(to));
    return result == 0 ? 0 : -errno;
}

static int faultfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
    if (is_control(path)) return 0;
    int injected = inject(OP_OTHER, path, false, 0, 0);
    if (injected != 0) return injected;
    int result = fi != NULL ? fchmod((int)fi->fh, mode)
                            : fchmodat(state.backing_fd, relative(path), mode, 0);
    return result == 0 ? 0 : -errno;
}

static int faultfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi) {
    if (is_control(path)) return 0;
    int injected = inject(OP_OTHER, path, false, 0, 0);
    if (injected != 0) return injected;
    int result = fi != NULL
                     ? fchown((int)fi->fh, uid, gid)
                     : fchownat(state.backing_fd, relative(path), uid, gid, AT_SYMLINK_NOFOLLOW);
    return result == 0 ? 0 : -errno;
}

static int faultfs_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
    if (is_control(path)) return 0; // "> .faultfs-control" truncates before writing a command
    int injected = inject(OP_TRUNCATE, path, false, 0, 0);
    if (injected != 0) return injected;
    if (fi != NULL) return ftruncate((int)fi->fh, size) == 0 ? 0 : -errno;
    int fd = openat(state.backing_fd, relative(path), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int result = ftruncate(fd, size) == 0 ? 0 : -errno;
    close(fd);
    return result;
}

static int faultfs_utimens(const char *path, const struct timespec times[2],
                           struct fuse_file_info *fi) {
    if (is_control(path)) return 0;
    int injected = inject(OP_OTHER, path, false, 0, 0);
    if (injected != 0) return injected;
    int result = fi != NULL ? futimens((int)fi->fh, times)
                            : utimensat(state.backing_fd, relative(path), times,
                                        AT_SYMLINK_NOFOLLOW);
    return result == 0 ? 0 : -errno;
}

static int control_open(struct fuse_file_info *fi) {
    // Reads and writes of the control file must reach the daemon every time, uncached.
    fi->direct_io = 1;
    fi->keep_cache = 0;
    fi->nonseekable = 1;
    struct text *snapshot = status_snapshot();
    if (snapshot == NULL) return -ENOMEM;
    fi->fh = (uint64_t)(uintptr_t)snapshot;
    return 0;
}

// Opens the backing file. keep_cache stays 0, so every open drops the kernel's cached pages of
// the file: a fresh open sees the backing file (and any fault) as it is now.
static int faultfs_open(const char *path, struct fuse_file_info *fi) {
    if (is_control(path)) return control_open(fi);
    int injected = inject(OP_OPEN, path, false, 0, 0);
    if (injected != 0) return injected;
    int fd = openat(state.backing_fd, relative(path), (fi->flags & ~O_NOFOLLOW) | O_CLOEXEC);
    if (fd < 0) return -errno;
    fi->fh = (uint64_t)fd;
    fi->keep_cache = 0;
    return 0;
}

static int faultfs_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
    if (is_control(path)) return control_open(fi);
    int injected = inject(OP_OPEN, path, false, 0, 0);
    if (injected != 0) return injected;
    int fd = openat(state.backing_fd, relative(path), fi->flags | O_CREAT | O_CLOEXEC, mode);
    if (fd < 0) return -errno;
    fi->fh = (uint64_t)fd;
    return 0;
}

// A READ that overlaps a failing range fails whole, never short: the kernel takes a short read
// for the end of the file, zero-fills the rest and may even shrink its idea of the file's size.
static int faultfs_read(const char *path, char *buffer, size_t size, off_t offset,
                        struct fuse_file_info *fi) {
    if (is_control(path)) {
        const struct text *text = (const struct text *)(uintptr_t)fi->fh;
        if (offset < 0 || (size_t)offset >= text->length) return 0;
        size_t count = text->length - (size_t)offset;
        if (count > size) count = size;
        memcpy(buffer, text->bytes + offset, count);
        return (int)count;
    }
    int injected = inject(OP_READ, path, true, (uint64_t)offset, size);
    if (injected != 0) return injected;
    size_t done = 0;
    // pread returns less than asked only at the end of the file or on a signal: bounded by size.
    while (done < size) {
        ssize_t count = pread((int)fi->fh, buffer + done, size - done, offset + (off_t)done);
        if (count < 0 && errno == EINTR) continue;
        if (count < 0) return -errno;
        if (count == 0) break;
        done += (size_t)count;
    }
    return (int)done;
}

static int faultfs_write(const char *path, const char *buffer, size_t size, off_t offset,
                         struct fuse_file_info *fi) {
    if (is_control(path)) return control_write(buffer, size);
    int injected = inject(OP_WRITE, path, true, (uint64_t)offset, size);
    if (injected != 0) return injected;
    size_t done = 0;
    while (done < size) {
        ssize_t count = pwrite((int)fi->fh, buffer + done, size - done, offset + (off_t)done);
        if (count < 0 && errno == EINTR) continue;
        if (count < 0) return -errno;
        if (count == 0) return -EIO;
        done += (size_t)count;
    }
    return (int)done;
}

static int faultfs_statfs(const char *path, struct statvfs *st) {
    int injected = inject(OP_OTHER, path, false, 0, 0);
    if (injected != 0) return injected;
    return fstatvfs(state.backing_fd, st) == 0 ? 0 : -errno;
}

// close(2) on the mount: report an injected error (close returns it); otherwise pass through.
static int faultfs_flush(const char *path, struct fuse_file_info *fi) {
    if (is_control(path)) return 0;
    int injected = inject(OP_FLUSH, path, false, 0, 0);
    if (injected != 0) return injected;
    int copy = dup((int)fi->fh);
    if (copy < 0) return -errno;
    return close(copy) == 0 ? 0 : -errno;
}

static int faultfs_release(const char *path, struct fuse_file_info *fi) {
    if (is_control(path)) {
        struct text *text = (struct text *)(uintptr_t)fi->fh;
        free(text->bytes);
        free(text);
        return 0;
    }
    close((int)fi->fh); // never injected: the kernel ignores release errors, the fd must go
    return 0;
}

static int faultfs_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
    if (is_control(path)) return 0;
    int injected = inject(OP_FSYNC, path, false, 0, 0);
    if (injected != 0) return injected;
    int result = datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh);
    return result == 0 ? 0 : -errno;
}

static int faultfs_fallocate(const char *path, int mode, off_t offset, off_t length,
                             struct fuse_file_info *fi) {
    if (is_control(path)) return -EOPNOTSUPP;
    int injected = inject(OP_FALLOCATE, path, true, (uint64_t)offset, (uint64_t)length);
    if (injected != 0) return injected;
    return fallocate((int)fi->fh, mode, offset, length) == 0 ? 0 : -errno;
}

static const struct fuse_operations operations = {
    .init = faultfs_init,
    .getattr = faultfs_getattr,
    .access = faultfs_access,
    .readdir = faultfs_readdir,
    .mkdir = faultfs_mkdir,
    .unlink = faultfs_unlink,
    .rmdir = faultfs_rmdir,
    .rename = faultfs_rename,
    .chmod = faultfs_chmod,
    .chown = faultfs_chown,
    .truncate = faultfs_truncate,
    .utimens = faultfs_utimens,
    .open = faultfs_open,
    .create = faultfs_create,
    .read = faultfs_read,
    .write = faultfs_write,
    .statfs = faultfs_statfs,
    .flush = faultfs_flush,
    .release = faultfs_release,
    .fsync = faultfs_fsync,
    .fallocate = faultfs_fallocate,
};

static int usage(void) {
    fprintf(stderr, "usage: faultfs [--log FILE] [--max-readahead BYTES] [--writeback-cache 0|1] "
                    "BACKING MOUNTPOINT [libfuse options...]\n");
    return 2;
}

int main(int argc, char *argv[]) {
    int first = 1;
    // Our own options come first, each with one value; the loop ends at the first other word.
    while (first + 1 < argc && strncmp(argv[first], "--", 2) == 0) {
        const char *value = argv[first + 1];
        if (strcmp(argv[first], "--log") == 0) {
            // Log to a file rather than a pipe nobody may be reading (a full pipe blocks us).
            if (freopen(value, "a", stderr) == NULL) {
                perror("faultfs: --log");
                return 1;
            }
        } else if (strcmp(argv[first], "--max-readahead") == 0) {
            uint64_t bytes = 0;
            if (!parse_u64(value, &bytes) || bytes > UINT32_MAX) return usage();
            state.max_readahead = (long)bytes;
        } else if (strcmp(argv[first], "--writeback-cache") == 0) {
            if (strcmp(value, "0") != 0 && strcmp(value, "1") != 0) return usage();
            state.writeback_cache = strcmp(value, "1") == 0;
        } else {
            return usage();
        }
        first += 2;
    }
    if (argc - first < 2) return usage();
    // When the test process dies without unmounting (a CI timeout kills it), SIGTERM reaches us
    // and libfuse unmounts and exits, so no dead mount is left behind in /tmp.
    pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) {
        log_line("the parent process is gone (or PR_SET_PDEATHSIG failed): not mounting");
        return 1;
    }
    state.backing_fd = open(argv[first], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (state.backing_fd < 0) {
        log_line("cannot open the backing directory %s: %s", argv[first], strerror(errno));
        return 1;
    }
    // libfuse's arguments: the mount point, foreground (the caller owns our pid and kills it),
    // a recognisable name in /proc/mounts, an explicit thread limit (libfuse 3.14's fuse_main
    // otherwise complains about its own default), then whatever the caller added.
    int fuse_argc = 0;
    char **fuse_argv = calloc((size_t)argc + 8, sizeof(char *));
    if (fuse_argv == NULL) return 1;
    fuse_argv[fuse_argc++] = argv[0];
    fuse_argv[fuse_argc++] = argv[first + 1];
    fuse_argv[fuse_argc++] = "-f";
    fuse_argv[fuse_argc++] = "-o";
    fuse_argv[fuse_argc++] = "fsname=faultfs,subtype=faultfs,max_threads=16,max_idle_threads=8";
    for (int i = first + 2; i < argc; i++) fuse_argv[fuse_argc++] = argv[i];
    int result = fuse_main(fuse_argc, fuse_argv, &operations, NULL);
    log_line("exiting (%d)", result);
    free(fuse_argv);
    close(state.backing_fd);
    return result;
}
