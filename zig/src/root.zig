//! libguardmap: the flat C ABI that ffi/ loads with Deno.dlopen. This file is the list of
//! exports; each is a call into the module that does the work:
//!
//!   map_calls.zig    open, close, release, reap, flush, advise, prefault, address, file size
//!   copy_engine.zig  guarded copies: read, read_many, write (and pwrite), memcpy
//!   pool_host.zig    MapPool, the host's side: channels, requests, data through staging
//!   pool_worker.zig  MapPool, the worker's side: attach, serve, reply
//!   abi_layout.zig   the ABI's own description (offsets, sizes, numbers) for tests/abi_test.ts
//!
//! Every function returns a `Status` code (status.zig) or a plain value, and never trusts its
//! caller. Positions and lengths on the per-copy path are f64 (not u64) so that Deno passes plain
//! numbers to a fast call instead of allocating a BigInt per call; f64 is exact up to 2^53 bytes.
const builtin = @import("builtin");
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Detail = status_zig.Detail;
const OpenResult = status_zig.OpenResult;
const guard = @import("guard.zig");
const maps = @import("maps.zig");
const map_calls = @import("map_calls.zig");
const copy_engine = @import("copy_engine.zig");
const pool_host = @import("pool_host.zig");
const pool_worker = @import("pool_worker.zig");
const abi_layout = @import("abi_layout.zig");

pub const os = maps.os;

fn code(status: Status) i32 {
    return @intFromEnum(status);
}

export fn gm_abi_version() u32 {
    return status_zig.abi_version;
}

