//! Real faults, Linux: the kernel raises SIGBUS on a truncated mapped file. No mocks.
const std = @import("std");
const builtin = @import("builtin");
const testing = std.testing;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Detail = status_zig.Detail;
const OpenResult = status_zig.OpenResult;
const guard_linux = @import("guard_linux.zig");
const guard = @import("guard.zig");

/// The library's page size (4, 16 or 64 KiB on aarch64). The file is 16 pages, cut at a page
/// boundary (a cut inside a page would not fault: the rest of that page reads as zeros).
fn page_bytes() usize {
    return gm_page_size();
}
fn file_length_bytes() usize {
    return 16 * page_bytes();
}
fn truncated_length_bytes() usize {
    return 3 * page_bytes();
}

/// A scratch file in /tmp filled with a known pattern, removed by `remove`.
const Scratch = struct {
    path_buffer: [64]u8,
    path_length: usize,
    file: std.fs.File,

    fn create(tag: []const u8) !Scratch {
        var scratch: Scratch = undefined;
        const created = try std.fmt.bufPrint(&scratch.path_buffer, "/tmp/guardmap-zig-{d}-{s}", .{ std.os.linux.getpid(), tag });
        scratch.path_length = created.len;
        scratch.file = try std.fs.createFileAbsolute(created, .{ .read = true, .truncate = true });
        const pattern = try testing.allocator.alloc(u8, file_length_bytes());
        defer testing.allocator.free(pattern);
        for (pattern, 0..) |*byte, index| byte.* = @truncate(index *% 7 +% 3);
        try scratch.file.writeAll(pattern);
        return scratch;
    }

    /// The path lives in the struct itself (which is returned by value), so it is sliced on use.
    fn path(scratch: *const Scratch) []const u8 {
        return scratch.path_buffer[0..scratch.path_length];
    }

    fn open(scratch: *const Scratch, mode: status_zig.Mode) !f64 {
        var result = OpenResult.zero;
        const status = root_open(scratch.path(), mode, &result);
        try testing.expectEqual(Status.ok, status);
        return result.handle;
    }

    fn remove(scratch: *Scratch) void {
        scratch.file.close();
        std.fs.deleteFileAbsolute(scratch.path()) catch {};
    }
};

fn root_open(path: []const u8, mode: status_zig.Mode, result: *OpenResult) Status {
    const raw = gm_open(path.ptr, path.len, @intFromEnum(mode), 0, 0, 0, result);
    return @enumFromInt(raw);
}

extern fn gm_open(path: ?[*]const u8, path_length: usize, mode: u32, offset: u64, length: u64, flags: u32, out: ?*align(1) OpenResult) i32;
extern fn gm_close(handle: f64) i32;
extern fn gm_last_detail(out: ?*align(1) Detail) i32;

const detail_calls = @import("detail_calls_test.zig");
const read_detail = detail_calls.read_detail;
const write_detail = detail_calls.write_detail;
extern fn gm_read_many(handle: f64, positions: ?[*]const f64, positions_length: f64, count: f64, length: f64, target: ?[*]u8, target_length: f64, detail: ?*align(1) Detail) i32;
extern fn gm_prefault(handle: f64, position: f64, length: f64, write: u32, detail: ?*align(1) Detail) i32;
extern fn gm_address(handle: f64) ?*anyopaque;
extern fn gm_init() i32;
extern fn gm_page_size() u32;

/// A byte count or position as the f64 the C ABI takes.
fn at(bytes: usize) f64 {
    return @floatFromInt(bytes);
}

fn status_of(raw: i32) Status {
    return @enumFromInt(raw);
}

