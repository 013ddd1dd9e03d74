//! Real faults, Linux: every guarded copy routine reports a lost page to the byte, wherever the
//! fault falls inside its chunks. On aarch64 the copy moves 64 bytes a turn as four 16-byte lanes
//! (two `ldp`/`stp` of q registers), then 16 bytes a turn, then single bytes, and drops its count
//! only per chunk; on x86_64 the streaming copy moves 64-byte lines and the small copy 16 and 8
//! bytes, after 16 KiB blocks of four 4 KiB pages copied a line of each in turn. A fault is placed
//! in each lane of the 64-byte body, in the 16-byte loop and in the tail, and on pages 1, 2 and 3
//! of a block, in both directions (out of the mapping, into it).
const std = @import("std");
const testing = std.testing;
const assert = std.debug.assert;
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
    // The streaming copy's blocks: four 4 KiB pages, one 64-byte line of each in turn (then the
    // lines and the tail above). The lost page begins on page 1, 2 or 3 of a block (at a page's
    // start, inside a page, in the block's last line), in the first, second and third block.
    .{ .name = "block 0, page 1", .length_bytes = block_bytes + 64 * 5 + 7, .before_bytes = 4096 },
    .{ .name = "block 0, page 2, inside", .length_bytes = block_bytes + 1, .before_bytes = 2 * 4096 + 64 * 3 + 5 },
    .{ .name = "block 0, page 3, last line", .length_bytes = 2 * block_bytes - 1, .before_bytes = 3 * 4096 + 64 * 63 + 1 },
    .{ .name = "block 1, page 1", .length_bytes = 2 * block_bytes + 100, .before_bytes = block_bytes + 4096 + 64 },
    .{ .name = "block 1, page 2", .length_bytes = 3 * block_bytes, .before_bytes = block_bytes + 2 * 4096 },
    .{ .name = "block 2, page 3", .length_bytes = 3 * block_bytes + 64 * 5 + 7, .before_bytes = 2 * block_bytes + 3 * 4096 + 8 },
};

/// The streaming copy's block: four 4 KiB pages (fixed in guard.zig, whatever the system's page).
const block_bytes = 4 * 4096;
/// The largest case's bytes before and after the cut: the scratch file must hold them.
const before_bytes_max = 2 * block_bytes + 3 * 4096 + 8;
const length_bytes_max = 3 * block_bytes + 64 * 5 + 7;
comptime {
    for (cases) |case| {
        assert(case.before_bytes < case.length_bytes);
        assert(case.before_bytes <= before_bytes_max);
        assert(case.length_bytes <= length_bytes_max);
    }
}

const Routine = *const fn ([*]u8, [*]const u8, usize, *guard.Frame) usize;
const routines = [_]Routine{ &guard.copy, &guard.copy_small, &guard.copy_stream };

/// A shared read-write mapping of a scratch file whose second half is lost by a cut: at least two
/// pages on each side, and room for every case on either side of the cut and of a page in the first
/// half (the inaccessible page of the last test).
const Lost = struct {
    file: std.fs.File,
    mapped: []align(std.heap.page_size_min) u8,
    /// File offset of the first lost byte: the cut, on a page boundary.
    cut_bytes: usize,
    path_buffer: [64]u8,
    path_length: usize,

    /// The library initialised, and the scratch file created (named by the process id) and mapped.
    fn create() !Lost {
        try testing.expectEqual(@as(i32, 0), gm_init());
        var path_buffer: [64]u8 = undefined;
        const path = try scratch_path(&path_buffer);
        errdefer std.fs.deleteFileAbsolute(path) catch {};
        const page: usize = gm_page_size();
        const half_bytes = @max(2 * page, std.mem.alignForward(usize, hole_bytes_of(page) + length_bytes_max, page));
        const file = try std.fs.createFileAbsolute(path, .{ .read = true, .truncate = true });
        errdefer file.close();
        try file.setEndPos(2 * half_bytes);
        const mapped = try std.posix.mmap(null, 2 * half_bytes, std.posix.PROT.READ | std.posix.PROT.WRITE, .{ .TYPE = .SHARED }, file.handle, 0);
        return .{ .file = file, .mapped = mapped, .cut_bytes = half_bytes, .path_buffer = path_buffer, .path_length = path.len };
    }

    /// Writes the pattern over the whole file, then cuts it at `cut_bytes`.
    fn reset(lost: *const Lost) !void {
        try lost.file.setEndPos(lost.mapped.len);
        for (lost.mapped, 0..) |*byte, index| byte.* = pattern_at(index);
        try lost.file.setEndPos(lost.cut_bytes);
    }

    /// A frame declaring the whole mapping.
    fn frame(lost: *const Lost) guard.Frame {
        return guard.Frame.init(@intFromPtr(lost.mapped.ptr), @intFromPtr(lost.mapped.ptr) + lost.mapped.len);
    }

    fn destroy(lost: *Lost) void {
        std.posix.munmap(lost.mapped);
        lost.file.close();
        std.fs.deleteFileAbsolute(lost.path_buffer[0..lost.path_length]) catch {};
    }
};

