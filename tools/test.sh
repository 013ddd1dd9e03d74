#!/usr/bin/env bash
# Every check and every test, in the order a failure is cheapest to find. Run through
# `tools/dev test`, which installs the pinned toolchain and exports DENO and ZIG.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
: "${DENO:?run this through tools/dev test}" "${ZIG:?run this through tools/dev test}"
export NO_COLOR=1

scratch="$(mktemp -d -t guardmap-check-XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
log="$scratch/log"
passed=0
failed=0

step() { printf '\n== %s\n' "$*"; }

# Runs a test command, echoing its output, and adds its "N passed ... M failed" to the totals.
# A command that exits non-zero counts as at least one failure, whatever it printed.
count_tests() {
  local status=0
  "$@" 2>&1 | tee "$log" || status=$?
  local line runs failures
  line="$(grep -E '[0-9]+ passed' "$log" | tail -n1 || true)"
  runs="$(sed -nE 's/.*[^0-9]([0-9]+) passed.*/\1/p' <<<" $line" | head -n1)"
  failures="$(sed -nE 's/.*[^0-9]([0-9]+) failed.*/\1/p' <<<" $line" | head -n1)"
  passed=$((passed + ${runs:-0}))
  failed=$((failed + ${failures:-0}))
  if [ "$status" -ne 0 ] && [ "${failures:-0}" -eq 0 ]; then
    echo "!! '$*' exited with status $status" >&2
    failed=$((failed + 1))
  fi
  # Under Wine a Zig test that panics prints the panic, yet the build runner reports every test
  # as passed (seen with Zig 0.15.2 and Debian's Wine): count each panic as a failure.
  local panics
  panics="$(grep -cE '^thread [0-9]+ panic: ' "$log" || true)"
  if [ "${panics:-0}" -gt 0 ]; then
    echo "!! '$*' printed $panics panic(s); each counts as a failure" >&2
    failed=$((failed + panics))
  fi
  return 0
}

step "zig fmt --check"
"$ZIG" fmt --check zig/build.zig zig/src

