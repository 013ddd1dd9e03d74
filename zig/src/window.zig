//! Window arithmetic: which part of a file the kernel maps for a requested window.
//!
//! The kernel maps from a file offset that is a multiple of the page size (Linux) or of the
//! allocation granularity (Windows, 64 KiB). A window `[offset, offset + length)` is mapped from
//! `offset` rounded down, and the caller's pointer is advanced by the remainder, so at most
//! `granularity - 1` bytes of address space are spent before the window, never `offset` bytes.
const std = @import("std");
const assert = std.debug.assert;
const Status = @import("status.zig").Status;
const Mode = @import("status.zig").Mode;

/// The largest file offset the OS file APIs accept (off_t and LARGE_INTEGER are signed 64-bit).
pub const file_offset_max: u64 = std.math.maxInt(i64);

pub const Window = struct {
    /// File offset at which the kernel mapping starts (a multiple of the granularity).
    map_offset: u64,
    /// Bytes the kernel maps: `delta + length_bytes`.
    map_length_bytes: u64,
    /// `offset - map_offset`: where the window starts inside the kernel mapping.
    delta_bytes: u64,
    /// Length of the window the caller asked for.
    length_bytes: u64,
};

pub const Error = error{ InvalidArgument, Overflow };

pub fn compute(offset: u64, length_bytes: u64, granularity_bytes: u64) Error!Window {
    assert(granularity_bytes > 0);
    assert(std.math.isPowerOfTwo(granularity_bytes));
    if (length_bytes == 0) return error.InvalidArgument;
    if (offset > file_offset_max) return error.Overflow;
    if (length_bytes > file_offset_max - offset) return error.Overflow;

    const delta_bytes = offset & (granularity_bytes - 1);
    const map_offset = offset - delta_bytes;
    // Cannot overflow: delta < granularity and offset + length <= file_offset_max.
    const map_length_bytes = delta_bytes + length_bytes;
    if (map_length_bytes > std.math.maxInt(usize)) return error.Overflow;

    const window: Window = .{
        .map_offset = map_offset,
        .map_length_bytes = map_length_bytes,
        .delta_bytes = delta_bytes,
        .length_bytes = length_bytes,
    };
    assert(window.map_offset % granularity_bytes == 0);
    assert(window.map_offset + window.delta_bytes == offset);
    assert(window.delta_bytes < granularity_bytes);
    return window;
}

/// Converts a JavaScript number (f64) to a byte count or offset. Only non-negative integers up
/// to 2^53 are exact in an f64, so anything else (NaN, infinities, fractions) is refused.
pub fn integer_from_f64(value: f64) ?u64 {
    const exact_max: f64 = 9007199254740992.0; // 2^53
    if (!(value >= 0.0 and value <= exact_max)) return null; // Also refuses NaN.
    if (!is_whole(value)) return null;
    return @intFromFloat(value);
}

/// Whether `value` has no fractional part, read from its bits; infinities and NaN count as whole,
/// so callers check the range first. Neither `@floor` nor a round trip through an integer: without
/// SSE4.1 (the prebuilt x86_64 library targets the baseline CPU) `@floor` is a call, and converting
/// back (`cvtsi2sd`) writes only the low lane of an xmm register whose other lanes come from
/// whatever wrote it last. In a Deno FFI call that is the caller's code, such as a copy loop still
/// waiting for a cache miss, and the check waited for that miss: about 250 ns a call in a loop of
/// random reads with the CPU caches emptied (bench/call_probe.ts; bench/where_the_time_goes.md).
pub fn is_whole(value: f64) bool {
    const bits: u64 = @bitCast(value);
    const exponent_biased: u64 = (bits >> 52) & 0x7ff;
    if (exponent_biased < 1023) return bits << 1 == 0; // |value| < 1: only zero is whole.
    const exponent: u64 = exponent_biased - 1023;
    if (exponent >= 52) return true; // Every mantissa bit lies above the binary point.
    const fraction_mask: u64 = (@as(u64, 1) << @intCast(52 - exponent)) - 1;
    return bits & fraction_mask == 0;
}

test "is_whole reads the fraction from the bits" {
    const whole = [_]f64{ 0, -0.0, 1, 2, 3, 1023, 4096, 123456789, 4503599627370495, 4503599627370496, 9007199254740992, -7, 1e300 };
    for (whole) |value| try std.testing.expect(is_whole(value));
    const fractional = [_]f64{ 0.5, 1e-300, 5e-324, 1.5, 2.25, 1023.875, 123456789.25, 4503599627370495.5, -0.5, -7.125 };
    for (fractional) |value| try std.testing.expect(!is_whole(value));
    // Against @floor for a sweep of values around powers of two.
    var exponent: u6 = 0;
    while (exponent < 54) : (exponent += 1) {
        const base: f64 = @floatFromInt(@as(u64, 1) << exponent);
        for ([_]f64{ -0.75, -0.5, -0.25, 0, 0.25, 0.5, 1 }) |step| {
            const value = base + step;
            try std.testing.expectEqual(@floor(value) == value, is_whole(value));
        }
    }
}

