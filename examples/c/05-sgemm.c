/* 05-sgemm.c — C = alpha A B + beta C through knpublasSgemm, column-major as with cuBLAS,
 * on a stream, checked against a plain loop on the host. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <knpublas.h>

#include "check.h"

#define BLAS_CHECK(call)                                                                    \
  do {                                                                                      \
    knpublasStatus_t s_ = (call);                                                           \
    if (s_ != KNPUBLAS_STATUS_SUCCESS) {                                                    \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, knpublasGetStatusName(s_),             \
              knpuGetErrorString(knpuGetLastError()));                                      \
      exit(1);                                                                              \
    }                                                                                       \
  } while (0)

int main(void) {
  enum { M = 64, N = 48, K = 80 };
  float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
  float *c = malloc(sizeof(float) * M * N), *ref = malloc(sizeof(float) * M * N);
  for (int i = 0; i < M * K; i++) a[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
  for (int i = 0; i < K * N; i++) b[i] = (float)((i * 5) % 11) / 11.0f - 0.5f;
  for (int i = 0; i < M * N; i++) c[i] = ref[i] = 1.0f;

  float *d_a, *d_b, *d_c;
  CHECK(knpuMalloc((void **)&d_a, sizeof(float) * M * K));
  CHECK(knpuMalloc((void **)&d_b, sizeof(float) * K * N));
  CHECK(knpuMalloc((void **)&d_c, sizeof(float) * M * N));
  knpuStream_t stream;
  CHECK(knpuStreamCreate(&stream));
  CHECK(knpuMemcpyAsync(d_a, a, sizeof(float) * M * K, knpuMemcpyHostToDevice, stream));
  CHECK(knpuMemcpyAsync(d_b, b, sizeof(float) * K * N, knpuMemcpyHostToDevice, stream));
  CHECK(knpuMemcpyAsync(d_c, c, sizeof(float) * M * N, knpuMemcpyHostToDevice, stream));

  knpublasHandle_t handle;
  BLAS_CHECK(knpublasCreate(&handle));
  BLAS_CHECK(knpublasSetStream(handle, stream));
  const float alpha = 2.0f, beta = 0.5f;
  BLAS_CHECK(knpublasSgemm(handle, KNPUBLAS_OP_N, KNPUBLAS_OP_N, M, N, K, &alpha, d_a, M, d_b, K,
                           &beta, d_c, M));
  CHECK(knpuMemcpyAsync(c, d_c, sizeof(float) * M * N, knpuMemcpyDeviceToHost, stream));
  CHECK(knpuStreamSynchronize(stream));

  double worst = 0;
  for (int j = 0; j < N; j++)
    for (int i = 0; i < M; i++) {
      double acc = 0;
      for (int p = 0; p < K; p++) acc += (double)a[i + p * M] * b[p + j * K];
      double want = alpha * acc + beta * ref[i + j * M];
      double err = fabs(c[i + j * M] - want);
      if (err > worst) worst = err;
    }
  EXPECT(worst < 1e-4);
  printf("knpublasSgemm %dx%dx%d: max error %.2e against the host loop\n", M, N, K, worst);

  BLAS_CHECK(knpublasDestroy(handle));
  CHECK(knpuStreamDestroy(stream));
  CHECK(knpuFree(d_a));
  CHECK(knpuFree(d_b));
  CHECK(knpuFree(d_c));
  free(a);
  free(b);
  free(c);
  free(ref);
  return 0;
}
