//! The table of open maps, addressed by generation-checked handles.
//!
//! The JavaScript side holds a handle, never a pointer: an f64 carrying an integer below 2^53
//! (a plain number for Deno's fast FFI calls, no BigInt), the slot's index in its low
//! `index_bits` and, above them, the generation of that slot when it was opened: 41 bits, so a
//! slot wraps after 2^41 open/close cycles (at 2 us per cycle, over 50 days of one slot doing
//! nothing else). A handle names a slot and its generation, so a stale handle (after close) or a forged one
//! is refused instead of touching unmapped or freed memory. A copy leases its slot for the
//! duration of the copy; close refuses (`busy`) while a lease is held by another thread, so a
//! mapping is never unmapped under a running copy.
//!
//! Every map also records its owner: the thread that opened it (see owner.zig). A Web Worker's
//! isolate lives on one thread for its whole life and runs no more JavaScript once terminated,
//! so neither its `close()` calls nor its FinalizationRegistry will ever run: `reap` releases the
//! maps whose owner thread has ended.
const std = @import("std");
const assert = std.debug.assert;
const Status = @import("status.zig").Status;
const window = @import("window.zig");

pub const slot_count_max = 4096;
const index_bits = 12;
const generation_bits = 41;
/// A handle's type at the C ABI: an exact integer below 2^53 in an f64.
pub const Handle = f64;
comptime {
    assert(slot_count_max <= (1 << index_bits));
    assert(index_bits + generation_bits == 53); // Every handle is exact in an f64.
}

/// Slot state: the `open` bit, the `closing` bit and, below them, the number of active leases.
const state_open: u32 = 1 << 31;
const state_closing: u32 = 1 << 30;
const lease_mask: u32 = state_closing - 1;
/// Leases are taken with a compare-and-swap; under contention it retries, at most this often.
const lease_attempts_max = 1024;

/// Who opened a map: a thread id and the thread's start time, so that a reused id is not taken
/// for the same thread. `unknown` is never reaped.
pub const Owner = struct {
    thread_id: i32,
    start_ticks: u64,

    pub const unknown: Owner = .{ .thread_id = 0, .start_ticks = 0 };

    pub fn eql(a: Owner, b: Owner) bool {
        return a.thread_id == b.thread_id and a.start_ticks == b.start_ticks;
    }
};

/// Why `begin_close` refused.
pub const CloseError = error{ BadHandle, Busy };

/// The status code a refused close reports.
pub fn close_status(err: CloseError) Status {
    return switch (err) {
        error.BadHandle => .bad_handle,
        error.Busy => .busy,
    };
}

