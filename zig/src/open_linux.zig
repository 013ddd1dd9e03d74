//! Linux: the open path of os_linux.map_open. Opening without blocking on whatever a path names
//! (FIFOs, sockets, devices are refused by kind before they are opened), and mode w+'s checks
//! before it truncates anything (RLIMIT_FSIZE, the file system's largest file, the free space),
//! with every block given back when the reservation fails after them.
const std = @import("std");
const assert = std.debug.assert;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Mode = status_zig.Mode;
const window_zig = @import("window.zig");
const os = @import("os_linux.zig");
const Handle = os.Handle;
const OpenError = os.OpenError;
const Statx = os.Statx;
const fail_code = os.fail_code;
const open = os.open;
const close = os.close;
const statx = os.statx;
const fallocate = os.fallocate;
const ftruncate = os.ftruncate;
const errno = os.errno;

extern "c" fn fcntl(fd: c_int, command: c_int, ...) c_int;
extern "c" fn unlink(path: [*:0]const u8) c_int;
extern "c" fn readlink(path: [*:0]const u8, buffer: [*]u8, size: usize) isize;

/// PATH_MAX on Linux: the longest name the kernel gives back for a descriptor.
const path_bytes_max = 4096;
extern "c" fn fstatvfs(fd: c_int, out: *Statvfs) c_int;
extern "c" fn geteuid() c_uint;
extern "c" fn futimens(fd: c_int, times: *const [2]Timespec) c_int;

/// `struct timespec` on 64-bit Linux.
const Timespec = extern struct { seconds: i64, nanoseconds: i64 };
comptime {
    assert(@sizeOf(Timespec) == 16);
}

const o_excl: c_int = 0o200;
const o_nonblock: c_int = 0o4000;
const o_path: c_int = 0o10000000;
const f_getfl: c_int = 3;
const f_setfl: c_int = 4;
const falloc_keep_size: c_int = 1;
const falloc_punch_hole: c_int = 2;
const at_fdcwd: c_int = -100;
const at_symlink_nofollow: c_int = 0x100;
const statx_ino: c_uint = 0x100;
const enoent = 2;
const eagain = 11;
const eexist = 17;
const efbig = 27;
const enosys = 38;
const eopnotsupp = 95;

/// glibc's `struct statvfs` on 64-bit Linux.
const Statvfs = extern struct {
    block_bytes: u64,
    fragment_bytes: u64,
    blocks: u64,
    blocks_free: u64,
    blocks_available: u64,
    files: u64,
    files_free: u64,
    files_available: u64,
    fsid: u64,
    flag: u64,
    name_max: u64,
    spare: [6]c_int,
};
comptime {
    assert(@sizeOf(Statvfs) == 112);
    assert(@offsetOf(Statvfs, "blocks_available") == 32);
}

/// The kind of file a path names, in OpenResult.file_kind (S_IFMT >> 12).
pub const FileKind = status_zig.FileKind;

pub fn kind_of(mode_bits: u16) FileKind {
    return std.meta.intToEnum(FileKind, (mode_bits & os.s_ifmt) >> 12) catch .unknown;
}

/// How often an open looks at the path again when it changed between two steps (a file removed
/// or created meanwhile): a bound on retries, never a wait.
const open_attempts_max = 4;

pub const Opened = struct { fd: Handle, created: bool };

/// Opens `path` for `mode` without ever blocking on what it names and without opening anything
/// but a regular file. The kind is read first through an O_PATH descriptor, which opens nothing
/// (no FIFO waits for a writer, no device driver's open runs, a socket is not refused with a
/// misleading ENXIO). The real open adds O_NONBLOCK in case the path was replaced in between,
/// and map_fd checks the kind again on the descriptor itself.
pub fn open_regular(path: [*:0]const u8, mode: Mode, opened: *Opened) ?OpenError {
    const access: c_int = if (mode == .read or mode == .copy_on_write) os.o_rdonly else os.o_rdwr;
    const flags = os.o_cloexec | os.o_noctty | o_nonblock | access;
    for (0..open_attempts_max) |_| {
        const probe = open(path, o_path | os.o_cloexec);
        if (probe < 0) {
            const code = errno();
            if (code != enoent or mode != .create) return fail_code(code);
            const fd = open(path, flags | os.o_creat | o_excl, @as(c_uint, 0o644));
            if (fd >= 0) return opened_blocking(fd, true, opened);
            const create_code = errno();
            // EEXIST: created meanwhile, or a dangling symbolic link (handled after the loop).
            if (create_code != eexist) return fail_code(create_code);
            continue;
        }
        const kind = kind_of_fd(probe);
        _ = close(probe);
        if (kind != .regular) return not_regular(kind);
        const fd = open_nonblocking(path, flags);
        if (fd >= 0) return opened_blocking(fd, false, opened);
        const code = errno();
        if (code != enoent) return fail_code(code);
        // Removed since the probe: look again.
    }
    if (mode != .create) return .{ .status = .not_found, .os_error = enoent };
    // A dangling symbolic link: O_EXCL refuses it, O_CREAT creates its target as open(2) does.
    // The target did not exist (the probe found nothing), so this open created it.
    const fd = open(path, flags | os.o_creat, @as(c_uint, 0o644));
    if (fd < 0) return fail_code(errno());
    return opened_blocking(fd, true, opened);
}

