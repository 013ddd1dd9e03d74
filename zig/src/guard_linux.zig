//! Linux: the SIGBUS/SIGSEGV handler that turns a fault inside the guarded copy into a return.
//!
//! Installed once (SA_SIGINFO | SA_ONSTACK, with a mask that blocks every asynchronous signal)
//! for both signals, saving whatever was installed before. A fault that is not ours goes to that
//! previous handler exactly as if we were not there; when it was the default action, the default
//! is restored and the handler returns, so the faulting instruction runs again and the process
//! dies of the real signal. The handler allocates nothing, takes no lock and touches no
//! thread-local storage.
//!
//! Why the mask: the handler runs on the thread's alternate signal stack, which in Deno is 11,952
//! bytes (Rust std's, one per thread) and one kernel signal frame is about 3.3 KB on this CPU.
//! With nothing masked, SIGINT, SIGUSR1 and V8's SIGPROF stacked their frames on top of ours
//! there and overflowed it (issue 10). With every asynchronous signal blocked, ours is the only
//! frame our fault puts on that stack, and the others are delivered after it returns. The stack
//! arithmetic and the behaviour with Deno's and V8's handlers are in zig/SIGNALS.md.
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;
const guard = @import("guard.zig");
const salvage = @import("salvage.zig");

pub const sigbus: c_int = 7;
pub const sigsegv: c_int = 11;
const sigill: c_int = 4;
const sigtrap: c_int = 5;
const sigfpe: c_int = 8;
const sigkill: c_int = 9;
const sigstop: c_int = 19;
const sa_siginfo: c_int = 0x4;
const sa_onstack: c_int = 0x0800_0000;
pub const sa_nodefer: c_int = 0x4000_0000;
const sig_dfl: usize = 0;
const sig_ign: usize = 1;

/// glibc's `struct sigaction` on x86_64 and aarch64 (the generic layout).
pub const Sigaction = extern struct {
    /// `sa_handler` or `sa_sigaction`, depending on SA_SIGINFO in `flags`.
    handler: usize,
    mask: [16]u64,
    flags: c_int,
    restorer: usize,
};

/// The kernel's siginfo for SIGBUS/SIGSEGV: the fault address is the first union member.
pub const SigInfo = extern struct {
    signo: i32,
    errno: i32,
    code: i32,
    pad: i32,
    fault_address: usize,
    rest: [104]u8,
};

/// The first fields of the kernel's ucontext on x86_64: general registers start at byte 40.
const UContextX86_64 = extern struct {
    flags: u64,
    link: u64,
    stack_sp: u64,
    stack_flags: i32,
    stack_pad: i32,
    stack_size: u64,
    gregs: [23]u64,

    const reg_r8 = 0;
    const reg_rip = 16;
};

/// The first fields of the kernel's ucontext on aarch64: the 128-byte signal mask is followed
/// by `mcontext_t`, 16-byte aligned, whose `regs` follow the fault address.
const UContextAarch64 = extern struct {
    flags: u64,
    link: u64,
    stack_sp: u64,
    stack_flags: i32,
    stack_pad: i32,
    stack_size: u64,
    sigmask: [16]u64,
    fault_address: u64 align(16),
    regs: [31]u64,
    sp: u64,
    pc: u64,
    pstate: u64,
};

comptime {
    assert(@sizeOf(Sigaction) == 152);
    assert(@offsetOf(Sigaction, "flags") == 136);
    assert(@sizeOf(SigInfo) == 128);
    assert(@offsetOf(SigInfo, "fault_address") == 16);
    assert(@offsetOf(UContextX86_64, "gregs") + UContextX86_64.reg_rip * 8 == 168);
    assert(@offsetOf(UContextX86_64, "gregs") + UContextX86_64.reg_r8 * 8 == 40);
    assert(@offsetOf(UContextAarch64, "pc") == 440);
    assert(@offsetOf(UContextAarch64, "regs") + 3 * 8 == 208);
}

/// Program counter and frame register of an interrupted context.
const Context = switch (builtin.cpu.arch) {
    .x86_64 => struct {
        fn pc(context: *UContextX86_64) usize {
            return context.gregs[UContextX86_64.reg_rip];
        }
        fn set_pc(context: *UContextX86_64, value: usize) void {
            context.gregs[UContextX86_64.reg_rip] = value;
        }
        fn frame(context: *UContextX86_64) usize {
            return context.gregs[UContextX86_64.reg_r8];
        }
        const UContext = UContextX86_64;
    },
    .aarch64 => struct {
        fn pc(context: *UContextAarch64) usize {
            return context.pc;
        }
        fn set_pc(context: *UContextAarch64, value: usize) void {
            context.pc = value;
        }
        fn frame(context: *UContextAarch64) usize {
            return context.regs[3];
        }
        const UContext = UContextAarch64;
    },
    else => @compileError("unsupported architecture"),
};

