//! The calls on a map as a whole: open, close (or release, leaving the range mapped to zeros),
//! reap, and the ranged calls that are not copies (flush, advise, prefault) plus the map's
//! address, file size and salvage count. Copies are in copy_engine.zig.
//!
//! Callers are not trusted: handles are generation-checked, positions and lengths arrive as f64
//! and must be exact non-negative integers, every range is checked against the window, every
//! pointer for null.
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Detail = status_zig.Detail;
const OpenResult = status_zig.OpenResult;
const OpenFlags = status_zig.OpenFlags;
const OpenRequest = status_zig.OpenRequest;
const Mode = status_zig.Mode;
const Advice = status_zig.Advice;
const window_zig = @import("window.zig");
const Range = window_zig.Range;
const c_path = @import("c_path.zig");
const handles = @import("handles.zig");
const owner = @import("owner.zig");
const reaper = @import("reaper.zig");
const guard = @import("guard.zig");
const copy_engine = @import("copy_engine.zig");
const maps = @import("maps.zig");
const os = maps.os;

/// Opens `path` (UTF-8, `path_length` bytes) in mode `mode_raw` and maps the window
/// `[offset, offset + length)` (`length` only with `OpenFlags.length_given`). Fills `out` on
/// success and on failure (status.zig `OpenResult` says what each field then holds).
pub fn open(
    path: ?[*]const u8,
    path_length: usize,
    mode_raw: u32,
    offset: u64,
    length: u64,
    flags_raw: u32,
    out: ?*align(1) OpenResult,
) Status {
    const result = out orelse return .invalid_argument;
    result.* = OpenResult.zero;
    var path_buffer: [c_path.length_max]u8 = undefined;
    const path_z = c_path.copy(path, path_length, &path_buffer) catch |err| return switch (err) {
        error.Invalid => .invalid_argument,
        error.TooLong => .name_too_long,
    };
    const mode = std.meta.intToEnum(Mode, mode_raw) catch return .invalid_argument;
    const flags: OpenFlags = @bitCast(flags_raw);
    const flags_status = check_flags(flags, mode);
    if (flags_status != .ok) return flags_status;
    const request: OpenRequest = .{
        .mode = mode,
        .offset = offset,
        .length_requested = if (flags.length_given) length else null,
        .past_end = flags.past_end,
    };

    guard.os.install() catch return .handler_not_installed;
    // Before the open takes what may be the last descriptor: the lookup needs one for a moment.
    const opener = owner.current();
    // Out of slots: the maps of ended Web Workers are released first (see owner.zig).
    const index = maps.table.reserve() catch reserved: {
        if (maps.reap() == 0) return .map_limit;
        break :reserved maps.table.reserve() catch return .map_limit;
    };
    var mapping: os.Mapping = undefined;
    var file_size_bytes: u64 = 0;
    var failed = os.map_open(path_z, request, &mapping, &file_size_bytes);
    if (failed != null and failed.?.status == .too_many_open and maps.reap() > 0) {
        // Out of file descriptors (EMFILE, ENFILE): the reaped maps gave theirs back.
        failed = os.map_open(path_z, request, &mapping, &file_size_bytes);
    }
    if (failed) |failure| {
        maps.table.unreserve(index);
        result.os_error = failure.os_error;
        result.file_kind = failure.file_kind;
        result.length_bytes = failure.limit_bytes;
        result.file_size_bytes = failure.available_bytes;
        return failure.status;
    }
    publish(index, &mapping, flags, opener, result);
    result.file_size_bytes = file_size_bytes;
    return .ok;
}

/// The combinations of open flags and mode that gm_open refuses before touching the file.
fn check_flags(flags: OpenFlags, mode: Mode) Status {
    if (flags.unknown != 0) return .invalid_argument;
    if (flags.salvage and builtin.os.tag != .linux) return .not_supported;
    if (flags.writes_to_file) {
        if (builtin.os.tag != .linux) return .not_supported;
        if (mode != .read_write and mode != .create) return .invalid_argument;
        // A salvaged page is anonymous memory: bytes written to the file would not show there.
        if (flags.salvage) return .invalid_argument;
    }
    if (flags.past_end and !flags.length_given) return .invalid_argument;
    return .ok;
}

