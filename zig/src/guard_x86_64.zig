//! The x86_64 guarded routines' assembly, in the parts guard.zig assembles into routines: the
//! entry (arguments to rdi, rsi and the count registers), the body (between NAME_begin and
//! NAME_end, the only place a fault is claimed), the normal exit and the landing pad. The parts are
//! newline-terminated AT&T instruction lines. guard.zig says what each routine is for.
const std = @import("std");

pub const copy_entry_sysv =
    \\    movq %rcx, %r8
    \\    movq %rdx, %rcx
    \\
;
pub const copy_entry_windows =
    \\    movq %r8, %rcx
    \\
;
pub const copy_done =
    \\    xorl %eax, %eax
    \\
;
// On a fault rcx holds the bytes not yet copied, in `rep movsb` and in the small copy alike.
pub const copy_landing_code =
    \\    movq %rcx, %rax
    \\
;

// guardmap_copy: one forward `rep movsb`.
pub const copy_body =
    \\    rep movsb
    \\
;

// The streaming copy's body. On entry rdi = dst, rsi = src, rcx = the head (bytes up to dst's next
// 64-byte boundary, at most the length) and rdx = the bytes after the head. Invariant at every
// instruction that touches memory: the bytes not yet known to be copied are rcx + rdx, so the
// landing pad's answer is right in every phase.
//   head: `rep movsb` counts rcx down;
//   blocks: rcx = bytes of whole 16 KiB blocks left, rdx = the rest. A block is four 4 KiB pages:
//         for each 64-byte offset r10 in [0, 4096), the line at r10 of page 0, 1, 2 and 3 in turn,
//         so that four page walks (TLB misses, accessed-bit updates) are under way at once, as in
//         glibc's large memmove (bench/where_the_time_goes.md, "The streaming copy"). rcx drops
//         only after a whole block: a fault in it reports the block as not copied, and
//         guard.zig's `finish_exactly` re-copies it with `rep movsb`, exact to the byte. The target
//         past that count may hold lines of the block's later pages only if a page was lost during
//         the block: a 4 KiB page lost before faults at the first line that touches it or the next
//         page's first line (which lies in it), before any line of a later page is copied;
//   lines: rcx = bytes of whole 64-byte lines left (under a block), rdx = the tail; rcx drops
//         after a line's four stores;
//   tail: rcx = the tail, rdx = 0.
// SSE2 only (every x86_64 CPU has it); the loads are unaligned, the stores aligned to dst's line.
// xmm0-xmm3 and r10 are caller-saved in both ABIs; r8 (System V) / r9 (Win64) hold the Frame.
pub const stream_body =
    \\    rep movsb
    \\    movq %rdx, %rcx
    \\    andq $-16384, %rcx
    \\    subq %rcx, %rdx
    \\    testq %rcx, %rcx
    \\    jz 3f
    \\1:
    \\    xorl %r10d, %r10d
    \\2:
++ stream_line("0") ++ stream_line("4096") ++ stream_line("8192") ++ stream_line("12288") ++
    \\    addq $64, %r10
    \\    cmpq $4096, %r10
    \\    jb 2b
    \\    addq $16384, %rsi
    \\    addq $16384, %rdi
    \\    subq $16384, %rcx
    \\    jnz 1b
    \\3:
    \\    xorl %r10d, %r10d
    \\    movq %rdx, %rcx
    \\    andq $-64, %rcx
    \\    andq $63, %rdx
    \\    testq %rcx, %rcx
    \\    jz 5f
    \\4:
++ stream_line("0") ++
    \\    addq $64, %rsi
    \\    addq $64, %rdi
    \\    subq $64, %rcx
    \\    jnz 4b
    \\5:
    \\    movq %rdx, %rcx
    \\    xorl %edx, %edx
    \\    rep movsb
    \\
;

/// One 64-byte line at `page` + r10 bytes past rsi to the same place past rdi: four loads, then four
/// non-temporal stores. r10 is 0 in the line loop.
fn stream_line(comptime page: []const u8) []const u8 {
    return std.fmt.comptimePrint(
        \\    movdqu {0s}(%rsi,%r10), %xmm0
        \\    movdqu {0s}+16(%rsi,%r10), %xmm1
        \\    movdqu {0s}+32(%rsi,%r10), %xmm2
        \\    movdqu {0s}+48(%rsi,%r10), %xmm3
        \\    movntdq %xmm0, {0s}(%rdi,%r10)
        \\    movntdq %xmm1, {0s}+16(%rdi,%r10)
        \\    movntdq %xmm2, {0s}+32(%rdi,%r10)
        \\    movntdq %xmm3, {0s}+48(%rdi,%r10)
        \\
    , .{page});
}

// rdx = length here: the head is min(-dst mod 64, length), taken off rdx.
const stream_head =
    \\    movq %rdi, %rcx
    \\    negq %rcx
    \\    andq $63, %rcx
    \\    cmpq %rdx, %rcx
    \\    cmovaq %rdx, %rcx
    \\    subq %rcx, %rdx
    \\
;
pub const stream_entry_sysv =
    \\    movq %rcx, %r8
    \\
++ stream_head;
pub const stream_entry_windows =
    \\    movq %r8, %rdx
    \\
++ stream_head;
// Non-temporal stores are weakly ordered; `sfence` on both exits orders them before anything the
// caller stores next (another thread that sees the result must see the bytes).
pub const stream_done =
    \\    sfence
    \\    xorl %eax, %eax
    \\
;
pub const stream_landing_code =
    \\    sfence
    \\    leaq (%rcx,%rdx), %rax
    \\
;

// The small copy's body: rdi = dst, rsi = src, rcx = length. Plain moves, 16 bytes, then 8, then
// single bytes, so that a run of small copies (gm_read_many) is a run of ordinary loads and
// stores instead of microcoded `rep movsb` start-ups. Invariant at every instruction that touches
// memory: rcx = the bytes not yet known to be copied; it drops only after a chunk's store.
pub const small_body =
    \\    cmpq $16, %rcx
    \\    jb 2f
    \\1:
    \\    movdqu (%rsi), %xmm0
    \\    movdqu %xmm0, (%rdi)
    \\    addq $16, %rsi
    \\    addq $16, %rdi
    \\    subq $16, %rcx
    \\    cmpq $16, %rcx
    \\    jae 1b
    \\2:
    \\    cmpq $8, %rcx
    \\    jb 3f
    \\    movq (%rsi), %rax
    \\    movq %rax, (%rdi)
    \\    addq $8, %rsi
    \\    addq $8, %rdi
    \\    subq $8, %rcx
    \\3:
    \\    testq %rcx, %rcx
    \\    jz 5f
    \\4:
    \\    movb (%rsi), %al
    \\    movb %al, (%rdi)
    \\    incq %rsi
    \\    incq %rdi
    \\    decq %rcx
    \\    jnz 4b
    \\5:
    \\
;
