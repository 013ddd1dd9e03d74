//! The guarded copy: a forward copy whose faults come back as a return value, exact to the byte.
//!
//! The copy is written in global assembly between two labels, `guardmap_copy_begin` and
//! `guardmap_copy_end`. The fault handler (SIGBUS/SIGSEGV on Linux, a vectored exception handler
//! on Windows) claims a fault only when both precise facts hold:
//!   1. the faulting instruction lies in [begin, end), and
//!   2. the faulting address lies inside the mapping that this very copy declared in its Frame.
//! It then records the fault in the Frame and moves the instruction pointer to
//! `guardmap_copy_landing`, which returns the number of bytes *not* copied. The copy runs
//! forward, so `length - remaining` bytes before the fault have been delivered (short-read
//! semantics). No setjmp, no syscall and no allocation on the fast path or in the handler.
//!
//! Every other routine has its own [begin, end) range and landing pad, and the same Frame
//! register. A routine that moves whole chunks learns of a fault only per chunk; the rest is then
//! re-copied by one that stops at the first lost byte (`finish_exactly`), so every count is exact.
//!   x86_64: `guardmap_copy` is one `rep movsb`; `guardmap_copy_stream` copies large reads with
//!     non-temporal stores, because the target's lines are then not read before they are written
//!     (bench/copy_probe.ts, 64 MiB out of a hot page cache on this machine: 5.1 GiB/s against
//!     4.0 for `rep movsb`, about 1.3x), a line of each of four pages in turn, so that four page
//!     walks overlap; `guardmap_copy_small` uses plain moves.
//!   aarch64: `guardmap_copy` moves 64 bytes a turn with `ldp`/`stp` of q registers, then 16, then
//!     single bytes; `guardmap_copy_bytes` is the byte loop that finishes its count.
//!
//! The Frame lives on the caller's stack; its address travels in a register that the copy
//! leaves untouched (r8 on x86_64 Linux, r9 on Windows, x3 on aarch64), so the handler needs no
//! thread-local or global state to find it.
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;
/// The x86_64 routines' assembly, in parts (entry, body, exit, landing pad).
const x86 = @import("guard_x86_64.zig");

pub const Frame = extern struct {
    /// The mapping the copy touches: faults at other addresses are not ours.
    mapped_lo: usize,
    mapped_hi: usize,
    /// Written by the handler when it claims a fault.
    fault_address: usize,
    fault_signal: i32,
    fault_code: i32,

    pub fn init(mapped_lo: usize, mapped_hi: usize) Frame {
        assert(mapped_lo < mapped_hi);
        return .{
            .mapped_lo = mapped_lo,
            .mapped_hi = mapped_hi,
            .fault_address = 0,
            .fault_signal = 0,
            .fault_code = 0,
        };
    }

    /// The handler's test: is a fault at `address` one this copy declared?
    pub fn claims(frame: *const Frame, address: usize) bool {
        return address >= frame.mapped_lo and address < frame.mapped_hi;
    }
};

comptime {
    assert(@sizeOf(Frame) == 32);
    assert(@offsetOf(Frame, "fault_address") == 16);
}

pub const os = switch (builtin.os.tag) {
    .linux => @import("guard_linux.zig"),
    .windows => @import("guard_windows.zig"),
    else => @compileError("guardmap supports Linux and Windows"),
};

const copy_assembly = switch (builtin.cpu.arch) {
    .x86_64 => if (builtin.os.tag == .windows)
        windows_routine("guardmap_copy", x86.copy_entry_windows, x86.copy_body, x86.copy_done, x86.copy_landing_code) ++
            windows_routine("guardmap_copy_stream", x86.stream_entry_windows, x86.stream_body, x86.stream_done, x86.stream_landing_code) ++
            windows_routine("guardmap_copy_small", x86.copy_entry_windows, x86.small_body, x86.copy_done, x86.copy_landing_code)
    else
        elf_routine("guardmap_copy", x86.copy_entry_sysv, x86.copy_body, x86.copy_done, x86.copy_landing_code) ++
            elf_routine("guardmap_copy_stream", x86.stream_entry_sysv, x86.stream_body, x86.stream_done, x86.stream_landing_code) ++
            elf_routine("guardmap_copy_small", x86.copy_entry_sysv, x86.small_body, x86.copy_done, x86.copy_landing_code),
    .aarch64 => elf_routine("guardmap_copy", "", wide_body_aarch64, done_aarch64, landing_aarch64) ++
        elf_routine("guardmap_copy_bytes", "", bytes_body_aarch64, done_aarch64, landing_aarch64),
    else => @compileError("guardmap's guarded copy supports x86_64 and aarch64"),
};