test "guarded read across a truncated end delivers the bytes before it and reports the fault" {
    var scratch = try Scratch.create("read");
    defer scratch.remove();
    const handle = try scratch.open(.read);
    defer _ = gm_close(handle);

    try scratch.file.setEndPos(truncated_length_bytes());
    const target = try testing.allocator.alloc(u8, file_length_bytes());
    defer testing.allocator.free(target);
    @memset(target, 0);
    var detail = Detail.zero;
    try testing.expectEqual(Status.io, status_of(read_detail(handle, 0, target.ptr, @floatFromInt(target.len), &detail)));
    try testing.expectEqual(@as(u64, truncated_length_bytes()), detail.bytes_done);
    try testing.expectEqual(@as(u64, truncated_length_bytes()), detail.fault_window_offset);
    try testing.expectEqual(guard_linux.sigbus, detail.signal);
    for (target[0..truncated_length_bytes()], 0..) |byte, index| {
        try testing.expectEqual(@as(u8, @truncate(index *% 7 +% 3)), byte);
    }

    // The process carries on: the healthy part reads again, and a read from the middle of the
    // lost page counts from its own start.
    const page = page_bytes();
    var healthy = [_]u8{0} ** 4096;
    try testing.expectEqual(Status.ok, status_of(read_detail(handle, @floatFromInt(page), &healthy, 4096, &detail)));
    try testing.expectEqual(@as(u8, @truncate(page *% 7 +% 3)), healthy[0]);
    const lost_page_position = truncated_length_bytes() - 288;
    try testing.expectEqual(Status.io, status_of(read_detail(handle, @floatFromInt(lost_page_position), &healthy, 1000, &detail)));
    try testing.expectEqual(@as(u64, 288), detail.bytes_done);
    // A small read (the plain-move copy) across the end: exact as well, at any remainder.
    for ([_]u64{ 1, 7, 8, 15, 16, 17, 37, 254 }) |before_end| {
        const small_position: f64 = @floatFromInt(truncated_length_bytes() - before_end);
        try testing.expectEqual(Status.io, status_of(read_detail(handle, small_position, &healthy, 255, &detail)));
        try testing.expectEqual(before_end, detail.bytes_done);
    }
}

/// Whether this test runs as an aarch64 program emulated by qemu-user on another CPU: qemu 7.2
/// shows the host's /proc/cpuinfo, which then lacks the "CPU implementer" lines of every aarch64
/// kernel.
pub fn under_qemu_user() bool {
    if (builtin.cpu.arch != .aarch64) return false;
    var buffer: [4096]u8 = undefined;
    const cpuinfo = std.fs.cwd().readFile("/proc/cpuinfo", &buffer) catch return false;
    return std.mem.indexOf(u8, cpuinfo, "CPU implementer") == null;
}

test "prefault finds the first failing page without a signal reaching us" {
    if (under_qemu_user()) {
        // madvise(MADV_POPULATE_READ) succeeds there without touching a page.
        std.debug.print("SKIPPED under qemu-user: qemu accepts MADV_POPULATE_READ and does nothing, so prefault cannot see a lost page there\n", .{});
        return error.SkipZigTest;
    }
    var scratch = try Scratch.create("prefault");
    defer scratch.remove();
    const handle = try scratch.open(.read);
    defer _ = gm_close(handle);
    try scratch.file.setEndPos(truncated_length_bytes());
    var detail = Detail.zero;
    try testing.expectEqual(Status.io, status_of(gm_prefault(handle, 0, at(file_length_bytes()), 0, &detail)));
    try testing.expectEqual(@as(u64, truncated_length_bytes()), detail.fault_window_offset);
}