pub fn Table(comptime Mapping: type) type {
    return struct {
        const Self = @This();

        pub const Slot = struct {
            /// Incremented on every close; a handle carries the generation it was opened with.
            generation: std.atomic.Value(u64) = .init(1),
            state: std.atomic.Value(u32) = .init(0),
            /// Written by `publish`, read by `reap` (both under the mutex).
            owner: Owner = Owner.unknown,
            /// Set once the mapping's address was handed out (a zero-copy view may exist, even in
            /// another isolate after a transfer): a reaped map is then not unmapped (see `reap`).
            address_taken: std.atomic.Value(bool) = .init(false),
            /// Written before `state` is set open (release), read after a lease (acquire).
            mapping: Mapping = undefined,
        };

        slots: [slot_count_max]Slot = [_]Slot{.{}} ** slot_count_max,
        /// Serialises open and close (never held during a copy, never taken by a signal handler).
        mutex: std.Thread.Mutex = .{},

        pub const Lease = struct {
            slot: *Slot,

            pub fn release(lease: Lease) void {
                const previous = lease.slot.state.fetchSub(1, .release);
                assert(previous & lease_mask > 0);
            }
        };

        pub fn handle_of(index: u32, generation: u64) Handle {
            assert(index < slot_count_max);
            assert(generation > 0 and generation < (1 << generation_bits));
            return @floatFromInt((generation << index_bits) | index);
        }

        /// The slot index and generation a handle names; null for anything that is not an exact
        /// integer in [1, 2^53) or names no slot.
        fn split(handle: Handle) ?struct { index: u32, generation: u64 } {
            if (!(handle >= 1 and handle < (1 << 53))) return null; // Also refuses NaN.
            // Whole from the bits, not by converting back (see window.is_whole).
            if (!window.is_whole(handle)) return null;
            const integer: u64 = @intFromFloat(handle);
            const index: u32 = @intCast(integer & ((1 << index_bits) - 1));
            if (index >= slot_count_max) return null;
            return .{ .index = index, .generation = integer >> index_bits };
        }

        /// The slot index a valid-looking handle names (for per-slot side tables).
        pub fn index_of(handle: Handle) ?u32 {
            const parts = split(handle) orelse return null;
            return parts.index;
        }

        /// The index of `slot`, one of this table's (for per-slot side tables, such as salvage's).
        pub fn index_of_slot(table: *const Self, slot: *const Slot) u32 {
            const index = (@intFromPtr(slot) - @intFromPtr(&table.slots)) / @sizeOf(Slot);
            assert(index < slot_count_max);
            return @intCast(index);
        }

        /// Takes a lease on the open map named by `handle`.
        pub fn acquire(table: *Self, handle: Handle) error{BadHandle}!Lease {
            const parts = split(handle) orelse return error.BadHandle;
            const slot = &table.slots[parts.index];
            if (slot.generation.load(.acquire) != parts.generation) return error.BadHandle;

            var attempt: u32 = 0;
            while (attempt < lease_attempts_max) : (attempt += 1) {
                const state = slot.state.load(.acquire);
                if (state & state_open == 0 or state & state_closing != 0) return error.BadHandle;
                assert(state & lease_mask < lease_mask);
                if (slot.state.cmpxchgWeak(state, state + 1, .acquire, .monotonic) == null) {
                    const lease: Lease = .{ .slot = slot };
                    // The slot may have been closed and reopened between the two checks.
                    if (slot.generation.load(.acquire) != parts.generation) {
                        lease.release();
                        return error.BadHandle;
                    }
                    return lease;
                }
            }
            return error.BadHandle;
        }

        /// Reserves a free slot; the caller fills `mapping` and calls `publish`.
        pub fn reserve(table: *Self) error{TooManyOpen}!u32 {
            table.mutex.lock();
            defer table.mutex.unlock();
            for (&table.slots, 0..) |*slot, index| {
                if (slot.state.load(.acquire) == 0) {
                    slot.state.store(state_closing, .release); // Reserved: not open, not free.
                    return @intCast(index);
                }
            }
            return error.TooManyOpen;
        }

        /// Makes a reserved slot an open map and returns its handle; `reap` never releases it.
        pub fn publish(table: *Self, index: u32, mapping: Mapping) Handle {
            return table.publish_owned(index, mapping, Owner.unknown);
        }

        /// Makes a reserved slot an open map owned by `owner` and returns its handle.
        pub fn publish_owned(table: *Self, index: u32, mapping: Mapping, owner: Owner) Handle {
            const slot = &table.slots[index];
            assert(slot.state.load(.acquire) == state_closing);
            slot.mapping = mapping;
            table.mutex.lock();
            slot.owner = owner;
            table.mutex.unlock();
            slot.address_taken.store(false, .release);
            slot.state.store(state_open, .release);
            return handle_of(index, slot.generation.load(.acquire));
        }

        /// Returns a reserved slot that was never published.
        pub fn unreserve(table: *Self, index: u32) void {
            const slot = &table.slots[index];
            assert(slot.state.load(.acquire) == state_closing);
            slot.state.store(0, .release);
        }

        /// Marks the map closing if no lease is held and returns its mapping for the caller to
        /// release; `finish_close` then frees the slot.
        pub fn begin_close(table: *Self, handle: Handle) CloseError!*Slot {
            const parts = split(handle) orelse return error.BadHandle;
            table.mutex.lock();
            defer table.mutex.unlock();
            const slot = &table.slots[parts.index];
            if (slot.generation.load(.acquire) != parts.generation) return error.BadHandle;
            const state = slot.state.load(.acquire);
            if (state & state_open == 0 or state & state_closing != 0) return error.BadHandle;
            if (slot.state.cmpxchgStrong(state_open, state_open | state_closing, .acq_rel, .acquire)) |_| {
                return error.Busy;
            }
            return slot;
        }

        pub fn finish_close(table: *Self, slot: *Slot) void {
            table.mutex.lock();
            defer table.mutex.unlock();
            free_slot(slot);
        }

        /// Releases every open map whose owner `is_gone` says has ended and that no copy is using
        /// now; `release(slot)` frees its mapping. Returns how many were released.
        pub fn reap(
            table: *Self,
            context: anytype,
            comptime is_gone: fn (@TypeOf(context), Owner) bool,
            comptime release: fn (@TypeOf(context), *Slot) void,
        ) u32 {
            table.mutex.lock();
            defer table.mutex.unlock();
            // Maps of one worker sit side by side: remember the last verdict, so one thread's
            // liveness is looked up once per run of its slots, not once per slot.
            var last: Owner = Owner.unknown;
            var last_gone = false;
            var released: u32 = 0;
            for (&table.slots) |*slot| {
                if (slot.state.load(.acquire) != state_open) continue; // Free, closing or leased.
                if (slot.owner.eql(Owner.unknown)) continue;
                if (!slot.owner.eql(last)) {
                    last = slot.owner;
                    last_gone = is_gone(context, last);
                }
                if (!last_gone) continue;
                // A copy that took a lease since the load above wins: the map stays for now.
                if (slot.state.cmpxchgStrong(state_open, state_open | state_closing, .acq_rel, .acquire) != null) continue;
                release(context, slot);
                free_slot(slot);
                released += 1;
            }
            assert(released <= slot_count_max);
            return released;
        }

        /// A closing slot becomes free with the next generation. The caller holds the mutex.
        fn free_slot(slot: *Slot) void {
            assert(slot.state.load(.acquire) == state_open | state_closing);
            var generation = slot.generation.load(.acquire) +% 1;
            // Handles are never 0 and generations stay within the bits a handle has for them.
            if (generation >= (1 << generation_bits)) generation = 1;
            slot.generation.store(generation, .release);
            slot.state.store(0, .release);
        }
    };
}

