//! The copy engine: every copy between a caller's buffer and a mapped window goes through the
//! guard (guard.zig), so an I/O fault on the mapping becomes a status and a detail record, never
//! a signal that kills the process. One range (`read`, `write`), many ranges under one lease
//! (`read_many`), pwrite for maps opened with `writes_to_file`, and the per-page walks that flush
//! and prefault use (`redirty_pages`, `touch_pages`).
//!
//! Callers are not trusted: handles are generation-checked, positions and lengths arrive as f64
//! and must be exact non-negative integers, every range is checked against the window.
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Detail = status_zig.Detail;
const window_zig = @import("window.zig");
const Range = window_zig.Range;
const guard = @import("guard.zig");
const maps = @import("maps.zig");
const os = maps.os;

/// The detail record of this thread's last failed `read_here` or `write_here`: read by
/// `last_detail` right after the failure, on the same thread (a JavaScript isolate runs on one
/// thread, and a failed call's record is taken before its next call).
threadlocal var detail_of_thread: Detail = Detail.zero;

/// Copies `length` bytes from the window at `position` into `target`, through the guard; the
/// detail record of a failure is kept for `last_detail`. gm_read takes no
/// detail buffer: each buffer argument of a Deno FFI call costs the call a conversion, and in a
/// loop of random reads the longer call kept the CPU from overlapping the cache misses of
/// successive reads (bench/where_the_time_goes.md, "The cost of one call").
pub fn read_here(handle: f64, position: f64, target: ?[*]u8, length: f64) Status {
    return copy_keeping_detail(handle, position, target, length, .from_map);
}

/// As `write`, with the detail record of a failure kept for `last_detail` (see `read_here`).
pub fn write_here(handle: f64, position: f64, source: ?[*]u8, length: f64) Status {
    return copy_keeping_detail(handle, position, source, length, .to_map);
}

fn copy_keeping_detail(handle: f64, position: f64, buffer: ?[*]u8, length: f64, direction: Direction) Status {
    var detail = Detail.zero;
    const status = copy_guarded(handle, position, buffer, length, &detail, direction);
    if (status != .ok) detail_of_thread = detail;
    return status;
}

/// Copies the detail record of this thread's last failed `read_here` or `write_here` to `out`
/// (all zeros before the first failure, and for failures that have no details, such as a bad
/// handle).
pub fn last_detail(out: ?*align(1) Detail) Status {
    const record = out orelse return .invalid_argument;
    record.* = detail_of_thread;
    return .ok;
}

/// As `read_here`, for a target that another CPU reads at once (the pool's staging area): always
/// the cached copy, so the bytes are in the shared cache for the reader, not only in memory.
pub fn read_for_peer(handle: f64, position: f64, target: ?[*]u8, length: f64, detail: ?*align(1) Detail) Status {
    return copy_guarded(handle, position, target, length, detail, .from_map_cached);
}

/// Copies `length` bytes from `source` into the window at `position`, through the guard.
pub fn write(handle: f64, position: f64, source: ?[*]u8, length: f64, detail: ?*align(1) Detail) Status {
    return copy_guarded(handle, position, source, length, detail, .to_map);
}

/// Copies `count` ranges of `length` bytes each, range `i` from window position `positions[i]`
/// to `target + i * length`, through the guard, under one lease: one call instead of `count`,
/// so the CPU can overlap the cache misses of successive ranges (bench/where_the_time_goes.md).
/// Every position is checked before anything is copied. On a fault, `bytes_done` counts the
/// bytes of all ranges before it plus those of the failing range. `positions` may be unaligned
/// (a raw FFI caller can pass any address), hence align(1).
pub fn read_many(
    handle: f64,
    positions_pointer: ?[*]align(1) const f64,
    positions_length: f64,
    count_f64: f64,
    length: f64,
    target_pointer: ?[*]u8,
    target_length: f64,
    detail: ?*align(1) Detail,
) Status {
    const out = detail orelse return .invalid_argument;
    out.* = Detail.zero;
    const batch = window_zig.parse_batch(positions_length, count_f64, length, target_length) orelse return .invalid_argument;
    const count = batch.count;
    const length_bytes = batch.length_bytes;
    const lease = maps.table.acquire(handle) catch return .bad_handle;
    defer lease.release();
    if (count == 0) return .ok;
    const positions = positions_pointer orelse return .invalid_argument;
    const mapping = &lease.slot.mapping;
    const ranges = positions[0..@intCast(count)];
    // All positions first: a bad one copies nothing, as a bad range of `read` does.
    for (ranges) |position_f64| {
        var position: usize = undefined;
        const status = check_position(mapping, position_f64, length_bytes, &position);
        if (status != .ok) return status;
    }
    if (length_bytes == 0) return .ok;
    const target = target_pointer orelse return .invalid_argument;
    const size: usize = @intCast(length_bytes);
    // The positions are copied, checked, into this process's own memory before they are used:
    // the list may share memory with the target (an earlier range can overwrite it) or be
    // changed by another thread while the copies run. A chunk at a time, on the stack.
    var chunk: [read_many_chunk_ranges]usize = undefined;
    var first: usize = 0;
    const chunks_max = ranges.len / chunk.len + 1;
    var chunks: usize = 0;
    while (first < ranges.len) : (chunks += 1) {
        assert(chunks < chunks_max);
        const chunk_ranges = @min(chunk.len, ranges.len - first);
        for (ranges[first..][0..chunk_ranges], chunk[0..chunk_ranges]) |position_f64, *position| {
            const status = check_position(mapping, position_f64, length_bytes, position);
            if (status != .ok) {
                out.bytes_done = first * size;
                return status;
            }
        }
        const status = copy_chunk(mapping, chunk[0..chunk_ranges], size, target + first * size, out);
        if (status != .ok) {
            out.bytes_done += first * size;
            return status;
        }
        first += chunk_ranges;
    }
    return .ok;
}

