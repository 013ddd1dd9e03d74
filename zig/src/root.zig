//! libguardmap: the flat C ABI that ffi/ loads with Deno.dlopen.
//!
//! Every function returns a `Status` code (status.zig) or a plain value, and never trusts its
//! caller: handles are generation-checked, positions and lengths arrive as f64 and must be exact
//! non-negative integers, every range is checked against the window, every pointer for null.
//! Positions and lengths on the per-copy path are f64 (not u64) so that Deno passes plain numbers
//! to a fast call instead of allocating a BigInt per call; f64 is exact up to 2^53 bytes.
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Detail = status_zig.Detail;
const OpenResult = status_zig.OpenResult;
const Mode = status_zig.Mode;
const Advice = status_zig.Advice;
const window_zig = @import("window.zig");
const handles = @import("handles.zig");
const owner = @import("owner.zig");
const reaper = @import("reaper.zig");
const guard = @import("guard.zig");
const channel_zig = @import("channel.zig");
const salvage = if (builtin.os.tag == .linux) @import("salvage.zig") else struct {
    // Windows: salvage is refused at open (not_supported), so none of these is ever reached.
    fn init(_: usize) void {}
    fn register(_: u32, _: usize, _: usize, _: bool) void {}
    fn unregister(_: u32) void {}
    fn faults(_: u32) struct { count: u32, first_address: usize } {
        return .{ .count = 0, .first_address = 0 };
    }
};

pub const os = switch (builtin.os.tag) {
    .linux => @import("os_linux.zig"),
    .windows => @import("os_windows.zig"),
    else => @compileError("guardmap supports Linux and Windows"),
};

/// Bumped whenever a signature or a struct layout of this file changes.
pub const abi_version: u32 = 4;
/// Paths arrive as UTF-8 without a terminator; they are copied into a buffer of this size.
const path_length_max = 4096;
/// gm_open flag: `length` is given (otherwise the window runs to the end of the file).
const open_flag_length_given: u32 = 1;
/// gm_open flag: map the window even where it reaches past the end of the file (modes r, r+
/// and c). For re-opening a window that existed before the file shrank: pages past the end
/// fault, and the guarded copies report it.
const open_flag_past_end: u32 = 2;
/// gm_open flag: salvage faults outside the guarded copy (Linux): a lost page of the window
/// reads as zeros and the fault is reported by the map's next call. See salvage.zig.
const open_flag_salvage: u32 = 4;
/// gm_open flag: `gm_write` writes through the file descriptor (pwrite) instead of the mapping
/// (Linux; modes r+ and w+; not with salvage). A write through a mapping dirties whole page-cache
/// folios (1 MiB measured on ext4), so a flush after a 4 KiB write writes back 1 MiB; pwrite
/// dirties only the blocks written, and an error the file system gives at write time (ENOSPC;
/// EIO on write-through file systems such as FUSE) comes back from the call itself.
const open_flag_writes_to_file: u32 = 8;

var table: handles.Table(os.Mapping) = .{};

fn code(status: Status) i32 {
    return @intFromEnum(status);
}

export fn gm_abi_version() u32 {
    return abi_version;
}

/// Installs the fault handler once per process (idempotent). gm_open also calls it.
export fn gm_init() i32 {
    guard.os.install() catch return code(.handler_not_installed);
    return code(.ok);
}

/// 0: not installed, 1: ours receives faults first, 2: a later handler that chains to ours,
/// 3: the default action (the guard would not work; gm_open reinstalls it).
export fn gm_guard_disposition() i32 {
    return @intFromEnum(guard.os.disposition());
}

export fn gm_page_size() u32 {
    return @intCast(os.page_size());
}

/// The alignment of a mapping's file offset: the page size on Linux, 64 KiB on Windows.
export fn gm_granularity() u32 {
    return @intCast(os.granularity());
}

export fn gm_open(
    path: ?[*]const u8,
    path_length: usize,
    mode_raw: u32,
    offset: u64,
    length: u64,
    flags: u32,
    out: ?*align(1) OpenResult,
) i32 {
    const result = out orelse return code(.invalid_argument);
    result.* = OpenResult.zero;
    const path_bytes = path orelse return code(.invalid_argument);
    if (path_length == 0) return code(.invalid_argument);
    // PATH_MAX on Linux counts the NUL: the kernel refuses such a path with ENAMETOOLONG too.
    if (path_length >= path_length_max) return code(.name_too_long);
    var path_buffer: [path_length_max]u8 = undefined;
    @memcpy(path_buffer[0..path_length], path_bytes[0..path_length]);
    if (std.mem.indexOfScalar(u8, path_buffer[0..path_length], 0) != null) return code(.invalid_argument);
    path_buffer[path_length] = 0;
    const mode = std.meta.intToEnum(Mode, mode_raw) catch return code(.invalid_argument);
    const flags_known = open_flag_length_given | open_flag_past_end | open_flag_salvage | open_flag_writes_to_file;
    if (flags & ~flags_known != 0) return code(.invalid_argument);
    const salvaged = flags & open_flag_salvage != 0;
    if (salvaged and builtin.os.tag != .linux) return code(.not_supported);
    const writes_to_file = flags & open_flag_writes_to_file != 0;
    if (writes_to_file) {
        if (builtin.os.tag != .linux) return code(.not_supported);
        if (mode != .read_write and mode != .create) return code(.invalid_argument);
        // A salvaged page is anonymous memory: bytes written to the file would not show there.
        if (salvaged) return code(.invalid_argument);
    }
    const length_requested: ?u64 = if (flags & open_flag_length_given != 0) length else null;
    const past_end = flags & open_flag_past_end != 0;
    if (past_end and length_requested == null) return code(.invalid_argument);

    guard.os.install() catch return code(.handler_not_installed);
    // Before the open takes what may be the last descriptor: the lookup needs one for a moment.
    const opener = owner.current();
    // Out of slots: the maps of ended Web Workers are released first (see owner.zig).
    const index = table.reserve() catch reserved: {
        if (reap() == 0) return code(.map_limit);
        break :reserved table.reserve() catch return code(.map_limit);
    };
    var mapping: os.Mapping = undefined;
    var file_size_bytes: u64 = 0;
    const path_z = path_buffer[0..path_length :0];
    var failed = os.map_open(path_z, mode, offset, length_requested, past_end, &mapping, &file_size_bytes);
    if (failed != null and failed.?.status == .too_many_open and reap() > 0) {
        // Out of file descriptors (EMFILE, ENFILE): the reaped maps gave theirs back.
        failed = os.map_open(path_z, mode, offset, length_requested, past_end, &mapping, &file_size_bytes);
    }
    if (failed) |failure| {
        table.unreserve(index);
        result.os_error = failure.os_error;
        result.file_kind = failure.file_kind;
        result.length_bytes = failure.limit_bytes;
        result.file_size_bytes = failure.available_bytes;
        return code(failure.status);
    }
    assert(mapping.length_bytes > 0);
    mapping.salvaged = salvaged;
    mapping.writes_to_file = writes_to_file;
    if (salvaged) {
        salvage.init(@intCast(os.page_size()));
        salvage.register(index, mapping.base, mapping.map_length_bytes, mode.writable());
    }
    result.handle = table.publish_owned(index, mapping, opener);
    reaper.start_for(opener.thread_id, &reap);
    result.length_bytes = mapping.length_bytes;
    result.file_size_bytes = file_size_bytes;
    return code(.ok);
}