const testing = std.testing;

test "handles: a closed handle is refused, the slot is reused with a new generation" {
    const T = Table(u64);
    const table = try testing.allocator.create(T);
    defer testing.allocator.destroy(table);
    table.* = .{};

    const index = try table.reserve();
    const handle = table.publish(index, 42);
    try testing.expect(handle != 0);
    {
        const lease = try table.acquire(handle);
        defer lease.release();
        try testing.expectEqual(@as(u64, 42), lease.slot.mapping);
        // Close while leased is refused, not deferred.
        try testing.expectError(error.Busy, table.begin_close(handle));
    }
    const slot = try table.begin_close(handle);
    try testing.expectError(error.BadHandle, table.acquire(handle));
    table.finish_close(slot);
    try testing.expectError(error.BadHandle, table.acquire(handle));
    try testing.expectError(error.BadHandle, table.begin_close(handle));

    const index_again = try table.reserve();
    try testing.expectEqual(index, index_again);
    const handle_again = table.publish(index_again, 7);
    try testing.expect(handle_again != handle);
    try testing.expectError(error.BadHandle, table.acquire(handle));
    const lease = try table.acquire(handle_again);
    lease.release();
}

test "handles: forged handles are refused" {
    const T = Table(u64);
    const table = try testing.allocator.create(T);
    defer testing.allocator.destroy(table);
    table.* = .{};
    try testing.expectError(error.BadHandle, table.acquire(0));
    try testing.expectError(error.BadHandle, table.acquire(0xffff_ffff));
    try testing.expectError(error.BadHandle, table.acquire(1.5));
    try testing.expectError(error.BadHandle, table.acquire(-1));
    try testing.expectError(error.BadHandle, table.acquire(std.math.nan(f64)));
    try testing.expectError(error.BadHandle, table.acquire(std.math.inf(f64)));
    try testing.expectError(error.BadHandle, table.acquire(1 << 53));
    try testing.expectError(error.BadHandle, table.acquire(T.handle_of(3, 1)));
}

test "handles: the table has a bound" {
    const T = Table(u64);
    const table = try testing.allocator.create(T);
    defer testing.allocator.destroy(table);
    table.* = .{};
    var count: u32 = 0;
    while (count < slot_count_max) : (count += 1) _ = try table.reserve();
    try testing.expectError(error.TooManyOpen, table.reserve());
}

