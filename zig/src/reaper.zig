//! A thread that releases the maps of ended Web Workers soon after they end.
//!
//! A terminated Web Worker's isolate never runs JavaScript again, so nothing in it can close its
//! maps; gm_open reaps them when it runs out of slots or descriptors, but until then each holds a
//! descriptor, a mapping and, for a deleted file, its disk space. This thread calls the reap
//! every `interval_ms`. It is started once per process, the first time a thread other than the
//! main thread opens a map: a program that maps files only on its main thread never gets it.
//! The reap itself takes the table's mutex and skips every map a copy is using (handles.zig), so
//! it is as safe here as inside gm_open.
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;
const slot_count_max = @import("handles.zig").slot_count_max;

/// How long a dead worker's maps may stay before the reaper releases them.
pub const interval_ms: u64 = 500;
/// The reap reads one small /proc file per owner; it needs little stack.
const stack_size_bytes: usize = 256 * 1024;

var started = std.atomic.Value(bool).init(false);

/// Starts the reaper once, when `opener_thread_id` (the thread that just opened a map) is not the
/// process's main thread. `reap` releases the maps of ended threads and returns how many.
pub fn start_for(opener_thread_id: i32, reap: *const fn () u32) void {
    if (builtin.os.tag != .linux) return; // Owners are never known elsewhere (owner.zig).
    if (opener_thread_id <= 0) return; // Unknown owner: nothing this thread could reap.
    if (opener_thread_id == std.os.linux.getpid()) return;
    if (started.swap(true, .acq_rel)) return;
    const thread = std.Thread.spawn(.{ .stack_size = stack_size_bytes }, run, .{reap}) catch {
        // gm_open still reaps when slots or descriptors run out; the next worker tries again.
        started.store(false, .release);
        return;
    };
    thread.detach();
}

fn run(reap: *const fn () u32) void {
    // The process's lifetime bounds the loop: the thread ends with the process.
    while (true) {
        std.Thread.sleep(interval_ms * std.time.ns_per_ms);
        const released = reap();
        assert(released <= slot_count_max);
    }
}
