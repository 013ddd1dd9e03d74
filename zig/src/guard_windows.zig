//! Windows x86_64: the vectored exception handler that turns a fault inside the guarded copy
//! into a return.
//!
//! Zig has no `__try`, so the handler is registered once per process with
//! `AddVectoredExceptionHandler(1, ...)`: vectored handlers run before any frame-based (SEH)
//! handler, and `1` puts ours at the head of the list. A fault that is not ours returns
//! EXCEPTION_CONTINUE_SEARCH, which hands it on unchanged to the next vectored handler, then to
//! the frame-based handlers, exactly as if we were not there.
//!
//! Windows reports a page that cannot be read in from the file as EXCEPTION_IN_PAGE_ERROR with
//! the NTSTATUS cause in ExceptionInformation[2]. Wine reports the same fault (a SIGBUS on the
//! host) as EXCEPTION_ACCESS_VIOLATION, so both codes are claimed inside the copy.
//! The handler allocates nothing, takes no lock and touches no thread-local storage.
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;
const windows = std.os.windows;
const guard = @import("guard.zig");
const Status = @import("status.zig").Status;

comptime {
    // The Frame travels in r9, which only the x86_64 copy keeps it in.
    assert(builtin.cpu.arch == .x86_64);
}

pub const exception_access_violation: u32 = 0xC000_0005;
pub const exception_in_page_error: u32 = 0xC000_0006;
/// The NTSTATUS cause of an in-page error when the volume is full (a write to a sparse or
/// compressed file, or to a file extended without reserving its clusters).
pub const status_disk_full: u32 = 0xC000_007F;

const exception_continue_execution: c_long = -1;
const exception_continue_search: c_long = 0;
/// ExceptionInformation of an access violation or in-page error: [0] read/write/execute,
/// [1] the faulting address, [2] (in-page errors only) the NTSTATUS cause.
const information_address = 1;
const information_cause = 2;

const get_module_handle_ex_flag_pin: windows.DWORD = 0x1;
const get_module_handle_ex_flag_from_address: windows.DWORD = 0x4;

comptime {
    // The fields the handler reads and writes, at their Win64 ABI offsets (winnt.h).
    assert(@offsetOf(windows.CONTEXT, "R9") == 0xC0);
    assert(@offsetOf(windows.CONTEXT, "Rip") == 0xF8);
    assert(@sizeOf(windows.CONTEXT) == 0x4D0);
    assert(@offsetOf(windows.EXCEPTION_RECORD, "ExceptionCode") == 0);
    assert(@offsetOf(windows.EXCEPTION_RECORD, "NumberParameters") == 24);
    assert(@offsetOf(windows.EXCEPTION_RECORD, "ExceptionInformation") == 32);
    assert(@offsetOf(windows.EXCEPTION_POINTERS, "ContextRecord") == 8);
}

const VectoredHandler = *const fn (pointers: *windows.EXCEPTION_POINTERS) callconv(.winapi) c_long;

extern "kernel32" fn AddVectoredExceptionHandler(
    first: windows.ULONG,
    handler: VectoredHandler,
) callconv(.winapi) ?*anyopaque;
extern "kernel32" fn GetModuleHandleExW(
    flags: windows.DWORD,
    module_name: ?*const anyopaque,
    module: *?windows.HMODULE,
) callconv(.winapi) windows.BOOL;

/// The cookie AddVectoredExceptionHandler returned; written once under `install_mutex`.
var registration: ?*anyopaque = null;
var installed = std.atomic.Value(bool).init(false);
var install_mutex: std.Thread.Mutex = .{};

fn on_exception(pointers: *windows.EXCEPTION_POINTERS) callconv(.winapi) c_long {
    const record = pointers.ExceptionRecord;
    const context = pointers.ContextRecord;
    const exception_code = record.ExceptionCode;
    if (exception_code != exception_in_page_error and exception_code != exception_access_violation) {
        return exception_continue_search;
    }
    // Both codes carry the address; anything shorter is not a memory fault we can judge.
    if (record.NumberParameters <= information_address) return exception_continue_search;
    const pc: usize = @intCast(context.Rip);
    const landing = guard.landing_for(pc) orelse return exception_continue_search;

    // The PC is inside our copy, so r9 holds the Frame the copy was given.
    const frame: *guard.Frame = @ptrFromInt(@as(usize, @intCast(context.R9)));
    const address = record.ExceptionInformation[information_address];
    if (!frame.claims(address)) return exception_continue_search;

    // Only an in-page error carries a cause; an access violation's third slot is unset.
    const cause: usize = if (record.NumberParameters > information_cause)
        record.ExceptionInformation[information_cause]
    else
        0;
    frame.fault_address = address;
    frame.fault_signal = @bitCast(exception_code);
    frame.fault_code = @bitCast(@as(u32, @truncate(cause))); // An NTSTATUS is 32 bits.
    context.Rip = landing;
    return exception_continue_execution;
}

/// Registers the vectored handler once per process; later calls find it registered. A vectored
/// handler cannot be displaced by one registered later (the list only grows, and a later handler
/// at the head that does not know the fault passes it on), so nothing needs re-checking.
pub fn install() error{HandlerNotInstalled}!void {
    install_mutex.lock();
    defer install_mutex.unlock();
    if (installed.load(.acquire)) {
        assert(registration != null);
        return;
    }
    // The registration outlives any FreeLibrary of this DLL (Deno's `dlopen(...).close()`):
    // pin the module so that the handler's code can never be unmapped while Windows calls it.
    var module: ?windows.HMODULE = null;
    const pinned = GetModuleHandleExW(
        get_module_handle_ex_flag_pin | get_module_handle_ex_flag_from_address,
        @ptrCast(&on_exception),
        &module,
    );
    if (pinned == 0) return error.HandlerNotInstalled;
    assert(module != null);
    registration = AddVectoredExceptionHandler(1, &on_exception) orelse return error.HandlerNotInstalled;
    installed.store(true, .release);
}

pub const Disposition = enum(i32) { not_installed = 0, ours = 1, chained = 2, default = 3 };

/// Once registered, the vectored handler sees every exception before the frame-based handlers:
/// it is always ours (see `install`).
pub fn disposition() Disposition {
    if (!installed.load(.acquire)) return .not_installed;
    return .ours;
}

/// An in-page error is the kernel's word for "this page could not be read from or written to
/// the file": an I/O error, a lost network file, or a full disk (told apart by its NTSTATUS).
/// An access violation inside a guarded copy means the page is not accessible at all; Wine
/// also reports a truncated file this way.
pub fn status_of_fault(frame: *const guard.Frame) Status {
    assert(frame.fault_signal != 0);
    const exception_code: u32 = @bitCast(frame.fault_signal);
    if (exception_code == exception_in_page_error) {
        const cause: u32 = @bitCast(frame.fault_code);
        return if (cause == status_disk_full) .no_space else .io;
    }
    assert(exception_code == exception_access_violation);
    return .bad_address;
}