const ReapTest = struct {
    gone: Owner,
    released: u32 = 0,

    fn is_gone(context: *ReapTest, owner: Owner) bool {
        return owner.eql(context.gone);
    }

    fn release(context: *ReapTest, slot: *Table(u64).Slot) void {
        _ = slot;
        context.released += 1;
    }
};

test "handles: reap releases the maps of an ended owner only, never a leased or unknown one" {
    const T = Table(u64);
    const table = try testing.allocator.create(T);
    defer testing.allocator.destroy(table);
    table.* = .{};
    const ended: Owner = .{ .thread_id = 7, .start_ticks = 100 };
    const alive: Owner = .{ .thread_id = 8, .start_ticks = 100 };
    // Same thread id, later start: the id was reused by a thread that still runs.
    const reused: Owner = .{ .thread_id = 7, .start_ticks = 200 };
    var handles_ended: [3]Handle = undefined;
    for (&handles_ended) |*handle| handle.* = table.publish_owned(try table.reserve(), 1, ended);
    const handle_alive = table.publish_owned(try table.reserve(), 2, alive);
    const handle_reused = table.publish_owned(try table.reserve(), 3, reused);
    const handle_unknown = table.publish(try table.reserve(), 4);

    var context: ReapTest = .{ .gone = ended };
    const lease = try table.acquire(handles_ended[1]);
    try testing.expectEqual(@as(u32, 2), table.reap(&context, ReapTest.is_gone, ReapTest.release));
    try testing.expectEqual(@as(u32, 2), context.released);
    try testing.expectError(error.BadHandle, table.acquire(handles_ended[0]));
    try testing.expectError(error.BadHandle, table.acquire(handles_ended[2]));
    // The leased map stays until its copy is done, and goes at the next reap.
    lease.release();
    try testing.expectEqual(@as(u32, 1), table.reap(&context, ReapTest.is_gone, ReapTest.release));
    try testing.expectError(error.BadHandle, table.acquire(handles_ended[1]));
    for ([_]Handle{ handle_alive, handle_reused, handle_unknown }) |handle| {
        const kept = try table.acquire(handle);
        kept.release();
    }
    try testing.expectEqual(@as(u32, 0), table.reap(&context, ReapTest.is_gone, ReapTest.release));
}

test "handles: a stale handle is refused through 2^20 + 1 cycles of its slot" {
    const T = Table(u64);
    const table = try testing.allocator.create(T);
    defer testing.allocator.destroy(table);
    table.* = .{};
    const stale = table.publish(try table.reserve(), 1);
    const checkpoints = [_]u64{ 1 << 16, (1 << 16) + 1, 1 << 20, (1 << 20) + 1 };
    var cycle: u64 = 0;
    var current = stale;
    for (checkpoints) |checkpoint| {
        while (cycle < checkpoint) : (cycle += 1) {
            table.finish_close(try table.begin_close(current));
            const index = try table.reserve();
            try testing.expectEqual(@as(u32, 0), index); // Always the same slot.
            current = table.publish(index, 2);
            // Every cycle, not only at the checkpoints: a wrap lands on one exact cycle.
            try testing.expect(current != stale);
        }
        try testing.expectError(error.BadHandle, table.acquire(stale));
        try testing.expectError(error.BadHandle, table.begin_close(stale));
        const lease = try table.acquire(current);
        lease.release();
    }
}

test "handles: the generation wraps to 1 after 2^41 cycles, never to 0" {
    const T = Table(u64);
    const table = try testing.allocator.create(T);
    defer testing.allocator.destroy(table);
    table.* = .{};
    table.slots[0].generation.store((1 << generation_bits) - 1, .release);
    const last = table.publish(try table.reserve(), 1);
    try testing.expectEqual(@as(f64, @floatFromInt(((1 << 53) - 1) & ~@as(u64, (1 << index_bits) - 1))), last);
    table.finish_close(try table.begin_close(last));
    const wrapped = table.publish(try table.reserve(), 2);
    try testing.expectEqual(@as(f64, 1 << index_bits), wrapped);
}