test "a large guarded read (the streaming copy) reports a truncated end to the byte, at any alignment" {
    // Reads of stream_length_bytes_min or more take guardmap_copy_stream, which notices a fault only per 64-byte
    // line; the count it returns must still be exact. Shifts make the source and the target
    // straddle lines and pages differently.
    const large_bytes = guard.stream_length_bytes_min + (4 << 20);
    const kept_bytes = guard.stream_length_bytes_min / 2 + truncated_length_bytes();
    // Named by the process id: two test runs at once (two checkouts) must not share the file.
    var path_buffer: [64]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buffer, "/tmp/guardmap-zig-{d}-stream", .{std.os.linux.getpid()});
    var file = try std.fs.createFileAbsolute(path, .{ .read = true, .truncate = true });
    defer std.fs.deleteFileAbsolute(path) catch {};
    defer file.close();
    const pattern = try testing.allocator.alloc(u8, large_bytes);
    defer testing.allocator.free(pattern);
    for (pattern, 0..) |*byte, index| byte.* = @truncate(index *% 7 +% 3);
    try file.writeAll(pattern);
    var result = OpenResult.zero;
    try testing.expectEqual(Status.ok, root_open(path, .read, &result));
    defer _ = gm_close(result.handle);
    const target = try testing.allocator.alloc(u8, large_bytes + 64);
    defer testing.allocator.free(target);
    var detail = Detail.zero;

    // Healthy first: the whole file, then odd shifts, byte for byte.
    for ([_]usize{ 0, 1, 37 }) |shift| {
        const length = large_bytes - shift;
        try testing.expectEqual(Status.ok, status_of(read_detail(result.handle, @floatFromInt(shift), target[shift..].ptr, @floatFromInt(length), &detail)));
        try testing.expectEqualSlices(u8, pattern[shift..], target[shift..][0..length]);
    }

    try file.setEndPos(kept_bytes);
    for ([_]usize{ 0, 3, 61 }) |position| {
        for ([_]usize{ 0, 1, 17 }) |target_shift| {
            @memset(target, 0);
            const length = large_bytes - position;
            try testing.expectEqual(Status.io, status_of(read_detail(result.handle, @floatFromInt(position), target[target_shift..].ptr, @floatFromInt(length), &detail)));
            try testing.expectEqual(@as(u64, kept_bytes - position), detail.bytes_done);
            try testing.expectEqual(@as(u64, kept_bytes), detail.fault_window_offset);
            try testing.expectEqualSlices(u8, pattern[position..kept_bytes], target[target_shift..][0 .. kept_bytes - position]);
        }
    }
}

test "read_many copies every range, checks them all first, and counts bytes across ranges on a fault" {
    var scratch = try Scratch.create("many");
    defer scratch.remove();
    const handle = try scratch.open(.read);
    defer _ = gm_close(handle);
    const length = 100;
    var target = [_]u8{0} ** (4 * length);
    var detail = Detail.zero;

    const healthy = [_]f64{ 5, at(10 * page_bytes() - 960), 0, at(file_length_bytes() - length) };
    try testing.expectEqual(Status.ok, status_of(gm_read_many(handle, &healthy, healthy.len, 4, length, &target, target.len, &detail)));
    for (healthy, 0..) |position, index| {
        for (target[index * length ..][0..length], 0..) |byte, k| {
            const offset: usize = @as(usize, @intFromFloat(position)) + k;
            try testing.expectEqual(@as(u8, @truncate(offset *% 7 +% 3)), byte);
        }
    }

    // One bad range anywhere in the list: nothing is copied.
    @memset(&target, 0xEE);
    const one_outside = [_]f64{ 0, 8, at(file_length_bytes() - 50), 16 };
    try testing.expectEqual(Status.out_of_range, status_of(gm_read_many(handle, &one_outside, one_outside.len, 4, length, &target, target.len, &detail)));
    const one_fraction = [_]f64{ 0, 8.5 };
    try testing.expectEqual(Status.invalid_argument, status_of(gm_read_many(handle, &one_fraction, one_fraction.len, 2, length, &target, target.len, &detail)));
    for (target) |byte| try testing.expectEqual(@as(u8, 0xEE), byte);
    // The target must hold count * length bytes; counts and lengths are checked like positions.
    try testing.expectEqual(Status.invalid_argument, status_of(gm_read_many(handle, &healthy, healthy.len, 4, length, &target, target.len - 1, &detail)));
    try testing.expectEqual(Status.invalid_argument, status_of(gm_read_many(handle, &healthy, healthy.len, 4.5, length, &target, target.len, &detail)));
    // A list shorter than the count it claims is refused before any position is read.
    try testing.expectEqual(Status.invalid_argument, status_of(gm_read_many(handle, &healthy, healthy.len - 1, 4, length, &target, target.len, &detail)));
    try testing.expectEqual(Status.invalid_argument, status_of(gm_read_many(handle, null, 0, 4, length, &target, target.len, &detail)));
    try testing.expectEqual(Status.invalid_argument, status_of(gm_read_many(handle, &healthy, healthy.len, 4, length, null, target.len, &detail)));
    try testing.expectEqual(Status.invalid_argument, status_of(gm_read_many(handle, &healthy, healthy.len, 1 << 40, 1 << 40, &target, target.len, &detail)));
    try testing.expectEqual(Status.ok, status_of(gm_read_many(handle, null, 0, 0, length, null, 0, &detail)));

    // The third range crosses the truncated end: two whole ranges, then the part before it.
    try scratch.file.setEndPos(truncated_length_bytes());
    const crossing = [_]f64{ 0, at(page_bytes()), at(truncated_length_bytes() - 30), 0 };
    try testing.expectEqual(Status.io, status_of(gm_read_many(handle, &crossing, crossing.len, 4, length, &target, target.len, &detail)));
    try testing.expectEqual(@as(u64, 2 * length + 30), detail.bytes_done);
    try testing.expectEqual(@as(u64, truncated_length_bytes()), detail.fault_window_offset);
}

