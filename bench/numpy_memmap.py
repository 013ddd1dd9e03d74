"""numpy.memmap contenders for bench/compare.ts.

Started by the harness as a subprocess and driven one timed batch at a time, so that its
batches interleave with the Deno contenders' (A B C numpy A B C numpy ...) instead of running
before or after them under different machine load.

Protocol: one JSON request per line on stdin, one JSON answer per line on stdout. Every
answer is an object; timed requests answer {"ns": elapsed nanoseconds of the whole batch}.
Errors answer {"error": message} and the process goes on.

The harness starts it with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from the
environment (they are set on some machines here for old OpenBLAS builds and slow a current
numpy down). Nothing timed here calls BLAS anyway: copies are memcpy and sum is numpy's own
pairwise summation loop.
"""

import gc
import json
import os
import platform
import sys
import time

import numpy as np

# Written through before a batch of random reads. The harness sweeps 1 GiB in its own process
# before every batch (numpy's too), which empties the shared caches; this smaller sweep empties
# the caches and TLB of the core this process runs on, which may be another one.
EVICT_BYTES = 64 * 2**20

state = {
    "mm": None,  # np.memmap of the data file, dtype uint8
    "mm64": None,  # np.memmap of the same file, dtype float64 (for the sum)
    "offsets": {},  # name -> list of Python ints (iterating a list is faster than an array)
    "out": {},  # size -> preallocated target for np.copyto
    "cold": None,  # the cold file's memmap between cold_open and cold_read
    "scratch": None,
}


def target(size):
    """A preallocated, already touched buffer of `size` bytes (the np.copyto target)."""
    out = state["out"].get(size)
    if out is None:
        out = np.ones(size, dtype=np.uint8)
        state["out"][size] = out
    return out


def evict():
    if state["scratch"] is None:
        state["scratch"] = np.empty(EVICT_BYTES, dtype=np.uint8)
    state["scratch"].fill(int(time.perf_counter_ns()) & 0xFF)


PAGE_BYTES = 4096
LINE_BYTES = 64


def touch_positions(offsets, size):
    """One byte of every page each range overlaps, outside the range where the page has a whole
    line outside it: bench/compare/page_touch.ts's `touchPositions`, the same rule."""
    for offset in offsets:
        first = int(offset)
        last = first + size - 1
        page = first - first % PAGE_BYTES
        while page <= last:
            low = max(first, page) - page
            high = min(last, page + PAGE_BYTES - 1) - page
            if low >= LINE_BYTES:
                yield page
            elif high < PAGE_BYTES - LINE_BYTES:
                yield page + PAGE_BYTES - 1
            else:
                yield page + low
            page += PAGE_BYTES


def op_touch(request):
    """Reads a byte of every page a batch will read through the memmap, so that its page-table
    entries have their accessed bits set (bench/compare/page_touch.ts says why); the harness
    empties the caches after it."""
    mm = state["mm"]
    start = request["start"]
    offsets = state["offsets"][request["name"]][start : start + request["count"]]
    total = 0
    for position in touch_positions(offsets, request["size"]):
        total += int(mm[position])
    return {"sum": total}


def op_info(_request):
    simd = {}
    try:
        # numpy >= 2.0: which SIMD extensions the running build found on this CPU.
        from numpy._core._multiarray_umath import __cpu_features__

        simd = sorted(name for name, found in __cpu_features__.items() if found)
    except ImportError:
        pass
    return {
        "numpy": np.__version__,
        "python": platform.python_version(),
        "simd": simd,
        "openblas_env": {
            name: os.environ[name]
            for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
            if name in os.environ
        },
    }


def op_open(request):
    state["mm"] = np.memmap(request["path"], dtype=np.uint8, mode="r")
    state["mm64"] = np.memmap(request["path"], dtype=np.float64, mode="r")
    # Touch every page once through both maps (they share the page cache, not the page
    # tables), so that no first-touch fault is timed: the steady state of a long-lived map,
    # like the Deno side's prefault().
    total = float(state["mm64"].sum())
    state["mm"][:: os.sysconf("SC_PAGE_SIZE")].sum()
    return {"bytes": int(state["mm"].shape[0]), "sum": total}


def op_offsets(request):
    # The harness wrote them as little-endian float64 (exact integers below 2^53).
    values = np.fromfile(request["path"], dtype="<f8")
    state["offsets"][request["name"]] = [int(value) for value in values]
    return {"count": len(values)}


def op_check(request):
    """Byte sums of the copies at some offsets, for the harness to compare with its own."""
    mm = state["mm"]
    size = request["size"]
    out = target(size)
    sums = []
    for offset in request["offsets"]:
        copied = np.array(mm[offset : offset + size])
        np.copyto(out, mm[offset : offset + size])
        if not np.array_equal(copied, out):
            raise ValueError(f"np.array and np.copyto disagree at {offset}")
        sums.append(int(copied.sum(dtype=np.uint64)))
    return {"sums": sums}


def timed(loop):
    """Runs `loop()` with the garbage collector off (as timeit does) and returns its ns."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        loop()
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


def op_read(request):
    """A batch of reads: `count` offsets of list `name` from index `start`, `size` bytes each."""
    mm = state["mm"]
    size = request["size"]
    start = request["start"]
    offsets = state["offsets"][request["name"]][start : start + request["count"]]
    if request.get("evict"):
        evict()
    if request["variant"] == "array":
        # The idiomatic copy: a new array per read (np.array of a memmap slice copies).
        def loop():
            for offset in offsets:
                np.array(mm[offset : offset + size])

    else:
        # Into one preallocated target, like every Deno contender.
        out = target(size)
        if request.get("touch_target"):
            # A byte of every page, as the harness does for the Deno contenders' shared target.
            int(out[::PAGE_BYTES].sum())

        def loop():
            for offset in offsets:
                np.copyto(out, mm[offset : offset + size])

    return {"ns": timed(loop)}


def op_sum(request):
    mm64 = state["mm64"]
    results = []

    def loop():
        for _ in range(request["count"]):
            results.append(float(mm64.sum()))

    ns = timed(loop)
    return {"ns": ns, "sum": results[-1]}


def op_cold_open(request):
    # Maps the cold file without touching it; the harness then drops the page cache.
    state["cold"] = np.memmap(request["path"], dtype=np.uint8, mode="r")
    return {"bytes": int(state["cold"].shape[0])}


def op_cold_read(request):
    mm = state["cold"]
    size = int(mm.shape[0])
    out = target(size)

    def loop():
        np.copyto(out, mm)

    ns = timed(loop)
    # Unmap now: a mapped page survives drop_caches, and the next contender needs it gone.
    state["cold"] = None
    del mm
    gc.collect()
    return {"ns": ns, "first": int(out[0]), "last": int(out[-1])}


OPS = {
    "info": op_info,
    "open": op_open,
    "offsets": op_offsets,
    "check": op_check,
    "read": op_read,
    "touch": op_touch,
    "sum": op_sum,
    "cold_open": op_cold_open,
    "cold_read": op_cold_read,
}


def main():
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "exit":
            break
        try:
            answer = OPS[request["op"]](request)
        except Exception as error:  # Reported to the harness, which stops the run.
            answer = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
