//! The MapPool channel between two real processes (fork): round trips, chunked transfers in both
//! directions, a worker killed with SIGKILL mid-request, and a worker that outlives its host.
const std = @import("std");
const testing = std.testing;
const linux = std.os.linux;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Detail = status_zig.Detail;
const OpenResult = status_zig.OpenResult;

extern fn gm_open(path: ?[*]const u8, path_length: usize, mode: u32, offset: u64, length: u64, flags: u32, out: ?*align(1) OpenResult) i32;
extern fn gm_close(handle: f64) i32;
extern fn gm_channel_create(staging_bytes: f64, out: ?*align(1) OpenResult) i32;
extern fn gm_channel_attach(path: ?[*]const u8, path_length: usize, out: ?*align(1) OpenResult) i32;
extern fn gm_channel_close(handle: f64) i32;
extern fn gm_channel_watch(handle: f64, pid: i32) i32;
extern fn gm_channel_serve(handle: f64, parent_pid: i32) i32;
extern fn gm_channel_post(handle: f64, op: u32, file_handle: f64, position: f64, length: f64, staging_offset: f64, argument: u32) i32;
extern fn gm_channel_wait(handle: f64, timeout_ms: f64, detail: ?*align(1) Detail) i32;
extern fn gm_channel_reply(handle: f64, status: i32, result_bytes: f64) i32;
extern fn gm_pool_read(handle: f64, file_handle: f64, position: f64, target: ?[*]u8, length: f64, timeout_ms: f64, budget_us: f64, detail: ?*align(1) Detail) i32;
extern fn gm_pool_write(handle: f64, file_handle: f64, position: f64, source: ?[*]u8, length: f64, timeout_ms: f64, budget_us: f64, detail: ?*align(1) Detail) i32;
extern fn gm_pool_resume(handle: f64, buffer: ?[*]u8, buffer_length: f64, positions: ?[*]align(1) const f64, positions_count: f64, timeout_ms: f64, detail: ?*align(1) Detail) i32;

/// A budget larger than any time limit here: the call waits on this thread until the end.
const unlimited: f64 = 1 << 53;

const file_bytes = 1 << 20;
const staging_bytes = 64 * 1024;
const op_open = 16;
const op_stop = 17;

fn status_of(raw: i32) Status {
    return @enumFromInt(raw);
}

const Fixture = struct {
    data_path: [64]u8,
    data_path_len: usize,
    channel_path: [64]u8,
    channel_path_len: usize,
    channel: f64,

    fn data(f: *const Fixture) []const u8 {
        return f.data_path[0..f.data_path_len];
    }
    fn channel_name(f: *const Fixture) []const u8 {
        return f.channel_path[0..f.channel_path_len];
    }

    fn create(tag: []const u8) !Fixture {
        var f: Fixture = undefined;
        const pid = linux.getpid();
        f.data_path_len = (try std.fmt.bufPrint(&f.data_path, "/tmp/guardmap-chan-{d}-{s}", .{ pid, tag })).len;
        var file = try std.fs.createFileAbsolute(f.data(), .{ .truncate = true });
        defer file.close();
        var bytes: [file_bytes]u8 = undefined;
        for (&bytes, 0..) |*byte, index| byte.* = @truncate(index *% 13 +% 5);
        try file.writeAll(&bytes);
        var result = OpenResult.zero;
        try testing.expectEqual(Status.ok, status_of(gm_channel_create(staging_bytes, &result)));
        f.channel = result.handle;
        // The memory file has no name; the worker (a fork here) opens it through /proc.
        const fd = result.file_size_bytes;
        f.channel_path_len = (try std.fmt.bufPrint(&f.channel_path, "/proc/{d}/fd/{d}", .{ pid, fd })).len;
        return f;
    }

    fn remove(f: *const Fixture) void {
        _ = gm_channel_close(f.channel);
        std.fs.deleteFileAbsolute(f.data()) catch {};
    }
};