/// Checks a window against an existing file of `size_bytes`: it must be non-empty and lie
/// inside the file. `length_requested == null` means "to the end of the file".
pub fn check_existing(size_bytes: u64, offset: u64, length_requested: ?u64) ?Status {
    if (length_requested) |length_bytes| {
        if (length_bytes == 0) return .invalid_argument;
        if (offset > file_offset_max or length_bytes > file_offset_max - offset) return .overflow;
        if (offset + length_bytes > size_bytes) return .window_past_end;
        return null;
    }
    if (offset > size_bytes) return .window_past_end;
    if (offset == size_bytes) return .empty_window;
    return null;
}

/// Checks that `[position, position + length)` lies inside a window of `window_length_bytes`.
pub fn range_inside(position: u64, length_bytes: u64, window_length_bytes: u64) bool {
    if (position > window_length_bytes) return false;
    return length_bytes <= window_length_bytes - position;
}

/// A range of a window, from the f64 position and length of a call.
pub const Range = struct { position: u64, length_bytes: u64 };

/// Null unless both are exact non-negative integers (see `integer_from_f64`).
pub fn parse_range(position: f64, length: f64) ?Range {
    return .{
        .position = integer_from_f64(position) orelse return null,
        .length_bytes = integer_from_f64(length) orelse return null,
    };
}

/// `count` ranges of `length_bytes` each (gm_read_many and its pool twin).
pub const Batch = struct { count: u64, length_bytes: u64 };

/// A batch of `count` ranges of `length` bytes each, from a list of `positions_length` positions
/// into a target of `target_length` bytes: exact non-negative integers, a position for every
/// range (the caller's list is never read past its end), and the ranges fit the target.
pub fn parse_batch(positions_length: f64, count: f64, length: f64, target_length: f64) ?Batch {
    const batch: Batch = .{
        .count = integer_from_f64(count) orelse return null,
        .length_bytes = integer_from_f64(length) orelse return null,
    };
    const positions_count = integer_from_f64(positions_length) orelse return null;
    if (batch.count > positions_count) return null;
    const target_bytes = integer_from_f64(target_length) orelse return null;
    const total_bytes = std.math.mul(u64, batch.count, batch.length_bytes) catch return null;
    if (total_bytes > target_bytes) return null;
    return batch;
}

/// One mapped window, as both platforms' os_*.zig hold it. `Handle` is the file's handle type;
/// `Section` the kernel object a Windows view is mapped from (void on Linux, which has none).
pub fn Mapping(comptime Handle: type, comptime Section: type) type {
    return struct {
        const Self = @This();

        /// The file (a descriptor on Linux, a HANDLE on Windows).
        fd: Handle,
        section: Section,
        /// Start of the kernel mapping (aligned to the granularity) and its length.
        base: usize,
        map_length_bytes: usize,
        /// Where the window starts inside the kernel mapping.
        delta_bytes: usize,
        length_bytes: u64,
        file_offset: u64,
        mode: Mode,
        /// Opened with salvage (map_calls.zig sets it after mapping; Linux only).
        salvaged: bool = false,
        /// Writes go through the file descriptor (pwrite), not the mapping (map_calls.zig sets
        /// it; refused at open on Windows).
        writes_to_file: bool = false,

        pub fn init(fd: Handle, section: Section, base: usize, window: Window, mode: Mode) Self {
            assert(window.map_length_bytes == window.delta_bytes + window.length_bytes);
            return .{
                .fd = fd,
                .section = section,
                .base = base,
                .map_length_bytes = @intCast(window.map_length_bytes),
                .delta_bytes = @intCast(window.delta_bytes),
                .length_bytes = window.length_bytes,
                .file_offset = window.map_offset + window.delta_bytes,
                .mode = mode,
            };
        }

        pub fn window_address(mapping: *const Self) usize {
            return mapping.base + mapping.delta_bytes;
        }

        /// The address range of whole pages covering `[position, position + length)` of the
        /// window.
        pub fn page_range(mapping: *const Self, position: u64, length_bytes: u64, page_bytes: usize) PageRange {
            assert(range_inside(position, length_bytes, mapping.length_bytes));
            assert(std.math.isPowerOfTwo(page_bytes));
            const first = mapping.window_address() + @as(usize, @intCast(position));
            const start = first & ~(page_bytes - 1);
            assert(start >= mapping.base);
            return .{ .start = start, .length_bytes = first + @as(usize, @intCast(length_bytes)) - start };
        }
    };
}

