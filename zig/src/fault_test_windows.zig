//! Windows: windows past 4 GiB (the high DWORD of MapViewOfFile's offset), the open modes, and a
//! real fault through the vectored handler. Runs on Windows and under Wine
//! (`zig build test -Dtarget=x86_64-windows-gnu -fwine`). No mocks.
const std = @import("std");
const testing = std.testing;
const windows = std.os.windows;
const status_zig = @import("status.zig");
const Status = status_zig.Status;
const Detail = status_zig.Detail;
const OpenResult = status_zig.OpenResult;
const Mode = status_zig.Mode;
const guard_windows = @import("guard_windows.zig");
const guard = @import("guard.zig");

const gib: u64 = 1024 * 1024 * 1024;
const granule: u64 = 64 * 1024;
/// 5 GiB + 64 KiB: the view's file offset has high DWORD 1 and a non-zero low DWORD.
const high_offset: u64 = 5 * gib + granule;
const pattern_length_bytes = 64 * 1024;
const truncated_length_bytes = 12288;

extern fn gm_open(path: ?[*]const u8, path_length: usize, mode: u32, offset: u64, length: u64, flags: u32, out: ?*align(1) OpenResult) i32;
extern fn gm_close(handle: f64) i32;
extern fn gm_last_detail(out: ?*align(1) Detail) i32;

const detail_calls = @import("detail_calls_test.zig");
const read_detail = detail_calls.read_detail;
const write_detail = detail_calls.write_detail;
extern fn gm_flush(handle: f64, position: f64, length: f64, detail: ?*align(1) Detail) i32;
extern fn gm_advise(handle: f64, position: f64, length: f64, advice: u32, detail: ?*align(1) Detail) i32;
extern fn gm_prefault(handle: f64, position: f64, length: f64, write: u32, detail: ?*align(1) Detail) i32;
extern fn gm_file_size(handle: f64, out: ?*align(1) u64) i32;
extern fn gm_address(handle: f64) ?*anyopaque;
extern fn gm_granularity() u32;
extern fn gm_init() i32;
extern fn gm_guard_disposition() i32;

extern "kernel32" fn DeviceIoControl(
    device: windows.HANDLE,
    control_code: windows.DWORD,
    in_buffer: ?*const anyopaque,
    in_length: windows.DWORD,
    out_buffer: ?*anyopaque,
    out_length: windows.DWORD,
    returned: ?*windows.DWORD,
    overlapped: ?*anyopaque,
) callconv(.winapi) windows.BOOL;
const fsctl_set_sparse: windows.DWORD = 0x0009_00C4;

extern "kernel32" fn GetModuleHandleW(name: [*:0]const u16) callconv(.winapi) ?windows.HMODULE;
extern "kernel32" fn GetProcAddress(module: windows.HMODULE, name: [*:0]const u8) callconv(.winapi) ?*const anyopaque;
/// Wine only: the host path of a Windows path, in a buffer from the process heap.
const WineGetUnixFileName = *const fn (path: [*:0]const u16) callconv(.winapi) ?[*:0]u8;
extern "kernel32" fn CreateProcessW(
    application: ?[*:0]const u16,
    command_line: [*:0]u16,
    process_security: ?*anyopaque,
    thread_security: ?*anyopaque,
    inherit_handles: windows.BOOL,
    creation_flags: windows.DWORD,
    environment: ?*anyopaque,
    directory: ?[*:0]const u16,
    startup: *windows.STARTUPINFOW,
    process: *ProcessInformation,
) callconv(.winapi) windows.BOOL;
/// `PROCESS_INFORMATION`, with handles that may be null: Wine gives none for a host program.
const ProcessInformation = extern struct {
    process: ?windows.HANDLE,
    thread: ?windows.HANDLE,
    process_id: windows.DWORD,
    thread_id: windows.DWORD,
};
extern "kernel32" fn Sleep(milliseconds: windows.DWORD) callconv(.winapi) void;

fn status_of(raw: i32) Status {
    return @enumFromInt(raw);
}

