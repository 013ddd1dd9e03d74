//! Issue 10, item 1: the fault handler and other signals (Linux). Real faults (a truncated mapped
//! file) and real signals (tgkill from another thread); see zig/SIGNALS.md for the design.
const std = @import("std");
const builtin = @import("builtin");
const testing = std.testing;
const linux = std.os.linux;
const guard = @import("guard.zig");
const guard_linux = @import("guard_linux.zig");

const sigusr1: c_int = 10;

fn is_blocked(mask: *const [16]u64, signal: c_int) bool {
    const bit: u6 = @intCast(signal - 1);
    return mask[0] & (@as(u64, 1) << bit) != 0;
}

test "the installed SIGBUS and SIGSEGV actions block every asynchronous signal and no synchronous one" {
    try guard_linux.install();
    for ([_]c_int{ guard_linux.sigbus, guard_linux.sigsegv }) |signal| {
        var current: guard_linux.Sigaction = undefined;
        try testing.expectEqual(@as(c_int, 0), guard_linux.sigaction(signal, null, &current));
        try testing.expect(current.flags & guard_linux.sa_nodefer == 0);
        var number: c_int = 1;
        while (number <= guard_linux.signal_number_max) : (number += 1) {
            const synchronous = std.mem.indexOfScalar(c_int, &guard_linux.synchronous_signals, number) != null;
            // SIGKILL (9) and SIGSTOP (19): the kernel drops them from every mask.
            const unblockable = number == 9 or number == 19;
            try testing.expectEqual(!synchronous and !unblockable, is_blocked(&current.mask, number));
        }
        // The ones Deno, V8 and tokio use, by name.
        for ([_]c_int{ 2, 10, 12, 14, 15, 17, 27, 28 }) |asynchronous| {
            try testing.expect(is_blocked(&current.mask, asynchronous));
        }
    }
}

/// What the SIGUSR1 handler of the storm test saw. Plain atomics: it runs in a signal handler.
const Observed = struct {
    var alt_stack_lo: usize = 0;
    var alt_stack_hi: usize = 0;
    var delivered = std.atomic.Value(u32).init(0);
    /// Deliveries that interrupted code running on the alternate stack, that is our handler.
    var nested = std.atomic.Value(u32).init(0);
    var stop = std.atomic.Value(bool).init(false);
};

fn on_usr1(_: c_int, _: *const guard_linux.SigInfo, context_opaque: ?*anyopaque) callconv(.c) void {
    const context: *linux.ucontext_t = @ptrCast(@alignCast(context_opaque.?));
    const interrupted_sp = context.mcontext.gregs[linux.REG.RSP];
    _ = Observed.delivered.fetchAdd(1, .acq_rel);
    if (interrupted_sp >= Observed.alt_stack_lo and interrupted_sp < Observed.alt_stack_hi) {
        _ = Observed.nested.fetchAdd(1, .acq_rel);
    }
}

fn send_usr1(pid: linux.pid_t, tid: linux.pid_t) void {
    // Bounded by the stop flag, which the test sets after its last guarded copy.
    while (!Observed.stop.load(.acquire)) {
        const delivered_before = Observed.delivered.load(.acquire);
        _ = linux.tgkill(pid, tid, sigusr1);
        // One signal in flight at a time: an unthrottled storm from another core can deliver a
        // new SIGUSR1 at every return to the thread, which then barely runs its copies (seen:
        // fewer than 20,000 faults in 20 s). A signal sent while our handler runs stays pending
        // until it returns, which is what the test looks for.
        while (Observed.delivered.load(.acquire) == delivered_before and
            !Observed.stop.load(.acquire)) std.atomic.spinLoopHint();
    }
}

test "a signal that arrives while the handler claims a guarded fault waits until it has returned" {
    // The interrupted stack pointer is read from the x86_64 register file; the design is the same
    // on aarch64, where this test is only cross-compiled.
    if (builtin.cpu.arch != .x86_64) return error.SkipZigTest;
    try guard_linux.install();

    // A file of one page, mapped, then truncated to nothing: every copy from it faults at once.
    // Named by the process id: two test runs at once (two checkouts) must not share the file.
    var path_buffer: [64]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buffer, "/tmp/guardmap-zig-{d}-signal-storm", .{linux.getpid()});
    var file = try std.fs.createFileAbsolute(path, .{ .read = true, .truncate = true });
    defer std.fs.deleteFileAbsolute(path) catch {};
    defer file.close();
    try file.writeAll(&([_]u8{0x5a} ** 4096));
    const mapped = try std.posix.mmap(null, 4096, std.posix.PROT.READ, .{ .TYPE = .SHARED }, file.handle, 0);
    defer std.posix.munmap(mapped);
    try file.setEndPos(0);

    // This thread's own alternate stack (a large one, so that a nested frame is seen, not a crash)
    // and a SIGUSR1 handler that runs on it, as V8's SIGPROF handler does.
    const alt_stack = try testing.allocator.alignedAlloc(u8, .@"16", 64 * 1024);
    defer testing.allocator.free(alt_stack);
    Observed.alt_stack_lo = @intFromPtr(alt_stack.ptr);
    Observed.alt_stack_hi = Observed.alt_stack_lo + alt_stack.len;
    var stack = linux.stack_t{ .sp = alt_stack.ptr, .flags = 0, .size = alt_stack.len };
    var previous_stack: linux.stack_t = undefined;
    try testing.expectEqual(@as(usize, 0), linux.sigaltstack(&stack, &previous_stack));
    defer _ = linux.sigaltstack(&previous_stack, null);
    var action = std.mem.zeroes(guard_linux.Sigaction);
    action.handler = @intFromPtr(&on_usr1);
    action.flags = 0x4 | 0x0800_0000; // SA_SIGINFO | SA_ONSTACK
    var previous_action: guard_linux.Sigaction = undefined;
    try testing.expectEqual(@as(c_int, 0), guard_linux.sigaction(sigusr1, &action, &previous_action));
    defer _ = guard_linux.sigaction(sigusr1, &previous_action, null);

    Observed.stop.store(false, .release);
    const sender = try std.Thread.spawn(.{}, send_usr1, .{ linux.getpid(), linux.gettid() });
    var target: [4096]u8 = undefined;
    // Until enough signals arrived during the storm, bounded in count and time (the machine may be
    // busy, and a pending SIGUSR1 absorbs the ones sent before it is delivered).
    const fault_count_min = 20_000;
    const fault_count_max = 5_000_000;
    const delivered_min = 2_000;
    const deadline_ns = std.time.nanoTimestamp() + 20 * std.time.ns_per_s;
    var fault_count: usize = 0;
    while (fault_count < fault_count_max) : (fault_count += 1) {
        if (fault_count >= fault_count_min and Observed.delivered.load(.acquire) >= delivered_min) break;
        if (fault_count % 1024 == 0 and std.time.nanoTimestamp() > deadline_ns) break;
        var frame = guard.Frame.init(@intFromPtr(mapped.ptr), @intFromPtr(mapped.ptr) + mapped.len);
        try testing.expectEqual(@as(usize, target.len), guard.copy(&target, mapped.ptr, target.len, &frame));
        try testing.expectEqual(guard_linux.sigbus, frame.fault_signal);
    }
    Observed.stop.store(true, .release);
    sender.join();

    // The storm really happened, and no SIGUSR1 was ever run on top of our handler.
    try testing.expect(fault_count >= fault_count_min);
    try testing.expect(Observed.delivered.load(.acquire) >= delivered_min);
    try testing.expectEqual(@as(u32, 0), Observed.nested.load(.acquire));
}
