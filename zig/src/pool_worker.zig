//! The worker's side of the MapPool wire protocol (Linux): attaching to the channel the host
//! created, serving the data requests natively against this process's maps (copy_engine.zig,
//! map_calls.zig), handing control requests to the worker's JavaScript and answering them.
//!
//! The host is not trusted either: every header field is read once and checked like an argument
//! from anywhere, and the staging range a request names must lie inside the staging area.
const std = @import("std");
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Detail = status_zig.Detail;
const OpenResult = status_zig.OpenResult;
const window_zig = @import("window.zig");
const c_path = @import("c_path.zig");
const channel_zig = @import("channel.zig");
const copy_engine = @import("copy_engine.zig");
const map_calls = @import("map_calls.zig");

/// Maps the channel the host created, through `path` (/proc/<host pid>/fd/<n>).
pub fn attach(path: ?[*]const u8, path_length: usize, out: ?*align(1) OpenResult) Status {
    const result = out orelse return .invalid_argument;
    result.* = OpenResult.zero;
    var path_buffer: [c_path.length_max]u8 = undefined;
    const path_z = c_path.copy(path, path_length, &path_buffer) catch return .invalid_argument;
    return channel_zig.open_end(channel_zig.attach, path_z.ptr, result);
}

/// Serves data requests natively until a request for the worker's JavaScript arrives (its op is
/// returned; answer it with `reply`) or the host is gone (returns 0). A negative status code
/// for a bad channel handle.
pub fn serve(handle: f64, parent_pid: i32) i32 {
    const lease = channel_zig.table.acquire(handle) catch return -@intFromEnum(Status.bad_handle);
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
        header.status = @intFromEnum(serve_data(channel, &detail));
        header.detail = detail;
        header.result_bytes = 0;
        channel_zig.post_response(channel, sequence);
    }
}

/// A read_many request. The host's count, length and positions are checked here and in
/// copy_engine.read_many as if they came from anywhere.
fn serve_read_many(channel: *channel_zig.Channel, detail: *Detail) Status {
    const header = channel.header;
    const count = header.position;
    const length_bytes = header.length_bytes;
    const layout = channel_zig.read_many_layout(count, length_bytes, channel.staging_bytes) orelse
        return .invalid_argument;
    // Staging is page-aligned, so the positions at its start are aligned for f64.
    const positions: [*]const f64 = @ptrCast(@alignCast(channel.staging));
    const targets = channel.staging + @as(usize, @intCast(layout.targets_offset));
    return copy_engine.read_many(
        channel_zig.file_handle(header),
        positions,
        // read_many_layout bounded `count` positions inside staging.
        @floatFromInt(count),
        @floatFromInt(count),
        @floatFromInt(length_bytes),
        targets,
        @floatFromInt(layout.targets_bytes),
        detail,
    );
}

/// Performs one data request against this process's maps. The staging range is checked like
/// any other.
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
    const file_handle = channel_zig.file_handle(header);
    return switch (op) {
        .read => if (!staging_ok) .invalid_argument else copy_engine.read_for_peer(file_handle, position, staging, length, detail),
        .write => if (!staging_ok) .invalid_argument else copy_engine.write(file_handle, position, staging, length, detail),
        .read_many => serve_read_many(channel, detail),
        .flush => map_calls.flush(file_handle, position, length, detail),
        .prefault => map_calls.prefault(file_handle, position, length, header.argument, detail),
        .advise => map_calls.advise(file_handle, position, length, header.argument, detail),
        else => .invalid_argument,
    };
}

/// Answers the request the worker's JavaScript served, with `result_bytes` of result in staging.
pub fn reply(handle: f64, status: i32, result_bytes: f64) Status {
    const bytes = window_zig.integer_from_f64(result_bytes) orelse return .invalid_argument;
    const lease = channel_zig.table.acquire(handle) catch return .bad_handle;
    defer lease.release();
    const channel = &lease.slot.mapping;
    if (bytes > channel.staging_bytes) return .out_of_range;
    const header = channel.header;
    const sequence = @atomicLoad(u32, &header.request_sequence, .acquire);
    header.status = status;
    header.detail = Detail.zero;
    header.result_bytes = bytes;
    channel_zig.post_response(channel, sequence);
    return .ok;
}

/// Asks the kernel to kill this process when its parent (the host) exits.
pub fn bind_to_parent() Status {
    const pr_set_pdeathsig = 1;
    const sigkill = 9;
    const rc = std.os.linux.prctl(pr_set_pdeathsig, sigkill, 0, 0, 0);
    return if (std.os.linux.E.init(rc) == .SUCCESS) .ok else .unexpected;
}
