/* dlpack_own_header.c — an application that includes its own dlpack.h before knpu.h (and
 * dlpack.h again after it) builds, uses its declarations, and exchanges a tensor with knpu.
 * Prints "own dlpack.h: ok". */
#include "own_dlpack/dlpack.h"

#include <knpu.h>
#include <stdio.h>

#include "own_dlpack/dlpack.h"

#if !defined(OWN_DLPACK_H_SEEN)
#error "the application's dlpack.h was not the one used"
#endif

int main(void) {
  float *d = NULL;
  int64_t shape[1] = {8};
  DLDataType f32 = {kDLFloat, 32, 1};
  DLManagedTensorVersioned *t = NULL;
  void *p = NULL;
  if (knpuMalloc((void **)&d, 8 * sizeof *d) || knpuTensorToDLPack(d, 1, shape, NULL, f32, &t) ||
      knpuTensorFromDLPack(t, &p, NULL) || p != (void *)d) {
    fprintf(stderr, "failed: %s\n", knpuGetErrorString(knpuGetLastError()));
    return 1;
  }
  t->deleter(t);
  if (knpuFree(d)) return 1;
  printf("own dlpack.h: ok\n");
  return 0;
}
