//! The shared-memory channel between a MapPool host and one worker process (Linux).
//!
//! An anonymous memory file (memfd), mapped by both processes: a 4 KiB header (futex words, one
//! request, one response) followed by the staging area that bytes travel through. The file never
//! has a name: the worker opens it through /proc/<host pid>/fd/<n>, and it is freed with the last
//! descriptor and mapping, so no death of either process at any moment can leave it behind.
//! Staging is shmem memory reserved with fallocate at creation, so touching it can neither fault
//! on an I/O error nor on a full memory cgroup: the host never touches memory that a failing disk
//! can poison.
//!
//! One request is outstanding at a time. The host writes the request fields, then increments
//! `request_sequence`; the worker serves it and sets `response_sequence` to the same value.
//! Each side spins briefly before sleeping in a futex on the other side's word, and wakes the
//! other only when it announced that it sleeps: a round trip without sleeping costs no syscall.
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;
const linux = std.os.linux;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Detail = status_zig.Detail;
const OpenResult = status_zig.OpenResult;
const handles = @import("handles.zig");

pub const magic: u32 = 0x676d_6331; // "gmc1"
pub const version: u32 = 1;
pub const header_bytes: u64 = 4096;
pub const staging_bytes_min: u64 = 64 * 1024;
pub const staging_bytes_max: u64 = 256 * 1024 * 1024;

/// Requests that the worker's native loop serves itself.
pub const Op = enum(u32) {
    read = 1,
    write = 2,
    flush = 3,
    prefault = 4,
    advise = 5,
    /// `position` = the number of ranges, `length_bytes` = the bytes per range; staging holds the
    /// positions (f64) from offset 0, the ranges' bytes after them (see `read_many_layout`).
    read_many = 6,
    /// Requests at or above this number are handed to the worker's JavaScript.
    control_first = 16,
    _,
};

pub const Header = extern struct {
    magic: u32,
    version: u32,
    staging_bytes: u64,
    /// Futex words: incremented by the host per request, copied by the worker per response.
    request_sequence: u32,
    response_sequence: u32,
    /// 1 while that side sleeps (or is about to) in a futex wait.
    host_sleeping: u32,
    worker_sleeping: u32,
    host_pid: i32,
    worker_pid: i32,
    // The request.
    op: u32,
    handle: u32,
    position: u64,
    length_bytes: u64,
    staging_offset: u64,
    argument: u32,
    /// Bits 32 and up of the map handle (`handle` holds bits 0-31): handles are 53-bit.
    handle_high: u32,
    // The response.
    status: i32,
    reserved1: i32,
    result_bytes: u64,
    detail: Detail,
    /// The CPU each side last waited on. Spinning for the other side only helps while it runs on
    /// another CPU; on the same one, the spinner would only delay it, so it sleeps at once.
    host_cpu: i32,
    worker_cpu: i32,
};

/// Stores the map handle of a request (an f64 from the caller; anything that is not a valid
/// handle is stored as 0, which names no map).
pub fn set_file_handle(header: *Header, handle: f64) void {
    const valid = handle >= 1 and handle < (1 << 53); // Also false for NaN.
    const integer: u64 = if (valid) @intFromFloat(handle) else 0;
    header.handle = @truncate(integer);
    header.handle_high = @intCast(integer >> 32);
}

/// The map handle of a request, as the f64 the map table takes.
pub fn file_handle(header: *const Header) f64 {
    const integer = (@as(u64, header.handle_high) << 32) | header.handle;
    // A peer may write any bits: past 2^53 the f64 would round to some other value.
    if (integer >= 1 << 53) return 0;
    return @floatFromInt(integer);
}