pub extern "c" fn sigaction(signal: c_int, action: ?*const Sigaction, previous: ?*Sigaction) c_int;
extern "c" fn dladdr(address: *const anyopaque, info: *DlInfo) c_int;
extern "c" fn dlopen(path: ?[*:0]const u8, flags: c_int) ?*anyopaque;

const DlInfo = extern struct {
    file_name: ?[*:0]const u8,
    file_base: ?*anyopaque,
    symbol_name: ?[*:0]const u8,
    symbol_address: ?*anyopaque,
};
const rtld_now: c_int = 0x2;
const rtld_noload: c_int = 0x4;
const rtld_nodelete: c_int = 0x1000;

/// Keeps this library loaded until the process ends. Once its handler is installed, unloading
/// it would leave the process's SIGBUS/SIGSEGV disposition pointing at unmapped code, and
/// Deno unloads a library when the last isolate that opened it goes away (each `deno test`
/// module is one). Asking the loader again with RTLD_NODELETE pins the already-loaded copy.
fn pin_library() error{HandlerNotInstalled}!void {
    // An executable (the unit tests) is never unloaded.
    if (builtin.output_mode != .Lib) return;
    var info: DlInfo = undefined;
    if (dladdr(@ptrCast(&on_fault), &info) == 0) return error.HandlerNotInstalled;
    const name = info.file_name orelse return error.HandlerNotInstalled;
    if (dlopen(name, rtld_now | rtld_noload | rtld_nodelete) == null) {
        return error.HandlerNotInstalled;
    }
}

/// The handlers that were installed before ours when the library first installed, indexed by
/// `slot_of`. Written once under `install_mutex` before our handler goes in; read-only after.
var original_actions: [2]Sigaction = undefined;
/// The handlers ours displaced most recently: the original ones, or a handler someone installed
/// over ours that ours was put back on top of. Written under `install_mutex` before ours goes on
/// top again.
var previous_actions: [2]Sigaction = undefined;
var installed = std.atomic.Value(bool).init(false);
var install_mutex: std.Thread.Mutex = .{};
/// Non-zero while ours is calling a previous handler. A handler installed over an older copy of
/// ours may call that copy back; such a nested call goes to the original handler, never round
/// the loop again.
var chaining_depth = std.atomic.Value(u32).init(0);

fn slot_of(signal: c_int) usize {
    return if (signal == sigbus) 0 else 1;
}

fn on_fault(signal: c_int, info: *const SigInfo, context_opaque: ?*anyopaque) callconv(.c) void {
    const context: *Context.UContext = @ptrCast(@alignCast(context_opaque.?));
    const pc = Context.pc(context);
    if (guard.landing_for(pc)) |landing| {
        // The PC is inside our copy, so the frame register holds the Frame the copy was given.
        const frame: *guard.Frame = @ptrFromInt(Context.frame(context));
        if (frame.claims(info.fault_address)) {
            frame.fault_address = info.fault_address;
            frame.fault_signal = signal;
            frame.fault_code = info.code;
            Context.set_pc(context, landing);
            return;
        }
    }
    // Outside the guarded copy: a lost page of a window opened with salvage reads as zeros from
    // now on, and the map reports the fault on its next call.
    if (signal == sigbus and salvage.try_salvage(info.fault_address)) return;
    const nested = chaining_depth.fetchAdd(1, .acq_rel) > 0;
    defer _ = chaining_depth.fetchSub(1, .acq_rel);
    const actions = if (nested) &original_actions else &previous_actions;
    chain(&actions[slot_of(signal)], signal, info, context_opaque);
}

/// Hands a fault that is not ours to `previous`, exactly as if ours were not there.
fn chain(previous: *const Sigaction, signal: c_int, info: *const SigInfo, context: ?*anyopaque) void {
    if (previous.handler == sig_dfl or previous.handler == sig_ign) {
        // Restore the default and return: the instruction faults again and the kernel delivers
        // the signal with its default action (a synchronous fault cannot be ignored).
        var default_action = std.mem.zeroes(Sigaction);
        default_action.handler = sig_dfl;
        _ = sigaction(signal, &default_action, null);
        return;
    }
    if (previous.flags & sa_siginfo != 0) {
        const handler: *const fn (c_int, *const SigInfo, ?*anyopaque) callconv(.c) void = @ptrFromInt(previous.handler);
        handler(signal, info, context);
        return;
    }
    const handler: *const fn (c_int) callconv(.c) void = @ptrFromInt(previous.handler);
    handler(signal);
}

/// The signals the kernel raises *because of the instruction a thread runs*. Blocking them would
/// not defer them: a fault with its signal blocked kills the process at once. They stay out of the
/// mask; without SA_NODEFER each of ours can still nest at most once (see SIGNALS.md).
pub const synchronous_signals = [_]c_int{ sigill, sigtrap, sigbus, sigfpe, sigsegv };
/// SIGKILL and SIGSTOP cannot be blocked; the kernel drops them from every mask.
const unblockable_signals = [_]c_int{ sigkill, sigstop };
/// Linux numbers signals 1 to 64 (_NSIG); the mask's bit n - 1 is signal n.
pub const signal_number_max: c_int = 64;

