//! Windows x86_64: open a file, size it, map a window with a 64-bit offset, flush, advise.
//! kernel32's declarations are in windows_zig.
//!
//! A mapping is two kernel objects: the section (CreateFileMappingW), sized to the end of the
//! window, and a view of it (MapViewOfFile) that starts at the window's offset rounded down to
//! the allocation granularity (64 KiB). Both APIs take 64-bit sizes and offsets as two DWORDs;
//! the high DWORD is what makes windows beyond 4 GiB work.
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;
const windows = std.os.windows;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Mode = status_zig.Mode;
const OpenRequest = status_zig.OpenRequest;
const Advice = status_zig.Advice;
const FileKind = status_zig.FileKind;
const window_zig = @import("window.zig");
const api = @import("windows_api.zig");
const DWORD = api.DWORD;

comptime {
    assert(builtin.os.tag == .windows);
    assert(@sizeOf(usize) == 8); // SIZE_T must hold any window that window.compute accepts.
}

/// Paths arrive NUL-terminated in UTF-8 from map_calls.zig, shorter than its 4096-byte buffer
/// (c_path.length_max).
/// UTF-16 never needs more code units than UTF-8 needs bytes, so this many units (plus the NUL)
/// always suffice.
const path_bytes_max = 4096;

/// FlushViewOfFile fails with ERROR_LOCK_VIOLATION while the memory manager is writing the same
/// pages back; the documented remedy is to retry (.NET's MemoryMappedView.Flush does). Bounded,
/// with a doubling pause: 1 + 2 + ... + 128 ms, under half a second in all.
const flush_attempts_max = 8;

pub const Handle = windows.HANDLE;

/// Everything needed to use and release one mapped window.
pub const Mapping = window_zig.Mapping(Handle, Handle);

pub fn last_error() i32 {
    return @bitCast(api.GetLastError());
}

/// Maps a Win32 error code (GetLastError) to the stable status code.
pub fn status_from_errno(code: i32) Status {
    const win32_error: u32 = @bitCast(code);
    return switch (win32_error) {
        // FILE_NOT_FOUND, PATH_NOT_FOUND, INVALID_DRIVE, BAD_NETPATH, BAD_NET_NAME
        2, 3, 15, 53, 67 => .not_found,
        // ACCESS_DENIED, WRITE_PROTECT, SHARING_VIOLATION, LOCK_VIOLATION, and USER_MAPPED_FILE
        // (mode w+ cannot truncate a file that another process has mapped).
        5, 19, 32, 33, 1224 => .permission_denied,
        267 => .is_directory, // DIRECTORY
        39, 112, 1295 => .no_space, // HANDLE_DISK_FULL, DISK_FULL, DISK_QUOTA_EXCEEDED
        // NOT_READY, WRITE_FAULT, READ_FAULT, CRC, FILE_INVALID (the volume changed under an open
        // file), IO_DEVICE, FILE_CORRUPT, DISK_CORRUPT, DEVICE_HARDWARE_ERROR
        21, 29, 30, 23, 1006, 1117, 1392, 1393, 483 => .io,
        // NOT_ENOUGH_MEMORY, OUTOFMEMORY, NO_SYSTEM_RESOURCES, COMMITMENT_LIMIT
        8, 14, 1450, 1455 => .no_memory,
        4 => .too_many_open, // TOO_MANY_OPEN_FILES
        1, 50 => .not_supported, // INVALID_FUNCTION, NOT_SUPPORTED
        998 => .bad_address, // NOACCESS
        // INVALID_PARAMETER, INVALID_NAME, BAD_PATHNAME, MAPPED_ALIGNMENT,
        // NO_UNICODE_TRANSLATION
        87, 123, 161, 1132, 1113 => .invalid_argument,
        206 => .name_too_long, // FILENAME_EXCED_RANGE
        223 => .file_too_large, // FILE_TOO_LARGE
        1921 => .symlink_loop, // CANT_RESOLVE_FILENAME: too many reparse points
        // PIPE_BUSY, BAD_PIPE: a named pipe
        231, 230 => .not_regular_file,
        else => .unexpected,
    };
}

pub fn page_size() u64 {
    var info: windows.SYSTEM_INFO = undefined;
    api.GetSystemInfo(&info);
    const bytes: u64 = info.dwPageSize;
    assert(bytes > 0);
    assert(std.math.isPowerOfTwo(bytes));
    return bytes;
}

/// The granularity a view's file offset must be a multiple of: the allocation granularity
/// (64 KiB on every Windows so far), not the page size.
pub fn granularity() u64 {
    var info: windows.SYSTEM_INFO = undefined;
    api.GetSystemInfo(&info);
    const bytes: u64 = info.dwAllocationGranularity;
    assert(std.math.isPowerOfTwo(bytes));
    assert(bytes >= info.dwPageSize);
    return bytes;
}