test "guarded write across a truncated end stops at the end and reports the fault" {
    var scratch = try Scratch.create("write");
    defer scratch.remove();
    const handle = try scratch.open(.read_write);
    defer _ = gm_close(handle);

    try scratch.file.setEndPos(truncated_length_bytes());
    var source = [_]u8{0xAB} ** 8192;
    var detail = Detail.zero;
    const position = truncated_length_bytes() - 100;
    try testing.expectEqual(Status.io, status_of(write_detail(handle, at(position), &source, source.len, &detail)));
    try testing.expectEqual(@as(u64, 100), detail.bytes_done);
    var check = [_]u8{0} ** 100;
    try testing.expectEqual(@as(usize, 100), try scratch.file.preadAll(&check, position));
    try testing.expectEqualSlices(u8, source[0..100], &check);

    // A small write (the plain-move copy) that crosses the end stops there too, to the byte.
    const small_position = truncated_length_bytes() - 37;
    try testing.expectEqual(Status.io, status_of(write_detail(handle, at(small_position), &source, 200, &detail)));
    try testing.expectEqual(@as(u64, 37), detail.bytes_done);
}

test "writes to the file (pwrite): the bytes reach the file and the map, and never grow a truncated file" {
    var scratch = try Scratch.create("pwrite");
    defer scratch.remove();
    const writes_to_file = 8;
    var result = OpenResult.zero;
    for ([_]status_zig.Mode{ .read, .copy_on_write }) |mode| {
        try testing.expectEqual(Status.invalid_argument, status_of(gm_open(scratch.path().ptr, scratch.path().len, @intFromEnum(mode), 0, 0, writes_to_file, &result)));
    }
    try testing.expectEqual(Status.invalid_argument, status_of(gm_open(scratch.path().ptr, scratch.path().len, @intFromEnum(status_zig.Mode.read_write), 0, 0, writes_to_file | 4, &result)));
    try testing.expectEqual(Status.ok, status_of(gm_open(scratch.path().ptr, scratch.path().len, @intFromEnum(status_zig.Mode.read_write), 0, 0, writes_to_file, &result)));
    const handle = result.handle;
    defer _ = gm_close(handle);

    var source = [_]u8{0x5A} ** 300;
    var detail = Detail.zero;
    try testing.expectEqual(Status.ok, status_of(write_detail(handle, 4000, &source, source.len, &detail)));
    var from_file = [_]u8{0} ** 300;
    try testing.expectEqual(@as(usize, 300), try scratch.file.preadAll(&from_file, 4000));
    try testing.expectEqualSlices(u8, &source, &from_file);
    var from_map = [_]u8{0} ** 300;
    try testing.expectEqual(Status.ok, status_of(read_detail(handle, 4000, &from_map, from_map.len, &detail)));
    try testing.expectEqualSlices(u8, &source, &from_map);

    // Past an end truncated mid-page: written up to the end, then refused, and the file stays
    // truncated. (A write through the map would not fault there: the kernel serves the rest of
    // the page that holds the new end.)
    const kept_bytes = truncated_length_bytes() - 1000;
    try scratch.file.setEndPos(kept_bytes);
    try testing.expectEqual(Status.io, status_of(write_detail(handle, at(kept_bytes - 100), &source, source.len, &detail)));
    try testing.expectEqual(@as(u64, 100), detail.bytes_done);
    try testing.expectEqual(@as(u64, kept_bytes - 100 + 100), detail.fault_window_offset);
    try testing.expectEqual(@as(u64, kept_bytes), try scratch.file.getEndPos());
}