comptime {
    // Every field: workers/ reads the header through ffi/abi.ts's CHANNEL_HEADER, and a peer
    // process built from another version must find each field where this one writes it.
    assert(@sizeOf(Header) <= header_bytes);
    assert(@offsetOf(Header, "magic") == 0);
    assert(@offsetOf(Header, "version") == 4);
    assert(@offsetOf(Header, "staging_bytes") == 8);
    assert(@offsetOf(Header, "request_sequence") == 16);
    assert(@offsetOf(Header, "response_sequence") == 20);
    assert(@offsetOf(Header, "host_sleeping") == 24);
    assert(@offsetOf(Header, "worker_sleeping") == 28);
    assert(@offsetOf(Header, "host_pid") == 32);
    assert(@offsetOf(Header, "worker_pid") == 36);
    assert(@offsetOf(Header, "op") == 40);
    assert(@offsetOf(Header, "handle") == 44);
    assert(@offsetOf(Header, "position") == 48);
    assert(@offsetOf(Header, "length_bytes") == 56);
    assert(@offsetOf(Header, "staging_offset") == 64);
    assert(@offsetOf(Header, "argument") == 72);
    assert(@offsetOf(Header, "handle_high") == 76);
    assert(@offsetOf(Header, "status") == 80);
    assert(@offsetOf(Header, "reserved1") == 84);
    assert(@offsetOf(Header, "result_bytes") == 88);
    assert(@offsetOf(Header, "detail") == 96);
    assert(@offsetOf(Header, "host_cpu") == 128);
    assert(@offsetOf(Header, "worker_cpu") == 132);
    assert(@sizeOf(Header) == 136);
    assert(std.meta.fields(Header).len == 22); // A new field needs its assert above.
}

/// What a host-side call still has to do after it returned `pending` (see pool_host.zig): it posted
/// a request and stopped waiting for the answer within its budget. Host only.
pub const Pending = struct {
    kind: Kind = .none,
    file_handle: f64 = 0,
    /// read/write: the transfer's window position; read_many: the number of ranges.
    position: u64 = 0,
    /// read/write: the transfer's length; read_many: the bytes per range.
    length_bytes: u64 = 0,
    /// read/write: the chunk in flight; read_many: the first range of the request in flight.
    step: u64 = 0,

    pub const Kind = enum(u8) { none, read, write, read_many, call };
};

/// One end of a channel, as this process sees it.
pub const Channel = struct {
    header: *Header,
    staging: [*]u8,
    staging_bytes: u64,
    total_bytes: usize,
    /// Host only: a pidfd of the worker, readable once the worker has exited; -1 if not watched.
    worker_pidfd: i32,
    /// Host only: the memfd, kept open so the worker can open it through /proc; -1 otherwise.
    memory_fd: i32,
    /// Host only: the call that returned `pending`, to be finished by a resume.
    pending: Pending,
    /// Host only: 1 while a call runs on this channel (main thread or Deno's blocking pool), so
    /// two calls can never interleave their requests, whatever the JavaScript side does.
    in_use: u32,
};

/// This process's channels (host ends and worker ends alike), by handle.
pub var table: handles.Table(Channel) = .{};

/// Reserves a slot, sets up one end of a channel with `setup(argument, &channel, &os_error)`
/// (`create` or `attach`) and publishes it, or gives the slot back when that failed. Fills the
/// OpenResult record: the handle, the staging size (`length_bytes`) and the host's memory-file
/// descriptor number (`file_size_bytes`), or the OS error.
pub fn open_end(comptime setup: anytype, argument: anytype, result: *align(1) OpenResult) Status {
    var channel: Channel = undefined;
    var os_error: i32 = 0;
    const index = table.reserve() catch return .too_many_open;
    const status: Status = setup(argument, &channel, &os_error);
    if (status != .ok) {
        table.unreserve(index);
        result.os_error = os_error;
        return status;
    }
    result.handle = table.publish(index, channel);
    result.length_bytes = channel.staging_bytes;
    result.file_size_bytes = @intCast(@max(channel.memory_fd, 0));
    return .ok;
}

fn errno_of(rc: usize) i32 {
    return @intFromEnum(linux.E.init(rc));
}