/// Unmaps the window and closes the file. A handle that is already closed gives `bad_handle`;
/// a map in use by a copy on another thread gives `busy` and stays open.
export fn gm_close(handle: f64) i32 {
    const slot = table.begin_close(handle) catch |err| return code(switch (err) {
        error.BadHandle => .bad_handle,
        error.Busy => .busy,
    });
    if (slot.mapping.salvaged) salvage.unregister(@intCast(slot_index(slot)));
    os.unmap(&slot.mapping);
    table.finish_close(slot);
    return code(.ok);
}

/// As gm_close, for a map whose zero-copy view may still be reachable (its buffer was
/// transferred, or the map was collected while its view lived on): closes the file and frees the
/// handle, but leaves the address range mapped to zeros (Linux) or to the file (Windows) instead
/// of unmapping it, so a later access through the view cannot crash the process.
export fn gm_release(handle: f64) i32 {
    const slot = table.begin_close(handle) catch |err| return code(switch (err) {
        error.BadHandle => .bad_handle,
        error.Busy => .busy,
    });
    release_kept(slot);
    table.finish_close(slot);
    return code(.ok);
}

fn release_kept(slot: *handles.Table(os.Mapping).Slot) void {
    // Zeros first, then out of salvage: a view touching the range in between is still salvaged.
    os.release_keep_range(&slot.mapping);
    if (slot.mapping.salvaged) salvage.unregister(@intCast(slot_index(slot)));
}

fn slot_index(slot: *const handles.Table(os.Mapping).Slot) usize {
    const index = (@intFromPtr(slot) - @intFromPtr(&table.slots)) / @sizeOf(handles.Table(os.Mapping).Slot);
    assert(index < handles.slot_count_max);
    return index;
}

/// Releases the maps whose opening thread has ended (a terminated Web Worker's): unmapped, or
/// left as zeros where their address was handed out. Returns how many. gm_open calls it when it
/// runs out of slots or file descriptors.
export fn gm_reap() u32 {
    return reap();
}

fn reap() u32 {
    const Reaper = struct {
        fn is_gone(_: void, owner_of_map: handles.Owner) bool {
            // The calling thread is alive: no need to ask the kernel.
            if (owner_of_map.eql(owner.current())) return false;
            return owner.is_gone(owner_of_map);
        }

        fn release(_: void, slot: *handles.Table(os.Mapping).Slot) void {
            // A view may have left the dead isolate (a transferred buffer): never unmap under it.
            if (slot.address_taken.load(.acquire)) return release_kept(slot);
            if (slot.mapping.salvaged) salvage.unregister(@intCast(slot_index(slot)));
            os.unmap(&slot.mapping);
        }
    };
    return table.reap({}, Reaper.is_gone, Reaper.release);
}

/// For a map opened with salvage: how many faults were salvaged and the window offset of the
/// lowest faulting address (out[0], out[1]); out[1] is 2^64 - 1 while there was none.
export fn gm_salvage_faults(handle: f64, out: ?*align(1) [2]u64) i32 {
    const result = out orelse return code(.invalid_argument);
    const lease = table.acquire(handle) catch return code(.bad_handle);
    defer lease.release();
    const mapping = &lease.slot.mapping;
    if (!mapping.salvaged) return code(.invalid_argument);
    const faults = salvage.faults(@intCast(slot_index(lease.slot)));
    result[0] = faults.count;
    result[1] = if (faults.count == 0) std.math.maxInt(u64) else faults.first_address -| mapping.window_address();
    return code(.ok);
}

/// The address of the window's first byte, for zero-copy views; null for a bad handle.
export fn gm_address(handle: f64) ?*anyopaque {
    const lease = table.acquire(handle) catch return null;
    defer lease.release();
    lease.slot.address_taken.store(true, .release);
    return @ptrFromInt(lease.slot.mapping.window_address());
}

/// The current size of the mapped file (to tell a truncated file from a failing device).
export fn gm_file_size(handle: f64, out: ?*align(1) u64) i32 {
    const size_out = out orelse return code(.invalid_argument);
    const lease = table.acquire(handle) catch return code(.bad_handle);
    defer lease.release();
    size_out.* = os.file_size(lease.slot.mapping.fd) catch return code(.io);
    return code(.ok);
}

/// Copies `length` bytes from the window at `position` into `target`, through the guard.
export fn gm_read(handle: f64, position: f64, target: ?[*]u8, length: f64, detail: ?*align(1) Detail) i32 {
    return code(copy_guarded(handle, position, target, length, detail, .from_map));
}

/// Copies `count` ranges of `length` bytes each, range `i` from window position `positions[i]`
/// to `target + i * length`, through the guard, under one lease: one call instead of `count`,
/// so the CPU can overlap the cache misses of successive ranges (bench/where_the_time_goes.md).
/// Every position is checked before anything is copied. On a fault, `bytes_done` counts the
/// bytes of all ranges before it plus those of the failing range. `positions` may be unaligned
/// (a raw FFI caller can pass any address), hence align(1).
export fn gm_read_many(
    handle: f64,
    positions: ?[*]align(1) const f64,
    count: f64,
    length: f64,
    target: ?[*]u8,
    target_length: f64,
    detail: ?*align(1) Detail,
) i32 {
    return code(read_many(handle, positions, count, length, target, target_length, detail));
}