pub const OpenError = status_zig.OpenError;

fn fail_last() OpenError {
    const code = last_error();
    return .{ .status = status_from_errno(code), .os_error = code };
}

fn dword_high(value: u64) DWORD {
    return @truncate(value >> 32);
}

fn dword_low(value: u64) DWORD {
    return @truncate(value);
}

pub fn file_size(fd: Handle) error{Failed}!u64 {
    var size: i64 = 0;
    if (api.GetFileSizeEx(fd, &size) == 0) return error.Failed;
    assert(size >= 0);
    return @intCast(size);
}

/// Converts a NUL-terminated UTF-8 path to the NUL-terminated UTF-16 that CreateFileW takes.
/// Null for an empty, over-long or malformed path.
fn path_to_utf16(path: [*:0]const u8, buffer: *[path_bytes_max + 1]u16) ?[:0]const u16 {
    var length_bytes: usize = 0;
    while (path[length_bytes] != 0) : (length_bytes += 1) {
        if (length_bytes == path_bytes_max) return null;
    }
    if (length_bytes == 0) return null;
    const units = std.unicode.utf8ToUtf16Le(buffer[0..path_bytes_max], path[0..length_bytes]) catch {
        return null;
    };
    assert(units > 0);
    assert(units <= length_bytes);
    buffer[units] = 0;
    return buffer[0..units :0];
}

/// Opens `path` (UTF-8) and maps `[offset, offset + length)`; `length_requested == null` means
/// "to the end of the file". On failure nothing is left open or mapped.
pub fn map_open(path: [*:0]const u8, request: OpenRequest, mapping: *Mapping, file_size_out: *u64) ?OpenError {
    const mode = request.mode;
    if (request.offset > window_zig.file_offset_max) return .{ .status = .overflow, .os_error = 0 };
    var path_buffer: [path_bytes_max + 1]u16 = undefined;
    const path_utf16 = path_to_utf16(path, &path_buffer) orelse {
        return .{ .status = .invalid_argument, .os_error = @bitCast(api.error_no_unicode_translation) };
    };
    const access: DWORD = switch (mode) {
        // PAGE_WRITECOPY needs only read access: private changes never reach the file.
        .read, .copy_on_write => api.generic_read,
        .read_write, .create => api.generic_read | api.generic_write,
    };
    // "w+" opens without truncating: size_for_create checks the space first.
    const creation: DWORD = if (mode == .create) api.open_always else api.open_existing;
    // Share everything, as POSIX does: other readers and writers, and deleting or renaming the
    // file while it is mapped. No security attributes: the handle is not inherited by children.
    const fd = api.CreateFileW(
        path_utf16.ptr,
        access,
        api.file_share_read | api.file_share_write | api.file_share_delete,
        null,
        creation,
        api.file_attribute_normal,
        null,
    );
    if (fd == windows.INVALID_HANDLE_VALUE) return fail_open(path_utf16);
    const created = mode == .create and api.GetLastError() != api.error_already_exists;
    if (map_file(fd, path_utf16, request, mapping, file_size_out)) |failure| {
        close_handle(fd);
        // A failed "w+" removes the file it created (the handle shares delete, so no other
        // opener is refused meanwhile).
        if (created) _ = api.DeleteFileW(path_utf16.ptr);
        return failure;
    }
    assert(mapping.fd == fd);
    return null;
}

/// CreateFileW refuses a directory (it would need FILE_FLAG_BACKUP_SEMANTICS) with
/// ERROR_ACCESS_DENIED, which alone would read as a permission problem: look at the path.
fn fail_open(path_utf16: [:0]const u16) OpenError {
    const failure = fail_last();
    if (failure.os_error == api.error_access_denied) {
        const attributes = api.GetFileAttributesW(path_utf16.ptr);
        if (attributes != api.invalid_file_attributes and attributes & api.file_attribute_directory != 0) {
            return .{ .status = .is_directory, .os_error = failure.os_error };
        }
    }
    return failure;
}