/// Creates the channel's memory file (nameless), sizes and reserves it, maps it.
pub fn create(staging_bytes: u64, channel: *Channel, os_error: *i32) Status {
    if (staging_bytes < staging_bytes_min or staging_bytes > staging_bytes_max) return .invalid_argument;
    if (!std.math.isPowerOfTwo(staging_bytes)) return .invalid_argument;
    const total_bytes = header_bytes + staging_bytes;
    // The name only labels /proc/<pid>/fd links and /proc/<pid>/maps; it is in no file system.
    const fd_rc = linux.memfd_create("guardmap-channel", linux.MFD.CLOEXEC | linux.MFD.ALLOW_SEALING);
    if (linux.E.init(fd_rc) != .SUCCESS) {
        os_error.* = errno_of(fd_rc);
        return if (os_error.* == 24 or os_error.* == 23) .too_many_open else .io;
    }
    const fd: i32 = @intCast(fd_rc);
    const reserved = linux.fallocate(fd, 0, 0, @intCast(total_bytes));
    if (linux.E.init(reserved) != .SUCCESS) {
        os_error.* = errno_of(reserved);
        _ = linux.close(fd);
        return if (os_error.* == 28) .no_space else .io;
    }
    // The worker reopens this file through /proc with write access: without seals it (or
    // anything else that can open it) could shrink it, and the host's next touch of the header
    // or staging would be a SIGBUS outside any guard.
    const f_add_seals = 1033;
    const f_seal_seal = 1;
    const f_seal_shrink = 2;
    const f_seal_grow = 4;
    const sealed = linux.fcntl(fd, f_add_seals, f_seal_shrink | f_seal_grow | f_seal_seal);
    if (linux.E.init(sealed) != .SUCCESS) {
        os_error.* = errno_of(sealed);
        _ = linux.close(fd);
        return .io;
    }
    const status = map(fd, total_bytes, channel, os_error);
    if (status != .ok) {
        _ = linux.close(fd);
        return status;
    }
    channel.memory_fd = fd;
    const header = channel.header;
    header.* = std.mem.zeroes(Header);
    header.staging_bytes = staging_bytes;
    header.version = version;
    header.host_pid = linux.getpid();
    header.host_cpu = -1;
    header.worker_cpu = -1;
    @atomicStore(u32, &header.magic, magic, .release);
    return .ok;
}

/// Maps an existing channel file (the worker's side: /proc/<host pid>/fd/<n>) and checks that
/// it is one.
pub fn attach(path: [*:0]const u8, channel: *Channel, os_error: *i32) Status {
    const fd_rc = linux.open(path, .{ .ACCMODE = .RDWR, .CLOEXEC = true }, 0);
    if (linux.E.init(fd_rc) != .SUCCESS) {
        os_error.* = errno_of(fd_rc);
        return if (os_error.* == 2) .not_found else .io;
    }
    const fd: i32 = @intCast(fd_rc);
    defer _ = linux.close(fd);
    var info: linux.Statx = undefined;
    const stat_rc = linux.statx(fd, "", linux.AT.EMPTY_PATH, linux.STATX_SIZE, &info);
    if (linux.E.init(stat_rc) != .SUCCESS) return .io;
    if (info.size < header_bytes + staging_bytes_min or info.size > header_bytes + staging_bytes_max) {
        return .invalid_argument;
    }
    const status = map(fd, @intCast(info.size), channel, os_error);
    if (status != .ok) return status;
    const header = channel.header;
    if (@atomicLoad(u32, &header.magic, .acquire) != magic or header.version != version or
        header.staging_bytes + header_bytes != info.size)
    {
        close(channel);
        return .invalid_argument;
    }
    channel.staging_bytes = header.staging_bytes;
    @atomicStore(i32, &header.worker_pid, linux.getpid(), .release);
    return .ok;
}

fn map(fd: i32, total_bytes: u64, channel: *Channel, os_error: *i32) Status {
    const address = linux.mmap(null, @intCast(total_bytes), linux.PROT.READ | linux.PROT.WRITE, .{ .TYPE = .SHARED }, fd, 0);
    if (linux.E.init(address) != .SUCCESS) {
        os_error.* = errno_of(address);
        return .no_memory;
    }
    channel.* = .{
        .header = @ptrFromInt(address),
        .staging = @ptrFromInt(address + header_bytes),
        .staging_bytes = total_bytes - header_bytes,
        .total_bytes = @intCast(total_bytes),
        .worker_pidfd = -1,
        .memory_fd = -1,
        .pending = .{},
        .in_use = 0,
    };
    return .ok;
}