comptime {
    asm (copy_assembly);
}

// Every routine has the same frame: `entry` moves the arguments where `body` wants them (on x86_64
// rdi = dst, rsi = src, the count in rcx; on aarch64 they already are in x0, x1, x2), `body` runs
// between the labels NAME_begin and NAME_end (the only place a fault is claimed), `done` puts 0
// in the result register for the normal exit, and the landing pad, NAME_landing, where the handler
// sends a claimed fault, puts the bytes not copied there. The parts are newline-terminated
// instruction lines.

// An ELF routine (x86_64 System V, aarch64 AAPCS64): the arguments arrive as dst, src, length,
// frame. On x86_64 (rdi, rsi, rdx, rcx) `rep movsb` needs the count in rcx, so the entry moves the
// frame to r8 first; the handler reads it from there. The direction flag is clear on entry by the
// ABI, so the copies run forward. On aarch64 (x0, x1, x2, x3) the frame stays in x3.
fn elf_routine(
    comptime name: []const u8,
    comptime entry: []const u8,
    comptime body: []const u8,
    comptime done: []const u8,
    comptime landing: []const u8,
) []const u8 {
    return std.fmt.comptimePrint(
        \\.text
        \\.globl {0s}
        \\.hidden {0s}
        \\.type {0s}, @function
        \\.globl {0s}_begin
        \\.hidden {0s}_begin
        \\.globl {0s}_end
        \\.hidden {0s}_end
        \\.globl {0s}_landing
        \\.hidden {0s}_landing
        \\.p2align 4
        \\{0s}:
        \\{1s}{0s}_begin:
        \\{2s}{0s}_end:
        \\{3s}    ret
        \\{0s}_landing:
        \\{4s}    ret
        \\.size {0s}, . - {0s}
        \\
    , .{ name, entry, body, done, landing });
}

// Win64: rcx = dst, rdx = src, r8 = length, r9 = frame (the handler reads it from there). rdi and
// rsi are callee-saved there, so they are pushed and the landing pad pops them the same way as
// the normal exit. The .seh_* directives give the routine unwind information, so that a fault
// passed on to other handlers (or a debugger's stack walk) unwinds through the pushes correctly.
fn windows_routine(
    comptime name: []const u8,
    comptime entry: []const u8,
    comptime body: []const u8,
    comptime done: []const u8,
    comptime landing: []const u8,
) []const u8 {
    return std.fmt.comptimePrint(
        \\.text
        \\.globl {0s}
        \\.globl {0s}_begin
        \\.globl {0s}_end
        \\.globl {0s}_landing
        \\.def {0s}; .scl 2; .type 32; .endef
        \\.p2align 4
        \\.seh_proc {0s}
        \\{0s}:
        \\    pushq %rdi
        \\    .seh_pushreg %rdi
        \\    pushq %rsi
        \\    .seh_pushreg %rsi
        \\    .seh_endprologue
        \\    movq %rcx, %rdi
        \\    movq %rdx, %rsi
        \\{1s}{0s}_begin:
        \\{2s}{0s}_end:
        \\{3s}    popq %rsi
        \\    popq %rdi
        \\    ret
        \\{0s}_landing:
        \\{4s}    popq %rsi
        \\    popq %rdi
        \\    ret
        \\.seh_endproc
        \\
    , .{ name, entry, body, done, landing });
}