fn pattern_byte(file_offset: u64) u8 {
    return @truncate(file_offset *% 7 +% 3);
}

fn fill_pattern(buffer: []u8, file_offset: u64) void {
    for (buffer, 0..) |*byte, index| byte.* = pattern_byte(file_offset + index);
}

/// A scratch file in a test directory, named with non-ASCII characters so that every open also
/// checks the UTF-8 to UTF-16 conversion.
const Scratch = struct {
    directory: testing.TmpDir,
    path_buffer: [1024]u8,
    path: []const u8,
    file: std.fs.File,

    const name = "guardmap-grüße-∑.bin";
    /// For the file a host program must find: Wine hands non-ASCII arguments to host programs in
    /// the host's locale, which may not be UTF-8.
    const name_ascii = "guardmap-ascii.bin";

    fn create(scratch: *Scratch) !void {
        return scratch.create_named(name);
    }

    fn create_named(scratch: *Scratch, entry: []const u8) !void {
        scratch.directory = testing.tmpDir(.{});
        errdefer scratch.directory.cleanup();
        scratch.file = try scratch.directory.dir.createFile(entry, .{ .read = true, .truncate = true });
        errdefer scratch.file.close();
        scratch.path = try scratch.absolute(entry, &scratch.path_buffer);
        // Real Windows would write every zero before a far offset; a sparse file skips them.
        // Wine (and a file system without sparse files) may refuse or ignore this: the file is
        // then just written in full, or sparse on the host anyway.
        _ = DeviceIoControl(scratch.file.handle, fsctl_set_sparse, null, 0, null, 0, null, null);
    }

    /// `testing.tmpDir` lives in `.zig-cache/tmp` under the working directory. (Dir.realpath
    /// fails with error.Unexpected under Wine 8.0: std resolves the handle's object name
    /// through the mount manager.)
    fn absolute(scratch: *const Scratch, entry: []const u8, buffer: []u8) ![]const u8 {
        var cwd_buffer: [512]u8 = undefined;
        const cwd = try std.process.getCwd(&cwd_buffer);
        return std.fmt.bufPrint(buffer, "{s}\\.zig-cache\\tmp\\{s}\\{s}", .{ cwd, scratch.directory.sub_path, entry });
    }

    fn write_pattern(scratch: *Scratch, file_offset: u64, length_bytes: usize) !void {
        var pattern: [pattern_length_bytes]u8 = undefined;
        const chunks_max = length_bytes / pattern.len + 1;
        var done: usize = 0;
        var chunks: usize = 0;
        while (done < length_bytes) : (chunks += 1) {
            std.debug.assert(chunks < chunks_max);
            const chunk = @min(pattern.len, length_bytes - done);
            fill_pattern(pattern[0..chunk], file_offset + done);
            try scratch.file.pwriteAll(pattern[0..chunk], file_offset + done);
            done += chunk;
        }
    }

    fn open(scratch: *const Scratch, mode: Mode, offset: u64, length_bytes: ?u64, result: *OpenResult) Status {
        const flags: u32 = if (length_bytes != null) 1 else 0;
        return status_of(gm_open(scratch.path.ptr, scratch.path.len, @intFromEnum(mode), offset, length_bytes orelse 0, flags, result));
    }

    /// Cuts the file to `length_bytes` behind Windows' back. Windows refuses to truncate a file
    /// under a mapped view (SetEndOfFile's documentation; Wine 8.0 answers the same,
    /// ERROR_USER_MAPPED_FILE), so under Wine the host's
    /// `truncate` does it, as another process on the host could; the host kernel then raises
    /// SIGBUS on the lost pages. Not possible on Windows itself: the test is skipped there.
    fn truncate_on_host(scratch: *const Scratch, length_bytes: u64) !void {
        const ntdll = GetModuleHandleW(std.unicode.utf8ToUtf16LeStringLiteral("ntdll.dll")) orelse return error.SkipZigTest;
        if (GetProcAddress(ntdll, "wine_get_version") == null) return error.SkipZigTest;
        const kernel32 = GetModuleHandleW(std.unicode.utf8ToUtf16LeStringLiteral("kernel32.dll")).?;
        const unix_file_name: WineGetUnixFileName = @ptrCast(GetProcAddress(kernel32, "wine_get_unix_file_name").?);

        var path_utf16: [1024]u16 = undefined;
        const units = try std.unicode.utf8ToUtf16Le(path_utf16[0 .. path_utf16.len - 1], scratch.path);
        path_utf16[units] = 0;
        const host_path = unix_file_name(path_utf16[0..units :0]) orelse return error.NoHostPath;
        defer _ = windows.kernel32.HeapFree(windows.kernel32.GetProcessHeap().?, 0, host_path);

        var command_buffer: [2048]u8 = undefined;
        const command = try std.fmt.bufPrint(&command_buffer, "/usr/bin/truncate -s {d} {s}", .{ length_bytes, std.mem.span(host_path) });
        var command_utf16: [2048]u16 = undefined;
        const command_units = try std.unicode.utf8ToUtf16Le(command_utf16[0 .. command_utf16.len - 1], command);
        command_utf16[command_units] = 0;
        var startup = std.mem.zeroes(windows.STARTUPINFOW);
        startup.cb = @sizeOf(windows.STARTUPINFOW);
        var process = std.mem.zeroes(ProcessInformation);
        // Wine runs a host (ELF) program named to CreateProcessW as a host process, but fills
        // PROCESS_INFORMATION with no process handle and a thread value that is not a handle
        // (seen with Wine 8.0): nothing to wait on or close. Wait for the file to shrink
        // instead, for at most ten seconds.
        if (CreateProcessW(null, command_utf16[0..command_units :0], null, null, windows.FALSE, 0, null, null, &startup, &process) == 0) {
            return error.CreateProcessFailed;
        }
        const polls_max = 1000;
        for (0..polls_max) |_| {
            if (try scratch.file.getEndPos() == length_bytes) return;
            Sleep(10);
        }
        return error.HostTruncateTimedOut;
    }

    fn remove(scratch: *Scratch) void {
        scratch.file.close();
        scratch.directory.cleanup();
    }
};