pub fn close(channel: *Channel) void {
    if (channel.worker_pidfd >= 0) _ = linux.close(channel.worker_pidfd);
    if (channel.memory_fd >= 0) _ = linux.close(channel.memory_fd);
    _ = linux.munmap(@ptrCast(channel.header), channel.total_bytes);
    channel.worker_pidfd = -1;
    channel.memory_fd = -1;
}

/// Host: remember the worker process, so waits notice at once when it dies.
pub fn watch(channel: *Channel, pid: i32) Status {
    if (pid <= 0) return .invalid_argument;
    const rc = linux.syscall2(.pidfd_open, @as(usize, @intCast(pid)), 0);
    if (linux.E.init(rc) != .SUCCESS) return if (errno_of(rc) == 3) .not_found else .io;
    if (channel.worker_pidfd >= 0) _ = linux.close(channel.worker_pidfd);
    channel.worker_pidfd = @intCast(rc);
    return .ok;
}

fn worker_exited(channel: *const Channel) bool {
    if (channel.worker_pidfd < 0) return false;
    var fds = [_]linux.pollfd{.{ .fd = channel.worker_pidfd, .events = linux.POLL.IN, .revents = 0 }};
    const rc = linux.poll(&fds, 1, 0);
    return linux.E.init(rc) == .SUCCESS and rc == 1;
}

fn futex_wait(word: *const u32, expected: u32, timeout_ns: u64) void {
    const timeout: linux.timespec = .{
        .sec = @intCast(timeout_ns / std.time.ns_per_s),
        .nsec = @intCast(timeout_ns % std.time.ns_per_s),
    };
    // Not private: the word is shared between processes. EAGAIN (changed already), EINTR and
    // ETIMEDOUT all mean "look again", which the callers do.
    _ = linux.futex_4arg(word, .{ .cmd = .WAIT, .private = false }, expected, &timeout);
}

fn futex_wake(word: *const u32) void {
    _ = linux.futex_3arg(word, .{ .cmd = .WAKE, .private = false }, 1);
}

extern "c" fn sched_getcpu() c_int;

/// Publishes the CPU this side runs on and tells whether the other side was last seen on
/// another one (or is unknown): only then is spinning worth a core.
fn spin_worth_it(mine: *i32, theirs: *const i32) bool {
    const cpu: i32 = sched_getcpu();
    @atomicStore(i32, mine, cpu, .monotonic);
    const other = @atomicLoad(i32, theirs, .monotonic);
    return cpu < 0 or other < 0 or other != cpu;
}

pub fn now_ns() u64 {
    var time: linux.timespec = undefined;
    _ = linux.clock_gettime(.MONOTONIC, &time);
    return @as(u64, @intCast(time.sec)) * std.time.ns_per_s + @as(u64, @intCast(time.nsec));
}

/// How long a side spins (checking the other's word) before it sleeps in the futex. Measured
/// trade-off: spinning costs a core, sleeping costs two syscalls and a scheduler wake-up.
pub const spin_ns_max: u64 = 50 * std.time.ns_per_us;
/// The host's futex sleeps are this long, so a dead worker is noticed within it.
const host_sleep_ns: u64 = 5 * std.time.ns_per_ms;
/// The worker's futex sleeps are this long, so an orphaned worker notices within it.
const worker_sleep_ns: u64 = 100 * std.time.ns_per_ms;

/// Host: publish the request already written into the header.
pub fn post_request(channel: *Channel) void {
    const header = channel.header;
    // No assert on response_sequence here: the worker (or anything that opened the memfd) may
    // write it, and a panic would kill the host. A wrong sequence only makes this call time out.
    _ = @atomicRmw(u32, &header.request_sequence, .Add, 1, .seq_cst);
    if (@atomicLoad(u32, &header.worker_sleeping, .seq_cst) != 0) futex_wake(&header.request_sequence);
}