/// Ranges per chunk of read_many: 2 KiB of positions on the stack.
const read_many_chunk_ranges = 256;

/// Copies range `i` of `size` bytes from window position `positions[i]` (checked) to
/// `target + i * size`, asking for the data `read_many_prefetch_distance` ranges ahead.
fn copy_chunk(mapping: *const os.Mapping, positions: []const usize, size: usize, target: [*]u8, out: *align(1) Detail) Status {
    assert(positions.len > 0 and positions.len <= read_many_chunk_ranges);
    assert(size > 0);
    for (positions[0..@min(positions.len, read_many_prefetch_distance)]) |position| {
        prefetch_range(mapping, position, size);
    }
    for (positions, 0..) |position, index| {
        if (index + read_many_prefetch_distance < positions.len) {
            prefetch_range(mapping, positions[index + read_many_prefetch_distance], size);
        }
        const mapped: [*]const u8 = @ptrFromInt(mapping.window_address() + position);
        var frame = frame_of(mapping);
        const remaining = if (size < guard.small_length_bytes_max)
            guard.copy_small(target + index * size, mapped, size, &frame)
        else
            guard.copy(target + index * size, mapped, size, &frame);
        if (remaining != 0) return report_fault(mapping, &frame, index * size + (size - remaining), out);
    }
    return .ok;
}

/// How many ranges ahead gm_read_many asks for the data. Random ranges of a large map each miss
/// the TLB and the caches; a prefetch lets those misses overlap, where the copies alone wait for
/// them one after the other.
const read_many_prefetch_distance = 16;

/// Converts `position_f64` into `position` when it is an exact window position whose range of
/// `length_bytes` lies inside the window: `invalid_argument` when it is not an exact
/// non-negative integer, `out_of_range` when the range leaves the window.
fn check_position(mapping: *const os.Mapping, position_f64: f64, length_bytes: u64, position: *usize) Status {
    const integer = window_zig.integer_from_f64(position_f64) orelse return .invalid_argument;
    if (!window_zig.range_inside(integer, length_bytes, mapping.length_bytes)) return .out_of_range;
    position.* = @intCast(integer);
    return .ok;
}

/// Asks the CPU to load the first and last byte of a range (a small range may straddle two lines
/// or pages). A prefetch never faults: for a page that cannot be read it does nothing, and the
/// guarded copy meets the fault later. So it is safe outside the guarded routines.
fn prefetch_range(mapping: *const os.Mapping, position: usize, size: usize) void {
    assert(size > 0);
    assert(position + size <= mapping.length_bytes);
    const first = mapping.window_address() + position;
    // Prefetching every line of a 4 KiB range measured no faster: the page walk and the first
    // line are the misses that matter; the hardware's prefetcher streams the rest.
    prefetch_address(first);
    prefetch_address(first + size - 1);
}

fn prefetch_address(address: usize) void {
    @prefetch(@as([*]const u8, @ptrFromInt(address)), .{ .rw = .read, .locality = 3, .cache = .data });
}

/// `from_map` streams large reads past the caches (guard.copy_stream); `from_map_cached` never does.
const Direction = enum { from_map, from_map_cached, to_map };