fn map_file(fd: Handle, path_utf16: [:0]const u16, request: OpenRequest, mapping: *Mapping, file_size_out: *u64) ?OpenError {
    const mode = request.mode;
    const offset = request.offset;
    const length_requested = request.length_requested;
    // Devices, pipes and consoles open too; only a disk file can back a section. The kind is
    // reported with Linux's numbers (status.zig FileKind).
    const file_type = api.GetFileType(fd);
    if (file_type != api.file_type_disk) {
        const kind: FileKind = if (file_type == api.file_type_char) .character_device else if (file_type == api.file_type_pipe) .fifo else .unknown;
        return .{ .status = .not_regular_file, .os_error = 0, .file_kind = @intFromEnum(kind) };
    }
    var size: i64 = 0;
    if (api.GetFileSizeEx(fd, &size) == 0) return fail_last();
    assert(size >= 0);
    const size_bytes: u64 = @intCast(size);

    var length_bytes: u64 = undefined;
    if (mode == .create) {
        length_bytes = length_requested orelse return .{ .status = .invalid_argument, .os_error = 0 };
        if (size_for_create(fd, path_utf16, offset, length_bytes)) |failure| return failure;
        file_size_out.* = offset + length_bytes;
    } else {
        // `past_end` is not supported: a read-only section cannot reach past the file.
        if (window_zig.check_existing(size_bytes, offset, length_requested)) |status| return .{ .status = status, .os_error = 0 };
        length_bytes = length_requested orelse size_bytes - offset;
        file_size_out.* = size_bytes;
    }
    const window = window_zig.compute(offset, length_bytes, granularity()) catch |err| {
        return .{ .status = if (err == error.Overflow) .overflow else .invalid_argument, .os_error = 0 };
    };
    const failure = map_view(fd, mode, window, mapping) orelse return null;
    if (mode == .create) give_back(fd);
    return failure;
}

/// Maps `window` of the open file `fd`: a section that ends where the window ends and a view from
/// the window's offset rounded down to the granularity.
fn map_view(fd: Handle, mode: Mode, window: window_zig.Window, mapping: *Mapping) ?OpenError {
    const offset = window.map_offset + window.delta_bytes;
    const length_bytes = window.length_bytes;
    const protection: DWORD, const view_access: DWORD = switch (mode) {
        .read => .{ api.page_readonly, api.file_map_read },
        .read_write, .create => .{ api.page_readwrite, api.file_map_write },
        .copy_on_write => .{ api.page_writecopy, api.file_map_copy },
    };
    // The section ends where the window ends: never past the file, which a read-only section
    // could not grow and a writable one would silently grow.
    const section_bytes = window.map_offset + window.map_length_bytes;
    assert(section_bytes == offset + length_bytes);
    const section = api.CreateFileMappingW(fd, null, protection, dword_high(section_bytes), dword_low(section_bytes), null) orelse
        return fail_last();
    const base = api.MapViewOfFile(
        section,
        view_access,
        dword_high(window.map_offset),
        dword_low(window.map_offset),
        @intCast(window.map_length_bytes),
    ) orelse {
        const failure = fail_last();
        close_handle(section);
        return failure;
    };
    assert(@intFromPtr(base) % granularity() == 0);
    mapping.* = Mapping.init(fd, section, @intFromPtr(base), window, mode);
    return null;
}

/// Mode w+: checks the free space before anything changes, then truncates the file and sizes it
/// to `offset + length`. On NTFS extending a (non-sparse) file allocates its clusters from 0,
/// so a full disk is ERROR_DISK_FULL now rather than an in-page error on a later write through
/// the view. The old content, as on Linux (os_linux.size_for_create): when the space check
/// fails the file is not touched; when sizing fails after it, the file is left at 0 bytes,
/// which gives back every cluster the attempt took. There is no cheap probe for the largest
/// file on Windows: ERROR_FILE_TOO_LARGE comes from the sizing, after the truncation.
fn size_for_create(fd: Handle, path_utf16: [:0]const u16, offset: u64, length_bytes: u64) ?OpenError {
    if (length_bytes == 0) return .{ .status = .invalid_argument, .os_error = 0 };
    if (length_bytes > window_zig.file_offset_max - offset) return .{ .status = .overflow, .os_error = 0 };
    const end = offset + length_bytes;
    _ = path_utf16;
    if (check_space(fd, end)) |failure| return failure;
    // The point of no return: the old content goes.
    if (!set_end(fd, 0)) return fail_last();
    if (set_end(fd, end)) return null;
    const failure = fail_last();
    give_back(fd);
    // limit_bytes tells the caller that the file was truncated: the old content is gone.
    return .{ .status = failure.status, .os_error = failure.os_error, .limit_bytes = length_bytes };
}

fn set_end(fd: Handle, end: u64) bool {
    assert(end <= window_zig.file_offset_max);
    if (api.SetFilePointerEx(fd, @intCast(end), null, api.file_begin) == 0) return false;
    return api.SetEndOfFile(fd) != 0;
}

/// After a failed sizing: a file of 0 bytes holds no clusters.
fn give_back(fd: Handle) void {
    _ = set_end(fd, 0);
}

/// `FILE_FS_FULL_SIZE_INFORMATION`.
const FsFullSizeInformation = extern struct {
    total_units: i64,
    caller_available_units: i64,
    actual_available_units: i64,
    sectors_per_unit: u32,
    bytes_per_sector: u32,
};