fn read_many(
    handle: f64,
    positions_pointer: ?[*]align(1) const f64,
    count_f64: f64,
    length: f64,
    target_pointer: ?[*]u8,
    target_length: f64,
    detail: ?*align(1) Detail,
) Status {
    const out = detail orelse return .invalid_argument;
    out.* = Detail.zero;
    const batch = parse_batch(count_f64, length, target_length) orelse return .invalid_argument;
    const count = batch.count;
    const length_bytes = batch.length_bytes;
    const lease = table.acquire(handle) catch return .bad_handle;
    defer lease.release();
    if (count == 0) return .ok;
    const positions = positions_pointer orelse return .invalid_argument;
    const mapping = &lease.slot.mapping;
    const ranges = positions[0..@intCast(count)];
    // All positions first: a bad one copies nothing, as a bad range of gm_read does.
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
        var frame = guard.Frame.init(mapping.base, mapping.base + mapping.map_length_bytes);
        const remaining = if (size < guard.small_length_bytes_max)
            guard.copy_small(target + index * size, mapped, size, &frame)
        else
            guard.copy(target + index * size, mapped, size, &frame);
        if (remaining != 0) return report_fault(mapping, &frame, index * size + (size - remaining), out);
    }
    return .ok;
}

const Batch = struct { count: u64, length_bytes: u64 };

