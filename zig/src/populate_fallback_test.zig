//! prefault on a kernel without MADV_POPULATE_READ/WRITE (before Linux 5.14), made real on this
//! one: a seccomp filter on one thread makes the kernel answer those two madvise calls with EINVAL,
//! as an older kernel does. No mock: the library's own call reaches the kernel and gets the error.
const std = @import("std");
const builtin = @import("builtin");
const testing = std.testing;
const linux = std.os.linux;
const seccomp = linux.SECCOMP;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Detail = status_zig.Detail;
const OpenResult = status_zig.OpenResult;
const fault_test = @import("fault_test.zig");

extern fn gm_open(path: ?[*]const u8, path_length: usize, mode: u32, offset: u64, length: u64, flags: u32, out: ?*align(1) OpenResult) i32;
extern fn gm_close(handle: f64) i32;
extern fn gm_prefault(handle: f64, position: f64, length: f64, write: u32, detail: ?*align(1) Detail) i32;

const madv_populate_read = 22;
const madv_populate_write = 23;
const einval = 22;
const file_bytes = 64 * 1024;

/// Offsets into the kernel's `struct seccomp_data`: nr (u32), arch (u32), ip (u64), args[6].
const data_nr = 0;
const data_arch = 4;
const data_arg2_low = 16 + 2 * 8; // Little-endian on both supported architectures.

const audit_arch: u32 = switch (builtin.cpu.arch) {
    .x86_64 => 0xc000_003e,
    .aarch64 => 0xc000_00b7,
    else => @compileError("the populate fallback test knows x86_64 and aarch64"),
};

/// The kernel's `struct sock_filter` and `struct sock_fprog` (classic BPF).
const SockFilter = extern struct { code: u16, jt: u8, jf: u8, k: u32 };
const SockFprog = extern struct { len: u16, filter: [*]const SockFilter };

comptime {
    std.debug.assert(@sizeOf(SockFilter) == 8);
    std.debug.assert(@offsetOf(SockFprog, "filter") == 8);
}

fn statement(code: u16, k: u32) SockFilter {
    return .{ .code = code, .jt = 0, .jf = 0, .k = k };
}

fn jump(k: u32, if_true: u8, if_false: u8) SockFilter {
    const jeq_k = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    return .{ .code = jeq_k, .jt = if_true, .jf = if_false, .k = k };
}

/// madvise(_, _, MADV_POPULATE_READ or _WRITE) -> EINVAL on the calling thread; all else runs.
fn deny_populate() !void {
    const load_word = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const ret = 0x06; // BPF_RET | BPF_K
    const program = [_]SockFilter{
        statement(load_word, data_arch),
        jump(audit_arch, 1, 0),
        statement(ret, seccomp.RET.ALLOW),
        statement(load_word, data_nr),
        jump(@intCast(@intFromEnum(linux.SYS.madvise)), 0, 4),
        statement(load_word, data_arg2_low),
        jump(madv_populate_read, 1, 0),
        jump(madv_populate_write, 0, 1),
        statement(ret, seccomp.RET.ERRNO | einval),
        statement(ret, seccomp.RET.ALLOW),
    };
    const fprog: SockFprog = .{ .len = program.len, .filter = &program };
    // no_new_privs lets an unprivileged thread install a filter; both stay on this thread only.
    try testing.expectEqual(@as(usize, 0), linux.prctl(@intFromEnum(linux.PR.SET_NO_NEW_PRIVS), 1, 0, 0, 0));
    try testing.expectEqual(@as(usize, 0), linux.seccomp(seccomp.SET_MODE_FILTER, 0, &fprog));
}

fn run_on_old_kernel(path: []const u8, outcome: *anyerror!void) void {
    outcome.* = on_old_kernel(path);
}

fn on_old_kernel(path: []const u8) !void {
    try deny_populate();
    var probe: [1]u8 = .{0};
    // The filter works: the kernel now refuses MADV_POPULATE_READ as a 5.13 kernel does.
    const refused = linux.madvise(@ptrCast(&probe), 1, madv_populate_read);
    try testing.expectEqual(linux.E.INVAL, linux.E.init(refused));
    var result = OpenResult.zero;
    try testing.expectEqual(@as(i32, 0), gm_open(path.ptr, path.len, @intFromEnum(status_zig.Mode.read_write), 0, 0, 0, &result));
    defer _ = gm_close(result.handle);
    var detail = Detail.zero;
    // Reading pages in still works through the one-byte walk.
    try testing.expectEqual(Status.ok, @as(Status, @enumFromInt(gm_prefault(result.handle, 0, file_bytes, 0, &detail))));
    // Writing cannot be promised by that walk: refused, not reported as done.
    try testing.expectEqual(Status.not_supported, @as(Status, @enumFromInt(gm_prefault(result.handle, 0, file_bytes, 1, &detail))));
}

test "prefault without MADV_POPULATE_*: reads fall back to touching pages, write is refused" {
    if (fault_test.under_qemu_user()) {
        // qemu-user neither passes an aarch64 seccomp filter to the host kernel nor populates.
        std.debug.print("SKIPPED under qemu-user: a seccomp filter cannot stand in for an old kernel there\n", .{});
        return error.SkipZigTest;
    }
    const path = try std.fmt.allocPrint(testing.allocator, "/tmp/guardmap-zig-{d}-populate", .{linux.getpid()});
    defer testing.allocator.free(path);
    {
        const file = try std.fs.createFileAbsolute(path, .{ .truncate = true });
        defer file.close();
        try file.writeAll(&([_]u8{7} ** file_bytes));
    }
    defer std.fs.deleteFileAbsolute(path) catch {};
    // On a thread of its own: the filter stays with the thread that installs it.
    var outcome: anyerror!void = {};
    const thread = try std.Thread.spawn(.{}, run_on_old_kernel, .{ path, &outcome });
    thread.join();
    try outcome;
}
