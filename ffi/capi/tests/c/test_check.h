/* test_check.h — how the C tests stop on a call that must succeed (the setup around the
 * calls under test): print where, the call and the library's message, and exit with 2 so the
 * Rust test that runs the program fails with that line. */
#ifndef KNPU_TEST_CHECK_H
#define KNPU_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <knpu.h>

static void ok_or_exit(knpuError_t err, const char *call, const char *file, int line) {
  if (err == knpuSuccess) return;
  fprintf(stderr, "%s:%d: %s failed: %s\n", file, line, call, knpuGetErrorString(err));
  exit(2);
}

#define OK(call) ok_or_exit((call), #call, __FILE__, __LINE__)

#endif