/// A batch of `count` ranges of `length` bytes each, for a target of `target_length` bytes: exact
/// non-negative integers, and the ranges fit the target.
fn parse_batch(count: f64, length: f64, target_length: f64) ?Batch {
    const batch: Batch = .{
        .count = window_zig.integer_from_f64(count) orelse return null,
        .length_bytes = window_zig.integer_from_f64(length) orelse return null,
    };
    const target_bytes = window_zig.integer_from_f64(target_length) orelse return null;
    const total_bytes = std.math.mul(u64, batch.count, batch.length_bytes) catch return null;
    if (total_bytes > target_bytes) return null;
    return batch;
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

/// As `gm_read`, for a target that another CPU reads at once (the pool's staging area): always
/// the cached copy, so the bytes are in the shared cache for the reader, not only in memory.
fn read_for_peer(handle: f64, position: f64, target: ?[*]u8, length: f64, detail: ?*align(1) Detail) i32 {
    return code(copy_guarded(handle, position, target, length, detail, .from_map_cached));
}

/// Copies `length` bytes from `source` into the window at `position`, through the guard.
export fn gm_write(handle: f64, position: f64, source: ?[*]u8, length: f64, detail: ?*align(1) Detail) i32 {
    return code(copy_guarded(handle, position, source, length, detail, .to_map));
}

/// Writes dirty pages of `[position, position + length)` to the file and waits for the device.
export fn gm_flush(handle: f64, position: f64, length: f64, detail: ?*align(1) Detail) i32 {
    const out = detail orelse return code(.invalid_argument);
    out.* = Detail.zero;
    const range = parse_range(position, length) orelse return code(.invalid_argument);
    const lease = table.acquire(handle) catch return code(.bad_handle);
    defer lease.release();
    const mapping = &lease.slot.mapping;
    if (!window_zig.range_inside(range.position, range.length_bytes, mapping.length_bytes)) return code(.out_of_range);
    var os_error: i32 = 0;
    defer out.os_error = os_error;
    const status = os.flush(mapping, range.position, range.length_bytes, &os_error);
    if (status != .ok and mapping.mode.writable() and mapping.mode != .copy_on_write) {
        // The kernel reports a write-back error once and marks the pages clean: the next flush
        // would find nothing to write and succeed, although the data never reached the file.
        // Dirty them again now, while their contents are still in memory, so the next flush
        // really writes them (and fails again while the device does). The whole window, not
        // just this range: the error reported here may come from a page outside it, written
        // back earlier by the kernel (another map's close, say).
        redirty_pages(mapping, 0, mapping.length_bytes);
    }
    return code(status);
}

/// Rewrites one byte of every page of the range with its own value, through the guard: the
/// write marks each page dirty. Pages that cannot be read are skipped.
fn redirty_pages(mapping: *const os.Mapping, position: u64, length_bytes: u64) void {
    if (length_bytes == 0) return;
    const page: u64 = os.page_size();
    const window_address: u64 = mapping.window_address();
    const end = position + length_bytes;
    const pages_max = length_bytes / page + 2;
    var offset = position;
    var pages: u64 = 0;
    while (offset < end) : (pages += 1) {
        assert(pages < pages_max);
        const address: usize = @intCast(window_address + offset);
        const byte: [*]u8 = @ptrFromInt(address);
        var value: [1]u8 = undefined;
        var frame = guard.Frame.init(mapping.base, mapping.base + mapping.map_length_bytes);
        if (guard.copy(&value, byte, 1, &frame) == 0) {
            var frame_write = guard.Frame.init(mapping.base, mapping.base + mapping.map_length_bytes);
            _ = guard.copy(byte, &value, 1, &frame_write);
        }
        offset += ((address | (page - 1)) + 1) - address; // To the next page boundary.
    }
}

export fn gm_advise(handle: f64, position: f64, length: f64, advice_raw: u32, detail: ?*align(1) Detail) i32 {
    const out = detail orelse return code(.invalid_argument);
    out.* = Detail.zero;
    const range = parse_range(position, length) orelse return code(.invalid_argument);
    const advice = std.meta.intToEnum(Advice, advice_raw) catch return code(.invalid_argument);
    const lease = table.acquire(handle) catch return code(.bad_handle);
    defer lease.release();
    const mapping = &lease.slot.mapping;
    if (!window_zig.range_inside(range.position, range.length_bytes, mapping.length_bytes)) return code(.out_of_range);
    // Dropping the pages of a private map throws away its copy-on-write changes: refuse it.
    if (advice == .dont_need and mapping.mode == .copy_on_write) return code(.not_supported);
    var os_error: i32 = 0;
    defer out.os_error = os_error;
    return code(os.advise(mapping, range.position, range.length_bytes, advice, &os_error));
}

/// Faults `[position, position + length)` in. On failure the detail names the first failing
/// offset; no signal reaches the caller either way.
export fn gm_prefault(handle: f64, position: f64, length: f64, write: u32, detail: ?*align(1) Detail) i32 {
    const out = detail orelse return code(.invalid_argument);
    out.* = Detail.zero;
    const range = parse_range(position, length) orelse return code(.invalid_argument);
    if (write > 1) return code(.invalid_argument);
    const lease = table.acquire(handle) catch return code(.bad_handle);
    defer lease.release();
    const mapping = &lease.slot.mapping;
    if (!window_zig.range_inside(range.position, range.length_bytes, mapping.length_bytes)) return code(.out_of_range);
    if (write == 1 and !mapping.mode.writable()) return code(.read_only);
    if (range.length_bytes == 0) return code(.ok);
    var os_error: i32 = 0;
    const populated = os.populate(mapping, range.position, range.length_bytes, write == 1, &os_error);
    if (populated == .ok) return code(.ok);
    out.os_error = os_error;
    // The kernel could not populate (or lacks MADV_POPULATE_*): find the first failing page with
    // guarded one-byte reads, which also faults every good page in.
    const status = touch_pages(mapping, range.position, range.length_bytes, out);
    if (status != .ok or populated == .unsupported) return code(status);
    return code(os.status_from_errno(os_error));
}

/// A plain memcpy between two caller buffers: the benchmarks' measure of the memory-bandwidth
/// limit on this machine. Never touches a mapping.
export fn gm_memcpy(target: ?[*]u8, source: ?[*]const u8, length: f64) i32 {
    const length_bytes = window_zig.integer_from_f64(length) orelse return code(.invalid_argument);
    if (length_bytes == 0) return code(.ok);
    const to = target orelse return code(.invalid_argument);
    const from = source orelse return code(.invalid_argument);
    const count: usize = @intCast(length_bytes);
    @memcpy(to[0..count], from[0..count]);
    return code(.ok);
}

// ---------------------------------------------------------------------------------------------
// MapPool channels (Linux): shared memory between a host and one worker process. See channel.zig.

var channels: handles.Table(channel_zig.Channel) = .{};

fn copy_path(path: ?[*]const u8, path_length: usize, buffer: *[path_length_max]u8) ?[:0]const u8 {
    const bytes = path orelse return null;
    if (path_length == 0 or path_length >= path_length_max) return null;
    @memcpy(buffer[0..path_length], bytes[0..path_length]);
    if (std.mem.indexOfScalar(u8, buffer[0..path_length], 0) != null) return null;
    buffer[path_length] = 0;
    return buffer[0..path_length :0];
}

/// Host: creates a channel with `staging_bytes` of staging in a nameless memory file. Writes the
/// handle, the staging size (`length_bytes`) and the memory file's descriptor number
/// (`file_size_bytes`), which the worker opens as /proc/<host pid>/fd/<n>.
export fn gm_channel_create(staging_bytes: f64, out: ?*align(1) OpenResult) i32 {
    if (builtin.os.tag != .linux) return code(.not_supported);
    const result = out orelse return code(.invalid_argument);
    result.* = OpenResult.zero;
    const bytes = window_zig.integer_from_f64(staging_bytes) orelse return code(.invalid_argument);
    var channel: channel_zig.Channel = undefined;
    var os_error: i32 = 0;
    const index = channels.reserve() catch return code(.too_many_open);
    const status = channel_zig.create(bytes, &channel, &os_error);
    return code(channel_publish(index, status, &channel, os_error, result));
}

/// Worker: maps the channel the host created, through `path` (/proc/<host pid>/fd/<n>).
export fn gm_channel_attach(path: ?[*]const u8, path_length: usize, out: ?*align(1) OpenResult) i32 {
    if (builtin.os.tag != .linux) return code(.not_supported);
    const result = out orelse return code(.invalid_argument);
    result.* = OpenResult.zero;
    var path_buffer: [path_length_max]u8 = undefined;
    const path_z = copy_path(path, path_length, &path_buffer) orelse return code(.invalid_argument);
    var channel: channel_zig.Channel = undefined;
    var os_error: i32 = 0;
    const index = channels.reserve() catch return code(.too_many_open);
    const status = channel_zig.attach(path_z, &channel, &os_error);
    return code(channel_publish(index, status, &channel, os_error, result));
}

fn channel_publish(index: u32, status: Status, channel: *const channel_zig.Channel, os_error: i32, result: *align(1) OpenResult) Status {
    if (status != .ok) {
        channels.unreserve(index);
        result.os_error = os_error;
        return status;
    }
    result.handle = channels.publish(index, channel.*);
    result.length_bytes = channel.staging_bytes;
    result.file_size_bytes = @intCast(@max(channel.memory_fd, 0));
    return .ok;
}

export fn gm_channel_close(handle: f64) i32 {
    if (builtin.os.tag != .linux) return code(.not_supported);
    const slot = channels.begin_close(handle) catch |err| return code(switch (err) {
        error.BadHandle => .bad_handle,
        error.Busy => .busy,
    });
    channel_zig.close(&slot.mapping);
    channels.finish_close(slot);
    return code(.ok);
}

/// The address of the channel's header; the staging area follows it at 4096 bytes.
export fn gm_channel_address(handle: f64) ?*anyopaque {
    const lease = channels.acquire(handle) catch return null;
    defer lease.release();
    return @ptrCast(lease.slot.mapping.header);
}

/// Host: watch the worker process `pid`, so waits end at once when it exits.
export fn gm_channel_watch(handle: f64, pid: i32) i32 {
    if (builtin.os.tag != .linux) return code(.not_supported);
    const lease = channels.acquire(handle) catch return code(.bad_handle);
    defer lease.release();
    return code(channel_zig.watch(&lease.slot.mapping, pid));
}

fn write_request(channel: *channel_zig.Channel, op: u32, file_handle: f64, range: Range, staging_offset: u64, argument: u32) void {
    const header = channel.header;
    header.op = op;
    channel_zig.set_file_handle(header, file_handle);
    header.position = range.position;
    header.length_bytes = range.length_bytes;
    header.staging_offset = staging_offset;
    header.argument = argument;
}

/// Claims the channel for one host call: false when another call runs on it (on Deno's blocking
/// pool, say) or left a request pending. The JavaScript side queues calls, but this side does
/// not rely on it.
fn channel_enter(channel: *channel_zig.Channel, resuming: bool) bool {
    if (@cmpxchgStrong(u32, &channel.in_use, 0, 1, .acquire, .monotonic) != null) return false;
    const header = channel.header;
    const idle = @atomicLoad(u32, &header.response_sequence, .acquire) == header.request_sequence;
    if (resuming or (idle and channel.pending.kind == .none)) return true;
    channel_leave(channel);
    return false;
}

fn channel_leave(channel: *channel_zig.Channel) void {
    @atomicStore(u32, &channel.in_use, 0, .release);
}

/// Host: posts a request without waiting (for requests the worker's JavaScript serves).
export fn gm_channel_post(handle: f64, op: u32, file_handle: f64, position: f64, length: f64, staging_offset: f64, argument: u32) i32 {
    if (builtin.os.tag != .linux) return code(.not_supported);
    const range = parse_range(position, length) orelse return code(.invalid_argument);
    const offset = window_zig.integer_from_f64(staging_offset) orelse return code(.invalid_argument);
    const lease = channels.acquire(handle) catch return code(.bad_handle);
    defer lease.release();
    const channel = &lease.slot.mapping;
    if (!channel_enter(channel, false)) return code(.busy);
    defer channel_leave(channel);
    write_request(channel, op, file_handle, range, offset, argument);
    channel_zig.post_request(channel);
    return code(.ok);
}

/// Host: waits for the answer to the posted request. Returns the worker's status, or
/// `worker_gone` / `timed_out`. Safe to call with Deno's `nonblocking: true`.
export fn gm_channel_wait(handle: f64, timeout_ms: f64, detail: ?*align(1) Detail) i32 {
    if (builtin.os.tag != .linux) return code(.not_supported);
    const out = detail orelse return code(.invalid_argument);
    const limits = Limits.parse(timeout_ms, budget_unlimited_us) orelse return code(.invalid_argument);
    const lease = channels.acquire(handle) catch return code(.bad_handle);
    defer lease.release();
    const channel = &lease.slot.mapping;
    if (!channel_enter(channel, true)) return code(.busy);
    defer channel_leave(channel);
    if (channel.pending.kind != .none) return code(.busy);
    return code(wait_answer(channel, limits, out));
}

/// A budget that never runs out before the time limit does (about 285 years).
const budget_unlimited_us: f64 = 1 << 53;

/// How long a host call may wait: `timeout_ns` per answer before the worker counts as hung, and
/// until `budget_end_ns` in all on the calling thread before it returns `pending`, so that the
/// JavaScript side can wait for the rest off its event loop.
const Limits = struct {
    timeout_ns: u64,
    budget_end_ns: u64,

    fn parse(timeout_ms: f64, budget_us: f64) ?Limits {
        const timeout = window_zig.integer_from_f64(timeout_ms) orelse return null;
        const budget = window_zig.integer_from_f64(budget_us) orelse return null;
        return .{
            .timeout_ns = timeout *| std.time.ns_per_ms,
            .budget_end_ns = channel_zig.now_ns() +| (budget *| std.time.ns_per_us),
        };
    }
};

/// Waits for the answer to the request in flight: its status, `worker_gone`, `timed_out`, or
/// `pending` when the budget ran out first (the request stays in flight).
fn wait_answer(channel: *channel_zig.Channel, limits: Limits, out: *align(1) Detail) Status {
    out.* = Detail.zero;
    const now = channel_zig.now_ns();
    const budget_ns = if (limits.budget_end_ns > now) limits.budget_end_ns - now else 0;
    const wait_ns = @min(budget_ns, limits.timeout_ns);
    switch (channel_zig.wait_response(channel, wait_ns)) {
        .worker_gone => return .worker_gone,
        .timed_out => return if (wait_ns < limits.timeout_ns) .pending else .timed_out,
        .done => {},
    }
    const header = channel.header;
    out.* = header.detail;
    const status = std.meta.intToEnum(Status, header.status) catch return .unexpected;
    // `pending` means "still in flight" to the host; from the worker it would wedge the channel.
    return if (status == .pending) .unexpected else status;
}

/// Host: one request the worker serves natively (flush, prefault, advise), waited for at most
/// `budget_us` here; `pending` means: finish it with gm_pool_resume.
export fn gm_channel_call(handle: f64, op: u32, file_handle: f64, position: f64, length: f64, argument: u32, timeout_ms: f64, budget_us: f64, detail: ?*align(1) Detail) i32 {
    if (builtin.os.tag != .linux) return code(.not_supported);
    const out = detail orelse return code(.invalid_argument);
    const range = parse_range(position, length) orelse return code(.invalid_argument);
    const limits = Limits.parse(timeout_ms, budget_us) orelse return code(.invalid_argument);
    const lease = channels.acquire(handle) catch return code(.bad_handle);
    defer lease.release();
    const channel = &lease.slot.mapping;
    if (!channel_enter(channel, false)) return code(.busy);
    defer channel_leave(channel);
    write_request(channel, op, file_handle, range, 0, argument);
    channel_zig.post_request(channel);
    const status = wait_answer(channel, limits, out);
    if (status == .pending) channel.pending = .{ .kind = .call, .file_handle = file_handle };
    return code(status);
}

/// Host: finishes the call that returned `pending` on this channel, waiting as long as its time
/// limit allows (meant for Deno's `nonblocking: true`). `buffer` and `positions` are the same
/// memory the call was given: their lengths are checked against what the call recorded.
export fn gm_pool_resume(handle: f64, buffer: ?[*]u8, buffer_length: f64, positions: ?[*]align(1) const f64, positions_count: f64, timeout_ms: f64, detail: ?*align(1) Detail) i32 {
    if (builtin.os.tag != .linux) return code(.not_supported);
    const out = detail orelse return code(.invalid_argument);
    const limits = Limits.parse(timeout_ms, budget_unlimited_us) orelse return code(.invalid_argument);
    const buffer_bytes = window_zig.integer_from_f64(buffer_length) orelse return code(.invalid_argument);
    const count = window_zig.integer_from_f64(positions_count) orelse return code(.invalid_argument);
    const lease = channels.acquire(handle) catch return code(.bad_handle);
    defer lease.release();
    const channel = &lease.slot.mapping;
    if (!channel_enter(channel, true)) return code(.busy);
    defer channel_leave(channel);
    const pending = channel.pending;
    const valid = switch (pending.kind) {
        .none => false,
        .call => true,
        .read, .write => buffer != null and buffer_bytes == pending.length_bytes,
        .read_many => positions != null and count == pending.position and
            (buffer != null or pending.length_bytes == 0) and
            buffer_bytes >= pending.position * pending.length_bytes,
    };
    // A wrong resume leaves the call pending, so the right one can still finish it.
    if (!valid) return code(.invalid_argument);
    channel.pending = .{};
    var empty: [1]u8 = undefined;
    const status: Status = switch (pending.kind) {
        .none => unreachable,
        .call => wait_answer(channel, limits, out),
        .read, .write => drive_transfer(channel, pending, buffer.?, limits, out),
        .read_many => drive_read_many(channel, pending, positions.?, buffer orelse &empty, limits, out),
    };
    return code(status);
}

const Transfer = enum { read, write };

/// Host: reads or writes `length` bytes of the worker's map `file_handle` through the staging
/// area, in chunks of half of it: while the worker fills (or drains) one half, the host copies
/// the other, so the two copies overlap.
fn pool_transfer(
    handle: f64,
    file_handle: f64,
    position: f64,
    buffer: ?[*]u8,
    length: f64,
    timeout_ms: f64,
    budget_us: f64,
    detail: ?*align(1) Detail,
    transfer: Transfer,
) Status {
    if (builtin.os.tag != .linux) return .not_supported;
    const out = detail orelse return .invalid_argument;
    out.* = Detail.zero;
    const range = parse_range(position, length) orelse return .invalid_argument;
    const limits = Limits.parse(timeout_ms, budget_us) orelse return .invalid_argument;
    if (range.length_bytes == 0) return .ok;
    const user = buffer orelse return .invalid_argument;
    const lease = channels.acquire(handle) catch return .bad_handle;
    defer lease.release();
    const channel = &lease.slot.mapping;
    if (!channel_enter(channel, false)) return .busy;
    defer channel_leave(channel);

    const pending: channel_zig.Pending = .{
        .kind = if (transfer == .read) .read else .write,
        .file_handle = file_handle,
        .position = range.position,
        .length_bytes = range.length_bytes,
    };
    const half: u64 = channel.staging_bytes / 2;
    if (transfer == .write) stage(channel, user, range, half, 0);
    post_chunk(channel, pending, range, half, 0);
    return drive_transfer(channel, pending, user, limits, out);
}

/// Waits for the chunk in flight (`pending.step`) and every one after it. On `pending` the
/// channel records where to go on.
fn drive_transfer(channel: *channel_zig.Channel, pending: channel_zig.Pending, user: [*]u8, limits: Limits, out: *align(1) Detail) Status {
    assert(pending.kind == .read or pending.kind == .write);
    const range: Range = .{ .position = pending.position, .length_bytes = pending.length_bytes };
    const half: u64 = channel.staging_bytes / 2;
    const chunk_count = (range.length_bytes + half - 1) / half;
    const reading = pending.kind == .read;
    var chunk: u64 = pending.step;
    assert(chunk < chunk_count);
    while (chunk < chunk_count) : (chunk += 1) {
        const status = wait_answer(channel, limits, out);
        if (status == .pending) {
            channel.pending = pending;
            channel.pending.step = chunk;
            return .pending;
        }
        if (status != .ok) {
            // The bytes the worker copied before the fault are delivered, as in-process.
            if (reading and status != .worker_gone and status != .timed_out) {
                unstage_prefix(channel, user, range, half, chunk, out.bytes_done);
            }
            // The worker's count is capped to the chunk, as unstage_prefix caps it.
            out.bytes_done = chunk * half + @min(out.bytes_done, chunk_span(range, half, chunk).length_bytes);
            return status;
        }
        const next = chunk + 1;
        if (!reading and next < chunk_count) stage(channel, user, range, half, next);
        if (next < chunk_count) post_chunk(channel, pending, range, half, next);
        if (reading) unstage(channel, user, range, half, chunk);
    }
    return .ok;
}

fn chunk_span(range: Range, half: u64, chunk: u64) struct { offset: u64, length_bytes: u64, staging_offset: u64 } {
    const offset = chunk * half;
    assert(offset < range.length_bytes);
    return .{
        .offset = offset,
        .length_bytes = @min(half, range.length_bytes - offset),
        .staging_offset = (chunk % 2) * half,
    };
}

fn post_chunk(channel: *channel_zig.Channel, pending: channel_zig.Pending, range: Range, half: u64, chunk: u64) void {
    const op: u32 = @intFromEnum(if (pending.kind == .read) channel_zig.Op.read else channel_zig.Op.write);
    const span = chunk_span(range, half, chunk);
    const chunk_range: Range = .{ .position = range.position + span.offset, .length_bytes = span.length_bytes };
    write_request(channel, op, pending.file_handle, chunk_range, span.staging_offset, 0);
    channel_zig.post_request(channel);
}

/// Copies a chunk of the caller's buffer into its half of staging (shmem: cannot fault).
fn stage(channel: *channel_zig.Channel, user: [*]u8, range: Range, half: u64, chunk: u64) void {
    const span = chunk_span(range, half, chunk);
    const count: usize = @intCast(span.length_bytes);
    const from: usize = @intCast(span.offset);
    const to: usize = @intCast(span.staging_offset);
    @memcpy(channel.staging[to..][0..count], user[from..][0..count]);
}

/// Copies the first `bytes_done` bytes of a chunk that failed part-way (never more than it has).
fn unstage_prefix(channel: *channel_zig.Channel, user: [*]u8, range: Range, half: u64, chunk: u64, bytes_done: u64) void {
    const span = chunk_span(range, half, chunk);
    const count: usize = @intCast(@min(bytes_done, span.length_bytes));
    const from: usize = @intCast(span.staging_offset);
    const to: usize = @intCast(span.offset);
    @memcpy(user[to..][0..count], channel.staging[from..][0..count]);
}

fn unstage(channel: *channel_zig.Channel, user: [*]u8, range: Range, half: u64, chunk: u64) void {
    const span = chunk_span(range, half, chunk);
    const count: usize = @intCast(span.length_bytes);
    const from: usize = @intCast(span.staging_offset);
    const to: usize = @intCast(span.offset);
    @memcpy(user[to..][0..count], channel.staging[from..][0..count]);
}

/// Host: `gm_read_many` through the worker's map `file_handle`: as many ranges per request as
/// the staging area holds (positions and bytes), one request after the other. On a fault,
/// `bytes_done` counts the bytes of all ranges before it, as in-process.
export fn gm_pool_read_many(
    handle: f64,
    file_handle: f64,
    positions: ?[*]align(1) const f64,
    count: f64,
    length: f64,
    target: ?[*]u8,
    target_length: f64,
    timeout_ms: f64,
    budget_us: f64,
    detail: ?*align(1) Detail,
) i32 {
    return code(pool_read_many(handle, file_handle, positions, count, length, target, target_length, timeout_ms, budget_us, detail));
}

fn pool_read_many(
    handle: f64,
    file_handle: f64,
    positions_pointer: ?[*]align(1) const f64,
    count_f64: f64,
    length: f64,
    target_pointer: ?[*]u8,
    target_length: f64,
    timeout_ms: f64,
    budget_us: f64,
    detail: ?*align(1) Detail,
) Status {
    if (builtin.os.tag != .linux) return .not_supported;
    const out = detail orelse return .invalid_argument;
    out.* = Detail.zero;
    const batch = parse_batch(count_f64, length, target_length) orelse return .invalid_argument;
    const limits = Limits.parse(timeout_ms, budget_us) orelse return .invalid_argument;
    if (batch.count == 0) return .ok;
    const positions = positions_pointer orelse return .invalid_argument;
    // Deno passes null for an empty buffer: fine when the ranges are empty (nothing is copied).
    var empty: [1]u8 = undefined;
    const target = target_pointer orelse if (batch.length_bytes == 0) &empty else return .invalid_argument;
    const lease = channels.acquire(handle) catch return .bad_handle;
    defer lease.release();
    const channel = &lease.slot.mapping;
    if (!channel_enter(channel, false)) return .busy;
    defer channel_leave(channel);
    // A range longer than staging (with its position) does not fit: use gm_pool_read.
    if (channel.staging_bytes / (@sizeOf(f64) + batch.length_bytes) == 0) return .out_of_range;
    const pending: channel_zig.Pending = .{
        .kind = .read_many,
        .file_handle = file_handle,
        .position = batch.count,
        .length_bytes = batch.length_bytes,
    };
    post_read_many(channel, pending, positions);
    return drive_read_many(channel, pending, positions, target, limits, out);
}

/// Ranges per request: the positions and the bytes of that many ranges fit the staging area.
fn read_many_ranges(channel: *const channel_zig.Channel, pending: channel_zig.Pending) u64 {
    const per_request = channel.staging_bytes / (@sizeOf(f64) + pending.length_bytes);
    assert(per_request > 0);
    return @min(per_request, pending.position - pending.step);
}

/// Posts the request for the ranges from `pending.step` on.
fn post_read_many(channel: *channel_zig.Channel, pending: channel_zig.Pending, positions: [*]align(1) const f64) void {
    const ranges = read_many_ranges(channel, pending);
    const first: usize = @intCast(pending.step);
    const positions_bytes: usize = @intCast(ranges * @sizeOf(f64));
    @memcpy(channel.staging[0..positions_bytes], std.mem.sliceAsBytes(positions[first..][0..@intCast(ranges)]));
    const request: Range = .{ .position = ranges, .length_bytes = pending.length_bytes };
    write_request(channel, @intFromEnum(channel_zig.Op.read_many), pending.file_handle, request, 0, 0);
    channel_zig.post_request(channel);
}

/// Waits for the read_many request in flight and posts the ones after it.
fn drive_read_many(
    channel: *channel_zig.Channel,
    pending_first: channel_zig.Pending,
    positions: [*]align(1) const f64,
    target: [*]u8,
    limits: Limits,
    out: *align(1) Detail,
) Status {
    var pending = pending_first;
    const count = pending.position;
    const length_bytes = pending.length_bytes;
    const requests_max = count / read_many_ranges(channel, .{ .position = count, .length_bytes = length_bytes }) + 1;
    var requests: u64 = 0;
    while (pending.step < count) : (requests += 1) {
        assert(requests < requests_max);
        const ranges = read_many_ranges(channel, pending);
        const layout = channel_zig.read_many_layout(ranges, length_bytes, channel.staging_bytes).?;
        const status = wait_answer(channel, limits, out);
        if (status == .pending) {
            channel.pending = pending;
            return .pending;
        }
        const done_bytes: usize = @intCast(if (status == .ok) layout.targets_bytes else @min(out.bytes_done, layout.targets_bytes));
        const user_offset: usize = @intCast(pending.step * length_bytes);
        const positions_bytes: usize = @intCast(layout.targets_offset);
        // As pool_transfer: the bytes the worker copied before a fault are delivered.
        if (status != .worker_gone and status != .timed_out) {
            @memcpy(target[user_offset..][0..done_bytes], channel.staging[positions_bytes..][0..done_bytes]);
        }
        if (status != .ok) {
            // The worker's count is capped to what this request could hold, as done_bytes is.
            out.bytes_done = pending.step * length_bytes + done_bytes;
            return status;
        }
        pending.step += ranges;
        if (pending.step < count) post_read_many(channel, pending, positions);
    }
    return .ok;
}

export fn gm_pool_read(handle: f64, file_handle: f64, position: f64, target: ?[*]u8, length: f64, timeout_ms: f64, budget_us: f64, detail: ?*align(1) Detail) i32 {
    return code(pool_transfer(handle, file_handle, position, target, length, timeout_ms, budget_us, detail, .read));
}

export fn gm_pool_write(handle: f64, file_handle: f64, position: f64, source: ?[*]u8, length: f64, timeout_ms: f64, budget_us: f64, detail: ?*align(1) Detail) i32 {
    return code(pool_transfer(handle, file_handle, position, source, length, timeout_ms, budget_us, detail, .write));
}

/// Worker: serves data requests natively until a request for the worker's JavaScript arrives
/// (its op is returned; answer it with gm_channel_reply) or the host is gone (returns 0).
export fn gm_channel_serve(handle: f64, parent_pid: i32) i32 {
    if (builtin.os.tag != .linux) return code(.not_supported);
    const lease = channels.acquire(handle) catch return -code(.bad_handle);
    defer lease.release();
    const channel = &lease.slot.mapping;
    const header = channel.header;
    // Serves until a control request or the host's exit: a server loop, unbounded by design.
    while (true) {
        const served = @atomicLoad(u32, &header.response_sequence, .acquire);
        if (!channel_zig.wait_request(channel, served, parent_pid)) return 0;
        const sequence = @atomicLoad(u32, &header.request_sequence, .acquire);
        if (header.op >= @intFromEnum(channel_zig.Op.control_first)) return @intCast(header.op);
        var detail = Detail.zero;
        header.status = code(serve_data(channel, &detail));
        header.detail = detail;
        header.result_bytes = 0;
        channel_zig.post_response(channel, sequence);
    }
}

/// Worker: a read_many request. The host's count, length and positions are checked here and in
/// read_many as if they came from anywhere.
fn serve_read_many(channel: *channel_zig.Channel, detail: *Detail) Status {
    const header = channel.header;
    const count = header.position;
    const length_bytes = header.length_bytes;
    const layout = channel_zig.read_many_layout(count, length_bytes, channel.staging_bytes) orelse
        return .invalid_argument;
    // Staging is page-aligned, so the positions at its start are aligned for f64.
    const positions: [*]const f64 = @ptrCast(@alignCast(channel.staging));
    const targets = channel.staging + @as(usize, @intCast(layout.targets_offset));
    return read_many(
        channel_zig.file_handle(header),
        positions,
        @floatFromInt(count),
        @floatFromInt(length_bytes),
        targets,
        @floatFromInt(layout.targets_bytes),
        detail,
    );
}

/// Performs one data request against this process's maps. The host is not trusted either: the
/// staging range is checked like any other.
fn serve_data(channel: *channel_zig.Channel, detail: *Detail) Status {
    const header = channel.header;
    // Each field is read once: the memory is shared, and the bounds checked must be the bounds used.
    // (Atomic loads, so that the compiler may not load them again either.)
    const position_raw = @atomicLoad(u64, &header.position, .monotonic);
    const length_bytes = @atomicLoad(u64, &header.length_bytes, .monotonic);
    const staging_offset = @atomicLoad(u64, &header.staging_offset, .monotonic);
    const position: f64 = @floatFromInt(@min(position_raw, 1 << 53));
    const length: f64 = @floatFromInt(@min(length_bytes, 1 << 53));
    const staging_ok = staging_offset <= channel.staging_bytes and
        length_bytes <= channel.staging_bytes - staging_offset;
    const op = std.meta.intToEnum(channel_zig.Op, header.op) catch return .invalid_argument;
    const staging = channel.staging + @as(usize, @intCast(@min(staging_offset, channel.staging_bytes)));
    const status: i32 = switch (op) {
        .read => if (!staging_ok) code(.invalid_argument) else read_for_peer(channel_zig.file_handle(header), position, staging, length, detail),
        .write => if (!staging_ok) code(.invalid_argument) else gm_write(channel_zig.file_handle(header), position, staging, length, detail),
        .read_many => code(serve_read_many(channel, detail)),
        .flush => gm_flush(channel_zig.file_handle(header), position, length, detail),
        .prefault => gm_prefault(channel_zig.file_handle(header), position, length, header.argument, detail),
        .advise => gm_advise(channel_zig.file_handle(header), position, length, header.argument, detail),
        else => code(.invalid_argument),
    };
    return std.meta.intToEnum(Status, status) catch .unexpected;
}

/// Worker: answers the request its JavaScript served, with `result_bytes` of result in staging.
export fn gm_channel_reply(handle: f64, status: i32, result_bytes: f64) i32 {
    if (builtin.os.tag != .linux) return code(.not_supported);
    const bytes = window_zig.integer_from_f64(result_bytes) orelse return code(.invalid_argument);
    const lease = channels.acquire(handle) catch return code(.bad_handle);
    defer lease.release();
    const channel = &lease.slot.mapping;
    if (bytes > channel.staging_bytes) return code(.out_of_range);
    const header = channel.header;
    const sequence = @atomicLoad(u32, &header.request_sequence, .acquire);
    header.status = status;
    header.detail = Detail.zero;
    header.result_bytes = bytes;
    channel_zig.post_response(channel, sequence);
    return code(.ok);
}

/// Worker: asks the kernel to kill this process when its parent (the host) exits.
export fn gm_worker_bind_to_parent() i32 {
    if (builtin.os.tag != .linux) return code(.not_supported);
    const pr_set_pdeathsig = 1;
    const sigkill = 9;
    const rc = std.os.linux.prctl(pr_set_pdeathsig, sigkill, 0, 0, 0);
    return if (std.os.linux.E.init(rc) == .SUCCESS) code(.ok) else code(.unexpected);
}

const Range = struct { position: u64, length_bytes: u64 };

fn parse_range(position: f64, length: f64) ?Range {
    return .{
        .position = window_zig.integer_from_f64(position) orelse return null,
        .length_bytes = window_zig.integer_from_f64(length) orelse return null,
    };
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
    const range = parse_range(position, length) orelse return .invalid_argument;
    const lease = table.acquire(handle) catch return .bad_handle;
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
    var frame = guard.Frame.init(mapping.base, mapping.base + mapping.map_length_bytes);
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

/// A write of a map opened with `open_flag_writes_to_file`: pwrite at the window's file offset.
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

/// Reads one byte of every page of the range through the guard; stops at the first fault.
fn touch_pages(mapping: *const os.Mapping, position: u64, length_bytes: u64, out: *align(1) Detail) Status {
    assert(length_bytes > 0);
    const page: u64 = os.page_size();
    const window_address: u64 = mapping.window_address();
    const end = position + length_bytes;
    const pages_max = length_bytes / page + 2;
    var offset = position;
    var scratch: [1]u8 = undefined;
    var pages: u64 = 0;
    while (offset < end) : (pages += 1) {
        assert(pages < pages_max);
        var frame = guard.Frame.init(mapping.base, mapping.base + mapping.map_length_bytes);
        const source: [*]const u8 = @ptrFromInt(@as(usize, @intCast(window_address + offset)));
        if (guard.copy(&scratch, source, 1, &frame) != 0) {
            const status = report_fault(mapping, &frame, offset - position, out);
            out.fault_window_offset = offset;
            return status;
        }
        const address = window_address + offset;
        offset += ((address | (page - 1)) + 1) - address; // To the next page boundary.
    }
    return .ok;
}

test {
    _ = @import("window.zig");
    _ = @import("guard.zig");
    if (builtin.os.tag == .linux) _ = @import("channel_test.zig");
    _ = @import("handles.zig");
    _ = @import("owner.zig");
    _ = @import("reaper.zig");
    if (builtin.os.tag == .linux) _ = @import("fault_test.zig");
    if (builtin.os.tag == .linux) _ = @import("signal_mask_test.zig");
    if (builtin.os.tag == .linux) _ = @import("untrusted_peer_test.zig");
    if (builtin.os.tag == .windows) _ = @import("fault_test_windows.zig");
}