pub const PageRange = struct { start: usize, length_bytes: usize };

const testing = std.testing;
const page: u64 = 4096;
const granule: u64 = 64 * 1024;
const gib: u64 = 1024 * 1024 * 1024;

test "window: offsets around 4 GiB keep all 64 bits" {
    const below = try compute(4 * gib - 1, 2, page);
    try testing.expectEqual(4 * gib - page, below.map_offset);
    try testing.expectEqual(page - 1, below.delta_bytes);
    try testing.expectEqual(page + 1, below.map_length_bytes);

    const at = try compute(4 * gib, 10, page);
    try testing.expectEqual(4 * gib, at.map_offset);
    try testing.expectEqual(@as(u64, 0), at.delta_bytes);

    const above = try compute(4 * gib + 1, 10, granule);
    try testing.expectEqual(4 * gib, above.map_offset);
    try testing.expectEqual(@as(u64, 1), above.delta_bytes);
    // The high DWORD of the mapping offset on Windows is 1 here, not 0.
    try testing.expectEqual(@as(u64, 1), above.map_offset >> 32);
}

test "window: 2^33 + 1 maps from 2^33 with a remainder of one byte" {
    const window = try compute((1 << 33) + 1, 1 << 20, page);
    try testing.expectEqual(@as(u64, 1 << 33), window.map_offset);
    try testing.expectEqual(@as(u64, 1), window.delta_bytes);
    try testing.expectEqual(@as(u64, (1 << 20) + 1), window.map_length_bytes);
}

test "window: remainders of 1 and granularity - 1" {
    for ([_]u64{ page, granule }) |granularity| {
        const one = try compute(6 * gib + 1, 100, granularity);
        try testing.expectEqual(@as(u64, 1), one.delta_bytes);
        try testing.expectEqual(6 * gib, one.map_offset);

        const last = try compute(6 * gib + granularity - 1, 100, granularity);
        try testing.expectEqual(granularity - 1, last.delta_bytes);
        try testing.expectEqual(6 * gib, last.map_offset);
        try testing.expectEqual(granularity - 1 + 100, last.map_length_bytes);
    }
}

test "window: a high offset never maps the bytes before it" {
    const window = try compute(6 * gib + 12345, 1 << 20, page);
    try testing.expect(window.map_length_bytes < (1 << 20) + page);
}

test "window: refuses empty windows and overflow" {
    try testing.expectError(error.InvalidArgument, compute(0, 0, page));
    try testing.expectError(error.Overflow, compute(file_offset_max, 2, page));
    try testing.expectError(error.Overflow, compute(file_offset_max + 1, 1, page));
    try testing.expectError(error.Overflow, compute(1, std.math.maxInt(u64), page));
    _ = try compute(file_offset_max - 1, 1, page);
}

test "integer_from_f64: only exact non-negative integers" {
    try testing.expectEqual(@as(?u64, 0), integer_from_f64(0.0));
    try testing.expectEqual(@as(?u64, 1 << 53), integer_from_f64(9007199254740992.0));
    try testing.expectEqual(@as(?u64, null), integer_from_f64(-1.0));
    try testing.expectEqual(@as(?u64, null), integer_from_f64(0.5));
    try testing.expectEqual(@as(?u64, null), integer_from_f64(std.math.nan(f64)));
    try testing.expectEqual(@as(?u64, null), integer_from_f64(std.math.inf(f64)));
    try testing.expectEqual(@as(?u64, null), integer_from_f64(9007199254740994.0));
}

test "check_existing: inside, empty, past the end" {
    try testing.expectEqual(@as(?Status, null), check_existing(100, 0, null));
    try testing.expectEqual(@as(?Status, null), check_existing(100, 99, 1));
    try testing.expectEqual(@as(?Status, .empty_window), check_existing(100, 100, null));
    try testing.expectEqual(@as(?Status, .empty_window), check_existing(0, 0, null));
    try testing.expectEqual(@as(?Status, .window_past_end), check_existing(100, 101, null));
    try testing.expectEqual(@as(?Status, .window_past_end), check_existing(100, 99, 2));
    try testing.expectEqual(@as(?Status, .invalid_argument), check_existing(100, 0, 0));
    try testing.expectEqual(@as(?Status, .overflow), check_existing(100, 1, std.math.maxInt(u64)));
}

test "range_inside: edges" {
    try testing.expect(range_inside(0, 10, 10));
    try testing.expect(range_inside(10, 0, 10));
    try testing.expect(!range_inside(10, 1, 10));
    try testing.expect(!range_inside(11, 0, 10));
    try testing.expect(!range_inside(1, std.math.maxInt(u64), 10));
}