test "bad arguments are refused by the library itself" {
    var scratch = try Scratch.create("args");
    defer scratch.remove();
    const handle = try scratch.open(.read);
    var target = [_]u8{0} ** 16;
    var detail = Detail.zero;
    try testing.expectEqual(Status.invalid_argument, status_of(read_detail(handle, -1, &target, 16, &detail)));
    try testing.expectEqual(Status.invalid_argument, status_of(read_detail(handle, 0.5, &target, 16, &detail)));
    try testing.expectEqual(Status.invalid_argument, status_of(read_detail(handle, std.math.nan(f64), &target, 16, &detail)));
    try testing.expectEqual(Status.out_of_range, status_of(read_detail(handle, at(file_length_bytes() - 8), &target, 16, &detail)));
    try testing.expectEqual(Status.invalid_argument, status_of(read_detail(handle, 0, null, 16, &detail)));
    try testing.expectEqual(Status.invalid_argument, status_of(gm_last_detail(null)));
    try testing.expectEqual(Status.read_only, status_of(write_detail(handle, 0, &target, 16, &detail)));
    try testing.expectEqual(Status.ok, status_of(gm_close(handle)));
    try testing.expectEqual(Status.bad_handle, status_of(gm_close(handle)));
    try testing.expectEqual(Status.bad_handle, status_of(read_detail(handle, 0, &target, 16, &detail)));
    try testing.expectEqual(@as(?*anyopaque, null), gm_address(handle));

    var result = OpenResult.zero;
    try testing.expectEqual(Status.not_found, root_open("/nonexistent/guardmap", .read, &result));
    try testing.expectEqual(Status.is_directory, root_open("/tmp", .read, &result));
    try testing.expectEqual(Status.invalid_argument, @as(Status, @enumFromInt(gm_open("a\x00b", 3, 0, 0, 0, 0, &result))));
    try testing.expectEqual(Status.invalid_argument, @as(Status, @enumFromInt(gm_open(scratch.path().ptr, scratch.path().len, 9, 0, 0, 0, &result))));
    try testing.expectEqual(Status.window_past_end, @as(Status, @enumFromInt(gm_open(scratch.path().ptr, scratch.path().len, 0, 0, file_length_bytes() + 1, 1, &result))));
    try testing.expectEqual(Status.overflow, @as(Status, @enumFromInt(gm_open(scratch.path().ptr, scratch.path().len, 0, 1, std.math.maxInt(u64), 1, &result))));
}

