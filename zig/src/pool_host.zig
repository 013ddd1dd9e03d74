//! The host's side of the MapPool wire protocol (Linux): creating and watching a channel
//! (channel.zig), posting a request and waiting for its answer, and the data calls that move
//! bytes between the caller's buffers and a worker's maps through the staging area: `transfer`
//! (one range, in halves of staging that overlap the two copies) and `read_many` (as many ranges
//! per request as staging holds). A call waits at most its budget on the calling thread, then
//! returns `pending`; `resume` finishes it (on Deno's blocking pool).
//!
//! The worker is not trusted: its status, counts and header fields are checked before they are
//! used, and the staging area is shmem that cannot fault (channel.zig).
const std = @import("std");
const assert = std.debug.assert;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Detail = status_zig.Detail;
const OpenResult = status_zig.OpenResult;
const window_zig = @import("window.zig");
const Range = window_zig.Range;
const handles = @import("handles.zig");
const channel_zig = @import("channel.zig");

/// Host: creates a channel with `staging_bytes` of staging in a nameless memory file. Writes the
/// handle, the staging size (`length_bytes`) and the memory file's descriptor number
/// (`file_size_bytes`), which the worker opens as /proc/<host pid>/fd/<n>.
pub fn create(staging_bytes: f64, out: ?*align(1) OpenResult) Status {
    const result = out orelse return .invalid_argument;
    result.* = OpenResult.zero;
    const bytes = window_zig.integer_from_f64(staging_bytes) orelse return .invalid_argument;
    return channel_zig.open_end(channel_zig.create, bytes, result);
}

pub fn close(handle: f64) Status {
    const slot = channel_zig.table.begin_close(handle) catch |err| return handles.close_status(err);
    channel_zig.close(&slot.mapping);
    channel_zig.table.finish_close(slot);
    return .ok;
}

/// The address of the channel's header; the staging area follows it at 4096 bytes.
pub fn address(handle: f64) ?*anyopaque {
    const lease = channel_zig.table.acquire(handle) catch return null;
    defer lease.release();
    return @ptrCast(lease.slot.mapping.header);
}

