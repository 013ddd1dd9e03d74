//! The owner of a map: the OS thread that opened it, and whether that thread has ended.
//!
//! Why a thread: Deno 2.9 runs each Web Worker's isolate on one OS thread of its own, from
//! start to termination (checked: the worker's `/proc/thread-self` stayed the same over 50
//! awaited timers, differed from the main thread's, and the thread was gone about 120 ms after
//! `terminate()`), and synchronous FFI calls run on the calling isolate's thread. So a map whose
//! opening thread has ended belongs to an isolate that will never run JavaScript again: neither
//! its `close()` nor its FinalizationRegistry can release it. gm_open must therefore be a
//! synchronous call (never `nonblocking`: Deno's blocking-pool threads come and go).
//!
//! A thread id alone is not enough: ids are reused. The owner also records the thread's start
//! time (field 22 of /proc/self/task/<tid>/stat, in clock ticks). A thread counts as ended only
//! on proof: tgkill(pid, tid, 0) answers ESRCH, or the thread now under that id started at
//! another time. Anything else (no /proc, an unreadable file) keeps the map: a map kept too long
//! costs a slot; a map reaped while its isolate lives would be pulled from under it.
//! Windows: owners are `unknown` and never reaped (Deno's Windows build cannot run here to
//! check how it runs workers).
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;
const Owner = @import("handles.zig").Owner;

threadlocal var current_cached: ?Owner = null;

/// The calling thread as an owner (looked up once per thread).
pub fn current() Owner {
    if (builtin.os.tag != .linux) return Owner.unknown;
    if (current_cached) |owner| return owner;
    const linux = std.os.linux;
    const thread_id: i32 = linux.gettid();
    assert(thread_id > 0);
    // Only a known owner is remembered: a lookup that failed for want of a descriptor (EMFILE,
    // the very case reaping exists for) is tried again by the next open.
    const ticks = start_ticks(thread_id) catch return Owner.unknown;
    const owner: Owner = .{ .thread_id = thread_id, .start_ticks = ticks };
    current_cached = owner;
    return owner;
}

/// True only when the owner thread has provably ended.
pub fn is_gone(owner: Owner) bool {
    if (builtin.os.tag != .linux) return false;
    if (owner.eql(Owner.unknown)) return false;
    assert(owner.thread_id > 0);
    const linux = std.os.linux;
    const rc = linux.tgkill(linux.getpid(), owner.thread_id, 0);
    switch (linux.E.init(rc)) {
        .SUCCESS => {},
        .SRCH => return true,
        else => return false,
    }
    const ticks = start_ticks(owner.thread_id) catch |err| return err == error.Gone;
    return ticks != owner.start_ticks;
}

/// The start time of thread `thread_id` of this process, in clock ticks since boot.
fn start_ticks(thread_id: i32) error{ Gone, Unknown }!u64 {
    const linux = std.os.linux;
    var path_buffer: [64]u8 = undefined;
    const path = std.fmt.bufPrintZ(&path_buffer, "/proc/self/task/{d}/stat", .{thread_id}) catch
        return error.Unknown;
    const fd_rc = linux.open(path, .{ .ACCMODE = .RDONLY, .CLOEXEC = true }, 0);
    switch (linux.E.init(fd_rc)) {
        .SUCCESS => {},
        .NOENT, .SRCH => return error.Gone,
        else => return error.Unknown,
    }
    const fd: i32 = @intCast(fd_rc);
    defer _ = linux.close(fd);
    // The line is "tid (comm) state ppid ...": comm is at most 16 bytes, the rest numbers.
    var line: [1024]u8 = undefined;
    const read_rc = linux.read(fd, &line, line.len);
    if (linux.E.init(read_rc) != .SUCCESS) return error.Unknown;
    return parse_start_ticks(line[0..read_rc]) orelse error.Unknown;
}

/// Field 22 of a stat line. The command name (field 2) may hold spaces and parentheses, so the
/// fields are counted from the last ')'.
fn parse_start_ticks(line: []const u8) ?u64 {
    const close = std.mem.lastIndexOfScalar(u8, line, ')') orelse return null;
    var fields = std.mem.tokenizeScalar(u8, line[close + 1 ..], ' ');
    // Fields 3 to 21 come first.
    var skipped: u32 = 0;
    while (skipped < 22 - 3) : (skipped += 1) _ = fields.next() orelse return null;
    const field = fields.next() orelse return null;
    return std.fmt.parseInt(u64, field, 10) catch null;
}

const testing = std.testing;

test "owner: start time parsed after the command name, whatever it holds" {
    const line = "4242 (a) b (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 19 20\n";
    try testing.expectEqual(@as(?u64, 987654), parse_start_ticks(line));
    try testing.expectEqual(@as(?u64, null), parse_start_ticks("4242 (a) S 1 2"));
}

test "owner: this thread is alive, a thread that ended is gone" {
    if (builtin.os.tag != .linux) return error.SkipZigTest;
    const me = current();
    try testing.expect(me.thread_id > 0);
    try testing.expect(!is_gone(me));
    // Same id, another start time: a reused id, so the recorded thread ended.
    try testing.expect(is_gone(.{ .thread_id = me.thread_id, .start_ticks = me.start_ticks + 1 }));

    var theirs: Owner = Owner.unknown;
    const thread = try std.Thread.spawn(.{}, struct {
        fn run(out: *Owner) void {
            out.* = current();
        }
    }.run, .{&theirs});
    thread.join();
    try testing.expect(theirs.thread_id > 0 and theirs.thread_id != me.thread_id);
    // join returns when the kernel clears the thread id, a moment before the task is gone.
    var waited_ms: u32 = 0;
    while (!is_gone(theirs) and waited_ms < 2000) : (waited_ms += 1) std.Thread.sleep(std.time.ns_per_ms);
    try testing.expect(is_gone(theirs));
    try testing.expect(!is_gone(Owner.unknown));
}