test "windows: a window at 5 GiB + 64 KiB reads the bytes stored there" {
    try testing.expectEqual(@as(u32, granule), gm_granularity());
    var scratch: Scratch = undefined;
    try scratch.create();
    defer scratch.remove();
    try scratch.write_pattern(high_offset, pattern_length_bytes);

    // Exactly on a granule (delta 0) and one byte past it (delta 1): both need the high DWORD.
    for ([_]u64{ 0, 1, granule - 1 }) |delta| {
        var result = OpenResult.zero;
        const length_bytes = pattern_length_bytes - delta;
        try testing.expectEqual(Status.ok, scratch.open(.read, high_offset + delta, length_bytes, &result));
        defer _ = gm_close(result.handle);
        try testing.expectEqual(length_bytes, result.length_bytes);
        try testing.expectEqual(high_offset + pattern_length_bytes, result.file_size_bytes);
        const address = @intFromPtr(gm_address(result.handle).?);
        try testing.expectEqual(@as(usize, 0), (address - delta) % granule);

        var target = [_]u8{0} ** pattern_length_bytes;
        var detail = Detail.zero;
        try testing.expectEqual(Status.ok, status_of(read_detail(result.handle, 0, &target, @floatFromInt(length_bytes), &detail)));
        var expected: [pattern_length_bytes]u8 = undefined;
        fill_pattern(expected[0..length_bytes], high_offset + delta);
        try testing.expectEqualSlices(u8, expected[0..length_bytes], target[0..length_bytes]);
    }

    // The window "to the end of the file" from the same offset.
    var result = OpenResult.zero;
    try testing.expectEqual(Status.ok, scratch.open(.read, high_offset, null, &result));
    defer _ = gm_close(result.handle);
    try testing.expectEqual(@as(u64, pattern_length_bytes), result.length_bytes);
    var size_bytes: u64 = 0;
    try testing.expectEqual(Status.ok, status_of(gm_file_size(result.handle, &size_bytes)));
    try testing.expectEqual(high_offset + pattern_length_bytes, size_bytes);
    var detail = Detail.zero;
    try testing.expectEqual(Status.ok, status_of(gm_advise(result.handle, 0, pattern_length_bytes, 3, &detail)));
    try testing.expectEqual(Status.ok, status_of(gm_prefault(result.handle, 0, pattern_length_bytes, 0, &detail)));
}

