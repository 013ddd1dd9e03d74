//! Linux: open a file, size it, map a window with a 64-bit offset, flush, advise, prefault.
//! Only glibc entry points whose argument types are fixed on 64-bit targets are used (off_t is
//! 64-bit there), declared here with explicit types rather than through std's moving wrappers.
const std = @import("std");
const assert = std.debug.assert;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Mode = status_zig.Mode;
const OpenRequest = status_zig.OpenRequest;
const Advice = status_zig.Advice;
const window_zig = @import("window.zig");
const open_linux = @import("open_linux.zig");
pub const FileKind = open_linux.FileKind;

comptime {
    assert(@sizeOf(usize) == 8); // off_t is 64-bit only on 64-bit targets without _FILE_OFFSET_BITS.
}

pub extern "c" fn open(path: [*:0]const u8, flags: c_int, ...) c_int;
pub extern "c" fn close(fd: c_int) c_int;
pub extern "c" fn ftruncate(fd: c_int, length: i64) c_int;
pub extern "c" fn fallocate(fd: c_int, mode: c_int, offset: i64, length: i64) c_int;
pub extern "c" fn statx(dirfd: c_int, path: [*:0]const u8, flags: c_int, mask: c_uint, out: *Statx) c_int;
extern "c" fn mmap(address: ?*anyopaque, length: usize, protection: c_int, flags: c_int, fd: c_int, offset: i64) usize;
extern "c" fn munmap(address: usize, length: usize) c_int;
extern "c" fn getrlimit(resource: c_int, limit: *[2]u64) c_int;
extern "c" fn pwrite64(fd: c_int, buffer: [*]const u8, count: usize, offset: i64) isize;
extern "c" fn msync(address: usize, length: usize, flags: c_int) c_int;
extern "c" fn madvise(address: usize, length: usize, advice: c_int) c_int;
extern "c" fn sysconf(name: c_int) c_long;
extern "c" fn __errno_location() *c_int;

pub const o_rdonly: c_int = 0;
pub const o_rdwr: c_int = 2;
pub const o_creat: c_int = 0o100;
pub const o_noctty: c_int = 0o400;
pub const o_cloexec: c_int = 0o2000000;
const prot_read: c_int = 1;
const prot_write: c_int = 2;
const map_shared: c_int = 1;
const map_private: c_int = 2;
const map_failed: usize = std.math.maxInt(usize);
const ms_sync: c_int = 4;
const madv_populate_read: c_int = 22;
const madv_populate_write: c_int = 23;
pub const at_empty_path: c_int = 0x1000;
pub const statx_type: c_uint = 0x1;
const statx_size: c_uint = 0x200;
const statx_blocks: c_uint = 0x400;
const statx_atime: c_uint = 0x20;
const statx_mtime: c_uint = 0x40;
pub const s_ifmt: u16 = 0o170000;
const sc_pagesize: c_int = 30;

/// The kernel's `struct statx_timestamp`.
pub const Timestamp = extern struct { seconds: i64, nanoseconds: u32, reserved: i32 };

/// The kernel's `struct statx` (fixed layout on every architecture).
pub const Statx = extern struct {
    mask: u32,
    blksize: u32,
    attributes: u64,
    nlink: u32,
    uid: u32,
    gid: u32,
    mode: u16,
    spare0: u16,
    ino: u64,
    size: u64,
    /// 512-byte units.
    blocks: u64,
    attributes_mask: u64,
    atime: Timestamp,
    btime: Timestamp,
    ctime: Timestamp,
    mtime: Timestamp,
    rdev_major: u32,
    rdev_minor: u32,
    dev_major: u32,
    dev_minor: u32,
    rest: [112]u8,
};
comptime {
    assert(@sizeOf(Statx) == 256);
    assert(@offsetOf(Statx, "mode") == 28);
    assert(@offsetOf(Statx, "size") == 40);
    assert(@offsetOf(Statx, "blocks") == 48);
    assert(@offsetOf(Statx, "atime") == 64);
    assert(@offsetOf(Statx, "mtime") == 112);
    assert(@offsetOf(Statx, "dev_major") == 136);
}

pub const Handle = c_int;

/// Everything needed to use and release one mapped window.
pub const Mapping = window_zig.Mapping(Handle, void);

pub fn errno() i32 {
    return __errno_location().*;
}

