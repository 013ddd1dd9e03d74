//! Salvaged windows (Linux): zero-copy views that survive I/O errors, opt-in per map.
//!
//! A map opened with salvage registers its kernel mapping here. When JavaScript (or any code
//! outside the guarded copy) touches a page of it that cannot be read, the fault handler maps
//! an anonymous zero page over that page (MAP_FIXED), counts the fault, and returns: the access
//! runs again and reads zeros. The map then reports the fault on its next call, and its flush
//! fails for good, because writes that landed on a salvaged page never reach the file.
//!
//! The registry is read by the signal handler: plain atomics, no lock, a bounded scan.
const std = @import("std");
const assert = std.debug.assert;
const linux = std.os.linux;
const handles = @import("handles.zig");

const Entry = struct {
    /// Start of the registered kernel mapping; 0 while the entry is unused.
    begin: std.atomic.Value(usize) = .init(0),
    end: std.atomic.Value(usize) = .init(0),
    writable: std.atomic.Value(bool) = .init(false),
    fault_count: std.atomic.Value(u32) = .init(0),
    /// The lowest faulting address seen; maxInt while none.
    first_fault_address: std.atomic.Value(usize) = .init(std.math.maxInt(usize)),
};

/// One entry per slot of the map table, indexed like it.
var entries: [handles.slot_count_max]Entry = [_]Entry{.{}} ** handles.slot_count_max;
/// Set once by `init` before any entry is registered (the handler must not call sysconf).
var page_bytes: usize = 0;

pub fn init(page_size_bytes: usize) void {
    assert(std.math.isPowerOfTwo(page_size_bytes));
    page_bytes = page_size_bytes;
}

pub fn register(index: u32, begin: usize, length_bytes: usize, writable: bool) void {
    assert(page_bytes != 0);
    assert(begin != 0 and begin % page_bytes == 0 and length_bytes > 0);
    const entry = &entries[index];
    assert(entry.begin.load(.acquire) == 0);
    entry.fault_count.store(0, .release);
    entry.first_fault_address.store(std.math.maxInt(usize), .release);
    entry.writable.store(writable, .release);
    entry.end.store(begin + length_bytes, .release);
    entry.begin.store(begin, .release); // Last: the handler sees a complete entry.
}

/// Before the mapping is unmapped, so the handler never maps over memory that is no longer ours.
pub fn unregister(index: u32) void {
    entries[index].begin.store(0, .release);
}

pub const Faults = struct { count: u32, first_address: usize };

pub fn faults(index: u32) Faults {
    const entry = &entries[index];
    return .{
        .count = entry.fault_count.load(.acquire),
        .first_address = entry.first_fault_address.load(.acquire),
    };
}

/// Called by the SIGBUS handler for faults outside the guarded copy. Returns true when the
/// fault was inside a salvaged window and the page now reads as zeros.
pub fn try_salvage(address: usize) bool {
    if (page_bytes == 0) return false;
    for (&entries) |*entry| {
        const begin = entry.begin.load(.acquire);
        if (begin == 0 or address < begin or address >= entry.end.load(.acquire)) continue;
        const page = address & ~(page_bytes - 1);
        const protection: usize = if (entry.writable.load(.acquire))
            linux.PROT.READ | linux.PROT.WRITE
        else
            linux.PROT.READ;
        // A raw system call: async-signal-safe, unlike most of libc.
        const result = linux.mmap(
            @ptrFromInt(page),
            page_bytes,
            protection,
            .{ .TYPE = .PRIVATE, .ANONYMOUS = true, .FIXED = true },
            -1,
            0,
        );
        if (linux.E.init(result) != .SUCCESS) return false;
        _ = entry.fault_count.fetchAdd(1, .acq_rel);
        _ = entry.first_fault_address.fetchMin(address, .acq_rel);
        return true;
    }
    return false;
}