step "deno fmt --check, deno lint, deno check, deno doc --lint, deno publish --dry-run"
"$DENO" fmt --check
"$DENO" lint
"$DENO" check mod.ts ffi/*.ts workers/*.ts cli/*.ts tests/*.ts tests/stress/*.ts \
  tests/library_cache/*.ts bench/*.ts tools/*.ts
"$DENO" doc --lint mod.ts
# The package as JSR would get it: every module it imports is included, no slow types. Runs
# offline (nothing is uploaded); --allow-dirty so that it also runs in a working copy.
"$DENO" publish --dry-run --allow-dirty

step "tools/shape.ts (files <= 500 lines, library functions <= 70 lines, no import loop)"
"$DENO" run --allow-read --allow-run --allow-env tools/shape.ts

step "cross-compile: x86_64-windows-gnu and aarch64-linux-gnu"
(cd zig && "$ZIG" build -Doptimize=ReleaseSafe -Dtarget=x86_64-windows-gnu --prefix "$scratch/windows")
(cd zig && "$ZIG" build -Doptimize=ReleaseSafe -Dtarget=aarch64-linux-gnu --prefix "$scratch/aarch64")
ls "$scratch/windows/bin/guardmap.dll" "$scratch/aarch64/lib/libguardmap.so"

step "zig build test (window arithmetic, handle table, real SIGBUS faults)"
count_tests bash -c 'cd zig && "$ZIG" build test --summary all'

step "zig build test -Dtarget=x86_64-windows-gnu -fwine (the Windows path, under Wine)"
# Zig's -fwine runs the program `wine` from PATH (std.zig.system.getExternalExecutor). tools/dev
# found the loader (GUARDMAP_WINE; Debian's wine64 has no `wine` on PATH) and checked that it runs.
# A wrapper script named `wine` execs it; a symlink named `wine` to Debian's wine64 does not work
# (Wine 8.0 then stops with "wine: could not exec the wine loader").
# The tests name files in UTF-8, which Wine maps to host file names only under a UTF-8 locale:
# without one (LANG unset, or a locale that is not installed) 4 of them fail (error.Unexpected).
if [ -n "${GUARDMAP_WINE:-}" ]; then
  mkdir -p "$scratch/wine-bin"
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$GUARDMAP_WINE" >"$scratch/wine-bin/wine"
  chmod +x "$scratch/wine-bin/wine"
  wine_locale=()
  [ "$(locale charmap 2>/dev/null)" = UTF-8 ] || wine_locale=(LC_ALL=C.UTF-8)
  count_tests env "${wine_locale[@]}" WINEDEBUG=-all PATH="$scratch/wine-bin:$PATH" bash -c \
    'cd zig && "$ZIG" build test -Dtarget=x86_64-windows-gnu -fwine --summary all'
elif [ "${CI:-}" = "true" ]; then
  echo "Wine is missing (tools/dev found no Wine loader); apt-get install wine64." >&2
  failed=$((failed + 1))
else
  echo "SKIPPED: Wine is not installed (apt-get install wine64); the Windows DLL was only built."
fi

step "zig build test -Dtarget=aarch64-linux-gnu -fqemu (the aarch64 guard, under qemu-user, 4 and 64 KiB pages)"
# tools/dev checked qemu-user, binfmt_misc and the arm64 sysroot (GUARDMAP_AARCH64_SYSROOT), where
# qemu finds the aarch64 C library. Forked test children that die of SIGBUS on purpose make qemu
# print "uncaught target signal 7"; the summary line counts the results.
# QEMU_PAGESIZE makes the emulated program see that page size (sysconf, AT_PAGESZ), as on an
# aarch64 kernel built with 64 KiB pages: every size the tests use must follow it. The host
# kernel still faults per 4 KiB page; the tests cut files only on the larger page's boundaries.
if [ -n "${GUARDMAP_AARCH64_SYSROOT:-}" ]; then
  for page_bytes in 4096 65536; do
    count_tests env QEMU_LD_PREFIX="$GUARDMAP_AARCH64_SYSROOT" QEMU_PAGESIZE="$page_bytes" \
      bash -c 'cd zig && "$ZIG" build test -Dtarget=aarch64-linux-gnu -fqemu --summary all'
  done
elif [ "${CI:-}" = "true" ]; then
  echo "qemu-user is missing or cannot run aarch64 programs (see tools/dev's checks)." >&2
  failed=$((failed + 1))
else
  echo "SKIPPED: qemu-user cannot run aarch64 programs here; the aarch64 library was only built."
fi

step "build the library (ReleaseSafe)"
(cd zig && "$ZIG" build -Doptimize=ReleaseSafe)

step "build faultfs, the fault-injecting FUSE file system (tests/fuse)"
# tests/fuse/fault_fs.ts would build it on demand too; building here reports a compiler error as
# a step of its own. Outside CI, a machine without libfuse3-dev skips it (and the FUSE tests).
if [ -e /usr/include/fuse3/fuse.h ]; then
  "$ZIG" fmt --check tests/fuse/build.zig
  (cd tests/fuse && "$ZIG" build -Doptimize=ReleaseSafe)
  ls tests/fuse/zig-out/bin/faultfs
elif [ "${CI:-}" = "true" ]; then
  echo "libfuse3-dev is missing; .ci/run installs it (apt-get install fuse3 libfuse3-dev)." >&2
  failed=$((failed + 1))
else
  echo "SKIPPED: libfuse3-dev is not installed (apt-get install fuse3 libfuse3-dev)."
fi

step "deno test tests/"
# --allow-all: the tests read /proc/self/{fd,maps,status}, which Deno 2.9 allows only then.
count_tests "$DENO" test --allow-all tests/

step "deno test --doc (every @example runs)"
# The examples make temporary files; keep them in the scratch directory.
count_tests env TMPDIR="$scratch" "$DENO" test --doc --allow-ffi --allow-read --allow-write \
  --allow-env mod.ts ffi/ cli/

step "deno test --doc README.md (every example in the README runs)"
# The MapPool example starts worker processes: --allow-run.
count_tests env TMPDIR="$scratch" "$DENO" test --doc --allow-ffi --allow-read --allow-write \
  --allow-env --allow-run README.md

step "deno test under qemu-user: the aarch64 Deno and library (a named subset)"
# The whole suite takes about 13 minutes or more under emulation on 2 cores, so a named subset runs:
# the tests of faults, readMany, the pool, salvage and FUSE. tests/pool_liveness_test.ts (the
# host's event loop and timers around stopped and killed workers) is left out: it added about 5
# of the 18 minutes the seven files took here, and tests nothing of the architecture; so is the
# pool's "100 crashes in a row" (tests/util.ts testUnlessQemu). What runs takes about 6.5 minutes
# here. faultfs is the host's build (above).
# GUARDMAP_TIME_SCALE stretches the tests' fixed timeouts (tests/util.ts); MapPool's workers
# re-exec the aarch64 Deno, which binfmt_misc starts under qemu too. --no-check: the types were
# checked above, and checking them again under emulation takes minutes.
# tests/fault_test.ts's prefault case, like the others, is ignored under qemu-user and says why
# (tests/util.ts prefaultTest): qemu accepts MADV_POPULATE_* and does nothing.
aarch64_tests=(tests/fault_test.ts tests/read_many_test.ts tests/pool_test.ts
  tests/salvage_test.ts tests/fuse_fault_test.ts tests/fuse_pool_test.ts)
if [ -n "${GUARDMAP_DENO_AARCH64:-}" ]; then
  aarch64_env=(env QEMU_LD_PREFIX="$GUARDMAP_AARCH64_SYSROOT" GUARDMAP_TIME_SCALE=8
    GUARDMAP_LIB="$scratch/aarch64/lib/libguardmap.so")
  count_tests "${aarch64_env[@]}" "$GUARDMAP_DENO_AARCH64" test --allow-all --no-check \
    "${aarch64_tests[@]}"
  # The path of a JSR user on aarch64: the packaged module (ffi/prebuilt/aarch64_linux.ts, the
  # library above), a fresh cache, no GUARDMAP_LIB (the checkout's x86_64 build cannot load).
  "$DENO" run --allow-read --allow-write tools/package.ts \
    "aarch64-linux-gnu=$scratch/aarch64/lib/libguardmap.so"
  count_tests env QEMU_LD_PREFIX="$GUARDMAP_AARCH64_SYSROOT" GUARDMAP_CACHE="$scratch/cache-aarch64" \
    "$GUARDMAP_DENO_AARCH64" test --allow-all --no-check tests/qemu/prebuilt_check.ts
elif [ "${CI:-}" = "true" ]; then
  echo "the aarch64 Deno cannot run under qemu-user here (see tools/dev's checks)." >&2
  failed=$((failed + 1))
else
  echo "SKIPPED: the aarch64 Deno cannot run under qemu-user here."
fi

printf '\nguardmap: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