/// The mask our handler runs with: every signal except the synchronous and the unblockable ones,
/// so that no other handler's frame can be pushed on top of ours on the (small) alternate stack.
/// A signal that arrives meanwhile stays pending and is delivered as soon as ours returns, on an
/// empty alternate stack.
pub fn handler_mask() [16]u64 {
    var mask = [_]u64{0} ** 16;
    var signal: c_int = 1;
    while (signal <= signal_number_max) : (signal += 1) {
        if (is_one_of(signal, &synchronous_signals) or is_one_of(signal, &unblockable_signals)) continue;
        const bit: u6 = @intCast(signal - 1);
        mask[0] |= @as(u64, 1) << bit;
    }
    return mask;
}

comptime {
    const mask = handler_mask();
    for (synchronous_signals ++ unblockable_signals) |signal| {
        assert(mask[0] & (@as(u64, 1) << (signal - 1)) == 0);
    }
    // SIGINT, SIGUSR1, SIGUSR2, SIGPROF: the ones Deno's listeners and V8's profiler use.
    for ([_]c_int{ 2, 10, 12, 27 }) |signal| assert(mask[0] & (@as(u64, 1) << (signal - 1)) != 0);
    for (mask[1..]) |word| assert(word == 0);
}

fn is_one_of(signal: c_int, signals: []const c_int) bool {
    for (signals) |candidate| {
        if (candidate == signal) return true;
    }
    return false;
}

fn our_action() Sigaction {
    var action = std.mem.zeroes(Sigaction);
    action.handler = @intFromPtr(&on_fault);
    // No SA_NODEFER: our handler leaves only by returning, and sigreturn restores the
    // interrupted mask, so the kernel may block SIGBUS (or SIGSEGV) while it runs. A fault of the
    // handler itself then kills the process at once instead of nesting another frame.
    action.flags = sa_siginfo | sa_onstack;
    action.mask = handler_mask();
    return action;
}

/// Installs the handler for SIGBUS and SIGSEGV once per process. Later calls put it back on
/// top if another handler replaced it: Deno's signal listeners install one that forwards to ours,
/// but after `Deno.removeSignalListener` (Deno 2.9) it stops forwarding and the next guarded fault
/// would kill the process. Ours then chains to that handler for faults that are not ours.
pub fn install() error{HandlerNotInstalled}!void {
    install_mutex.lock();
    defer install_mutex.unlock();
    const action = our_action();
    if (!installed.load(.acquire)) {
        try pin_library();
        for ([_]c_int{ sigbus, sigsegv }) |signal| {
            const slot = slot_of(signal);
            if (sigaction(signal, &action, &original_actions[slot]) != 0) {
                return error.HandlerNotInstalled;
            }
            // A second copy of this library in the process has its own handler; this one must
            // never chain to itself.
            assert(original_actions[slot].handler != action.handler);
            previous_actions[slot] = original_actions[slot];
        }
        installed.store(true, .release);
        return;
    }
    for ([_]c_int{ sigbus, sigsegv }) |signal| {
        var current: Sigaction = undefined;
        if (sigaction(signal, null, &current) != 0) return error.HandlerNotInstalled;
        if (current.handler == action.handler) continue;
        // A reset to the default keeps the handler ours displaced before as the one to chain to.
        if (current.handler != sig_dfl and current.handler != sig_ign) {
            previous_actions[slot_of(signal)] = current;
        }
        if (sigaction(signal, &action, null) != 0) return error.HandlerNotInstalled;
    }
}

pub const Disposition = enum(i32) { not_installed = 0, ours = 1, chained = 2, default = 3 };

/// Who receives SIGBUS now: us, a later handler that should chain to us, or the default.
pub fn disposition() Disposition {
    if (!installed.load(.acquire)) return .not_installed;
    var current: Sigaction = undefined;
    if (sigaction(sigbus, null, &current) != 0) return .not_installed;
    if (current.handler == @intFromPtr(&on_fault)) return .ours;
    if (current.handler == sig_dfl or current.handler == sig_ign) return .default;
    return .chained;
}

const Status = @import("status.zig").Status;

/// SIGBUS is the kernel's word for "this page cannot be read or written": truncation or an I/O
/// error. SIGSEGV inside a guarded copy means the page is not accessible at all.
pub fn status_of_fault(frame: *const guard.Frame) Status {
    return if (frame.fault_signal == sigbus) .io else .bad_address;
}

/// Tests only: forget the installation so a forked child can install afresh over a previous
/// handler of its choosing.
pub fn forget_for_test() void {
    if (!builtin.is_test) @compileError("forget_for_test is for tests");
    installed.store(false, .release);
}