/// Makes the mapped window the open map of the reserved slot `index`.
fn publish(index: u32, mapping: *os.Mapping, flags: OpenFlags, opener: handles.Owner, result: *align(1) OpenResult) void {
    assert(mapping.length_bytes > 0);
    mapping.salvaged = flags.salvage;
    mapping.writes_to_file = flags.writes_to_file;
    if (flags.salvage) {
        maps.salvage.init(@intCast(os.page_size()));
        maps.salvage.register(index, mapping.base, mapping.map_length_bytes, mapping.mode.writable());
    }
    result.handle = maps.table.publish_owned(index, mapping.*, opener);
    reaper.start_for(opener.thread_id, &maps.reap);
    result.length_bytes = mapping.length_bytes;
}

/// Unmaps the window and closes the file. A handle that is already closed gives `bad_handle`;
/// a map in use by a copy on another thread gives `busy` and stays open.
pub fn close(handle: f64) Status {
    const slot = maps.table.begin_close(handle) catch |err| return handles.close_status(err);
    maps.unmap(slot);
    maps.table.finish_close(slot);
    return .ok;
}

/// As `close`, for a map whose zero-copy view may still be reachable (its buffer was
/// transferred, or the map was collected while its view lived on): closes the file and frees the
/// handle, but leaves the address range mapped to zeros (Linux) or to the file (Windows) instead
/// of unmapping it, so a later access through the view cannot crash the process.
pub fn release(handle: f64) Status {
    const slot = maps.table.begin_close(handle) catch |err| return handles.close_status(err);
    maps.release_kept(slot);
    maps.table.finish_close(slot);
    return .ok;
}

/// For a map opened with salvage: how many faults were salvaged and the window offset of the
/// lowest faulting address (out[0], out[1]); out[1] is 2^64 - 1 while there was none.
pub fn salvage_faults(handle: f64, out: ?*align(1) status_zig.SalvageFaults) Status {
    const result = out orelse return .invalid_argument;
    const lease = maps.table.acquire(handle) catch return .bad_handle;
    defer lease.release();
    const mapping = &lease.slot.mapping;
    if (!mapping.salvaged) return .invalid_argument;
    const faults = maps.salvage.faults(maps.slot_index(lease.slot));
    result[0] = faults.count;
    result[1] = if (faults.count == 0) std.math.maxInt(u64) else faults.first_address -| mapping.window_address();
    return .ok;
}

/// The address of the window's first byte, for zero-copy views; null for a bad handle.
pub fn address(handle: f64) ?*anyopaque {
    const lease = maps.table.acquire(handle) catch return null;
    defer lease.release();
    lease.slot.address_taken.store(true, .release);
    return @ptrFromInt(lease.slot.mapping.window_address());
}

/// The current size of the mapped file (to tell a truncated file from a failing device).
pub fn file_size(handle: f64, out: ?*align(1) status_zig.FileSizeBytes) Status {
    const size_out = out orelse return .invalid_argument;
    const lease = maps.table.acquire(handle) catch return .bad_handle;
    defer lease.release();
    size_out.* = os.file_size(lease.slot.mapping.fd) catch return .io;
    return .ok;
}

/// A leased map and a range checked to lie inside its window.
const Leased = struct { lease: maps.Table.Lease, range: Range };

/// The checks of every ranged call, in this order: exact numbers (`invalid_argument`), a live
/// handle (`bad_handle`), a range inside the window (`out_of_range`). The caller releases the
/// lease.
fn lease_range(handle: f64, position: f64, length: f64, status: *Status) ?Leased {
    const range = window_zig.parse_range(position, length) orelse {
        status.* = .invalid_argument;
        return null;
    };
    const lease = maps.table.acquire(handle) catch {
        status.* = .bad_handle;
        return null;
    };
    if (!window_zig.range_inside(range.position, range.length_bytes, lease.slot.mapping.length_bytes)) {
        lease.release();
        status.* = .out_of_range;
        return null;
    }
    return .{ .lease = lease, .range = range };
}

