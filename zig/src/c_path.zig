//! Paths at the C ABI: UTF-8 bytes and a length, no terminator. They are copied into the
//! caller's buffer and NUL-terminated there, so the path a system call sees cannot change under
//! it and never runs past the caller's bytes.
const std = @import("std");
const assert = std.debug.assert;

/// PATH_MAX on Linux counts the NUL: the kernel refuses such a path with ENAMETOOLONG too.
pub const length_max = 4096;

pub const Error = error{
    /// A null pointer, an empty path or one with a NUL byte in it.
    Invalid,
    /// `length_max` bytes or more.
    TooLong,
};

/// Copies `path_length` bytes from `path` into `buffer` and terminates them.
pub fn copy(path: ?[*]const u8, path_length: usize, buffer: *[length_max]u8) Error![:0]const u8 {
    const bytes = path orelse return error.Invalid;
    if (path_length == 0) return error.Invalid;
    if (path_length >= length_max) return error.TooLong;
    @memcpy(buffer[0..path_length], bytes[0..path_length]);
    if (std.mem.indexOfScalar(u8, buffer[0..path_length], 0) != null) return error.Invalid;
    buffer[path_length] = 0;
    const copied = buffer[0..path_length :0];
    assert(copied.len == path_length);
    return copied;
}

test "c_path: a path is copied and terminated; empty, NUL-holding and over-long ones are refused" {
    var buffer: [length_max]u8 = undefined;
    const copied = try copy("/tmp/a", 6, &buffer);
    try std.testing.expectEqualStrings("/tmp/a", copied);
    try std.testing.expectEqual(@as(u8, 0), copied.ptr[6]);
    try std.testing.expectError(error.Invalid, copy(null, 3, &buffer));
    try std.testing.expectError(error.Invalid, copy("abc", 0, &buffer));
    try std.testing.expectError(error.Invalid, copy("a\x00c", 3, &buffer));
    const long = [_]u8{'a'} ** length_max;
    try std.testing.expectError(error.TooLong, copy(&long, length_max, &buffer));
    _ = try copy(&long, length_max - 1, &buffer);
}