/// The worker: attach, answer "open" with a handle to the data file, then serve until "stop".
fn worker(f: *const Fixture, parent: i32) noreturn {
    var result = OpenResult.zero;
    if (status_of(gm_channel_attach(f.channel_name().ptr, f.channel_path_len, &result)) != .ok) std.posix.exit(20);
    const channel = result.handle;
    while (true) {
        const op = gm_channel_serve(channel, parent);
        if (op == op_open) {
            var opened = OpenResult.zero;
            const status = gm_open(f.data().ptr, f.data_path_len, 1, 0, 0, 0, &opened);
            _ = gm_channel_reply(channel, status, opened.handle);
        } else if (op == op_stop) {
            _ = gm_channel_reply(channel, 0, 0);
            std.posix.exit(0);
        } else std.posix.exit(21);
    }
}

fn start_worker(f: *const Fixture) !struct { pid: i32, file_handle: f64 } {
    const parent = linux.getpid();
    const pid = try std.posix.fork();
    if (pid == 0) worker(f, parent);
    try testing.expectEqual(Status.ok, status_of(gm_channel_watch(f.channel, pid)));
    try testing.expectEqual(Status.ok, status_of(gm_channel_post(f.channel, op_open, 0, 0, 0, 0, 0)));
    var detail = Detail.zero;
    try testing.expectEqual(Status.ok, status_of(gm_channel_wait(f.channel, 5000, &detail)));
    // The worker's map handle travels back as the result size in the header (bytes 88..96).
    const header: [*]const u8 = @ptrCast(gm_channel_address(f.channel).?);
    const file_handle = std.mem.readInt(u64, header[88..96], .little);
    return .{ .pid = pid, .file_handle = @floatFromInt(file_handle) };
}

extern fn gm_channel_address(handle: f64) ?*anyopaque;

test "channel: chunked reads and writes through a worker process match the file" {
    const f = try Fixture.create("rw");
    defer f.remove();
    const started = try start_worker(&f);

    var target: [300_000]u8 = undefined;
    var detail = Detail.zero;
    // 300_000 bytes through 32 KiB halves: ten chunks, double-buffered, at an odd position.
    try testing.expectEqual(Status.ok, status_of(gm_pool_read(f.channel, started.file_handle, 12345, &target, target.len, 5000, unlimited, &detail)));
    for (target, 0..) |byte, index| try testing.expectEqual(@as(u8, @truncate((index + 12345) *% 13 +% 5)), byte);

    var source: [100_000]u8 = undefined;
    for (&source, 0..) |*byte, index| byte.* = @truncate(index *% 3);
    try testing.expectEqual(Status.ok, status_of(gm_pool_write(f.channel, started.file_handle, 500_000, &source, source.len, 5000, unlimited, &detail)));
    var check: [100_000]u8 = undefined;
    try testing.expectEqual(Status.ok, status_of(gm_pool_read(f.channel, started.file_handle, 500_000, &check, check.len, 5000, unlimited, &detail)));
    try testing.expectEqualSlices(u8, &source, &check);

    // The worker checks ranges too.
    try testing.expectEqual(Status.out_of_range, status_of(gm_pool_read(f.channel, started.file_handle, file_bytes - 10, &target, 20, 5000, unlimited, &detail)));
    try testing.expectEqual(Status.bad_handle, status_of(gm_pool_read(f.channel, 12345, 0, &target, 20, 5000, unlimited, &detail)));

    try testing.expectEqual(Status.ok, status_of(gm_channel_post(f.channel, op_stop, 0, 0, 0, 0, 0)));
    try testing.expectEqual(Status.ok, status_of(gm_channel_wait(f.channel, 5000, &detail)));
    const waited = std.posix.waitpid(started.pid, 0);
    try testing.expect(std.posix.W.IFEXITED(waited.status));
    try testing.expectEqual(@as(u8, 0), std.posix.W.EXITSTATUS(waited.status));
}

