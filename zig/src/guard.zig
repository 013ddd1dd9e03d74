//! The guarded copy: a forward byte copy whose faults come back as a return value.
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
//! The Frame lives on the caller's stack; its address travels in a register that the copy
//! leaves untouched (r8 on x86_64 Linux, r9 on Windows, x3 on aarch64), so the handler needs no
//! thread-local or global state to find it.
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;

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
    .x86_64 => if (builtin.os.tag == .windows) copy_x86_64_windows else copy_x86_64_sysv,
    .aarch64 => copy_aarch64,
    else => @compileError("guardmap's guarded copy supports x86_64 and aarch64"),
};

comptime {
    asm (copy_assembly);
}

// System V: rdi = dst, rsi = src, rdx = length, rcx = frame. `rep movsb` needs the count in rcx,
// so the frame moves to r8 first; the handler reads it from there. The direction flag is clear on
// entry by the ABI, so the copy runs forward. On a fault rcx holds the bytes not yet copied.
const copy_x86_64_sysv =
    \\.text
    \\.globl guardmap_copy
    \\.hidden guardmap_copy
    \\.type guardmap_copy, @function
    \\.globl guardmap_copy_begin
    \\.hidden guardmap_copy_begin
    \\.globl guardmap_copy_end
    \\.hidden guardmap_copy_end
    \\.globl guardmap_copy_landing
    \\.hidden guardmap_copy_landing
    \\.p2align 4
    \\guardmap_copy:
    \\    movq %rcx, %r8
    \\    movq %rdx, %rcx
    \\guardmap_copy_begin:
    \\    rep movsb
    \\guardmap_copy_end:
    \\    xorl %eax, %eax
    \\    ret
    \\guardmap_copy_landing:
    \\    movq %rcx, %rax
    \\    ret
    \\.size guardmap_copy, . - guardmap_copy
    \\
;

// Win64: rcx = dst, rdx = src, r8 = length, r9 = frame. rdi and rsi are callee-saved there, so
// they are pushed and the landing pad pops them the same way as the normal exit. The .seh_*
// directives give the routine unwind information, so that a fault passed on to other handlers
// (or a debugger's stack walk) unwinds through the pushes correctly.
const copy_x86_64_windows =
    \\.text
    \\.globl guardmap_copy
    \\.globl guardmap_copy_begin
    \\.globl guardmap_copy_end
    \\.globl guardmap_copy_landing
    \\.def guardmap_copy; .scl 2; .type 32; .endef
    \\.p2align 4
    \\.seh_proc guardmap_copy
    \\guardmap_copy:
    \\    pushq %rdi
    \\    .seh_pushreg %rdi
    \\    pushq %rsi
    \\    .seh_pushreg %rsi
    \\    .seh_endprologue
    \\    movq %rcx, %rdi
    \\    movq %rdx, %rsi
    \\    movq %r8, %rcx
    \\guardmap_copy_begin:
    \\    rep movsb
    \\guardmap_copy_end:
    \\    xorl %eax, %eax
    \\    popq %rsi
    \\    popq %rdi
    \\    ret
    \\guardmap_copy_landing:
    \\    movq %rcx, %rax
    \\    popq %rsi
    \\    popq %rdi
    \\    ret
    \\.seh_endproc
    \\
;

// AAPCS64: x0 = dst, x1 = src, x2 = length, x3 = frame. A byte loop: x2 is decremented only after
// the store, so on a fault in the load or the store it is exactly the count not yet copied.
const copy_aarch64 =
    \\.text
    \\.globl guardmap_copy
    \\.hidden guardmap_copy
    \\.type guardmap_copy, %function
    \\.globl guardmap_copy_begin
    \\.hidden guardmap_copy_begin
    \\.globl guardmap_copy_end
    \\.hidden guardmap_copy_end
    \\.globl guardmap_copy_landing
    \\.hidden guardmap_copy_landing
    \\.p2align 4
    \\guardmap_copy:
    \\    cbz x2, guardmap_copy_end
    \\guardmap_copy_begin:
    \\    ldrb w4, [x1], #1
    \\    strb w4, [x0], #1
    \\    subs x2, x2, #1
    \\    b.ne guardmap_copy_begin
    \\guardmap_copy_end:
    \\    mov x0, #0
    \\    ret
    \\guardmap_copy_landing:
    \\    mov x0, x2
    \\    ret
    \\.size guardmap_copy, . - guardmap_copy
    \\
;

extern fn guardmap_copy(dst: [*]u8, src: [*]const u8, length_bytes: usize, frame: *Frame) callconv(.c) usize;
extern fn guardmap_copy_begin() callconv(.c) void;
extern fn guardmap_copy_end() callconv(.c) void;
extern fn guardmap_copy_landing() callconv(.c) void;

pub fn copy_begin() usize {
    return @intFromPtr(&guardmap_copy_begin);
}
pub fn copy_end() usize {
    return @intFromPtr(&guardmap_copy_end);
}
pub fn copy_landing() usize {
    return @intFromPtr(&guardmap_copy_landing);
}

/// Copies `length_bytes` forward from `src` to `dst`; one of the two lies inside the mapping the
/// frame declares. Returns the number of bytes not copied: 0 on success, otherwise the frame
/// holds the fault. The handler must be installed (`os.install`) before the first call.
pub fn copy(dst: [*]u8, src: [*]const u8, length_bytes: usize, frame: *Frame) usize {
    assert(length_bytes > 0);
    const remaining = guardmap_copy(dst, src, length_bytes, frame);
    assert(remaining <= length_bytes);
    assert((remaining == 0) == (frame.fault_signal == 0));
    return remaining;
}