test "windows: w+ sizes the file to a high window, and writes reach the file after a flush" {
    var scratch: Scratch = undefined;
    try scratch.create();
    defer scratch.remove();
    const offset = high_offset + 1;
    const length_bytes = 8192;

    var result = OpenResult.zero;
    try testing.expectEqual(Status.ok, scratch.open(.create, offset, length_bytes, &result));
    try testing.expectEqual(offset + length_bytes, result.file_size_bytes);
    var source: [length_bytes]u8 = undefined;
    fill_pattern(&source, offset);
    var detail = Detail.zero;
    try testing.expectEqual(Status.ok, status_of(write_detail(result.handle, 0, &source, length_bytes, &detail)));
    try testing.expectEqual(Status.ok, status_of(gm_flush(result.handle, 0, length_bytes, &detail)));
    try testing.expectEqual(Status.ok, status_of(gm_prefault(result.handle, 0, length_bytes, 0, &detail)));
    // Windows has no MADV_POPULATE_WRITE: reading a byte a page would not keep write's promise.
    try testing.expectEqual(Status.not_supported, status_of(gm_prefault(result.handle, 0, length_bytes, 1, &detail)));
    try testing.expectEqual(Status.ok, status_of(gm_close(result.handle)));

    try testing.expectEqual(offset + length_bytes, try scratch.file.getEndPos());
    var check: [length_bytes]u8 = undefined;
    try testing.expectEqual(@as(usize, length_bytes), try scratch.file.preadAll(&check, offset));
    try testing.expectEqualSlices(u8, &source, &check);
}

test "windows: r+ writes through, c keeps its writes private, r refuses them" {
    var scratch: Scratch = undefined;
    try scratch.create();
    defer scratch.remove();
    try scratch.write_pattern(0, pattern_length_bytes);
    var detail = Detail.zero;
    var bytes = [_]u8{0xAB} ** 16;
    var check = [_]u8{0} ** 16;

    var private = OpenResult.zero;
    try testing.expectEqual(Status.ok, scratch.open(.copy_on_write, 100, null, &private));
    defer _ = gm_close(private.handle);
    try testing.expectEqual(Status.ok, status_of(write_detail(private.handle, 0, &bytes, 16, &detail)));
    try testing.expectEqual(Status.ok, status_of(read_detail(private.handle, 0, &check, 16, &detail)));
    try testing.expectEqualSlices(u8, &bytes, &check);
    try testing.expectEqual(Status.ok, status_of(gm_flush(private.handle, 0, 16, &detail)));
    _ = try scratch.file.preadAll(&check, 100);
    try testing.expectEqual(pattern_byte(100), check[0]);

    var shared = OpenResult.zero;
    try testing.expectEqual(Status.ok, scratch.open(.read_write, 200, 16, &shared));
    defer _ = gm_close(shared.handle);
    try testing.expectEqual(Status.ok, status_of(write_detail(shared.handle, 0, &bytes, 16, &detail)));
    try testing.expectEqual(Status.ok, status_of(gm_flush(shared.handle, 0, 16, &detail)));
    _ = try scratch.file.preadAll(&check, 200);
    try testing.expectEqualSlices(u8, &bytes, &check);

    var reader = OpenResult.zero;
    try testing.expectEqual(Status.ok, scratch.open(.read, 0, 16, &reader));
    defer _ = gm_close(reader.handle);
    try testing.expectEqual(Status.read_only, status_of(write_detail(reader.handle, 0, &bytes, 16, &detail)));
    try testing.expectEqual(Status.ok, status_of(gm_flush(reader.handle, 0, 16, &detail)));
}

