/* dlpack.c — knpuTensorToDLPack and knpuTensorFromDLPack: export device memory (pointer
 * arithmetic, transposed and negative strides, a scalar), import it back, move data through
 * the imported pointer, the deleter's contract (knpu never calls a consumer's deleter; an
 * export keeps its allocation alive until its own deleter runs), and bad dtypes, foreign
 * devices and out-of-range tensors refused with a clear message.
 * Prints "dlpack: N checks, 0 failures" when all pass. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <knpu.h>

#include "test_check.h"

static int failures = 0;
static int checks = 0;

/* A call that must succeed, counted as a check. */
#define CHECKED_OK(call)                                                                    \
  do {                                                                                      \
    checks++;                                                                               \
    OK(call);                                                                               \
  } while (0)

#define EXPECT(cond)                                                                        \
  do {                                                                                      \
    checks++;                                                                               \
    if (!(cond)) {                                                                          \
      fprintf(stderr, "dlpack.c:%d: expected %s\n", __LINE__, #cond);                       \
      failures++;                                                                           \
    }                                                                                       \
  } while (0)

/* The call fails with `want`, and its message contains `text`. */
static void expect_error(knpuError_t got, knpuError_t want, const char *text, const char *call,
                         int line) {
  checks++;
  const char *msg = knpuGetErrorString(got);
  if (got != want || !strstr(msg, text)) {
    fprintf(stderr, "dlpack.c:%d: %s returned %s (%s), expected %s mentioning \"%s\"\n", line,
            call, knpuGetErrorName(got), msg, knpuGetErrorName(want), text);
    failures++;
  }
}
#define ERR(want, text, call) expect_error((call), (want), (text), #call, __LINE__)

static const DLDataType F32 = {kDLFloat, 32, 1};

static int deleted = 0;
static void count_delete(DLManagedTensorVersioned *self) {
  (void)self;
  deleted++;
}

static uint64_t allocated(void) {
  knpuMemoryStats st = KNPU_MEMORY_STATS_INIT;
  CHECKED_OK(knpuDeviceGetMemoryStats(&st, 0));
  return st.allocatedBytes;
}

int main(void) {
  float *d = NULL;
  CHECKED_OK(knpuMalloc((void **)&d, 64 * sizeof *d));

  /* A [4, 8] row-major tensor starting 8 floats into the allocation. */
  int64_t shape[2] = {4, 8};
  DLManagedTensorVersioned *t = NULL;
  CHECKED_OK(knpuTensorToDLPack(d + 8, 2, shape, NULL, F32, &t));
  EXPECT(t != NULL && t->deleter != NULL);
  EXPECT(t->version.major == DLPACK_MAJOR_VERSION);
  EXPECT(t->dl_tensor.device.device_type == kDLExtDev && t->dl_tensor.device.device_id == 0);
  EXPECT(t->dl_tensor.ndim == 2 && t->dl_tensor.shape[0] == 4 && t->dl_tensor.shape[1] == 8);
  EXPECT(t->dl_tensor.strides == NULL ||
         (t->dl_tensor.strides[0] == 8 && t->dl_tensor.strides[1] == 1));
  EXPECT(t->dl_tensor.dtype.code == kDLFloat && t->dl_tensor.dtype.bits == 32 &&
         t->dl_tensor.dtype.lanes == 1);
  EXPECT((char *)t->dl_tensor.data + t->dl_tensor.byte_offset == (char *)(d + 8));
  shape[0] = 99; /* the tensor holds its own copy */
  EXPECT(t->dl_tensor.shape[0] == 4);

  /* Import: the same device address, usable with knpu's functions. */
  void *p = NULL;
  int device = -1;
  CHECKED_OK(knpuTensorFromDLPack(t, &p, &device));
  EXPECT(p == (void *)(d + 8) && device == 0);
  float in[32], out[32];
  for (int i = 0; i < 32; i++) in[i] = (float)i * 0.5f;
  CHECKED_OK(knpuMemcpy(p, in, sizeof in, knpuMemcpyHostToDevice));
  CHECKED_OK(knpuMemcpy(out, d + 8, sizeof out, knpuMemcpyDeviceToHost));
  EXPECT(memcmp(in, out, sizeof in) == 0);
  t->deleter(t);
  /* The allocation is the caller's: still usable after the tensor is gone. */
  CHECKED_OK(knpuMemcpy(out, d + 8, sizeof out, knpuMemcpyDeviceToHost));

  /* Transposed strides, negative strides and a scalar. */
  int64_t sq[2] = {4, 4}, tr[2] = {1, 4};
  CHECKED_OK(knpuTensorToDLPack(d, 2, sq, tr, F32, &t));
  EXPECT(t->dl_tensor.strides[0] == 1 && t->dl_tensor.strides[1] == 4);
  t->deleter(t);
  int64_t four[1] = {4}, back[1] = {-1};
  CHECKED_OK(knpuTensorToDLPack(d + 3, 1, four, back, F32, &t));
  CHECKED_OK(knpuTensorFromDLPack(t, &p, NULL));
  EXPECT(p == (void *)(d + 3));
  t->deleter(t);
  ERR(knpuErrorInvalidValue, "", knpuTensorToDLPack(d + 2, 1, four, back, F32, &t));
  CHECKED_OK(knpuTensorToDLPack(d + 63, 0, NULL, NULL, F32, &t));
  EXPECT(t->dl_tensor.ndim == 0);
  t->deleter(t);

  /* Out of range, not device memory, bad arguments. */
  int64_t big[1] = {65}, neg[1] = {-2};
  ERR(knpuErrorInvalidValue, "past the end", knpuTensorToDLPack(d, 1, big, NULL, F32, &t));
  ERR(knpuErrorInvalidValue, "negative", knpuTensorToDLPack(d, 1, neg, NULL, F32, &t));
  float host[4];
  ERR(knpuErrorInvalidValue, "not inside any live device allocation",
      knpuTensorToDLPack(host, 1, four, NULL, F32, &t));
  ERR(knpuErrorInvalidValue, "NULL", knpuTensorToDLPack(d, 1, NULL, NULL, F32, &t));
  ERR(knpuErrorInvalidValue, "NULL", knpuTensorToDLPack(d, 1, four, NULL, F32, NULL));
  ERR(knpuErrorInvalidValue, "", knpuTensorToDLPack(d, -1, four, NULL, F32, &t));

  /* Bad dtypes. */
  DLDataType vec4 = {kDLFloat, 32, 4}, complex64 = {kDLComplex, 64, 1}, f12 = {kDLFloat, 12, 1};
  ERR(knpuErrorNotSupported, "DLPack dtype", knpuTensorToDLPack(d, 1, four, NULL, vec4, &t));
  ERR(knpuErrorNotSupported, "DLPack dtype", knpuTensorToDLPack(d, 1, four, NULL, complex64, &t));
  ERR(knpuErrorNotSupported, "DLPack dtype", knpuTensorToDLPack(d, 1, four, NULL, f12, &t));

  /* A tensor another producer made: foreign devices and dtypes are refused, and knpu never
   * calls its deleter, whatever the outcome. */
  DLManagedTensorVersioned foreign;
  memset(&foreign, 0, sizeof foreign);
  foreign.version.major = 1;
  foreign.deleter = count_delete;
  foreign.dl_tensor.data = d;
  foreign.dl_tensor.device.device_type = kDLCUDA;
  foreign.dl_tensor.ndim = 1;
  foreign.dl_tensor.shape = four;
  foreign.dl_tensor.dtype = F32;
  ERR(knpuErrorNotSupported, "kDLExtDev", knpuTensorFromDLPack(&foreign, &p, &device));
  foreign.dl_tensor.device.device_type = kDLCPU;
  ERR(knpuErrorNotSupported, "kDLExtDev", knpuTensorFromDLPack(&foreign, &p, &device));
  foreign.dl_tensor.device.device_type = kDLExtDev;
  foreign.dl_tensor.device.device_id = 7;
  ERR(knpuErrorInvalidValue, "", knpuTensorFromDLPack(&foreign, &p, &device));
  foreign.dl_tensor.device.device_id = 0;
  foreign.dl_tensor.dtype = complex64;
  ERR(knpuErrorNotSupported, "DLPack dtype", knpuTensorFromDLPack(&foreign, &p, &device));
  foreign.dl_tensor.dtype = F32;
  foreign.version.major = 2;
  ERR(knpuErrorNotSupported, "major", knpuTensorFromDLPack(&foreign, &p, &device));
  foreign.version.major = 1;
  foreign.dl_tensor.byte_offset = 2;
  ERR(knpuErrorInvalidValue, "byte_offset", knpuTensorFromDLPack(&foreign, &p, &device));
  foreign.dl_tensor.byte_offset = 61 * sizeof(float); /* 61 + 4 > 64 */
  ERR(knpuErrorInvalidValue, "past the end", knpuTensorFromDLPack(&foreign, &p, &device));
  foreign.dl_tensor.byte_offset = 4 * sizeof(float);
  CHECKED_OK(knpuTensorFromDLPack(&foreign, &p, &device));
  EXPECT(p == (void *)(d + 4) && device == 0);
  ERR(knpuErrorInvalidValue, "NULL", knpuTensorFromDLPack(NULL, &p, &device));
  EXPECT(deleted == 0);
  foreign.deleter(&foreign);
  EXPECT(deleted == 1);

  /* An export keeps its allocation alive past knpuFree until its deleter runs, once. */
  float *e = NULL;
  CHECKED_OK(knpuMalloc((void **)&e, 1 << 20));
  uint64_t with = allocated();
  int64_t n[1] = {1 << 18};
  CHECKED_OK(knpuTensorToDLPack(e, 1, n, NULL, F32, &t));
  CHECKED_OK(knpuFree(e));
  EXPECT(allocated() == with);
  ERR(knpuErrorInvalidValue, "not inside any live device allocation",
      knpuTensorFromDLPack(t, &p, NULL));
  t->deleter(t);
  CHECKED_OK(knpuDeviceSynchronize());
  EXPECT(allocated() < with);

  CHECKED_OK(knpuFree(d));
  printf("dlpack: %d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
