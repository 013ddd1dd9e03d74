//! A worker process, or anything of the same user, may write the pool channel's memory and
//! its replies: the host must not die of what it finds there. And the maps of an ended thread
//! must be reaped even when that thread opened them at its descriptor limit.
//! Each case runs in a forked child, so that a crash is a failed test, not a dead test runner.
const std = @import("std");
const testing = std.testing;
const linux = std.os.linux;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Detail = status_zig.Detail;
const OpenResult = status_zig.OpenResult;
const channel_zig = @import("channel.zig");

extern fn gm_open(path: ?[*]const u8, path_length: usize, mode: u32, offset: u64, length: u64, flags: u32, out: ?*align(1) OpenResult) i32;
extern fn gm_close(handle: f64) i32;
extern fn gm_channel_create(staging_bytes: f64, out: ?*align(1) OpenResult) i32;
extern fn gm_channel_close(handle: f64) i32;
extern fn gm_channel_post(handle: f64, op: u32, file_handle: f64, position: f64, length: f64, staging_offset: f64, argument: u32) i32;
extern fn gm_channel_address(handle: f64) ?*anyopaque;
extern fn gm_pool_read(handle: f64, file_handle: f64, position: f64, target: ?[*]u8, length: f64, timeout_ms: f64, budget_us: f64, detail: ?*align(1) Detail) i32;

fn wait_child(pid: std.posix.pid_t) u32 {
    return std.posix.waitpid(pid, 0).status;
}

test "a worker cannot shrink the channel (sealed memfd): the host survives" {
    const pid = try std.posix.fork();
    if (pid == 0) {
        var result = OpenResult.zero;
        if (gm_channel_create(64 * 1024, &result) != 0) std.posix.exit(20);
        var path_buffer: [64]u8 = undefined;
        const path = std.fmt.bufPrintZ(&path_buffer, "/proc/self/fd/{d}", .{result.file_size_bytes}) catch std.posix.exit(21);
        // What the worker does (it opens the same path), then shrinks the file.
        const fd = linux.open(path, .{ .ACCMODE = .RDWR }, 0);
        if (linux.E.init(fd) != .SUCCESS) std.posix.exit(22);
        if (linux.E.init(linux.ftruncate(@intCast(fd), 0)) != .SUCCESS) std.posix.exit(23); // sealed: refused
        // The host's next call touches the header.
        _ = gm_channel_post(result.handle, 16, 0, 0, 0, 0, 0);
        std.posix.exit(0);
    }
    const status = wait_child(pid);
    try testing.expect(std.posix.W.IFEXITED(status));
}

test "a worker's bytes_done near 2^64 on a later chunk does not overflow the host's count" {
    const pid = try std.posix.fork();
    if (pid == 0) {
        var result = OpenResult.zero;
        if (gm_channel_create(64 * 1024, &result) != 0) std.posix.exit(20);
        const channel = result.handle;
        const header: *channel_zig.Header = @ptrCast(@alignCast(gm_channel_address(channel).?));
        const worker = std.posix.fork() catch std.posix.exit(21);
        if (worker == 0) {
            // A misbehaving worker (shares the mapping through fork): answers chunk 0 with ok,
            // chunk 1 with io and bytes_done = 2^64 - 1.
            var served: u32 = 0;
            while (served < 2) {
                while (@atomicLoad(u32, &header.request_sequence, .acquire) == served) std.atomic.spinLoopHint();
                const sequence = @atomicLoad(u32, &header.request_sequence, .acquire);
                header.status = if (served == 0) 0 else @intFromEnum(Status.io);
                header.detail = Detail.zero;
                if (served == 1) header.detail.bytes_done = std.math.maxInt(u64);
                @atomicStore(u32, &header.response_sequence, sequence, .seq_cst);
                _ = linux.futex_3arg(&header.response_sequence, .{ .cmd = .WAKE, .private = false }, 1);
                served += 1;
            }
            std.posix.exit(0);
        }
        var buffer: [64 * 1024]u8 = undefined;
        var detail = Detail.zero;
        const raw = gm_pool_read(channel, 4096, 0, &buffer, buffer.len, 2000, 1 << 53, &detail);
        _ = wait_child(worker);
        std.posix.exit(if (raw == @intFromEnum(Status.io)) 0 else 30);
    }
    const status = wait_child(pid);
    try testing.expect(std.posix.W.IFEXITED(status) and std.posix.W.EXITSTATUS(status) == 0);
}

extern fn gm_reap() u32;

fn fd_starved_opener(path: []const u8, handles_out: *[2]f64) void {
    // Use up every descriptor but one, as a process at its limit does.
    var dups: [70000]i32 = undefined;
    var count: usize = 0;
    while (count < dups.len) {
        const rc = linux.dup(0);
        if (linux.E.init(rc) != .SUCCESS) break;
        dups[count] = @intCast(rc);
        count += 1;
    }
    count -= 1;
    _ = linux.close(dups[count]);
    var result = OpenResult.zero;
    const first = gm_open(path.ptr, path.len, 0, 0, 0, 0, &result); // takes the last descriptor
    handles_out[0] = if (first == 0) result.handle else -1;
    for (dups[0..count]) |fd| _ = linux.close(fd);
    // Plenty of descriptors again: a second map of the same thread.
    const second = gm_open(path.ptr, path.len, 0, 0, 0, 0, &result);
    handles_out[1] = if (second == 0) result.handle else -1;
}

test "the maps of a thread that opened at its descriptor limit are reaped after it ends" {
    const pid = try std.posix.fork();
    if (pid == 0) {
        const limit = linux.rlimit{ .cur = 256, .max = 256 };
        _ = linux.setrlimit(.NOFILE, &limit);
        var path_buffer: [64]u8 = undefined;
        const path = std.fmt.bufPrint(&path_buffer, "/tmp/guardmap-review-reap-{d}", .{linux.getpid()}) catch std.posix.exit(20);
        {
            var file = std.fs.createFileAbsolute(path, .{}) catch std.posix.exit(21);
            defer file.close();
            file.writeAll("some bytes") catch std.posix.exit(22);
        }
        defer std.fs.deleteFileAbsolute(path) catch {};
        var handles_out: [2]f64 = .{ -1, -1 };
        const thread = std.Thread.spawn(.{}, fd_starved_opener, .{ path, &handles_out }) catch std.posix.exit(23);
        thread.join();
        if (handles_out[0] < 0 or handles_out[1] < 0) std.posix.exit(24);
        // The thread's task is gone a moment after join; the reaper thread or this gm_reap
        // releases both maps (either may come first), bounded at 5 s.
        var waited_ms: u32 = 0;
        while (waited_ms < 5000) : (waited_ms += 50) {
            _ = gm_reap();
            if (!is_mapped(path)) std.posix.exit(0);
            std.Thread.sleep(50 * std.time.ns_per_ms);
        }
        std.posix.exit(25);
    }
    const status = wait_child(pid);
    try testing.expect(std.posix.W.IFEXITED(status));
    try testing.expectEqual(@as(u32, 0), std.posix.W.EXITSTATUS(status));
}

/// Whether /proc/self/maps lists `path` (read in one bounded buffer).
fn is_mapped(path: []const u8) bool {
    var buffer: [256 * 1024]u8 = undefined;
    const file = std.fs.openFileAbsolute("/proc/self/maps", .{}) catch return true;
    defer file.close();
    const length = file.readAll(&buffer) catch return true;
    return std.mem.indexOf(u8, buffer[0..length], path) != null;
}