test "windows: open failures are stable codes" {
    var scratch: Scratch = undefined;
    try scratch.create();
    defer scratch.remove();
    try scratch.write_pattern(0, 4096);
    var result = OpenResult.zero;
    try testing.expectEqual(Status.window_past_end, scratch.open(.read, 0, 4097, &result));
    try testing.expectEqual(Status.empty_window, scratch.open(.read, 4096, null, &result));
    try testing.expectEqual(Status.invalid_argument, scratch.open(.create, 0, null, &result));

    const missing = "C:\\guardmap\\no\\such\\file";
    try testing.expectEqual(Status.not_found, status_of(gm_open(missing, missing.len, 0, 0, 0, 0, &result)));
    try testing.expect(result.os_error == 2 or result.os_error == 3);

    var directory_buffer: [1024]u8 = undefined;
    const directory = try scratch.absolute(".", &directory_buffer);
    try testing.expectEqual(Status.is_directory, status_of(gm_open(directory.ptr, directory.len, 0, 0, 0, 0, &result)));

    const malformed = "C:\\\xff\xfe.bin";
    try testing.expectEqual(Status.invalid_argument, status_of(gm_open(malformed, malformed.len, 0, 0, 0, 0, &result)));
}

test "windows: w+ that cannot fit leaves the old file as it was, and creates nothing" {
    var scratch: Scratch = undefined;
    try scratch.create();
    defer scratch.remove();
    try scratch.write_pattern(0, 4096);
    // 1 PiB: more than any test machine's free space (and under NTFS's and ext4's largest
    // file sizes only where the space check does not come first).
    const huge: u64 = 1 << 50;
    var result = OpenResult.zero;
    try testing.expectEqual(Status.no_space, scratch.open(.create, 0, huge, &result));
    try testing.expectEqual(@as(i32, 0), result.os_error); // Refused before any call failed.
    try testing.expectEqual(huge, result.length_bytes);
    try testing.expect(result.file_size_bytes < huge);
    try testing.expectEqual(@as(u64, 4096), try scratch.file.getEndPos());
    var check: [4096]u8 = undefined;
    try testing.expectEqual(@as(usize, 4096), try scratch.file.preadAll(&check, 0));
    for (check, 0..) |byte, index| try testing.expectEqual(pattern_byte(index), byte);

    var path_buffer: [1024]u8 = undefined;
    const fresh = try scratch.absolute("fresh.bin", &path_buffer);
    try testing.expectEqual(Status.no_space, status_of(gm_open(fresh.ptr, fresh.len, 2, 0, huge, 1, &result)));
    try testing.expectError(error.FileNotFound, scratch.directory.dir.access("fresh.bin", .{}));
}

test "windows: the vectored handler is installed once and is ours" {
    try testing.expectEqual(Status.ok, status_of(gm_init()));
    try testing.expectEqual(Status.ok, status_of(gm_init()));
    try testing.expectEqual(@as(i32, 1), gm_guard_disposition());
}

test "windows: guarded read across a truncated end reports the exact byte count" {
    var scratch: Scratch = undefined;
    try scratch.create_named(Scratch.name_ascii);
    defer scratch.remove();
    try scratch.write_pattern(0, pattern_length_bytes);
    var result = OpenResult.zero;
    try testing.expectEqual(Status.ok, scratch.open(.read, 0, null, &result));
    defer _ = gm_close(result.handle);

    try scratch.truncate_on_host(truncated_length_bytes);
    var target = [_]u8{0} ** pattern_length_bytes;
    var detail = Detail.zero;
    const status = status_of(read_detail(result.handle, 0, &target, pattern_length_bytes, &detail));
    // Wine reports the host's SIGBUS as an access violation; Windows would say in-page error.
    try testing.expect(status == .bad_address or status == .io);
    try testing.expectEqual(@as(u64, truncated_length_bytes), detail.bytes_done);
    try testing.expectEqual(@as(u64, truncated_length_bytes), detail.fault_window_offset);
    const exception_code: u32 = @bitCast(detail.signal);
    try testing.expect(exception_code == guard_windows.exception_access_violation or
        exception_code == guard_windows.exception_in_page_error);
    var expected: [truncated_length_bytes]u8 = undefined;
    fill_pattern(&expected, 0);
    try testing.expectEqualSlices(u8, &expected, target[0..truncated_length_bytes]);

    // The process carries on: the healthy part reads again, a read from the middle of the lost
    // page counts from its own start, and prefault names the first lost page.
    var healthy = [_]u8{0} ** 4096;
    try testing.expectEqual(Status.ok, status_of(read_detail(result.handle, 4096, &healthy, 4096, &detail)));
    try testing.expectEqual(pattern_byte(4096), healthy[0]);
    try testing.expectEqual(status, status_of(read_detail(result.handle, 12000, &healthy, 1000, &detail)));
    try testing.expectEqual(@as(u64, truncated_length_bytes - 12000), detail.bytes_done);
    try testing.expectEqual(status, status_of(gm_prefault(result.handle, 0, pattern_length_bytes, 0, &detail)));
    try testing.expectEqual(@as(u64, truncated_length_bytes), detail.fault_window_offset);
}

