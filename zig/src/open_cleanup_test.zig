//! Linux: a failed open leaves nothing behind that it created, even through a symbolic link.
const std = @import("std");
const testing = std.testing;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const OpenResult = status_zig.OpenResult;

extern fn gm_open(path: ?[*]const u8, path_length: usize, mode: u32, offset: u64, length: u64, flags: u32, out: ?*align(1) OpenResult) i32;

fn status_of(raw: i32) Status {
    return @enumFromInt(raw);
}

test "a failed w+ through a dangling symbolic link removes the target it created" {
    const linux = std.os.linux;
    var link_buffer: [64]u8 = undefined;
    var target_buffer: [64]u8 = undefined;
    const link = try std.fmt.bufPrint(&link_buffer, "/tmp/guardmap-zig-{d}-link", .{linux.getpid()});
    const target = try std.fmt.bufPrint(&target_buffer, "/tmp/guardmap-zig-{d}-link-target", .{linux.getpid()});
    std.fs.deleteFileAbsolute(target) catch {};
    std.fs.deleteFileAbsolute(link) catch {};
    try std.fs.symLinkAbsolute(target, link, .{});
    defer std.fs.deleteFileAbsolute(link) catch {};
    defer std.fs.deleteFileAbsolute(target) catch {};
    // More than any disk here: the open fails after creating the link's target.
    var result = OpenResult.zero;
    const length_given: u32 = 1;
    const status = status_of(gm_open(link.ptr, link.len, @intFromEnum(status_zig.Mode.create), 0, 1 << 50, length_given, &result));
    try testing.expect(status != Status.ok);
    try testing.expectError(error.FileNotFound, std.fs.accessAbsolute(target, .{}));
    // The link itself is the user's: it stays.
    var stat_buffer: [std.fs.max_path_bytes]u8 = undefined;
    _ = try std.fs.readLinkAbsolute(link, &stat_buffer);
}
