//! Real faults, Linux: every guarded copy routine reports a lost page to the byte, wherever the
//! fault falls inside its chunks. On aarch64 the copy moves 64 bytes a turn as four 16-byte lanes
//! (two `ldp`/`stp` of q registers), then 16 bytes a turn, then single bytes, and drops its count
//! only per chunk; on x86_64 the streaming copy moves 64-byte lines and the small copy 16 and 8
//! bytes. A fault is placed in each lane of the 64-byte body, in the 16-byte loop and in the tail,
//! in both directions (out of the mapping, into it).
const std = @import("std");
const testing = std.testing;
const guard = @import("guard.zig");

extern fn gm_init() i32;
extern fn gm_page_size() u32;

/// Where the lost page starts relative to the copy: `before` bytes are copied, then the fault.
const Case = struct { name: []const u8, length_bytes: usize, before_bytes: usize };

const cases = [_]Case{
    .{ .name = "first byte", .length_bytes = 200, .before_bytes = 0 },
    // The second 64-byte chunk, with 200 - 64 = 136 bytes left: still in the 64-byte body.
    .{ .name = "body lane 0", .length_bytes = 200, .before_bytes = 64 + 5 },
    .{ .name = "body lane 1", .length_bytes = 200, .before_bytes = 64 + 16 + 1 },
    .{ .name = "body lane 2", .length_bytes = 200, .before_bytes = 64 + 32 + 15 },
    .{ .name = "body lane 3", .length_bytes = 200, .before_bytes = 64 + 48 + 9 },
    .{ .name = "body chunk edge", .length_bytes = 200, .before_bytes = 128 },
    // 176 = 2 * 64 + 48: the last 48 bytes go 16 a turn; the fault is in the second turn.
    .{ .name = "16-byte loop", .length_bytes = 176, .before_bytes = 128 + 16 + 7 },
    // 89 = 64 + 16 + 9: the last 9 bytes go one by one.
    .{ .name = "byte tail", .length_bytes = 89, .before_bytes = 80 + 4 },
    .{ .name = "large, last lane", .length_bytes = 4096 + 64, .before_bytes = 4096 + 48 + 3 },
};

const Routine = *const fn ([*]u8, [*]const u8, usize, *guard.Frame) usize;
const routines = [_]Routine{ &guard.copy, &guard.copy_small, &guard.copy_stream };

/// A shared read-write mapping of a scratch file of four pages whose last two are lost by a cut.
const Lost = struct {
    file: std.fs.File,
    mapped: []align(std.heap.page_size_min) u8,
    /// File offset of the first lost byte: the cut, on a page boundary.
    cut_bytes: usize,

    fn create(path: []const u8) !Lost {
        const page: usize = gm_page_size();
        const file = try std.fs.createFileAbsolute(path, .{ .read = true, .truncate = true });
        errdefer file.close();
        try file.setEndPos(4 * page);
        const mapped = try std.posix.mmap(null, 4 * page, std.posix.PROT.READ | std.posix.PROT.WRITE, .{ .TYPE = .SHARED }, file.handle, 0);
        return .{ .file = file, .mapped = mapped, .cut_bytes = 2 * page };
    }

    /// Writes the pattern over the whole file, then cuts it at `cut_bytes`.
    fn reset(lost: *const Lost) !void {
        try lost.file.setEndPos(lost.mapped.len);
        for (lost.mapped, 0..) |*byte, index| byte.* = pattern_at(index);
        try lost.file.setEndPos(lost.cut_bytes);
    }

    fn destroy(lost: *Lost) void {
        std.posix.munmap(lost.mapped);
        lost.file.close();
    }
};

fn pattern_at(offset: usize) u8 {
    return @truncate(offset *% 7 +% 3);
}

fn scratch_path(buffer: []u8) ![]const u8 {
    return std.fmt.bufPrint(buffer, "/tmp/guardmap-zig-{d}-lanes", .{std.os.linux.getpid()});
}

test "a fault in each lane of the 64-byte body, in the 16-byte loop and in the tail is counted to the byte, reading" {
    try testing.expectEqual(@as(i32, 0), gm_init());
    var path_buffer: [64]u8 = undefined;
    const path = try scratch_path(&path_buffer);
    defer std.fs.deleteFileAbsolute(path) catch {};
    var lost = try Lost.create(path);
    defer lost.destroy();
    try lost.reset();
    var target: [8192]u8 = undefined;
    for (routines) |routine| {
        for (cases) |case| {
            errdefer std.debug.print("reading, case '{s}'\n", .{case.name});
            const start = lost.cut_bytes - case.before_bytes;
            @memset(&target, 0xEE);
            var frame = guard.Frame.init(@intFromPtr(lost.mapped.ptr), @intFromPtr(lost.mapped.ptr) + lost.mapped.len);
            const remaining = routine(&target, lost.mapped[start..].ptr, case.length_bytes, &frame);
            try testing.expectEqual(case.length_bytes - case.before_bytes, remaining);
            try testing.expectEqual(@intFromPtr(lost.mapped.ptr) + lost.cut_bytes, frame.fault_address);
            for (target[0..case.before_bytes], start..) |byte, offset| try testing.expectEqual(pattern_at(offset), byte);
            // Nothing past the fault: every load of a chunk comes before its stores.
            for (target[case.before_bytes..]) |byte| try testing.expectEqual(@as(u8, 0xEE), byte);
        }
    }
}

test "a fault in each lane of the 64-byte body, in the 16-byte loop and in the tail is counted to the byte, writing" {
    try testing.expectEqual(@as(i32, 0), gm_init());
    var path_buffer: [64]u8 = undefined;
    const path = try scratch_path(&path_buffer);
    defer std.fs.deleteFileAbsolute(path) catch {};
    var lost = try Lost.create(path);
    defer lost.destroy();
    var source: [8192]u8 = undefined;
    for (&source, 0..) |*byte, index| byte.* = @truncate(index *% 13 +% 101);
    var check: [8192]u8 = undefined;
    for (routines) |routine| {
        for (cases) |case| {
            errdefer std.debug.print("writing, case '{s}'\n", .{case.name});
            try lost.reset();
            const start = lost.cut_bytes - case.before_bytes;
            var frame = guard.Frame.init(@intFromPtr(lost.mapped.ptr), @intFromPtr(lost.mapped.ptr) + lost.mapped.len);
            const remaining = routine(lost.mapped[start..].ptr, &source, case.length_bytes, &frame);
            try testing.expectEqual(case.length_bytes - case.before_bytes, remaining);
            try testing.expectEqual(@intFromPtr(lost.mapped.ptr) + lost.cut_bytes, frame.fault_address);
            // The file holds the bytes before the cut, and nothing after it.
            try testing.expectEqual(@as(u64, lost.cut_bytes), try lost.file.getEndPos());
            const read_bytes = try lost.file.preadAll(check[0..case.before_bytes], start);
            try testing.expectEqual(case.before_bytes, read_bytes);
            try testing.expectEqualSlices(u8, source[0..case.before_bytes], check[0..case.before_bytes]);
        }
    }
}