test "channel: a worker killed with SIGKILL mid-request is reported at once, not waited for" {
    const f = try Fixture.create("kill");
    defer f.remove();
    const started = try start_worker(&f);
    // Stop the worker so it cannot answer, post a request, then kill it.
    try std.posix.kill(started.pid, std.posix.SIG.STOP);
    try testing.expectEqual(Status.ok, status_of(gm_channel_post(f.channel, 1, started.file_handle, 0, 16, 0, 0)));
    try std.posix.kill(started.pid, std.posix.SIG.KILL);
    var detail = Detail.zero;
    const before = std.time.milliTimestamp();
    try testing.expectEqual(Status.worker_gone, status_of(gm_channel_wait(f.channel, 60_000, &detail)));
    try testing.expect(std.time.milliTimestamp() - before < 1000);
    _ = std.posix.waitpid(started.pid, 0);
}

test "channel: a silent worker times out" {
    const f = try Fixture.create("timeout");
    defer f.remove();
    const started = try start_worker(&f);
    try std.posix.kill(started.pid, std.posix.SIG.STOP);
    var detail = Detail.zero;
    var target: [16]u8 = undefined;
    try testing.expectEqual(Status.timed_out, status_of(gm_pool_read(f.channel, started.file_handle, 0, &target, 16, 50, unlimited, &detail)));
    try std.posix.kill(started.pid, std.posix.SIG.KILL);
    _ = std.posix.waitpid(started.pid, 0);
}

test "channel: a call that outlives its budget returns pending and a resume finishes it" {
    const f = try Fixture.create("pending");
    defer f.remove();
    const started = try start_worker(&f);
    // A stopped worker cannot answer within 200 us: the read posts its first chunk and returns.
    try std.posix.kill(started.pid, std.posix.SIG.STOP);
    var detail = Detail.zero;
    var target: [100_000]u8 = undefined;
    try testing.expectEqual(Status.pending, status_of(gm_pool_read(f.channel, started.file_handle, 777, &target, target.len, 5000, 200, &detail)));
    // While it is pending, no other call may start on the channel.
    var other: [16]u8 = undefined;
    try testing.expectEqual(Status.busy, status_of(gm_pool_read(f.channel, started.file_handle, 0, &other, 16, 5000, unlimited, &detail)));
    try testing.expectEqual(Status.busy, status_of(gm_channel_post(f.channel, op_stop, 0, 0, 0, 0, 0)));
    // A resume must be given a buffer of the recorded length.
    try testing.expectEqual(Status.invalid_argument, status_of(gm_pool_resume(f.channel, &target, 16, null, 0, 5000, &detail)));
    try std.posix.kill(started.pid, std.posix.SIG.CONT);
    try testing.expectEqual(Status.ok, status_of(gm_pool_resume(f.channel, &target, target.len, null, 0, 5000, &detail)));
    for (target, 0..) |byte, index| try testing.expectEqual(@as(u8, @truncate((index + 777) *% 13 +% 5)), byte);
    // Nothing is pending any more.
    try testing.expectEqual(Status.invalid_argument, status_of(gm_pool_resume(f.channel, &target, target.len, null, 0, 5000, &detail)));
    try std.posix.kill(started.pid, std.posix.SIG.KILL);
    _ = std.posix.waitpid(started.pid, 0);
}

test "channel: refuses bad sizes and paths" {
    var result = OpenResult.zero;
    const path = "/dev/shm/guardmap-chan-bad";
    try testing.expectEqual(Status.invalid_argument, status_of(gm_channel_create(1000, &result)));
    try testing.expectEqual(Status.invalid_argument, status_of(gm_channel_create(1 << 40, &result)));
    try testing.expectEqual(Status.not_found, status_of(gm_channel_attach(path, path.len, &result)));
    try testing.expectEqual(Status.invalid_argument, status_of(gm_channel_attach(null, 0, &result)));
}
