//! The stable status codes of the C ABI and the detail record that accompanies a failure.
//!
//! The numbers are part of the ABI: a code keeps its number and meaning forever, new codes are
//! appended. ffi/status.ts mirrors this table; tests/abi_test.ts checks that both agree.
const std = @import("std");
const assert = std.debug.assert;

/// Bumped whenever a signature or a record layout of the C ABI changes; ffi/library.ts refuses a
/// library of another version before any other call.
pub const abi_version: u32 = 6;

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
    /// The path, or one of its components, is too long (ENAMETOOLONG; a path of 4,096 bytes or
    /// more is refused before any system call).
    name_too_long = 22,
    /// "w+": the window would end past the largest file the file system allows (EFBIG).
    /// OpenResult.length_bytes holds that size when it could be found, else 0.
    file_too_large = 23,
    /// "w+": the window would end past the process's file-size limit (RLIMIT_FSIZE), where
    /// growing the file raises SIGXFSZ. OpenResult.length_bytes holds the limit.
    file_size_limit = 24,
    /// Too many levels of symbolic links, or a loop (ELOOP).
    symlink_loop = 25,
    /// The file is a running program or an active swap file and cannot be written (ETXTBSY).
    file_busy = 26,
    /// A component of the path is not a directory (ENOTDIR).
    not_directory = 27,
    /// Every slot of the process's map table is in use (handles.slot_count_max open maps).
    map_limit = 30,
    /// A MapPool call stopped waiting on the calling thread within its budget; the request is
    /// still in flight and gm_pool_resume finishes it. Internal to the pool: never reaches users.
    pending = 35,
    unexpected = 99,
};

/// What went wrong, written by the library when a call returns a status other than `ok`.
/// Fields that do not apply are zero.
/// What gm_salvage_faults writes: the number of faulted pages salvaged, and the window offset of
/// the first.
pub const SalvageFaults = [2]u64;

/// What gm_file_size writes: the file's size in bytes.
pub const FileSizeBytes = u64;

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

/// Written by gm_open, on success and on failure (the fields say what each holds then).
pub const OpenResult = extern struct {
    /// The handle: an integer below 2^53, as the f64 every call takes (handles.zig).
    handle: f64,
    /// Length of the window in bytes. On `file_too_large` and `file_size_limit`: the limit in
    /// bytes (0 when unknown). On `no_space` found before the file was touched: the bytes the
    /// window needs.
    length_bytes: u64,
    /// Size of the file after opening (after sizing, for mode w+). On `no_space` found before
    /// the file was touched: the bytes the file system could give (its free space plus the old
    /// file's blocks).
    file_size_bytes: u64,
    /// errno / GetLastError of the failing system call when gm_open fails; 0 when a check
    /// refused the open before any call failed.
    os_error: i32,
    /// On `not_regular_file` (and `is_directory`): what the path names, S_IFMT >> 12 as on
    /// Linux (1 FIFO, 2 character device, 4 directory, 6 block device, 10 symbolic link,
    /// 12 socket; 0 unknown).
    file_kind: u32,

    pub const zero: OpenResult = .{
        .handle = 0,
        .length_bytes = 0,
        .file_size_bytes = 0,
        .os_error = 0,
        .file_kind = 0,
    };
};

comptime {
    assert(@sizeOf(OpenResult) == 32);
    assert(@offsetOf(OpenResult, "handle") == 0);
    assert(@offsetOf(OpenResult, "length_bytes") == 8);
    assert(@offsetOf(OpenResult, "file_size_bytes") == 16);
    assert(@offsetOf(OpenResult, "os_error") == 24);
    assert(@offsetOf(OpenResult, "file_kind") == 28);
}

/// Why an open failed (both platforms), with what map_calls.zig reports in the OpenResult record.
pub const OpenError = struct {
    status: Status,
    /// errno / GetLastError of the failing call; 0 when a check refused before any call failed.
    os_error: i32,
    /// `not_regular_file`: what the path names (OpenResult.file_kind).
    file_kind: u32 = 0,
    /// `file_too_large` and `file_size_limit`: the limit in bytes (0 when unknown);
    /// `no_space` from the space check: the bytes the window needs.
    limit_bytes: u64 = 0,
    /// `no_space` from the space check: the bytes the file system can give it.
    available_bytes: u64 = 0,
};

/// What gm_open asks of the platform's map_open (os_linux.zig, os_windows.zig).
pub const OpenRequest = struct {
    mode: Mode,
    /// The window's first byte in the file.
    offset: u64,
    /// The window's length; null: to the end of the file.
    length_requested: ?u64,
    /// Map the window even where it reaches past the end of the file (OpenFlags.past_end).
    past_end: bool,
};

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

/// gm_open's `flags` argument, bit by bit. Unknown bits are refused (`invalid_argument`).
pub const OpenFlags = packed struct(u32) {
    /// `length` is given (otherwise the window runs to the end of the file).
    length_given: bool = false,
    /// Map the window even where it reaches past the end of the file (modes r, r+ and c). For
    /// re-opening a window that existed before the file shrank: pages past the end fault, and
    /// the guarded copies report it.
    past_end: bool = false,
    /// Salvage faults outside the guarded copy (Linux): a lost page of the window reads as zeros
    /// and the fault is reported by the map's next call. See salvage.zig.
    salvage: bool = false,
    /// `gm_write` writes through the file descriptor (pwrite) instead of the mapping (Linux;
    /// modes r+ and w+; not with salvage). A write through a mapping dirties whole page-cache
    /// folios (1 MiB measured on ext4), so a flush after a 4 KiB write writes back 1 MiB; pwrite
    /// dirties only the blocks written, and an error the file system gives at write time
    /// (ENOSPC; EIO on write-through file systems such as FUSE) comes back from the call itself.
    writes_to_file: bool = false,
    /// Must be zero.
    unknown: u28 = 0,
};

comptime {
    assert(@bitOffsetOf(OpenFlags, "length_given") == 0);
    assert(@bitOffsetOf(OpenFlags, "past_end") == 1);
    assert(@bitOffsetOf(OpenFlags, "salvage") == 2);
    assert(@bitOffsetOf(OpenFlags, "writes_to_file") == 3);
}

/// The kind of file a path names, in OpenResult.file_kind: S_IFMT >> 12 as on Linux; Windows
/// reports the same numbers for the kinds it can tell apart.
pub const FileKind = enum(u32) {
    unknown = 0,
    fifo = 1,
    character_device = 2,
    directory = 4,
    block_device = 6,
    regular = 8,
    symlink = 10,
    socket = 12,
};

pub const Advice = enum(u32) {
    normal = 0,
    sequential = 1,
    random = 2,
    will_need = 3,
    dont_need = 4,
};