/// Writes dirty pages of `[position, position + length)` to the file and waits for the device.
pub fn flush(handle: f64, position: f64, length: f64, detail: ?*align(1) Detail) Status {
    const out = detail orelse return .invalid_argument;
    out.* = Detail.zero;
    var refused: Status = .ok;
    const leased = lease_range(handle, position, length, &refused) orelse return refused;
    defer leased.lease.release();
    const mapping = &leased.lease.slot.mapping;
    var os_error: i32 = 0;
    defer out.os_error = os_error;
    const status = os.flush(mapping, leased.range.position, leased.range.length_bytes, &os_error);
    if (status != .ok and mapping.mode.writable() and mapping.mode != .copy_on_write) {
        // The kernel reports a write-back error once and marks the pages clean: the next flush
        // would find nothing to write and succeed, although the data never reached the file.
        // Dirty them again now, while their contents are still in memory, so the next flush
        // really writes them (and fails again while the device does). The whole window, not
        // just this range: the error reported here may come from a page outside it, written
        // back earlier by the kernel (another map's close, say).
        copy_engine.redirty_pages(mapping, 0, mapping.length_bytes);
    }
    return status;
}

pub fn advise(handle: f64, position: f64, length: f64, advice_raw: u32, detail: ?*align(1) Detail) Status {
    const out = detail orelse return .invalid_argument;
    out.* = Detail.zero;
    const advice = std.meta.intToEnum(Advice, advice_raw) catch return .invalid_argument;
    var refused: Status = .ok;
    const leased = lease_range(handle, position, length, &refused) orelse return refused;
    defer leased.lease.release();
    const mapping = &leased.lease.slot.mapping;
    // Dropping the pages of a private map throws away its copy-on-write changes: refuse it.
    if (advice == .dont_need and mapping.mode == .copy_on_write) return .not_supported;
    var os_error: i32 = 0;
    defer out.os_error = os_error;
    return os.advise(mapping, leased.range.position, leased.range.length_bytes, advice, &os_error);
}

/// Faults `[position, position + length)` in. On failure the detail names the first failing
/// offset; no signal reaches the caller either way.
pub fn prefault(handle: f64, position: f64, length: f64, write: u32, detail: ?*align(1) Detail) Status {
    const out = detail orelse return .invalid_argument;
    out.* = Detail.zero;
    if (write > 1) return .invalid_argument;
    var refused: Status = .ok;
    const leased = lease_range(handle, position, length, &refused) orelse return refused;
    defer leased.lease.release();
    const mapping = &leased.lease.slot.mapping;
    const range = leased.range;
    if (write == 1 and !mapping.mode.writable()) return .read_only;
    if (range.length_bytes == 0) return .ok;
    var os_error: i32 = 0;
    const populated = os.populate(mapping, range.position, range.length_bytes, write == 1, &os_error);
    if (populated == .ok) return .ok;
    // Without MADV_POPULATE_WRITE (Linux before 5.14; Windows has no equivalent) the fallback
    // below reads one byte a page: that neither dirties a page nor breaks copy-on-write in mode
    // "c", so it cannot keep the promise of `write`. Refused, before anything is touched.
    if (populated == .unsupported and write == 1) return .not_supported;
    out.os_error = os_error;
    // The kernel could not populate (or lacks MADV_POPULATE_*): find the first failing page with
    // guarded one-byte reads, which also faults every good page in.
    const status = copy_engine.touch_pages(mapping, range.position, range.length_bytes, out);
    if (status != .ok or populated == .unsupported) return status;
    return os.status_from_errno(os_error);
}
