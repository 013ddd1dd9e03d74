// Copy routines for bench/copy_probe.ts: the same copies guardmap and its alternatives make,
// without any guard, so the probe can tell the cost of the copy instruction from the cost of
// the guard, the FFI call and the mapping. Built by the probe with the pinned Zig (zig cc).
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

// rep movsb: the instruction of guardmap's guarded copy (zig/src/guard.zig), unguarded here.
int probe_rep_movsb(unsigned char *dst, const unsigned char *src, double length) {
  size_t count = (size_t)length;
  __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(count) : : "memory");
  return 0;
}

// glibc memcpy (numpy's copies and the library's gm_memcpy end up here).
int probe_memcpy(unsigned char *dst, const unsigned char *src, double length) {
  memcpy(dst, src, (size_t)length);
  return 0;
}

// A plain AVX2 loop, 128 bytes per iteration with ordinary stores; the tail byte by byte.
__attribute__((target("avx2"))) int probe_avx2(unsigned char *dst, const unsigned char *src,
                                               double length) {
  size_t count = (size_t)length, i = 0;
  for (; i + 128 <= count; i += 128) {
    __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
    __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
    __m256i c = _mm256_loadu_si256((const __m256i *)(src + i + 64));
    __m256i d = _mm256_loadu_si256((const __m256i *)(src + i + 96));
    _mm256_storeu_si256((__m256i *)(dst + i), a);
    _mm256_storeu_si256((__m256i *)(dst + i + 32), b);
    _mm256_storeu_si256((__m256i *)(dst + i + 64), c);
    _mm256_storeu_si256((__m256i *)(dst + i + 96), d);
  }
  for (; i < count; i++) dst[i] = src[i];
  return 0;
}

// The same loop with non-temporal stores: the destination lines are not read first (no
// read-for-ownership), which is what glibc does for copies larger than its threshold.
__attribute__((target("avx2"))) int probe_avx2_nt(unsigned char *dst, const unsigned char *src,
                                                  double length) {
  size_t count = (size_t)length, i = 0;
  while (i < count && ((size_t)(dst + i) & 31) != 0) {
    dst[i] = src[i];
    i++;
  }
  for (; i + 128 <= count; i += 128) {
    __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
    __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
    __m256i c = _mm256_loadu_si256((const __m256i *)(src + i + 64));
    __m256i d = _mm256_loadu_si256((const __m256i *)(src + i + 96));
    _mm256_stream_si256((__m256i *)(dst + i), a);
    _mm256_stream_si256((__m256i *)(dst + i + 32), b);
    _mm256_stream_si256((__m256i *)(dst + i + 64), c);
    _mm256_stream_si256((__m256i *)(dst + i + 96), d);
  }
  _mm_sfence();
  for (; i < count; i++) dst[i] = src[i];
  return 0;
}

// The same with SSE2 only (16-byte non-temporal stores, 64 bytes per iteration): every x86_64 CPU
// has SSE2, so a copy built on it needs no CPU feature check. guardmap's large guarded reads used
// this shape until issue 13; guardmap_copy_stream (zig/src/guard.zig) now copies a line of each of
// four pages in turn.
int probe_sse2_nt(unsigned char *dst, const unsigned char *src, double length) {
  size_t count = (size_t)length, i = 0;
  while (i < count && ((size_t)(dst + i) & 63) != 0) {
    dst[i] = src[i];
    i++;
  }
  for (; i + 64 <= count; i += 64) {
    __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
    __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 16));
    __m128i c = _mm_loadu_si128((const __m128i *)(src + i + 32));
    __m128i d = _mm_loadu_si128((const __m128i *)(src + i + 48));
    _mm_stream_si128((__m128i *)(dst + i), a);
    _mm_stream_si128((__m128i *)(dst + i + 16), b);
    _mm_stream_si128((__m128i *)(dst + i + 32), c);
    _mm_stream_si128((__m128i *)(dst + i + 48), d);
  }
  _mm_sfence();
  for (; i < count; i++) dst[i] = src[i];
  return 0;
}

// One call copies `count` ranges of `size` bytes from `base + offsets[i]` into `dst`: what a
// batched read would do. No FFI transition and nothing serialising between the copies, so the
// CPU can overlap the cache and TLB misses of successive ranges.
int probe_gather(unsigned char *dst, const unsigned char *base, const double *offsets,
                 double count, double size) {
  size_t n = (size_t)count, bytes = (size_t)size;
  for (size_t i = 0; i < n; i++) memcpy(dst, base + (size_t)offsets[i], bytes);
  return 0;
}

// The same with a lock-prefixed read-modify-write before and after each copy, as guardmap's
// handle lease does (zig/src/handles.zig: cmpxchg to acquire, fetchSub to release). On x86 a
// locked instruction waits for every earlier load and store, so the copies cannot overlap.
int probe_gather_leased(unsigned char *dst, const unsigned char *base, const double *offsets,
                        double count, double size) {
  static unsigned int state;
  size_t n = (size_t)count, bytes = (size_t)size;
  for (size_t i = 0; i < n; i++) {
    __atomic_fetch_add(&state, 1, __ATOMIC_ACQUIRE);
    memcpy(dst, base + (size_t)offsets[i], bytes);
    __atomic_fetch_sub(&state, 1, __ATOMIC_RELEASE);
  }
  return 0;
}
