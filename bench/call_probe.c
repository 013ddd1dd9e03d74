// Calls that do nothing, for bench/call_probe.ts: the cost of a Deno FFI call of each argument
// shape, without any work inside it. Built by the probe with the pinned Zig (zig cc).
int call_none(void) { return 0; }
int call_numbers(double handle, double position, double length) {
  return handle < 0 || position < 0 || length < 0;
}
int call_one_buffer(double handle, double position, unsigned char *target, double length) {
  return target == 0 || handle < 0 || position < 0 || length < 0;
}
int call_two_buffers(double handle, double position, unsigned char *target, double length,
                     unsigned char *detail) {
  return target == 0 || detail == 0 || handle < 0 || position < 0 || length < 0;
}