/// Maps an errno to the stable status code.
pub fn status_from_errno(code: i32) Status {
    return switch (code) {
        2 => .not_found, // ENOENT
        20 => .not_directory, // ENOTDIR: a component of the path is not a directory
        1, 13, 30 => .permission_denied, // EPERM, EACCES, EROFS
        21 => .is_directory, // EISDIR
        28, 122 => .no_space, // ENOSPC, EDQUOT
        5 => .io, // EIO
        // ENXIO: open(2) of a socket, or of a device file without a device; ESPIPE: a pipe.
        6, 29 => .not_regular_file,
        12 => .no_memory, // ENOMEM
        23, 24 => .too_many_open, // ENFILE, EMFILE
        19, 95 => .not_supported, // ENODEV, EOPNOTSUPP
        75 => .overflow, // EOVERFLOW
        27 => .file_too_large, // EFBIG: past the file system's largest file
        14 => .bad_address, // EFAULT
        22 => .invalid_argument, // EINVAL
        36 => .name_too_long, // ENAMETOOLONG
        40 => .symlink_loop, // ELOOP
        26 => .file_busy, // ETXTBSY: a running program or an active swap file
        else => .unexpected,
    };
}

pub fn page_size() u64 {
    const size = sysconf(sc_pagesize);
    assert(size > 0);
    const bytes: u64 = @intCast(size);
    assert(std.math.isPowerOfTwo(bytes));
    return bytes;
}

/// The granularity a mapping's file offset must be a multiple of.
pub fn granularity() u64 {
    return page_size();
}

pub const OpenError = status_zig.OpenError;

pub fn fail_code(code: i32) OpenError {
    return .{ .status = status_from_errno(code), .os_error = code };
}

fn fail(status: Status) OpenError {
    return .{ .status = status, .os_error = errno() };
}

pub fn file_size(fd: Handle) error{Failed}!u64 {
    var info: Statx = undefined;
    if (statx(fd, "", at_empty_path, statx_type | statx_size, &info) != 0) return error.Failed;
    return info.size;
}

/// Opens `path` and maps `[offset, offset + length)`; `length_requested == null` means "to the
/// end of the file". On failure nothing is left open or mapped, and a "w+" gives back every
/// block it took (see open_linux.size_for_create) and removes the file if it created it.
pub fn map_open(path: [*:0]const u8, request: OpenRequest, mapping: *Mapping, file_size_out: *u64) ?OpenError {
    if (request.offset > window_zig.file_offset_max) return .{ .status = .overflow, .os_error = 0 };
    var opened: open_linux.Opened = undefined;
    if (open_linux.open_regular(path, request.mode, &opened)) |failure| return failure;
    if (map_fd(opened.fd, request, mapping, file_size_out)) |failure| {
        if (opened.created) open_linux.remove_created(path, opened.fd);
        _ = close(opened.fd);
        return failure;
    }
    assert(mapping.fd == opened.fd);
    return null;
}

fn map_fd(fd: Handle, request: OpenRequest, mapping: *Mapping, file_size_out: *u64) ?OpenError {
    const mode = request.mode;
    const offset = request.offset;
    const length_requested = request.length_requested;
    var info: Statx = undefined;
    const mask = statx_type | statx_size | statx_blocks | statx_atime | statx_mtime;
    if (statx(fd, "", at_empty_path, mask, &info) != 0) {
        return fail(status_from_errno(errno()));
    }
    const kind = open_linux.kind_of(info.mode);
    if (kind != .regular) return open_linux.not_regular(kind);

    var length_bytes: u64 = undefined;
    if (mode == .create) {
        length_bytes = length_requested orelse return .{ .status = .invalid_argument, .os_error = 0 };
        if (length_bytes == 0) return .{ .status = .invalid_argument, .os_error = 0 };
        if (length_bytes > window_zig.file_offset_max - offset) return .{ .status = .overflow, .os_error = 0 };
    } else {
        if (window_zig.check_existing(info.size, offset, length_requested)) |status| {
            // Past the end is allowed on request (re-opening a window of a file that shrank):
            // the kernel maps it, and touching a page past the end faults into the guard.
            if (!(request.past_end and status == .window_past_end)) return .{ .status = status, .os_error = 0 };
        }
        length_bytes = length_requested orelse info.size - offset;
        file_size_out.* = info.size;
    }

    const window = window_zig.compute(offset, length_bytes, granularity()) catch |err| {
        return .{ .status = if (err == error.Overflow) .overflow else .invalid_argument, .os_error = 0 };
    };
    if (mode == .create) {
        if (open_linux.size_for_create(fd, offset, length_bytes, &info)) |failure| return failure;
        file_size_out.* = offset + length_bytes;
    }
    const protection: c_int = if (mode == .read) prot_read else prot_read | prot_write;
    const sharing: c_int = if (mode == .copy_on_write) map_private else map_shared;
    const base = mmap(null, @intCast(window.map_length_bytes), protection, sharing, fd, @intCast(window.map_offset));
    if (base == map_failed) {
        const code = errno();
        if (mode == .create) open_linux.give_back(fd);
        return fail_code(code);
    }
    mapping.* = Mapping.init(fd, {}, base, window, mode);
    return null;
}

pub fn unmap(mapping: *const Mapping) void {
    const unmapped = munmap(mapping.base, mapping.map_length_bytes);
    assert(unmapped == 0); // Only fails for a range we did not map.
    _ = close(mapping.fd);
}