pub const WaitResult = enum { done, worker_gone, timed_out };

/// Host: wait until the worker answered the outstanding request, died, or `timeout_ns` passed.
pub fn wait_response(channel: *Channel, timeout_ns: u64) WaitResult {
    const header = channel.header;
    const wanted = @atomicLoad(u32, &header.request_sequence, .acquire);
    const start = now_ns();
    const spin_ns = if (spin_worth_it(&header.host_cpu, &header.worker_cpu)) spin_ns_max else 0;
    var spins: u32 = 0;
    while (true) {
        if (@atomicLoad(u32, &header.response_sequence, .acquire) == wanted) return .done;
        spins +%= 1;
        if (spins % 64 != 0 and spin_ns > 0) {
            std.atomic.spinLoopHint();
            continue;
        }
        const elapsed = now_ns() - start;
        if (elapsed >= timeout_ns) return .timed_out;
        if (elapsed < spin_ns) continue;
        if (worker_exited(channel)) {
            // It may have answered just before it died.
            if (@atomicLoad(u32, &header.response_sequence, .acquire) == wanted) return .done;
            return .worker_gone;
        }
        @atomicStore(u32, &header.host_sleeping, 1, .seq_cst);
        const seen = @atomicLoad(u32, &header.response_sequence, .seq_cst);
        if (seen != wanted) futex_wait(&header.response_sequence, seen, @min(host_sleep_ns, timeout_ns - elapsed));
        @atomicStore(u32, &header.host_sleeping, 0, .seq_cst);
    }
}

/// Worker: wait for the next request after `served`. Returns false when the host is gone
/// (this process was re-parented), so the worker can exit instead of lingering as an orphan.
pub fn wait_request(channel: *Channel, served: u32, parent_pid: i32) bool {
    const header = channel.header;
    const start = now_ns();
    const spin_ns = if (spin_worth_it(&header.worker_cpu, &header.host_cpu)) spin_ns_max else 0;
    var spins: u32 = 0;
    // Runs until a request arrives or the host is gone: a server loop, unbounded by design.
    while (true) {
        if (@atomicLoad(u32, &header.request_sequence, .acquire) != served) return true;
        spins +%= 1;
        if (spins % 64 != 0 and spin_ns > 0) {
            std.atomic.spinLoopHint();
            continue;
        }
        if (now_ns() - start < spin_ns) continue;
        if (linux.getppid() != parent_pid) return false;
        @atomicStore(u32, &header.worker_sleeping, 1, .seq_cst);
        if (@atomicLoad(u32, &header.request_sequence, .seq_cst) == served) {
            futex_wait(&header.request_sequence, served, worker_sleep_ns);
        }
        @atomicStore(u32, &header.worker_sleeping, 0, .seq_cst);
    }
}

/// Worker: publish the response to request `sequence`, already written into the header.
pub fn post_response(channel: *Channel, sequence: u32) void {
    const header = channel.header;
    @atomicStore(u32, &header.response_sequence, sequence, .seq_cst);
    if (@atomicLoad(u32, &header.host_sleeping, .seq_cst) != 0) futex_wake(&header.response_sequence);
}

/// Where a read_many request keeps its parts in the staging area: `count` f64 positions from
/// offset 0, then the ranges' bytes from `targets_offset`. Null when they do not fit.
pub fn read_many_layout(count: u64, length_bytes: u64, staging_bytes: u64) ?struct { targets_offset: u64, targets_bytes: u64 } {
    const positions_bytes = std.math.mul(u64, count, @sizeOf(f64)) catch return null;
    const targets_bytes = std.math.mul(u64, count, length_bytes) catch return null;
    const total_bytes = std.math.add(u64, positions_bytes, targets_bytes) catch return null;
    if (total_bytes > staging_bytes) return null;
    return .{ .targets_offset = positions_bytes, .targets_bytes = targets_bytes };
}