fn copy_guarded(
    handle: f64,
    position: f64,
    buffer: ?[*]u8,
    length: f64,
    detail: ?*align(1) Detail,
    direction: Direction,
) Status {
    const out = detail orelse return .invalid_argument;
    const range = window_zig.parse_range(position, length) orelse return .invalid_argument;
    const lease = maps.table.acquire(handle) catch return .bad_handle;
    defer lease.release();
    const mapping = &lease.slot.mapping;
    if (!window_zig.range_inside(range.position, range.length_bytes, mapping.length_bytes)) return .out_of_range;
    if (direction == .to_map and !mapping.mode.writable()) return .read_only;
    if (range.length_bytes == 0) return .ok;
    const user = buffer orelse return .invalid_argument;

    if (direction == .to_map and mapping.writes_to_file) {
        if (write_to_file(mapping, range, user, out)) |status| return status;
    }
    const mapped: [*]u8 = @ptrFromInt(mapping.window_address() + @as(usize, @intCast(range.position)));
    const count: usize = @intCast(range.length_bytes);
    var frame = frame_of(mapping);
    const remaining = switch (direction) {
        .from_map => if (count < guard.small_length_bytes_max)
            guard.copy_small(user, mapped, count, &frame)
        else if (count >= guard.stream_length_bytes_min)
            guard.copy_stream(user, mapped, count, &frame)
        else
            guard.copy(user, mapped, count, &frame),
        .from_map_cached => guard.copy(user, mapped, count, &frame),
        .to_map => if (count < guard.small_length_bytes_max)
            guard.copy_small(mapped, user, count, &frame)
        else
            guard.copy(mapped, user, count, &frame),
    };
    if (remaining == 0) return .ok;
    return report_fault(mapping, &frame, count - remaining, out);
}

/// A write of a map opened with `OpenFlags.writes_to_file`: pwrite at the window's file offset.
/// The shared mapping sees the bytes at once (the same page cache). A range reaching past the
/// file's current end (truncated under the map) is written up to the end and then refused as an
/// I/O error there, so pwrite does not grow the file back (unless a truncation races with the
/// call: the size is read just before). Null when the size cannot be read: the caller then takes
/// the guarded copy.
fn write_to_file(mapping: *const os.Mapping, range: Range, source: [*]const u8, out: *align(1) Detail) ?Status {
    if (builtin.os.tag != .linux) unreachable; // Refused at open elsewhere.
    assert(range.length_bytes > 0);
    const size_bytes = os.file_size(mapping.fd) catch return null;
    const file_offset = mapping.file_offset + range.position;
    // Past RLIMIT_FSIZE a pwrite would raise SIGXFSZ and kill the process; the mapping is not
    // subject to the limit, so such a write takes the guarded copy, as without this option.
    if (file_offset + range.length_bytes > os.file_size_limit()) return null;
    // The part inside the file is written; the part past its end is refused, as a truncation.
    const inside_bytes = @min(range.length_bytes, size_bytes -| file_offset);
    var written: u64 = 0;
    var os_error: i32 = 0;
    if (inside_bytes > 0) {
        const count: usize = @intCast(inside_bytes);
        const status = os.pwrite_all(mapping.fd, source[0..count], file_offset, &written, &os_error);
        if (status != .ok) {
            // A write-through file system (FUSE) may fail the write after the kernel copied the
            // bytes into the cached pages: this map's entries for them go, so that its next read
            // looks the pages up again and sees what the file holds, as read(2) does.
            os.forget_pages(mapping, range.position + written, inside_bytes - written);
            return write_failed(range, written, os_error, status, out);
        }
    }
    if (inside_bytes < range.length_bytes) return write_failed(range, inside_bytes, 0, .io, out);
    return .ok;
}

fn write_failed(range: Range, written: u64, os_error: i32, status: Status, out: *align(1) Detail) Status {
    assert(status != .ok);
    assert(written < range.length_bytes);
    out.* = .{
        .bytes_done = written,
        .fault_window_offset = range.position + written,
        .os_error = os_error,
        .signal = 0,
        .signal_code = 0,
        .reserved = 0,
    };
    return status;
}

fn report_fault(mapping: *const os.Mapping, frame: *const guard.Frame, bytes_done: u64, out: *align(1) Detail) Status {
    assert(frame.fault_signal != 0);
    const status = guard.os.status_of_fault(frame);
    out.* = .{
        .bytes_done = bytes_done,
        // A fault can lie in the page part before the window; report it as window offset 0.
        .fault_window_offset = frame.fault_address -| mapping.window_address(),
        .os_error = 0,
        .signal = frame.fault_signal,
        .signal_code = frame.fault_code,
        .reserved = 0,
    };
    return status;
}