/// A file under a lease (held by Samba or an NFS server, say) makes an O_NONBLOCK open fail
/// with EAGAIN instead of waiting for the holder to let go: the probe saw a regular file, so
/// wait as a plain open would.
fn open_nonblocking(path: [*:0]const u8, flags: c_int) c_int {
    assert(flags & o_nonblock != 0);
    const fd = open(path, flags);
    if (fd >= 0 or errno() != eagain) return fd;
    return open(path, flags & ~o_nonblock);
}

/// O_NONBLOCK was only for the open: clear it so that pwrite and friends behave as usual.
fn opened_blocking(fd: Handle, created: bool, opened: *Opened) ?OpenError {
    assert(fd >= 0);
    const flags = fcntl(fd, f_getfl);
    if (flags >= 0) _ = fcntl(fd, f_setfl, flags & ~o_nonblock);
    opened.* = .{ .fd = fd, .created = created };
    return null;
}

fn kind_of_fd(fd: Handle) FileKind {
    var info: Statx = undefined;
    if (statx(fd, "", os.at_empty_path, os.statx_type, &info) != 0) return .unknown;
    return kind_of(info.mode);
}

pub fn not_regular(kind: FileKind) OpenError {
    assert(kind != .regular);
    const status: Status = if (kind == .directory) .is_directory else .not_regular_file;
    return .{ .status = status, .os_error = if (kind == .directory) 21 else 0, .file_kind = @intFromEnum(kind) };
}

/// A failed "w+" removes the file it created, unless its name names another file by now. The
/// name is the one the kernel holds for the descriptor (/proc/self/fd), not `path`: a "w+"
/// through a dangling symbolic link created the link's target, which `path` does not name.
pub fn remove_created(path: [*:0]const u8, fd: Handle) void {
    var link_buffer: [32]u8 = undefined;
    const link = std.fmt.bufPrintZ(&link_buffer, "/proc/self/fd/{d}", .{fd}) catch unreachable;
    var name_buffer: [path_bytes_max + 1]u8 = undefined;
    const length = readlink(link, &name_buffer, path_bytes_max);
    // No /proc: the path given is the best name there is (a link's target then stays).
    const name: [*:0]const u8 = if (length > 0 and length < path_bytes_max) name: {
        name_buffer[@intCast(length)] = 0;
        break :name @ptrCast(&name_buffer);
    } else path;
    var ours: Statx = undefined;
    var named: Statx = undefined;
    if (statx(fd, "", os.at_empty_path, statx_ino, &ours) != 0) return;
    if (statx(at_fdcwd, name, at_symlink_nofollow, statx_ino, &named) != 0) return;
    if (ours.ino != named.ino or ours.dev_major != named.dev_major or ours.dev_minor != named.dev_minor) return;
    _ = unlink(name);
}

/// Mode w+: checks that the window can be had before anything changes, then truncates the file
/// and sizes it to `offset + length`, reserving the window's blocks (fallocate) so that a full
/// disk is ENOSPC now rather than SIGBUS on a later write. What happens to the old content:
/// - a check fails (RLIMIT_FSIZE, the file system's largest file, the free space): the file is
///   not touched, content and size stay as they were;
/// - the reservation fails all the same (another writer took the space meanwhile, a quota,
///   metadata blocks the estimate cannot see): the file is truncated to 0 bytes, which gives
///   back every block the attempt took; the old content is gone, as w+ had discarded it.
pub fn size_for_create(fd: Handle, offset: u64, length_bytes: u64, old: *const Statx) ?OpenError {
    assert(length_bytes > 0);
    assert(length_bytes <= window_zig.file_offset_max - offset);
    const end = offset + length_bytes;
    if (check_create(fd, offset, end, old)) |failure| return failure;
    // The point of no return: the old content goes.
    if (ftruncate(fd, 0) != 0) return fail_code(errno());
    if (fallocate(fd, 0, @intCast(offset), @intCast(length_bytes)) == 0) return null;
    var code = errno();
    if (code == eopnotsupp or code == enosys) {
        // The file system cannot reserve blocks; size the file without them.
        if (ftruncate(fd, @intCast(end)) == 0) return null;
        code = errno();
    }
    give_back(fd);
    // limit_bytes tells the caller that the file was truncated: the old content is gone.
    return .{ .status = os.status_from_errno(code), .os_error = code, .limit_bytes = length_bytes };
}

