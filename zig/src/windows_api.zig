//! The kernel32 entry points, constants and records that os_windows.zig uses, declared here
//! with explicit types rather than through std's moving wrappers; only std.os.windows' plain type
//! names (HANDLE, DWORD, ...) are borrowed.
const std = @import("std");
const assert = std.debug.assert;
const windows = std.os.windows;

pub const DWORD = windows.DWORD;
pub const BOOL = windows.BOOL;

pub extern "kernel32" fn CreateFileW(
    path: [*:0]const u16,
    access: DWORD,
    share: DWORD,
    security: ?*anyopaque,
    creation: DWORD,
    flags_and_attributes: DWORD,
    template: ?windows.HANDLE,
) callconv(.winapi) windows.HANDLE;
pub extern "kernel32" fn CloseHandle(handle: windows.HANDLE) callconv(.winapi) BOOL;
pub extern "kernel32" fn GetFileType(handle: windows.HANDLE) callconv(.winapi) DWORD;
pub extern "kernel32" fn GetFileAttributesW(path: [*:0]const u16) callconv(.winapi) DWORD;
pub extern "kernel32" fn GetFileSizeEx(handle: windows.HANDLE, size: *i64) callconv(.winapi) BOOL;
pub extern "kernel32" fn SetFilePointerEx(
    handle: windows.HANDLE,
    distance: i64,
    position: ?*i64,
    method: DWORD,
) callconv(.winapi) BOOL;
pub extern "kernel32" fn SetEndOfFile(handle: windows.HANDLE) callconv(.winapi) BOOL;
pub extern "kernel32" fn GetDiskFreeSpaceExW(
    directory: ?[*:0]const u16,
    available_to_caller: ?*u64,
    total: ?*u64,
    free_total: ?*u64,
) callconv(.winapi) BOOL;
pub extern "kernel32" fn GetFileInformationByHandleEx(
    handle: windows.HANDLE,
    class: c_int,
    information: *anyopaque,
    size: DWORD,
) callconv(.winapi) BOOL;
pub extern "kernel32" fn DeleteFileW(path: [*:0]const u16) callconv(.winapi) BOOL;
pub extern "kernel32" fn CreateFileMappingW(
    file: windows.HANDLE,
    security: ?*anyopaque,
    protection: DWORD,
    maximum_size_high: DWORD,
    maximum_size_low: DWORD,
    name: ?[*:0]const u16,
) callconv(.winapi) ?windows.HANDLE;
pub extern "kernel32" fn MapViewOfFile(
    section: windows.HANDLE,
    access: DWORD,
    offset_high: DWORD,
    offset_low: DWORD,
    length_bytes: usize,
) callconv(.winapi) ?*anyopaque;
pub extern "kernel32" fn UnmapViewOfFile(address: *const anyopaque) callconv(.winapi) BOOL;
pub extern "kernel32" fn FlushViewOfFile(address: *const anyopaque, length_bytes: usize) callconv(.winapi) BOOL;
pub extern "kernel32" fn FlushFileBuffers(handle: windows.HANDLE) callconv(.winapi) BOOL;
pub extern "kernel32" fn PrefetchVirtualMemory(
    process: windows.HANDLE,
    entry_count: usize,
    entries: [*]const MemoryRangeEntry,
    flags: windows.ULONG,
) callconv(.winapi) BOOL;
pub extern "kernel32" fn GetCurrentProcess() callconv(.winapi) windows.HANDLE;
pub extern "kernel32" fn GetSystemInfo(info: *windows.SYSTEM_INFO) callconv(.winapi) void;
pub extern "kernel32" fn GetLastError() callconv(.winapi) DWORD;
pub extern "kernel32" fn Sleep(milliseconds: DWORD) callconv(.winapi) void;

pub const generic_read: DWORD = 0x8000_0000;
pub const generic_write: DWORD = 0x4000_0000;
pub const file_share_read: DWORD = 0x1;
pub const file_share_write: DWORD = 0x2;
pub const file_share_delete: DWORD = 0x4;
pub const open_existing: DWORD = 3;
pub const open_always: DWORD = 4;
pub const error_already_exists: DWORD = 183;
pub const file_standard_info_class: c_int = 1;
pub const file_type_char: DWORD = 0x2;
pub const file_type_pipe: DWORD = 0x3;
pub const file_attribute_normal: DWORD = 0x80;
pub const file_attribute_directory: DWORD = 0x10;
pub const invalid_file_attributes: DWORD = 0xFFFF_FFFF;
pub const file_type_disk: DWORD = 0x1;
pub const file_begin: DWORD = 0;
pub const page_readonly: DWORD = 0x02;
pub const page_readwrite: DWORD = 0x04;
pub const page_writecopy: DWORD = 0x08;
pub const file_map_copy: DWORD = 0x1;
pub const file_map_write: DWORD = 0x2;
pub const file_map_read: DWORD = 0x4;
pub const error_access_denied: DWORD = 5;
pub const error_lock_violation: DWORD = 33;
pub const error_no_unicode_translation: DWORD = 1113;

/// `FILE_STANDARD_INFO`.
pub const FileStandardInfo = extern struct {
    allocation_size_bytes: i64,
    end_of_file_bytes: i64,
    links: DWORD,
    delete_pending: u8,
    directory: u8,
};
comptime {
    assert(@sizeOf(FileStandardInfo) == 24);
}

/// `WIN32_MEMORY_RANGE_ENTRY`.
pub const MemoryRangeEntry = extern struct {
    address: usize,
    length_bytes: usize,
};
comptime {
    assert(@sizeOf(MemoryRangeEntry) == 16);
}