/// Runs `body` in a forked child and returns how the child ended.
fn in_child(comptime body: fn (*const Scratch) void, scratch: *const Scratch) !u32 {
    const pid = try std.posix.fork();
    if (pid == 0) {
        body(scratch);
        std.posix.exit(0); // Reaching this means the fault was swallowed.
    }
    return std.posix.waitpid(pid, 0).status;
}

const Handler = *const fn (c_int, *const guard_linux.SigInfo, ?*anyopaque) callconv(.c) void;

/// In a child: make `previous` (null: the default action) the handler that was there before
/// the library, then install the library's handler over it.
fn install_over(previous: ?Handler) void {
    var action = std.mem.zeroes(guard_linux.Sigaction);
    if (previous) |handler| {
        action.handler = @intFromPtr(handler);
        action.flags = 0x4; // SA_SIGINFO
    }
    for ([_]c_int{ guard_linux.sigbus, guard_linux.sigsegv }) |signal| {
        if (guard_linux.sigaction(signal, &action, null) != 0) std.posix.exit(13);
    }
    guard_linux.forget_for_test();
    if (status_of(gm_init()) != .ok) std.posix.exit(14);
}

/// Maps, truncates, and makes a guarded read across the end (exit 12 if it is not reported as
/// an I/O error). Then, with `unguarded`, touches a lost page directly; without, exits 0.
fn touch_past_truncated_end(scratch: *const Scratch, comptime unguarded: bool) void {
    touch_after(scratch, unguarded, null);
}

/// The same, calling `after_open` between opening the map and the guarded read.
fn touch_after(scratch: *const Scratch, comptime unguarded: bool, comptime after_open: ?fn () void) void {
    // An earlier child may have truncated the shared scratch file.
    scratch.file.setEndPos(file_length_bytes()) catch std.posix.exit(9);
    var result = OpenResult.zero;
    if (root_open(scratch.path(), .read, &result) != .ok) std.posix.exit(10);
    if (after_open) |hook| hook();
    scratch.file.setEndPos(truncated_length_bytes()) catch std.posix.exit(11);
    const base: [*]volatile u8 = @ptrCast(gm_address(result.handle).?);
    // A guarded read first, to show the guard is live in this process ...
    var target = [_]u8{0} ** 8192;
    var detail = Detail.zero;
    if (status_of(read_detail(result.handle, at(truncated_length_bytes() - 4096), &target, 8192, &detail)) != .io) std.posix.exit(12);
    if (!unguarded) std.posix.exit(0);
    // ... then an unguarded one, which is not ours to catch.
    _ = base[truncated_length_bytes() + 1];
}

fn unguarded_over_default(scratch: *const Scratch) void {
    install_over(null);
    touch_past_truncated_end(scratch, true);
}

test "a fault outside the guarded copy is not swallowed: the process dies of SIGBUS" {
    var scratch = try Scratch.create("unguarded");
    defer scratch.remove();
    const status = try in_child(unguarded_over_default, &scratch);
    try testing.expect(std.posix.W.IFSIGNALED(status));
    try testing.expectEqual(@as(u32, @intCast(guard_linux.sigbus)), std.posix.W.TERMSIG(status));
}

fn exit_42(signal: c_int, info: *const guard_linux.SigInfo, context: ?*anyopaque) callconv(.c) void {
    _ = info;
    _ = context;
    std.posix.exit(if (signal == guard_linux.sigbus) 42 else 43);
}

fn unguarded_over_handler(scratch: *const Scratch) void {
    install_over(&exit_42);
    touch_past_truncated_end(scratch, true);
}

test "a fault that is not ours reaches the handler installed before the library" {
    var scratch = try Scratch.create("chained");
    defer scratch.remove();
    const status = try in_child(unguarded_over_handler, &scratch);
    try testing.expect(std.posix.W.IFEXITED(status));
    try testing.expectEqual(@as(u8, 42), std.posix.W.EXITSTATUS(status));
}