/// Rewrites one byte of every page of the range with its own value, through the guard: the
/// write marks each page dirty. Pages that cannot be read are skipped.
pub fn redirty_pages(mapping: *const os.Mapping, position: u64, length_bytes: u64) void {
    if (length_bytes == 0) return;
    const Redirty = struct {
        fn visit(_: void, page_mapping: *const os.Mapping, byte: [*]u8) bool {
            var value: [1]u8 = undefined;
            var frame = frame_of(page_mapping);
            if (guard.copy(&value, byte, 1, &frame) == 0) {
                var frame_write = frame_of(page_mapping);
                _ = guard.copy(byte, &value, 1, &frame_write);
            }
            return true; // On to the next page either way.
        }
    };
    const stopped = walk_pages(mapping, position, length_bytes, {}, Redirty.visit);
    assert(stopped == null);
}

/// Reads one byte of every page of the range through the guard; stops at the first fault.
pub fn touch_pages(mapping: *const os.Mapping, position: u64, length_bytes: u64, out: *align(1) Detail) Status {
    assert(length_bytes > 0);
    const Touch = struct {
        fn visit(frame: *guard.Frame, page_mapping: *const os.Mapping, byte: [*]u8) bool {
            var scratch: [1]u8 = undefined;
            frame.* = frame_of(page_mapping);
            return guard.copy(&scratch, byte, 1, frame) == 0;
        }
    };
    var frame = frame_of(mapping);
    const failed_offset = walk_pages(mapping, position, length_bytes, &frame, Touch.visit) orelse return .ok;
    const status = report_fault(mapping, &frame, failed_offset - position, out);
    out.fault_window_offset = failed_offset;
    return status;
}

/// Calls `visit` with one byte of every page that `[position, position + length_bytes)` of the
/// window touches: the range's first byte, then the first byte of each later page. Stops at the
/// first page `visit` returns false for and returns that byte's window offset; null when every
/// page was visited.
fn walk_pages(
    mapping: *const os.Mapping,
    position: u64,
    length_bytes: u64,
    context: anytype,
    comptime visit: fn (@TypeOf(context), *const os.Mapping, [*]u8) bool,
) ?u64 {
    assert(length_bytes > 0);
    assert(window_zig.range_inside(position, length_bytes, mapping.length_bytes));
    const page: u64 = os.page_size();
    const window_address: u64 = mapping.window_address();
    const end = position + length_bytes;
    const pages_max = length_bytes / page + 2;
    var offset = position;
    var pages: u64 = 0;
    while (offset < end) : (pages += 1) {
        assert(pages < pages_max);
        const address: usize = @intCast(window_address + offset);
        if (!visit(context, mapping, @ptrFromInt(address))) return offset;
        offset += ((address | (page - 1)) + 1) - address; // To the next page boundary.
    }
    return null;
}

/// A guard frame for a copy that may touch any byte of the map's kernel mapping.
fn frame_of(mapping: *const os.Mapping) guard.Frame {
    return guard.Frame.init(mapping.base, mapping.base + mapping.map_length_bytes);
}

/// A plain memcpy between two caller buffers: the benchmarks' measure of the memory-bandwidth
/// limit on this machine. Never touches a mapping. `length` bytes must fit both buffers, and the
/// buffers must not overlap (`@memcpy` of overlapping memory is illegal behaviour, a panic in a
/// safe build): either is `invalid_argument`, never a read or write past what the caller gave.
pub fn memcpy(target: ?[*]u8, target_length: f64, source: ?[*]const u8, source_length: f64, length: f64) Status {
    const length_bytes = window_zig.integer_from_f64(length) orelse return .invalid_argument;
    const target_bytes = window_zig.integer_from_f64(target_length) orelse return .invalid_argument;
    const source_bytes = window_zig.integer_from_f64(source_length) orelse return .invalid_argument;
    if (length_bytes > target_bytes or length_bytes > source_bytes) return .invalid_argument;
    if (length_bytes == 0) return .ok;
    const to = target orelse return .invalid_argument;
    const from = source orelse return .invalid_argument;
    const count: usize = @intCast(length_bytes);
    const to_address = @intFromPtr(to);
    const from_address = @intFromPtr(from);
    // Both ranges lie inside the caller's buffers, so neither sum can wrap.
    if (to_address < from_address + count and from_address < to_address + count) return .invalid_argument;
    @memcpy(to[0..count], from[0..count]);
    return .ok;
}
