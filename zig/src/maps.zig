//! The process's table of open maps, shared by the map calls (map_calls.zig) and the copy engine
//! (copy_engine.zig): the platform's mapping layer, the table itself, and how a map's slot is
//! given back (unmapped, or kept as zeros where a view may still point into it).
const std = @import("std");
const builtin = @import("builtin");
const handles = @import("handles.zig");
const owner = @import("owner.zig");

pub const os = switch (builtin.os.tag) {
    .linux => @import("os_linux.zig"),
    .windows => @import("os_windows.zig"),
    else => @compileError("guardmap supports Linux and Windows"),
};

pub const salvage = if (builtin.os.tag == .linux) @import("salvage.zig") else struct {
    // Windows: salvage is refused at open (not_supported), so none of these is ever reached.
    pub fn init(_: usize) void {}
    pub fn register(_: u32, _: usize, _: usize, _: bool) void {}
    pub fn unregister(_: u32) void {}
    pub fn faults(_: u32) struct { count: u32, first_address: usize } {
        return .{ .count = 0, .first_address = 0 };
    }
};

pub const Table = handles.Table(os.Mapping);
pub const Slot = Table.Slot;

pub var table: Table = .{};

/// The slot's index, which salvage keys its per-map records by.
pub fn slot_index(slot: *const Slot) u32 {
    return table.index_of_slot(slot);
}

/// Unmaps the window of a closing slot and closes its file.
pub fn unmap(slot: *Slot) void {
    if (slot.mapping.salvaged) salvage.unregister(slot_index(slot));
    os.unmap(&slot.mapping);
}

/// As `unmap`, for a map whose zero-copy view may still be reachable: the address range stays
/// mapped, to zeros (Linux) or to the file (Windows), so a later access cannot crash the process.
pub fn release_kept(slot: *Slot) void {
    // Zeros first, then out of salvage: a view touching the range in between is still salvaged.
    os.release_keep_range(&slot.mapping);
    if (slot.mapping.salvaged) salvage.unregister(slot_index(slot));
}

/// Releases the maps whose opening thread has ended (a terminated Web Worker's): unmapped, or
/// left as zeros where their address was handed out. Returns how many.
pub fn reap() u32 {
    const Reaper = struct {
        fn is_gone(_: void, owner_of_map: handles.Owner) bool {
            // The calling thread is alive: no need to ask the kernel.
            if (owner_of_map.eql(owner.current())) return false;
            return owner.is_gone(owner_of_map);
        }

        fn release(_: void, slot: *Slot) void {
            // A view may have left the dead isolate (a transferred buffer): never unmap under it.
            if (slot.address_taken.load(.acquire)) return release_kept(slot);
            unmap(slot);
        }
    };
    return table.reap({}, Reaper.is_gone, Reaper.release);
}