var replaced_handler: usize = 0;

/// Behaves like signal-hook (Deno's signal listeners): calls the handler it replaced.
fn later_handler(signal: c_int, info: *const guard_linux.SigInfo, context: ?*anyopaque) callconv(.c) void {
    const replaced: Handler = @ptrFromInt(replaced_handler);
    replaced(signal, info, context);
}

/// In a child, after the map is open: install `handler` over ours (remembering ours for
/// `later_handler`), then optionally re-arm.
fn stack_handler(handler: Handler, rearm: bool) void {
    var ours = std.mem.zeroes(guard_linux.Sigaction);
    if (guard_linux.sigaction(guard_linux.sigbus, null, &ours) != 0) std.posix.exit(15);
    replaced_handler = ours.handler;
    var action = std.mem.zeroes(guard_linux.Sigaction);
    action.handler = @intFromPtr(handler);
    action.flags = 0x4;
    if (guard_linux.sigaction(guard_linux.sigbus, &action, null) != 0) std.posix.exit(16);
    // gm_open re-arms too; gm_init is the explicit path.
    if (rearm and status_of(gm_init()) != .ok) std.posix.exit(17);
}

/// Behaves like Deno's handler after `removeSignalListener`: forwards nothing, restores the
/// default action and returns, so the fault repeats and kills the process.
fn non_forwarding_handler(signal: c_int, info: *const guard_linux.SigInfo, context: ?*anyopaque) callconv(.c) void {
    _ = info;
    _ = context;
    var default_action = std.mem.zeroes(guard_linux.Sigaction);
    _ = guard_linux.sigaction(signal, &default_action, null);
}

fn Child(comptime handler: Handler, comptime rearm: bool, comptime unguarded: bool) type {
    return struct {
        fn run(scratch: *const Scratch) void {
            install_over(null);
            touch_after(scratch, unguarded, stack);
        }
        fn stack() void {
            stack_handler(handler, rearm);
        }
    };
}

fn expect_exit_0(status: u32) !void {
    try testing.expect(std.posix.W.IFEXITED(status));
    try testing.expectEqual(@as(u8, 0), std.posix.W.EXITSTATUS(status));
}

fn expect_sigbus(status: u32) !void {
    try testing.expect(std.posix.W.IFSIGNALED(status));
    try testing.expectEqual(@as(u32, @intCast(guard_linux.sigbus)), std.posix.W.TERMSIG(status));
}

test "a handler installed after ours that forwards to it keeps the guard working" {
    var scratch = try Scratch.create("later");
    defer scratch.remove();
    try expect_exit_0(try in_child(Child(&later_handler, false, false).run, &scratch));
    // An unguarded fault still travels the chain to the default action.
    try expect_sigbus(try in_child(Child(&later_handler, false, true).run, &scratch));
}

test "a handler over ours that stopped forwarding breaks the guard until it is re-armed" {
    var scratch = try Scratch.create("rearm");
    defer scratch.remove();
    // Without re-arming, the guarded read dies: this is the hazard re-arming exists for.
    try expect_sigbus(try in_child(Child(&non_forwarding_handler, false, false).run, &scratch));
    try expect_exit_0(try in_child(Child(&non_forwarding_handler, true, false).run, &scratch));
    try expect_sigbus(try in_child(Child(&non_forwarding_handler, true, true).run, &scratch));
}

test "re-arming over a handler that forwards back to ours does not loop" {
    var scratch = try Scratch.create("loop");
    defer scratch.remove();
    try expect_exit_0(try in_child(Child(&later_handler, true, false).run, &scratch));
    // A loop would overflow the stack (SIGSEGV) or hang; the fault must end as SIGBUS.
    try expect_sigbus(try in_child(Child(&later_handler, true, true).run, &scratch));
}

test {
    _ = @import("copy_lanes_test.zig");
    _ = @import("open_cleanup_test.zig");
}