/// After a failed reservation (ext4 keeps the blocks it allocated before running out, and the
/// size that covers them): truncating to 0 returns every block.
pub fn give_back(fd: Handle) void {
    _ = ftruncate(fd, 0);
}

/// The checks of a "w+" that need no change to the file, in the order a user fixes them.
fn check_create(fd: Handle, offset: u64, end: u64, old: *const Statx) ?OpenError {
    // fallocate and ftruncate past RLIMIT_FSIZE raise SIGXFSZ, which kills the process.
    const limit = os.file_size_limit();
    if (end > limit) return .{ .status = .file_size_limit, .os_error = efbig, .limit_bytes = limit };
    if (end <= old.size) return check_space(fd, offset, end, old);
    const failure = if (largest_file_bytes(fd, old.size, end)) |largest|
        OpenError{ .status = .file_too_large, .os_error = efbig, .limit_bytes = largest }
    else
        check_space(fd, offset, end, old);
    // The probes punched nothing, but file systems stamp the file as modified all the same: a
    // refused open puts the times back (all but ctime, which no call can set).
    if (failure != null) restore_times(fd, old);
    return failure;
}

fn restore_times(fd: Handle, old: *const Statx) void {
    const times = [2]Timespec{
        .{ .seconds = old.atime.seconds, .nanoseconds = old.atime.nanoseconds },
        .{ .seconds = old.mtime.seconds, .nanoseconds = old.mtime.nanoseconds },
    };
    _ = futimens(fd, &times);
}

/// Whether a file may reach `end` bytes on this file system: fallocate(PUNCH_HOLE | KEEP_SIZE)
/// of the byte before `end`, past the end of the file. The kernel compares `end` with the file
/// system's largest file before anything else (EFBIG); past the end there is nothing to punch,
/// so the file does not change. Any answer but EFBIG (EOPNOTSUPP, say) means "not known to be
/// too large".
fn file_may_reach(fd: Handle, end: u64) bool {
    assert(end > 0);
    assert(end <= window_zig.file_offset_max);
    if (fallocate(fd, falloc_punch_hole | falloc_keep_size, @intCast(end - 1), 1) == 0) return true;
    return errno() != efbig;
}

/// Null when a file of `end` bytes is allowed; else the largest size the file system allows,
/// found by bisection between the current size (allowed) and `end` (refused). Every probe lies
/// past the current end of the file, never over its data.
fn largest_file_bytes(fd: Handle, size_bytes: u64, end: u64) ?u64 {
    assert(end > size_bytes);
    if (file_may_reach(fd, end)) return null;
    var allowed = size_bytes;
    var refused = end;
    var steps: u32 = 0;
    while (refused - allowed > 1 and steps < 64) : (steps += 1) {
        const middle = allowed + (refused - allowed) / 2;
        assert(middle > size_bytes);
        if (file_may_reach(fd, middle)) allowed = middle else refused = middle;
    }
    return allowed;
}

/// Refuses a window whose blocks cannot fit even once the old file's blocks are given back.
/// An estimate that errs toward trying: indirect blocks, quotas and other writers are not seen,
/// and the reservation itself still decides (size_for_create). root may use the blocks a file
/// system keeps for it (f_bfree), others only f_bavail; a root process without CAP_SYS_RESOURCE
/// gets its ENOSPC from the reservation instead.
fn check_space(fd: Handle, offset: u64, end: u64, old: *const Statx) ?OpenError {
    var info: Statvfs = undefined;
    if (fstatvfs(fd, &info) != 0) return null;
    const block_bytes = info.fragment_bytes;
    // tmpfs without a size limit, FUSE file systems that report nothing: no estimate.
    if (block_bytes == 0 or info.blocks == 0) return null;
    const free_blocks = if (geteuid() == 0) info.blocks_free else info.blocks_available;
    const needed_bytes = (((end - 1) / block_bytes) - (offset / block_bytes) + 1) *| block_bytes;
    const available_bytes = (free_blocks *| block_bytes) +| (old.blocks *| 512);
    if (needed_bytes <= available_bytes) return null;
    return .{
        .status = .no_space,
        .os_error = 0,
        .limit_bytes = needed_bytes,
        .available_bytes = available_bytes,
    };
}