test "windows: a large guarded read (the streaming copy) reports a truncated end to the byte" {
    // Reads of stream_length_bytes_min or more take guardmap_copy_stream; its count must be exact at odd shifts.
    const large_bytes = guard.stream_length_bytes_min + (4 << 20);
    const kept_bytes = guard.stream_length_bytes_min / 2 + 12288;
    var scratch: Scratch = undefined;
    try scratch.create_named(Scratch.name_ascii);
    defer scratch.remove();
    try scratch.write_pattern(0, large_bytes);
    var result = OpenResult.zero;
    try testing.expectEqual(Status.ok, scratch.open(.read, 0, null, &result));
    defer _ = gm_close(result.handle);
    const target = try testing.allocator.alloc(u8, large_bytes + 64);
    defer testing.allocator.free(target);
    const expected = try testing.allocator.alloc(u8, large_bytes);
    defer testing.allocator.free(expected);
    fill_pattern(expected, 0);
    var detail = Detail.zero;
    try testing.expectEqual(Status.ok, status_of(read_detail(result.handle, 3, target[1..].ptr, large_bytes - 3, &detail)));
    try testing.expectEqualSlices(u8, expected[3..], target[1..][0 .. large_bytes - 3]);

    try scratch.truncate_on_host(kept_bytes);
    @memset(target, 0);
    const status = status_of(read_detail(result.handle, 3, target[1..].ptr, large_bytes - 3, &detail));
    try testing.expect(status == .bad_address or status == .io);
    try testing.expectEqual(@as(u64, kept_bytes - 3), detail.bytes_done);
    try testing.expectEqual(@as(u64, kept_bytes), detail.fault_window_offset);
    try testing.expectEqualSlices(u8, expected[3..kept_bytes], target[1..][0 .. kept_bytes - 3]);
}

test "windows: w+ through a relative path (no separator) that cannot fit leaves the old file as it was" {
    var scratch: Scratch = undefined;
    try scratch.create();
    defer scratch.remove();
    try scratch.write_pattern(0, 4096);
    // Run from the scratch directory and name the file relatively, as `MappedFile.open("x.bin")`.
    const directory = std.fs.path.dirname(scratch.path).?;
    var wide: [1024]u16 = undefined;
    const units = try std.unicode.utf8ToUtf16Le(&wide, directory);
    wide[units] = 0;
    if (SetCurrentDirectoryW(wide[0..units :0].ptr) == 0) return error.ChdirFailed;
    const huge: u64 = 1 << 50;
    var result = OpenResult.zero;
    const relative = Scratch.name;
    const status = status_of(gm_open(relative.ptr, relative.len, 2, 0, huge, 1, &result));
    try testing.expectEqual(Status.no_space, status);
    try testing.expectEqual(@as(i32, 0), result.os_error); // Refused before any call failed.
    try testing.expectEqual(@as(u64, 4096), try scratch.file.getEndPos());
}

extern "kernel32" fn SetCurrentDirectoryW(path: [*:0]const u16) callconv(.winapi) windows.BOOL;
