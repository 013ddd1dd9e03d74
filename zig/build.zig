//! Builds libguardmap (a shared library with a flat C ABI) and its tests.
//!
//!   zig build                                  the library for this machine, in zig-out/lib
//!   zig build test                             unit and real-fault tests (Linux)
//!   zig build -Dtarget=x86_64-windows-gnu      the Windows DLL (cross-compiled)
//!   zig build -Dtarget=aarch64-linux-gnu       the Linux arm64 library (cross-compiled)
//!   zig build -Dstrip=true                     without symbols and debug info (what
//!                                              `tools/dev package` puts into the package)
//!   zig build copy-ratio -Doptimize=ReleaseFast  the guarded copy against memcpy
//!                                              (bench/copy_ratio.zig; Linux, add -fqemu
//!                                              with an aarch64 -Dtarget)
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    // Stripping here, not with binutils' objcopy afterwards: the machine that packages may not
    // have binutils, and Zig strips every target it can build for.
    const strip = b.option(bool, "strip", "Leave out symbols and debug info") orelse false;

    const module = b.createModule(.{
        .root_source_file = b.path("src/root.zig"),
        .target = target,
        .optimize = optimize,
        // Linux: the library is loaded into a glibc process (Deno) and uses glibc's sigaction so
        // that the signal return trampoline is the one glibc installs.
        .link_libc = target.result.os.tag == .linux,
        .strip = strip,
    });
    const library = b.addLibrary(.{
        .linkage = .dynamic,
        .name = "guardmap",
        .root_module = module,
        // The guarded copy is global assembly, which only the LLVM backend emits (0.15's
        // self-hosted x86_64 backend, the Debug default, silently leaves it out).
        .use_llvm = true,
    });
    b.installArtifact(library);

    const tests = b.addTest(.{ .root_module = module, .use_llvm = true });
    const run_tests = b.addRunArtifact(tests);
    const test_step = b.step("test", "Run the library's unit and real-fault tests");
    test_step.dependOn(&run_tests.step);

    // The benchmark lives in ../bench, which the published package leaves out: no step there.
    b.build_root.handle.access("../bench/copy_ratio.zig", .{}) catch return;
    const guard = b.createModule(.{
        .root_source_file = b.path("src/guard.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
    });
    const ratio = b.addExecutable(.{
        .name = "copy_ratio",
        .root_module = b.createModule(.{
            .root_source_file = b.path("../bench/copy_ratio.zig"),
            .target = target,
            .optimize = optimize,
            .link_libc = true,
            .imports = &.{.{ .name = "guard", .module = guard }},
        }),
        .use_llvm = true,
    });
    const ratio_step = b.step("copy-ratio", "Time the guarded copy against memcpy (bench/copy_ratio.zig)");
    ratio_step.dependOn(&b.addRunArtifact(ratio).step);
}
