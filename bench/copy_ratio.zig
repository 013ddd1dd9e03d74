//! The guarded copy (guard.copy) against glibc's memcpy out of a hot MAP_SHARED file mapping, at
//! 64 B, 4 KiB and 64 MiB, in one process, medians of 5 interleaved rounds. Built for aarch64 and
//! run under qemu-user (ratios of translated code, not of hardware), or natively:
//!
//!   cd zig && zig build copy-ratio -Doptimize=ReleaseFast -Dtarget=aarch64-linux-gnu -fqemu
//!   (QEMU_LD_PREFIX=/usr/aarch64-linux-gnu, as tools/dev sets up)
const std = @import("std");
const guard = @import("guard");

extern "c" fn memcpy(dst: [*]u8, src: [*]const u8, n: usize) [*]u8;

const file_bytes: usize = 64 << 20;

fn time_ns(comptime guarded: bool, dst: []u8, mapped: []const u8, size: usize, ops: usize) u64 {
    var timer = std.time.Timer.start() catch unreachable;
    var position: usize = 0;
    var op: usize = 0;
    while (op < ops) : (op += 1) {
        if (guarded) {
            var frame = guard.Frame.init(@intFromPtr(mapped.ptr), @intFromPtr(mapped.ptr) + mapped.len);
            const remaining = guard.copy(dst.ptr, mapped[position..].ptr, size, &frame);
            std.debug.assert(remaining == 0);
        } else {
            _ = memcpy(dst.ptr, mapped[position..].ptr, size);
        }
        position = (position + size * 97 + 4096) % (file_bytes - size + 1);
    }
    std.mem.doNotOptimizeAway(dst[0]);
    return timer.read() / ops;
}

pub fn main() !void {
    try guard.os.install();
    const path = "/tmp/guardmap-copy-ratio.bin";
    const file = try std.fs.createFileAbsolute(path, .{ .read = true, .truncate = true });
    defer file.close();
    try file.setEndPos(file_bytes);
    const mapped = try std.posix.mmap(null, file_bytes, std.posix.PROT.READ | std.posix.PROT.WRITE, .{ .TYPE = .SHARED }, file.handle, 0);
    for (mapped, 0..) |*byte, index| byte.* = @truncate(index *% 7 +% 3);
    const dst = try std.heap.page_allocator.alloc(u8, file_bytes);
    @memset(dst, 1);
    const rounds = 5;
    for ([_][2]usize{ .{ 64, 200_000 }, .{ 4096, 20_000 }, .{ file_bytes, 3 } }) |pair| {
        const size = pair[0];
        var guarded: [rounds]u64 = undefined;
        var plain: [rounds]u64 = undefined;
        for (0..rounds) |round| {
            guarded[round] = time_ns(true, dst, mapped, size, pair[1]);
            plain[round] = time_ns(false, dst, mapped, size, pair[1]);
        }
        std.mem.sort(u64, &guarded, {}, std.sort.asc(u64));
        std.mem.sort(u64, &plain, {}, std.sort.asc(u64));
        const g = guarded[rounds / 2];
        const p = plain[rounds / 2];
        std.debug.print("{d} B: guarded {d} ns/op, memcpy {d} ns/op, ratio {d:.2}\n", .{ size, g, p, @as(f64, @floatFromInt(g)) / @as(f64, @floatFromInt(p)) });
    }
    std.fs.deleteFileAbsolute(path) catch {};
}
