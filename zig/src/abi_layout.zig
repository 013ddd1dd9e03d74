//! The library's description of its own C ABI, for `gm_abi_layout`: one JSON text, built at
//! compile time from the Zig declarations themselves (`@offsetOf`, `@sizeOf`, the enums' fields,
//! the open flags' bit offsets), so it cannot drift from them. tests/abi_test.ts compares every
//! entry with ffi/abi.ts, the TypeScript mirror, in both directions.
//!
//! The channel header is described on every platform: its layout does not depend on one.
const std = @import("std");
const assert = std.debug.assert;
const status_zig = @import("status.zig");
const channel_zig = @import("channel.zig");
const handles = @import("handles.zig");
const c_path = @import("c_path.zig");

/// The description, NUL-terminated. Keys are the Zig names.
pub const text: [:0]const u8 = build();

fn build() [:0]const u8 {
    @setEvalBranchQuota(100_000);
    const json = "{" ++
        "\"abi_version\":" ++ number(status_zig.abi_version) ++ "," ++
        "\"records\":{" ++
        record("detail", status_zig.Detail) ++ "," ++
        record("open_result", status_zig.OpenResult) ++ "," ++
        record("channel_header", channel_zig.Header) ++ "}," ++
        "\"enums\":{" ++
        enumeration("status", status_zig.Status) ++ "," ++
        enumeration("mode", status_zig.Mode) ++ "," ++
        enumeration("advice", status_zig.Advice) ++ "," ++
        enumeration("file_kind", status_zig.FileKind) ++ "," ++
        enumeration("channel_op", channel_zig.Op) ++ "," ++
        flags("open_flags", status_zig.OpenFlags) ++ "}," ++
        "\"constants\":{" ++
        key("channel_header_bytes") ++ number(channel_zig.header_bytes) ++ "," ++
        key("staging_bytes_min") ++ number(channel_zig.staging_bytes_min) ++ "," ++
        key("staging_bytes_max") ++ number(channel_zig.staging_bytes_max) ++ "," ++
        key("map_count_max") ++ number(handles.slot_count_max) ++ "," ++
        key("path_bytes_max") ++ number(c_path.length_max) ++ "," ++
        key("salvage_faults_bytes") ++ number(@sizeOf(status_zig.SalvageFaults)) ++ "," ++
        key("file_size_bytes") ++ number(@sizeOf(status_zig.FileSizeBytes)) ++ "}" ++
        "}";
    return json;
}

fn number(comptime value: anytype) []const u8 {
    return std.fmt.comptimePrint("{d}", .{value});
}

fn key(comptime name: []const u8) []const u8 {
    return "\"" ++ name ++ "\":";
}

/// `"name":{"size_bytes":N,"fields":{"field":offset,...}}`, every field of the extern struct.
fn record(comptime name: []const u8, comptime Record: type) []const u8 {
    comptime assert(@typeInfo(Record).@"struct".layout == .@"extern");
    var fields: []const u8 = "";
    for (std.meta.fields(Record), 0..) |field, index| {
        const separator = if (index == 0) "" else ",";
        fields = fields ++ separator ++ key(field.name) ++ number(@offsetOf(Record, field.name));
    }
    return key(name) ++ "{" ++ key("size_bytes") ++ number(@sizeOf(Record)) ++ "," ++
        key("fields") ++ "{" ++ fields ++ "}}";
}

/// `"name":{"value":number,...}`, the named values of the enum (a non-exhaustive enum's `_` is
/// not one).
fn enumeration(comptime name: []const u8, comptime Enum: type) []const u8 {
    var values: []const u8 = "";
    for (std.meta.fields(Enum), 0..) |field, index| {
        const separator = if (index == 0) "" else ",";
        values = values ++ separator ++ key(field.name) ++ number(field.value);
    }
    return key(name) ++ "{" ++ values ++ "}";
}

/// `"name":{"flag":bit value,...}`, the bool fields of the packed flags struct.
fn flags(comptime name: []const u8, comptime Flags: type) []const u8 {
    comptime assert(@typeInfo(Flags).@"struct".layout == .@"packed");
    var values: []const u8 = "";
    for (std.meta.fields(Flags)) |field| {
        if (field.type != bool) continue;
        const separator = if (values.len == 0) "" else ",";
        values = values ++ separator ++ key(field.name) ++ number(@as(u32, 1) << @bitOffsetOf(Flags, field.name));
    }
    return key(name) ++ "{" ++ values ++ "}";
}

test "abi_layout: the description is valid JSON and names every field of every record" {
    const parsed = try std.json.parseFromSlice(std.json.Value, std.testing.allocator, text, .{});
    defer parsed.deinit();
    const root = parsed.value.object;
    try std.testing.expectEqual(@as(i64, status_zig.abi_version), root.get("abi_version").?.integer);
    const records = root.get("records").?.object;
    const header = records.get("channel_header").?.object;
    try std.testing.expectEqual(@as(i64, 136), header.get("size_bytes").?.integer);
    const header_fields = header.get("fields").?.object;
    try std.testing.expectEqual(std.meta.fields(channel_zig.Header).len, header_fields.count());
    try std.testing.expectEqual(@as(i64, 76), header_fields.get("handle_high").?.integer);
    const detail = records.get("detail").?.object;
    try std.testing.expectEqual(@as(i64, 32), detail.get("size_bytes").?.integer);
    try std.testing.expectEqual(@as(i64, 8), detail.get("fields").?.object.get("fault_window_offset").?.integer);
    const enums = root.get("enums").?.object;
    try std.testing.expectEqual(@as(i64, 35), enums.get("status").?.object.get("pending").?.integer);
    try std.testing.expectEqual(@as(i64, 8), enums.get("open_flags").?.object.get("writes_to_file").?.integer);
    try std.testing.expectEqual(@as(usize, 4), enums.get("open_flags").?.object.count());
    try std.testing.expectEqual(@as(i64, 16), enums.get("channel_op").?.object.get("control_first").?.integer);
    try std.testing.expectEqual(@as(i64, 4096), root.get("constants").?.object.get("channel_header_bytes").?.integer);
    try std.testing.expectEqual(@as(u8, 0), text.ptr[text.len]);
}
