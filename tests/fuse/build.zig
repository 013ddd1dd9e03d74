//! Builds faultfs, the fault-injecting FUSE file system of guardmap's tests, with the project's
//! pinned Zig (its clang compiles the C; see faultfs.c for why it is C) against Debian's
//! libfuse3-dev (`apt-get install fuse3 libfuse3-dev`).
//!
//!   zig build -Doptimize=ReleaseSafe    tests/fuse/zig-out/bin/faultfs (fault_fs.ts runs it)
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    // fault_fs.ts and tools/test.sh pass -Doptimize=ReleaseSafe: optimized, and Zig still
    // compiles the C with UBSan in trap mode, so undefined behaviour stops the daemon loudly.
    const optimize = b.standardOptimizeOption(.{});

    const module = b.createModule(.{
        .target = target,
        .optimize = optimize,
        .link_libc = true,
    });
    module.addCSourceFile(.{
        .file = b.path("faultfs.c"),
        .flags = &.{ "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-D_FILE_OFFSET_BITS=64" },
    });
    // Found through pkg-config when it is installed, else as -lfuse3 in the system's library
    // directories (the header is included as <fuse3/fuse.h>, so no include path is needed).
    module.linkSystemLibrary("fuse3", .{});
    const exe = b.addExecutable(.{ .name = "faultfs", .root_module = module });
    b.installArtifact(exe);
}