// aarch64 (AAPCS64: x0 = dst, x1 = src, x2 = length, x3 = frame; x4 and v0-v3 are scratch
// registers the callee may use). Invariant at every instruction that touches memory: x2 = the
// bytes not yet known to be copied; it drops only after a chunk's last store. A fault in a chunk
// therefore reports the whole chunk as not copied, even when a store of it (an `stp` that straddles
// the lost page) wrote part of its bytes; `copy` re-copies the rest with the byte loop, which stops
// at the first byte that cannot be read or written, so the count it returns is exact.
//   body: 64 bytes a turn, the four loads before the four stores, unaligned (allowed on normal
//         memory);
//   then 16 bytes a turn, then single bytes.
const wide_body_aarch64 =
    \\    cmp x2, #64
    \\    b.lo 2f
    \\1:
    \\    ldp q0, q1, [x1]
    \\    ldp q2, q3, [x1, #32]
    \\    stp q0, q1, [x0]
    \\    stp q2, q3, [x0, #32]
    \\    add x1, x1, #64
    \\    add x0, x0, #64
    \\    sub x2, x2, #64
    \\    cmp x2, #64
    \\    b.hs 1b
    \\2:
    \\    cmp x2, #16
    \\    b.lo 4f
    \\3:
    \\    ldr q0, [x1], #16
    \\    str q0, [x0], #16
    \\    sub x2, x2, #16
    \\    cmp x2, #16
    \\    b.hs 3b
    \\4:
    \\    cbz x2, 6f
    \\5:
    \\    ldrb w4, [x1], #1
    \\    strb w4, [x0], #1
    \\    subs x2, x2, #1
    \\    b.ne 5b
    \\6:
    \\
;
// The byte loop alone: x2 drops after each byte's store, so on a fault in the load or the store it
// is exactly the count not yet copied.
const bytes_body_aarch64 =
    \\    cbz x2, 2f
    \\1:
    \\    ldrb w4, [x1], #1
    \\    strb w4, [x0], #1
    \\    subs x2, x2, #1
    \\    b.ne 1b
    \\2:
    \\
;
const done_aarch64 =
    \\    mov x0, #0
    \\
;
const landing_aarch64 =
    \\    mov x0, x2
    \\
;

extern fn guardmap_copy(dst: [*]u8, src: [*]const u8, length_bytes: usize, frame: *Frame) callconv(.c) usize;

const has_x86_64_routines = builtin.cpu.arch == .x86_64;
const x86_64_routines = if (has_x86_64_routines) struct {
    extern fn guardmap_copy_stream(dst: [*]u8, src: [*]const u8, length_bytes: usize, frame: *Frame) callconv(.c) usize;
    extern fn guardmap_copy_small(dst: [*]u8, src: [*]const u8, length_bytes: usize, frame: *Frame) callconv(.c) usize;
} else struct {};
const aarch64_routines = if (builtin.cpu.arch == .aarch64) struct {
    extern fn guardmap_copy_bytes(dst: [*]u8, src: [*]const u8, length_bytes: usize, frame: *Frame) callconv(.c) usize;
} else struct {};

/// Every guarded routine of this target, by name.
const routine_names: []const []const u8 = switch (builtin.cpu.arch) {
    .x86_64 => &.{ "guardmap_copy", "guardmap_copy_stream", "guardmap_copy_small" },
    .aarch64 => &.{ "guardmap_copy", "guardmap_copy_bytes" },
    else => &.{},
};

/// The labels of the guarded routine `name`: [NAME_begin, NAME_end) and its landing pad.
fn labels_of(comptime name: []const u8) [3]*const fn () callconv(.c) void {
    const Label = fn () callconv(.c) void;
    return .{
        @extern(*const Label, .{ .name = name ++ "_begin" }),
        @extern(*const Label, .{ .name = name ++ "_end" }),
        @extern(*const Label, .{ .name = name ++ "_landing" }),
    };
}

/// Where the handler sends a fault at `pc`: the landing pad of the guarded routine `pc` lies in,
/// or null when `pc` is in none (then the fault is not the copy's).
pub fn landing_for(pc: usize) ?usize {
    inline for (routine_names) |name| {
        const begin, const end, const landing = labels_of(name);
        if (pc >= @intFromPtr(begin) and pc < @intFromPtr(end)) return @intFromPtr(landing);
    }
    return null;
}

/// Whether `guardmap_copy` itself stops at the first byte it cannot copy: `rep movsb` does; the
/// aarch64 routine notices a fault per chunk, and `copy` finishes its count with the byte loop.
const copy_is_exact = builtin.cpu.arch == .x86_64;

/// Copies `length_bytes` forward from `src` to `dst`; one of the two lies inside the mapping the
/// frame declares. Returns the number of bytes not copied: 0 on success, otherwise the frame
/// holds the fault. The handler must be installed (`os.install`) before the first call.
pub fn copy(dst: [*]u8, src: [*]const u8, length_bytes: usize, frame: *Frame) usize {
    assert(length_bytes > 0);
    const remaining = guardmap_copy(dst, src, length_bytes, frame);
    assert(remaining <= length_bytes);
    assert((remaining == 0) == (frame.fault_signal == 0));
    if (copy_is_exact) return remaining;
    return finish_exactly(dst, src, length_bytes, remaining, frame);
}

/// A forward copy that stops at the first byte it cannot read or write: `rep movsb` on x86_64,
/// the byte loop on aarch64.
fn copy_exactly(dst: [*]u8, src: [*]const u8, length_bytes: usize, frame: *Frame) usize {
    assert(length_bytes > 0);
    const remaining = if (copy_is_exact)
        guardmap_copy(dst, src, length_bytes, frame)
    else
        aarch64_routines.guardmap_copy_bytes(dst, src, length_bytes, frame);
    assert(remaining <= length_bytes);
    assert((remaining == 0) == (frame.fault_signal == 0));
    return remaining;
}

/// Reads of at least this many bytes go through the streaming copy: about the size of a last-level
/// cache. Below it `rep movsb` is faster (its target stays in cache, and a reused target costs no
/// memory writes); above it the target cannot stay cached and non-temporal stores win. Measured
/// here (32 MiB L3; map to a reused target, GiB/s, rep movsb / streaming): 8 MiB 32.4 / 24.3,
/// 16 MiB 29.1 / 24.7, 32 MiB 20.6 / 24.4, 256 MiB 16.4 / 21.5.
pub const stream_length_bytes_min: usize = 32 << 20;

/// As `copy`, for a large copy out of a mapping into ordinary memory: non-temporal stores on
/// x86_64, four 4 KiB pages at a time; `copy` elsewhere. The count it returns is exact, as
/// `copy`'s: the streaming routine reports a fault per 16 KiB block (then per 64-byte line), so the
/// rest is retried with `copy`, which stops at the first byte that cannot be read. After a fault,
/// the target past the count may hold bytes copied from the block's later pages before the fault;
/// only when a page was lost while the copy ran (a lost page of 4 KiB or more faults at the first
/// line the copy reads of it and of every page after it in the block, before any of their lines).
pub fn copy_stream(dst: [*]u8, src: [*]const u8, length_bytes: usize, frame: *Frame) usize {
    assert(length_bytes > 0);
    if (!has_x86_64_routines) return copy(dst, src, length_bytes, frame);
    const remaining = x86_64_routines.guardmap_copy_stream(dst, src, length_bytes, frame);
    return finish_exactly(dst, src, length_bytes, remaining, frame);
}

/// Copies below this many bytes go through the small copy.
pub const small_length_bytes_max: usize = 256;

/// As `copy`, for a small copy (below `small_length_bytes_max`) in either direction: plain moves
/// on x86_64, `copy` elsewhere. The count it returns is exact, as `copy_stream`'s.
pub fn copy_small(dst: [*]u8, src: [*]const u8, length_bytes: usize, frame: *Frame) usize {
    assert(length_bytes > 0);
    if (!has_x86_64_routines) return copy(dst, src, length_bytes, frame);
    const remaining = x86_64_routines.guardmap_copy_small(dst, src, length_bytes, frame);
    return finish_exactly(dst, src, length_bytes, remaining, frame);
}

/// After a copy that notices a fault per chunk: retries the rest with `copy_exactly`, which stops
/// at the first byte that cannot be read or written, so the count returned is exact. The frame is
/// cleared first: the fault it then holds is the retry's, at the first byte that was lost.
fn finish_exactly(dst: [*]u8, src: [*]const u8, length_bytes: usize, remaining: usize, frame: *Frame) usize {
    assert(remaining <= length_bytes);
    assert((remaining == 0) == (frame.fault_signal == 0));
    if (remaining == 0) return 0;
    const done = length_bytes - remaining;
    frame.* = Frame.init(frame.mapped_lo, frame.mapped_hi);
    return copy_exactly(dst + done, src + done, remaining, frame);
}

test "copy_stream and copy_small copy every length and alignment" {
    // Anonymous memory, no faults: this checks the byte arithmetic of the four phases (head, 16 KiB
    // blocks, 64-byte lines, tail). Lengths up to 1024 step through the small copy, the head and the
    // lines; the rest cross one, two and three blocks with every kind of remainder.
    const block_bytes = 4 * 4096;
    const lengths_large = [_]usize{
        block_bytes - 1,              block_bytes,                  block_bytes + 1,
        block_bytes + 64 + 1,         2 * block_bytes - 1,          2 * block_bytes,
        2 * block_bytes + 63,         3 * block_bytes + 64 * 5 + 7, 3 * block_bytes + 4096 + 64,
        4 * block_bytes - 64 * 3 - 1,
    };
    const size = 4 * block_bytes;
    const source = try std.testing.allocator.alloc(u8, size + 128);
    defer std.testing.allocator.free(source);
    // Every 64-byte line differs from the others in 64 KiB: a line copied to a wrong place shows.
    for (source, 0..) |*byte, index| byte.* = @truncate(index *% 13 +% 5 +% (index >> 6) +% (index >> 14));
    const target = try std.testing.allocator.alloc(u8, size + 128);
    defer std.testing.allocator.free(target);
    const mapped_lo = @intFromPtr(source.ptr);
    for ([_]usize{ 0, 1, 17, 63 }) |target_shift| {
        for ([_]usize{ 0, 3, 32 }) |source_shift| {
            var length: usize = 1;
            while (length <= 1024) : (length += if (length < 200) 1 else 61) {
                try expect_copied(source, target, source_shift, target_shift, length, mapped_lo);
            }
            for (lengths_large) |length_large| {
                try expect_copied(source, target, source_shift, target_shift, length_large, mapped_lo);
            }
        }
    }
}

/// Copies `length` bytes of `source` at `source_shift` to `target` at `target_shift` (the small copy
/// below small_length_bytes_max, the streaming copy from there) and checks every byte of `target`:
/// the copied ones, and the untouched ones around them.
fn expect_copied(
    source: []const u8,
    target: []u8,
    source_shift: usize,
    target_shift: usize,
    length: usize,
    mapped_lo: usize,
) !void {
    assert(source_shift + length <= source.len);
    assert(target_shift + length <= target.len);
    errdefer std.debug.print("length {d}, source shift {d}, target shift {d}\n", .{ length, source_shift, target_shift });
    @memset(target, 0xEE);
    var frame = Frame.init(mapped_lo, mapped_lo + source.len);
    const remaining = if (length < small_length_bytes_max)
        copy_small(target[target_shift..].ptr, source[source_shift..].ptr, length, &frame)
    else
        copy_stream(target[target_shift..].ptr, source[source_shift..].ptr, length, &frame);
    try std.testing.expectEqual(@as(usize, 0), remaining);
    try std.testing.expectEqualSlices(u8, source[source_shift..][0..length], target[target_shift..][0..length]);
    for (target[0..target_shift]) |byte| try std.testing.expectEqual(@as(u8, 0xEE), byte);
    for (target[target_shift + length ..]) |byte| try std.testing.expectEqual(@as(u8, 0xEE), byte);
}
