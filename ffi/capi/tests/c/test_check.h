/* test_check.h — how the C tests stop on a call that must succeed (the setup around the
 * calls under test): print where, the call and the library's message, and exit with 2 so the
 * Rust test that runs the program fails with that line. */
#ifndef KNPU_TEST_CHECK_H
#define KNPU_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <knpu.h>

#define OK(call)                                                                            \
  do {                                                                                      \
    knpuError_t ok_ = (call);                                                               \
    if (ok_ != knpuSuccess) {                                                               \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,                  \
              knpuGetErrorString(ok_));                                                     \
      exit(2);                                                                              \
    }                                                                                       \
  } while (0)

#endif