/// Closes the file but leaves the address range in place as private zero-filled memory of the
/// same protection, for when a zero-copy view may still point at it (a transferred buffer, a
/// collected map whose view lives on): an access then reads zeros instead of killing the
/// process. The range stays reserved until the process ends. If the kernel refuses the
/// replacement, the file mapping itself stays (never unmapped under a view).
pub fn release_keep_range(mapping: *const Mapping) void {
    const map_anonymous: c_int = 0x20;
    const map_fixed: c_int = 0x10;
    const map_noreserve: c_int = 0x4000;
    const protection: c_int = if (mapping.mode == .read) prot_read else prot_read | prot_write;
    const flags = map_private | map_anonymous | map_fixed | map_noreserve;
    _ = mmap(@ptrFromInt(mapping.base), mapping.map_length_bytes, protection, flags, -1, 0);
    _ = close(mapping.fd);
}

/// msync(MS_SYNC): returns once the range is on the device, or reports the write-back error.
pub fn flush(mapping: *const Mapping, position: u64, length_bytes: u64, os_error: *i32) Status {
    if (length_bytes == 0) return .ok;
    const range = mapping.page_range(position, length_bytes, @intCast(page_size()));
    if (msync(range.start, range.length_bytes, ms_sync) == 0) return .ok;
    os_error.* = errno();
    return status_from_errno(os_error.*);
}

pub fn advise(mapping: *const Mapping, position: u64, length_bytes: u64, advice: Advice, os_error: *i32) Status {
    if (length_bytes == 0) return .ok;
    const range = mapping.page_range(position, length_bytes, @intCast(page_size()));
    const code: c_int = switch (advice) {
        .normal => 0,
        .random => 1,
        .sequential => 2,
        .will_need => 3,
        .dont_need => 4,
    };
    if (madvise(range.start, range.length_bytes, code) == 0) return .ok;
    os_error.* = errno();
    return status_from_errno(os_error.*);
}

pub const Populate = enum { ok, unsupported, failed };

/// Asks the kernel to fault the range in (MADV_POPULATE_READ/WRITE, Linux 5.14+). It answers
/// with an error instead of a signal when a page cannot be read, but does not say which page.
pub fn populate(mapping: *const Mapping, position: u64, length_bytes: u64, write: bool, os_error: *i32) Populate {
    const range = mapping.page_range(position, length_bytes, @intCast(page_size()));
    const advice = if (write) madv_populate_write else madv_populate_read;
    if (madvise(range.start, range.length_bytes, advice) == 0) return .ok;
    os_error.* = errno();
    return if (os_error.* == 22) .unsupported else .failed; // EINVAL: a kernel older than 5.14.
}

/// Writes all of `bytes` at `file_offset` with pwrite, retrying short writes and EINTR. Returns
/// the status of the first failure, with `written` the bytes before it.
pub fn pwrite_all(fd: Handle, bytes: []const u8, file_offset: u64, written: *u64, os_error: *i32) Status {
    assert(bytes.len > 0);
    assert(file_offset <= window_zig.file_offset_max);
    written.* = 0;
    os_error.* = 0;
    const eintr = 4;
    // Every call but an interrupted one moves forward by at least a byte; interruptions are
    // bounded too, so a signal storm cannot hold the caller here for ever.
    const calls_max = bytes.len + 64;
    var calls: usize = 0;
    while (written.* < bytes.len) : (calls += 1) {
        if (calls == calls_max) return .unexpected;
        const rest = bytes[@intCast(written.*)..];
        const result = pwrite64(fd, rest.ptr, rest.len, @intCast(file_offset + written.*));
        if (result < 0) {
            const code = errno();
            if (code == eintr) continue;
            os_error.* = code;
            return status_from_errno(code);
        }
        if (result == 0) return .io; // Never for a regular file; not a reason to spin.
        written.* += @intCast(result);
    }
    return .ok;
}

/// The process's file-size limit (RLIMIT_FSIZE) in bytes; the largest u64 when there is none.
/// A write through a descriptor that reaches past it raises SIGXFSZ, which kills the process by
/// default; a store through a mapping is not subject to it.
pub fn file_size_limit() u64 {
    const rlimit_fsize = 1;
    var limit: [2]u64 = undefined; // rlim_cur, rlim_max (rlim_t is 64-bit on every Linux target here)
    if (getrlimit(rlimit_fsize, &limit) != 0) return 0;
    return limit[0];
}

/// Drops this mapping's page-table entries for the range (MADV_DONTNEED on a shared file
/// mapping: the page cache keeps the data), so the next access looks the page up again.
pub fn forget_pages(mapping: *const Mapping, position: u64, length_bytes: u64) void {
    if (length_bytes == 0) return;
    const range = mapping.page_range(position, length_bytes, @intCast(page_size()));
    const madv_dontneed = 4;
    _ = madvise(range.start, range.length_bytes, madv_dontneed);
}
