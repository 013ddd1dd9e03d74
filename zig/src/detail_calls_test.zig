//! gm_read and gm_write as ffi/mapped_file.ts calls them: on a failure, the thread's detail
//! record (gm_last_detail) into `detail`. Shared by the Linux and the Windows fault tests.
const std = @import("std");
const Detail = @import("status.zig").Detail;

extern fn gm_read(handle: f64, position: f64, target: ?[*]u8, length: f64) i32;
extern fn gm_write(handle: f64, position: f64, source: ?[*]u8, length: f64) i32;
extern fn gm_last_detail(out: ?*align(1) Detail) i32;

/// gm_read, and on failure the thread's detail record into `detail`.
pub fn read_detail(handle: f64, position: f64, target: ?[*]u8, length: f64, detail: *Detail) i32 {
    const status = gm_read(handle, position, target, length);
    if (status != 0) std.debug.assert(gm_last_detail(detail) == 0);
    return status;
}

/// gm_write, and on failure the thread's detail record into `detail`.
pub fn write_detail(handle: f64, position: f64, source: ?[*]u8, length: f64, detail: *Detail) i32 {
    const status = gm_write(handle, position, source, length);
    if (status != 0) std.debug.assert(gm_last_detail(detail) == 0);
    return status;
}
