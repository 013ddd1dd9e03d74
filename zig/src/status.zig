//! The stable status codes of the C ABI and the detail record that accompanies a failure.
//!
//! The numbers are part of the ABI: a code keeps its number and meaning forever, new codes are
//! appended. ffi/status.ts mirrors this table; tests/abi_test.ts checks that both agree.
const std = @import("std");
const assert = std.debug.assert;

pub const Status = enum(i32) {
    ok = 0,
    /// A null pointer, a non-integer or negative number, an unknown mode or advice.
    invalid_argument = 1,
    /// `position + length` lies outside the mapped window.
    out_of_range = 2,
    /// `offset + length` does not fit the file offset type or the address space.
    overflow = 3,
    not_found = 4,
    permission_denied = 5,
    is_directory = 6,
    /// The window would be empty (an empty file, or an offset at the end of the file).
    empty_window = 7,
    /// The window reaches past the end of the file in a mode that does not size the file.
    window_past_end = 8,
    /// No space left on the device (ENOSPC, ERROR_DISK_FULL).
    no_space = 9,
    /// An I/O error: a fault while touching mapped pages (SIGBUS, EXCEPTION_IN_PAGE_ERROR),
    /// or EIO from msync, fsync or madvise.
    io = 10,
    /// An access violation inside a guarded copy (SIGSEGV on a mapped page).
    bad_address = 11,
    /// A write to a map opened read-only.
    read_only = 12,
    no_memory = 13,
    /// Too many open maps or file descriptors.
    too_many_open = 14,
    /// The handle is not (or no longer) an open map.
    bad_handle = 15,
    /// The map is in use by another thread and cannot be closed now.
    busy = 16,
    not_supported = 17,
    /// The path names something that is neither a regular file nor a directory.
    not_regular_file = 18,
    /// The fault handler could not be installed.
    handler_not_installed = 19,
    /// A MapPool worker process exited while a request was outstanding.
    worker_gone = 20,
    /// A MapPool worker did not answer within the caller's time limit.
    timed_out = 21,
    /// A MapPool call stopped waiting on the calling thread within its budget; the request is
    /// still in flight and gm_pool_resume finishes it. Internal to the pool: never reaches users.
    pending = 35,
    unexpected = 99,
};

/// What went wrong, written by the library when a call returns a status other than `ok`.
/// Fields that do not apply are zero.
pub const Detail = extern struct {
    /// Bytes copied, flushed or prefaulted before the failure.
    bytes_done: u64,
    /// Offset in the window of the address the fault was reported at (for prefault: the first
    /// failing offset).
    fault_window_offset: u64,
    /// errno (POSIX), GetLastError or NTSTATUS (Windows).
    os_error: i32,
    /// SIGBUS or SIGSEGV (POSIX); the exception code (Windows).
    signal: i32,
    /// si_code (POSIX); the NTSTATUS of an in-page error (Windows; 0 for an access violation).
    signal_code: i32,
    reserved: i32,

    pub const zero: Detail = .{
        .bytes_done = 0,
        .fault_window_offset = 0,
        .os_error = 0,
        .signal = 0,
        .signal_code = 0,
        .reserved = 0,
    };
};

comptime {
    assert(@sizeOf(Detail) == 32);
    assert(@offsetOf(Detail, "fault_window_offset") == 8);
    assert(@offsetOf(Detail, "os_error") == 16);
    assert(@offsetOf(Detail, "signal_code") == 24);
}

/// Written by gm_open on success.
pub const OpenResult = extern struct {
    handle: u32,
    reserved: u32,
    /// Length of the window in bytes.
    length_bytes: u64,
    /// Size of the file after opening (after sizing, for mode w+).
    file_size_bytes: u64,
    /// errno / GetLastError of the failing system call when gm_open fails.
    os_error: i32,
    reserved2: i32,

    pub const zero: OpenResult = .{
        .handle = 0,
        .reserved = 0,
        .length_bytes = 0,
        .file_size_bytes = 0,
        .os_error = 0,
        .reserved2 = 0,
    };
};

comptime {
    assert(@sizeOf(OpenResult) == 32);
    assert(@offsetOf(OpenResult, "length_bytes") == 8);
    assert(@offsetOf(OpenResult, "file_size_bytes") == 16);
    assert(@offsetOf(OpenResult, "os_error") == 24);
}

pub const Mode = enum(u32) {
    /// "r": read-only, shared.
    read = 0,
    /// "r+": read-write, shared; the file must already cover the window.
    read_write = 1,
    /// "w+": create or truncate, then size the file to offset + length.
    create = 2,
    /// "c": copy-on-write, private; writes never reach the file.
    copy_on_write = 3,

    pub fn writable(mode: Mode) bool {
        return mode != .read;
    }
};

pub const Advice = enum(u32) {
    normal = 0,
    sequential = 1,
    random = 2,
    will_need = 3,
    dont_need = 4,
};