/// Refuses a file of `end` bytes when the space the caller may use (quotas included), plus the
/// clusters the old file gives back, cannot hold it. Asked of the volume that holds the open
/// file itself, so any form of path (relative, drive-relative, \\?\) is checked. An estimate
/// that errs toward trying: when a number cannot be had, the sizing decides.
fn check_space(fd: Handle, end: u64) ?OpenError {
    var old: api.FileStandardInfo = undefined;
    if (api.GetFileInformationByHandleEx(fd, api.file_standard_info_class, &old, @sizeOf(api.FileStandardInfo)) == 0) return null;
    var io: windows.IO_STATUS_BLOCK = undefined;
    var info: FsFullSizeInformation = undefined;
    const rc = windows.ntdll.NtQueryVolumeInformationFile(fd, &io, &info, @sizeOf(FsFullSizeInformation), .FileFsFullSizeInformation);
    if (rc != .SUCCESS or info.caller_available_units < 0) return null;
    const unit_bytes = @as(u64, info.sectors_per_unit) *| @as(u64, info.bytes_per_sector);
    const available_bytes = @as(u64, @intCast(info.caller_available_units)) *| unit_bytes;
    const freed_bytes: u64 = @intCast(@max(old.allocation_size_bytes, 0));
    const can_have = available_bytes +| freed_bytes;
    if (end <= can_have) return null;
    return .{ .status = .no_space, .os_error = 0, .limit_bytes = end, .available_bytes = can_have };
}

fn close_handle(handle: Handle) void {
    const closed = api.CloseHandle(handle);
    assert(closed != 0); // Only fails for a handle we do not own.
}

pub fn unmap(mapping: *const Mapping) void {
    const unmapped = api.UnmapViewOfFile(@ptrFromInt(mapping.base));
    assert(unmapped != 0); // Only fails for an address that is not a view.
    close_handle(mapping.section);
    close_handle(mapping.fd);
}

/// Closes the file and the section but leaves the view mapped, for when a zero-copy view may
/// still point at it: Windows cannot swap a view for anonymous memory in one step, and a gap
/// between an unmap and a new allocation could be taken by another thread. The view keeps the
/// section alive until the process ends.
pub fn release_keep_range(mapping: *const Mapping) void {
    close_handle(mapping.section);
    close_handle(mapping.fd);
}

/// FlushViewOfFile starts the write-back of the range's dirty pages but does not wait for the
/// device; FlushFileBuffers then does (the pair is Windows' msync(MS_SYNC)).
pub fn flush(mapping: *const Mapping, position: u64, length_bytes: u64, os_error: *i32) Status {
    if (length_bytes == 0) return .ok;
    const range = mapping.page_range(position, length_bytes, @intCast(page_size()));
    // A read-only view has nothing dirty (and its read-only handle could not be flushed); a
    // copy-on-write view's changes never reach the file.
    if (mapping.mode == .read or mapping.mode == .copy_on_write) return .ok;
    const start: *const anyopaque = @ptrFromInt(range.start);
    for (0..flush_attempts_max) |attempt| {
        if (api.FlushViewOfFile(start, range.length_bytes) != 0) break;
        const code = api.GetLastError();
        if (code != api.error_lock_violation or attempt + 1 == flush_attempts_max) {
            os_error.* = @bitCast(code);
            return status_from_errno(os_error.*);
        }
        api.Sleep(@as(DWORD, 1) << @intCast(attempt));
    } else unreachable;
    if (api.FlushFileBuffers(mapping.fd) != 0) return .ok;
    os_error.* = last_error();
    return status_from_errno(os_error.*);
}

/// Only `will_need` has a Windows counterpart (PrefetchVirtualMemory, Windows 8+). The others
/// are hints the memory manager has no way to take for a file view, so they succeed unchanged.
pub fn advise(mapping: *const Mapping, position: u64, length_bytes: u64, advice: Advice, os_error: *i32) Status {
    if (length_bytes == 0) return .ok;
    const range = mapping.page_range(position, length_bytes, @intCast(page_size()));
    switch (advice) {
        .normal, .sequential, .random, .dont_need => return .ok,
        .will_need => {},
    }
    const entries = [1]api.MemoryRangeEntry{.{ .address = range.start, .length_bytes = range.length_bytes }};
    if (api.PrefetchVirtualMemory(api.GetCurrentProcess(), entries.len, &entries, 0) != 0) return .ok;
    os_error.* = last_error();
    return status_from_errno(os_error.*);
}

pub const Populate = enum { ok, unsupported, failed };

/// Windows has no call that faults a range in and reports the failing page (PrefetchVirtualMemory
/// is asynchronous and silent), so map_calls.zig touches the pages through the guard instead.
pub fn populate(mapping: *const Mapping, position: u64, length_bytes: u64, write: bool, os_error: *i32) Populate {
    assert(window_zig.range_inside(position, length_bytes, mapping.length_bytes));
    assert(!write or mapping.mode.writable());
    os_error.* = 0;
    return .unsupported;
}