/// Host: watch the worker process `pid`, so waits end at once when it exits.
pub fn watch(handle: f64, pid: i32) Status {
    const lease = channel_zig.table.acquire(handle) catch return .bad_handle;
    defer lease.release();
    return channel_zig.watch(&lease.slot.mapping, pid);
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

/// A host call's hold on a channel: a lease on its slot and the claim of `channel_enter`.
const Held = struct {
    lease: @TypeOf(channel_zig.table).Lease,
    channel: *channel_zig.Channel,

    fn leave(held: Held) void {
        channel_leave(held.channel);
        held.lease.release();
    }
};

/// Leases the channel named by `handle` (else `bad_handle`) and claims it (else `busy`); the
/// caller calls `leave` when done.
fn claim(handle: f64, resuming: bool, refused: *Status) ?Held {
    const lease = channel_zig.table.acquire(handle) catch {
        refused.* = .bad_handle;
        return null;
    };
    const channel = &lease.slot.mapping;
    if (!channel_enter(channel, resuming)) {
        lease.release();
        refused.* = .busy;
        return null;
    }
    return .{ .lease = lease, .channel = channel };
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
pub fn post(handle: f64, op: u32, file_handle: f64, position: f64, length: f64, staging_offset: f64, argument: u32) Status {
    const range = window_zig.parse_range(position, length) orelse return .invalid_argument;
    const offset = window_zig.integer_from_f64(staging_offset) orelse return .invalid_argument;
    var refused: Status = .ok;
    const held = claim(handle, false, &refused) orelse return refused;
    defer held.leave();
    const channel = held.channel;
    write_request(channel, op, file_handle, range, offset, argument);
    channel_zig.post_request(channel);
    return .ok;
}

/// Host: waits for the answer to the posted request. Returns the worker's status, or
/// `worker_gone` / `timed_out`. Safe to call with Deno's `nonblocking: true`.
pub fn wait(handle: f64, timeout_ms: f64, detail: ?*align(1) Detail) Status {
    const out = detail orelse return .invalid_argument;
    const limits = Limits.parse(timeout_ms, budget_unlimited_us) orelse return .invalid_argument;
    var refused: Status = .ok;
    const held = claim(handle, true, &refused) orelse return refused;
    defer held.leave();
    const channel = held.channel;
    if (channel.pending.kind != .none) return .busy;
    return wait_answer(channel, limits, out);
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
pub fn call(handle: f64, op: u32, file_handle: f64, position: f64, length: f64, argument: u32, timeout_ms: f64, budget_us: f64, detail: ?*align(1) Detail) Status {
    const out = detail orelse return .invalid_argument;
    const range = window_zig.parse_range(position, length) orelse return .invalid_argument;
    const limits = Limits.parse(timeout_ms, budget_us) orelse return .invalid_argument;
    var refused: Status = .ok;
    const held = claim(handle, false, &refused) orelse return refused;
    defer held.leave();
    const channel = held.channel;
    write_request(channel, op, file_handle, range, 0, argument);
    channel_zig.post_request(channel);
    const status = wait_answer(channel, limits, out);
    if (status == .pending) channel.pending = .{ .kind = .call, .file_handle = file_handle };
    return status;
}

/// Host: finishes the call that returned `pending` on this channel, waiting as long as its time
/// limit allows (meant for Deno's `nonblocking: true`). `buffer` and `positions` are the same
/// memory the call was given: their lengths are checked against what the call recorded.
pub fn resume_call(handle: f64, buffer: ?[*]u8, buffer_length: f64, positions: ?[*]align(1) const f64, positions_count: f64, timeout_ms: f64, detail: ?*align(1) Detail) Status {
    const out = detail orelse return .invalid_argument;
    const limits = Limits.parse(timeout_ms, budget_unlimited_us) orelse return .invalid_argument;
    const buffer_bytes = window_zig.integer_from_f64(buffer_length) orelse return .invalid_argument;
    const count = window_zig.integer_from_f64(positions_count) orelse return .invalid_argument;
    var refused: Status = .ok;
    const held = claim(handle, true, &refused) orelse return refused;
    defer held.leave();
    const channel = held.channel;
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
    if (!valid) return .invalid_argument;
    channel.pending = .{};
    var empty: [1]u8 = undefined;
    const status: Status = switch (pending.kind) {
        .none => unreachable,
        .call => wait_answer(channel, limits, out),
        .read, .write => drive_transfer(channel, pending, buffer.?, limits, out),
        .read_many => drive_read_many(channel, pending, positions.?, buffer orelse &empty, limits, out),
    };
    return status;
}

pub const Transfer = enum { read, write };

/// Host: reads or writes `length` bytes of the worker's map `file_handle` through the staging
/// area, in chunks of half of it: while the worker fills (or drains) one half, the host copies
/// the other, so the two copies overlap.
pub fn transfer(
    handle: f64,
    file_handle: f64,
    position: f64,
    buffer: ?[*]u8,
    length: f64,
    timeout_ms: f64,
    budget_us: f64,
    detail: ?*align(1) Detail,
    direction: Transfer,
) Status {
    const out = detail orelse return .invalid_argument;
    out.* = Detail.zero;
    const range = window_zig.parse_range(position, length) orelse return .invalid_argument;
    const limits = Limits.parse(timeout_ms, budget_us) orelse return .invalid_argument;
    if (range.length_bytes == 0) return .ok;
    const user = buffer orelse return .invalid_argument;
    var refused: Status = .ok;
    const held = claim(handle, false, &refused) orelse return refused;
    defer held.leave();
    const channel = held.channel;

    const pending: channel_zig.Pending = .{
        .kind = if (direction == .read) .read else .write,
        .file_handle = file_handle,
        .position = range.position,
        .length_bytes = range.length_bytes,
    };
    const half: u64 = channel.staging_bytes / 2;
    if (direction == .write) stage(channel, user, range, half, 0);
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
                unstage(channel, user, range, half, chunk, out.bytes_done);
            }
            // The worker's count is capped to the chunk, as unstage caps it.
            out.bytes_done = chunk * half + @min(out.bytes_done, chunk_span(range, half, chunk).length_bytes);
            return status;
        }
        const next = chunk + 1;
        if (!reading and next < chunk_count) stage(channel, user, range, half, next);
        if (next < chunk_count) post_chunk(channel, pending, range, half, next);
        if (reading) unstage(channel, user, range, half, chunk, std.math.maxInt(u64));
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

/// Copies a chunk from its half of staging into the caller's buffer: its first `bytes_done`
/// bytes (of a chunk that failed part-way), never more than the chunk has.
fn unstage(channel: *channel_zig.Channel, user: [*]u8, range: Range, half: u64, chunk: u64, bytes_done: u64) void {
    const span = chunk_span(range, half, chunk);
    const count: usize = @intCast(@min(bytes_done, span.length_bytes));
    const from: usize = @intCast(span.staging_offset);
    const to: usize = @intCast(span.offset);
    @memcpy(user[to..][0..count], channel.staging[from..][0..count]);
}

/// Host: `gm_read_many` through the worker's map `file_handle`: as many ranges per request as
/// the staging area holds (positions and bytes), one request after the other. On a fault,
/// `bytes_done` counts the bytes of all ranges before it, as in-process.
pub fn read_many(
    handle: f64,
    file_handle: f64,
    positions_pointer: ?[*]align(1) const f64,
    positions_length: f64,
    count_f64: f64,
    length: f64,
    target_pointer: ?[*]u8,
    target_length: f64,
    timeout_ms: f64,
    budget_us: f64,
    detail: ?*align(1) Detail,
) Status {
    const out = detail orelse return .invalid_argument;
    out.* = Detail.zero;
    const batch = window_zig.parse_batch(positions_length, count_f64, length, target_length) orelse return .invalid_argument;
    const limits = Limits.parse(timeout_ms, budget_us) orelse return .invalid_argument;
    if (batch.count == 0) return .ok;
    const positions = positions_pointer orelse return .invalid_argument;
    // Deno passes null for an empty buffer: fine when the ranges are empty (nothing is copied).
    var empty: [1]u8 = undefined;
    const target = target_pointer orelse if (batch.length_bytes == 0) &empty else return .invalid_argument;
    var refused: Status = .ok;
    const held = claim(handle, false, &refused) orelse return refused;
    defer held.leave();
    const channel = held.channel;
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