/// A JSON text (NUL-terminated, static) describing every record layout, enum, flag and constant
/// of this ABI; see abi_layout.zig.
export fn gm_abi_layout() [*:0]const u8 {
    return abi_layout.text.ptr;
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

// ---------------------------------------------------------------------------------------------
// Maps (map_calls.zig) and guarded copies (copy_engine.zig).

export fn gm_open(path: ?[*]const u8, path_length: usize, mode: u32, offset: u64, length: u64, flags: u32, out: ?*align(1) OpenResult) i32 {
    return code(map_calls.open(path, path_length, mode, offset, length, flags, out));
}

export fn gm_close(handle: f64) i32 {
    return code(map_calls.close(handle));
}

export fn gm_release(handle: f64) i32 {
    return code(map_calls.release(handle));
}

/// gm_open also reaps, when it runs out of slots or file descriptors.
export fn gm_reap() u32 {
    return maps.reap();
}

export fn gm_salvage_faults(handle: f64, out: ?*align(1) status_zig.SalvageFaults) i32 {
    return code(map_calls.salvage_faults(handle, out));
}

export fn gm_address(handle: f64) ?*anyopaque {
    return map_calls.address(handle);
}

export fn gm_file_size(handle: f64, out: ?*align(1) status_zig.FileSizeBytes) i32 {
    return code(map_calls.file_size(handle, out));
}

/// A failed read's details: gm_last_detail, on the same thread, before its next gm_read/gm_write.
export fn gm_read(handle: f64, position: f64, target: ?[*]u8, length: f64) i32 {
    return code(copy_engine.read_here(handle, position, target, length));
}

/// The detail record of this thread's last failed gm_read or gm_write.
export fn gm_last_detail(out: ?*align(1) Detail) i32 {
    return code(copy_engine.last_detail(out));
}

export fn gm_read_many(handle: f64, positions: ?[*]align(1) const f64, positions_length: f64, count: f64, length: f64, target: ?[*]u8, target_length: f64, detail: ?*align(1) Detail) i32 {
    return code(copy_engine.read_many(handle, positions, positions_length, count, length, target, target_length, detail));
}

/// A failed write's details: gm_last_detail, as for gm_read.
export fn gm_write(handle: f64, position: f64, source: ?[*]u8, length: f64) i32 {
    return code(copy_engine.write_here(handle, position, source, length));
}

export fn gm_flush(handle: f64, position: f64, length: f64, detail: ?*align(1) Detail) i32 {
    return code(map_calls.flush(handle, position, length, detail));
}

export fn gm_advise(handle: f64, position: f64, length: f64, advice: u32, detail: ?*align(1) Detail) i32 {
    return code(map_calls.advise(handle, position, length, advice, detail));
}

export fn gm_prefault(handle: f64, position: f64, length: f64, write: u32, detail: ?*align(1) Detail) i32 {
    return code(map_calls.prefault(handle, position, length, write, detail));
}

export fn gm_memcpy(target: ?[*]u8, target_length: f64, source: ?[*]const u8, source_length: f64, length: f64) i32 {
    return code(copy_engine.memcpy(target, target_length, source, source_length, length));
}

// ---------------------------------------------------------------------------------------------
// MapPool channels (pool_host.zig, pool_worker.zig).

/// The channel needs memfd, futexes between processes and pidfd: Linux only. Elsewhere every
/// pool call answers `not_supported`, decided here and nowhere else.
fn pool_call(comptime function: anytype, arguments: anytype) i32 {
    if (builtin.os.tag != .linux) return code(.not_supported);
    const result = @call(.auto, function, arguments);
    return if (@TypeOf(result) == Status) code(result) else result;
}

export fn gm_channel_create(staging_bytes: f64, out: ?*align(1) OpenResult) i32 {
    return pool_call(pool_host.create, .{ staging_bytes, out });
}

export fn gm_channel_attach(path: ?[*]const u8, path_length: usize, out: ?*align(1) OpenResult) i32 {
    return pool_call(pool_worker.attach, .{ path, path_length, out });
}

export fn gm_channel_close(handle: f64) i32 {
    return pool_call(pool_host.close, .{handle});
}

/// Null for a bad handle (on Windows no channel handle is ever good).
export fn gm_channel_address(handle: f64) ?*anyopaque {
    return pool_host.address(handle);
}

export fn gm_channel_watch(handle: f64, pid: i32) i32 {
    return pool_call(pool_host.watch, .{ handle, pid });
}

export fn gm_channel_post(handle: f64, op: u32, file_handle: f64, position: f64, length: f64, staging_offset: f64, argument: u32) i32 {
    return pool_call(pool_host.post, .{ handle, op, file_handle, position, length, staging_offset, argument });
}

export fn gm_channel_wait(handle: f64, timeout_ms: f64, detail: ?*align(1) Detail) i32 {
    return pool_call(pool_host.wait, .{ handle, timeout_ms, detail });
}

export fn gm_channel_call(handle: f64, op: u32, file_handle: f64, position: f64, length: f64, argument: u32, timeout_ms: f64, budget_us: f64, detail: ?*align(1) Detail) i32 {
    return pool_call(pool_host.call, .{ handle, op, file_handle, position, length, argument, timeout_ms, budget_us, detail });
}

export fn gm_pool_resume(handle: f64, buffer: ?[*]u8, buffer_length: f64, positions: ?[*]align(1) const f64, positions_count: f64, timeout_ms: f64, detail: ?*align(1) Detail) i32 {
    return pool_call(pool_host.resume_call, .{ handle, buffer, buffer_length, positions, positions_count, timeout_ms, detail });
}

export fn gm_pool_read(handle: f64, file_handle: f64, position: f64, target: ?[*]u8, length: f64, timeout_ms: f64, budget_us: f64, detail: ?*align(1) Detail) i32 {
    return pool_call(pool_host.transfer, .{ handle, file_handle, position, target, length, timeout_ms, budget_us, detail, .read });
}

export fn gm_pool_write(handle: f64, file_handle: f64, position: f64, source: ?[*]u8, length: f64, timeout_ms: f64, budget_us: f64, detail: ?*align(1) Detail) i32 {
    return pool_call(pool_host.transfer, .{ handle, file_handle, position, source, length, timeout_ms, budget_us, detail, .write });
}

export fn gm_pool_read_many(handle: f64, file_handle: f64, positions: ?[*]align(1) const f64, positions_length: f64, count: f64, length: f64, target: ?[*]u8, target_length: f64, timeout_ms: f64, budget_us: f64, detail: ?*align(1) Detail) i32 {
    return pool_call(pool_host.read_many, .{ handle, file_handle, positions, positions_length, count, length, target, target_length, timeout_ms, budget_us, detail });
}

/// The op of a control request for the worker's JavaScript, 0 once the host is gone, or a
/// negated status code.
export fn gm_channel_serve(handle: f64, parent_pid: i32) i32 {
    return pool_call(pool_worker.serve, .{ handle, parent_pid });
}

export fn gm_channel_reply(handle: f64, status: i32, result_bytes: f64) i32 {
    return pool_call(pool_worker.reply, .{ handle, status, result_bytes });
}

export fn gm_worker_bind_to_parent() i32 {
    return pool_call(pool_worker.bind_to_parent, .{});
}

test {
    _ = @import("window.zig");
    _ = @import("c_path.zig");
    _ = @import("abi_layout.zig");
    _ = @import("guard.zig");
    if (builtin.os.tag == .linux) _ = @import("channel_test.zig");
    _ = @import("handles.zig");
    _ = @import("owner.zig");
    _ = @import("reaper.zig");
    if (builtin.os.tag == .linux) _ = @import("fault_test.zig");
    if (builtin.os.tag == .linux) _ = @import("populate_fallback_test.zig");
    if (builtin.os.tag == .linux) _ = @import("signal_mask_test.zig");
    if (builtin.os.tag == .linux) _ = @import("untrusted_peer_test.zig");
    if (builtin.os.tag == .windows) _ = @import("fault_test_windows.zig");
}
