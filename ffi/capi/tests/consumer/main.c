/* A program built against an installed knpu: one device query, one round trip, one
 * knpublas handle and one op of knpu_ops.h. */
#include <stdio.h>

#include <knpu.h>
#include <knpu_driver.h>
#include <knpu_ops.h>
#include <knpublas.h>

int main(void) {
  int count = 0, version = 0, x = 42, y = 0;
  void *d = NULL;
  knpuDeviceProp prop = KNPU_DEVICE_PROP_INIT;
  if (knpuRuntimeGetVersion(&version) || version != KNPU_API_VERSION) return 1;
  if (knpuGetDeviceCount(&count) || count < 1) return 1;
  if (knpuGetDeviceProperties(&prop, 0)) return 1;
  if (knpuMalloc(&d, sizeof x) || knpuMemcpy(d, &x, sizeof x, knpuMemcpyHostToDevice) ||
      knpuMemcpy(&y, d, sizeof y, knpuMemcpyDeviceToHost) || knpuFree(d) || y != 42) {
    fprintf(stderr, "round trip failed: %s\n", knpuGetErrorString(knpuGetLastError()));
    return 1;
  }
  /* argmax of one row [1, 3, 2] through knpu_ops.h */
  float row[3] = {1, 3, 2};
  uint32_t idx = 9;
  void *d_row = NULL, *d_idx = NULL;
  knpuReduceDesc r = KNPU_OPS_DESC_INIT(knpuReduceDesc);
  r.dtype = knpuDtypeF32;
  r.rows = 1;
  r.cols = 3;
  if (knpuMalloc(&d_row, sizeof row) || knpuMalloc(&d_idx, sizeof idx) ||
      knpuMemcpy(d_row, row, sizeof row, knpuMemcpyHostToDevice) ||
      knpuArgmax(&r, d_row, d_idx, NULL) ||
      knpuMemcpy(&idx, d_idx, sizeof idx, knpuMemcpyDeviceToHost) || idx != 1 ||
      knpuFree(d_row) || knpuFree(d_idx)) {
    fprintf(stderr, "argmax failed: %s\n", knpuGetErrorString(knpuGetLastError()));
    return 1;
  }
  knpublasHandle_t blas;
  if (knpublasCreate(&blas) != KNPUBLAS_STATUS_SUCCESS || knpublasDestroy(blas)) return 1;
  printf("installed knpu %d works: %d device(s), device 0 is %s\n", version, count, prop.name);
  return 0;
}
