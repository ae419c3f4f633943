/* check.h — the error check every example uses: print the failing call, the error's name
 * and its detailed message, and exit. */
#ifndef KNPU_EXAMPLE_CHECK_H
#define KNPU_EXAMPLE_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <knpu.h>

#define CHECK(call)                                                                         \
  do {                                                                                      \
    knpuError_t err_ = (call);                                                              \
    if (err_ != knpuSuccess) {                                                              \
      fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call,             \
              knpuGetErrorName(err_), knpuGetErrorString(err_));                            \
      exit(1);                                                                              \
    }                                                                                       \
  } while (0)

#define EXPECT(cond)                                                                        \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                   \
      exit(1);                                                                              \
    }                                                                                       \
  } while (0)

#endif