/// Where the last test's inaccessible page starts: room for every case's bytes before it.
fn hole_bytes_of(page: usize) usize {
    return std.mem.alignForward(usize, before_bytes_max, page);
}

fn pattern_at(offset: usize) u8 {
    // Every 64-byte line differs from the others in 16 KiB: a line copied to a wrong place shows.
    return @truncate(offset *% 7 +% 3 +% (offset >> 6));
}

fn scratch_path(buffer: []u8) ![]const u8 {
    return std.fmt.bufPrint(buffer, "/tmp/guardmap-zig-{d}-lanes", .{std.os.linux.getpid()});
}

test "a fault in each lane of the 64-byte body, in the 16-byte loop, in the tail and on pages 1-3 of a block is counted to the byte, reading" {
    var lost = try Lost.create();
    defer lost.destroy();
    try lost.reset();
    // Page-aligned, so that the shifts place the streaming copy's head (up to the target's next
    // 64-byte line) and with it its blocks where the cases say: none at shift 0.
    const target = try std.heap.page_allocator.alloc(u8, length_bytes_max + 64);
    defer std.heap.page_allocator.free(target);
    for (routines) |routine| {
        for (cases) |case| {
            for ([_]usize{ 0, 1, 63 }) |target_shift| {
                errdefer std.debug.print("reading, case '{s}', target shift {d}\n", .{ case.name, target_shift });
                const start = lost.cut_bytes - case.before_bytes;
                @memset(target, 0xEE);
                var frame = lost.frame();
                const remaining = routine(target[target_shift..].ptr, lost.mapped[start..].ptr, case.length_bytes, &frame);
                try testing.expectEqual(case.length_bytes - case.before_bytes, remaining);
                try testing.expectEqual(@intFromPtr(lost.mapped.ptr) + lost.cut_bytes, frame.fault_address);
                try expect_copied_then_untouched(target, target_shift, start, case.before_bytes);
            }
        }
    }
}

/// `target` holds the pattern from file offset `start` for `copied_bytes` from `target_shift`, and
/// 0xEE everywhere else. Nothing past the fault: every load of a chunk comes before its stores, and
/// the streaming copy's later pages of a block lie past the lost page too (a cut loses them all; a
/// lost 4 KiB page makes the next page's first line fault before any other line of it is copied).
fn expect_copied_then_untouched(target: []const u8, target_shift: usize, start: usize, copied_bytes: usize) !void {
    for (target[0..target_shift]) |byte| try testing.expectEqual(@as(u8, 0xEE), byte);
    for (target[target_shift..][0..copied_bytes], start..) |byte, offset| try testing.expectEqual(pattern_at(offset), byte);
    for (target[target_shift + copied_bytes ..]) |byte| try testing.expectEqual(@as(u8, 0xEE), byte);
}

test "a fault in each lane of the 64-byte body, in the 16-byte loop, in the tail and on pages 1-3 of a block is counted to the byte, writing" {
    var lost = try Lost.create();
    defer lost.destroy();
    const source = try testing.allocator.alloc(u8, length_bytes_max);
    defer testing.allocator.free(source);
    for (source, 0..) |*byte, index| byte.* = @truncate(index *% 13 +% 101 +% (index >> 6));
    const check = try testing.allocator.alloc(u8, length_bytes_max);
    defer testing.allocator.free(check);
    for (routines) |routine| {
        for (cases) |case| {
            errdefer std.debug.print("writing, case '{s}'\n", .{case.name});
            try lost.reset();
            const start = lost.cut_bytes - case.before_bytes;
            var frame = lost.frame();
            const remaining = routine(lost.mapped[start..].ptr, source.ptr, case.length_bytes, &frame);
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

test "one inaccessible page with readable pages after it is counted to the byte, and nothing past it is copied, reading" {
    // A page the copy cannot read while the pages after it can be (what an I/O error on one page
    // does): here by mprotect, so the kernel raises SIGSEGV at it. The streaming copy reads pages
    // 1-3 of a block before it knows that page 0 or 1 failed; it must neither count nor copy them.
    var lost = try Lost.create();
    defer lost.destroy();
    try lost.reset();
    const page: usize = gm_page_size();
    const hole_bytes = hole_bytes_of(page);
    assert(hole_bytes + length_bytes_max <= lost.cut_bytes);
    const hole: []align(std.heap.page_size_min) u8 = @alignCast(lost.mapped[hole_bytes..][0..page]);
    try std.posix.mprotect(hole, std.posix.PROT.NONE);
    const target = try std.heap.page_allocator.alloc(u8, length_bytes_max + 64);
    defer std.heap.page_allocator.free(target);
    for (routines) |routine| {
        for (cases) |case| {
            errdefer std.debug.print("hole, case '{s}'\n", .{case.name});
            const start = hole_bytes - case.before_bytes;
            @memset(target, 0xEE);
            var frame = lost.frame();
            const remaining = routine(target.ptr, lost.mapped[start..].ptr, case.length_bytes, &frame);
            try testing.expectEqual(case.length_bytes - case.before_bytes, remaining);
            try testing.expectEqual(@intFromPtr(hole.ptr), frame.fault_address);
            try expect_copied_then_untouched(target, 0, start, case.before_bytes);
        }
    }
}
