/* blas.c — knpublas.h checked against a plain column-major reference computed here, over
 * awkward shapes (m, n, k in {1, 7, 64, 129}), every transpose pair, leading dimensions
 * larger than the rows, beta != 0, strided batches (including a shared A), the f16 and bf16
 * types of the *Ex functions, operands sharing one allocation, and the argument checks
 * cuBLAS makes. Prints "knpublas: N products checked, 0 failures" when all pass. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <knpublas.h>

#include "test_check.h"

static int failures = 0;
static int products = 0;
/* The handle's stream. knpu's default stream does not wait for other streams (unlike CUDA's
 * legacy default stream), so results are copied back after synchronizing it. */
static knpuStream_t stream = NULL;

#define BLAS(call)                                                                          \
  do {                                                                                      \
    knpublasStatus_t s_ = (call);                                                           \
    if (s_ != KNPUBLAS_STATUS_SUCCESS) {                                                    \
      fprintf(stderr, "blas.c:%d: %s returned %s: %s\n", __LINE__, #call,                  \
              knpublasGetStatusName(s_), knpuGetErrorString(knpuGetLastError()));           \
      exit(2);                                                                              \
    }                                                                                       \
  } while (0)

static void expect_status(knpublasStatus_t got, knpublasStatus_t want, const char *what,
                          int line) {
  if (got != want) {
    fprintf(stderr, "blas.c:%d: %s returned %s, expected %s (%s)\n", line, what,
            knpublasGetStatusName(got), knpublasGetStatusName(want),
            knpuGetErrorString(knpuPeekAtLastError()));
    failures++;
  }
}
#define EXPECT_STATUS(want, call) expect_status((call), (want), #call, __LINE__)

/* Deterministic values in about [-1, 1]. */
static float value(size_t i, unsigned seed) {
  return (float)((i * 2654435761u + seed * 97u) % 1009u) / 504.5f - 1.0f;
}

/* Element (i, j) of op(X), X column-major with leading dimension ld. */
static float at(const float *x, int trans, int ld, int i, int j) {
  return trans ? x[j + (size_t)i * ld] : x[i + (size_t)j * ld];
}

/* C = alpha op(A) op(B) + beta C, column-major, accumulated in double. */
static void reference(int ta, int tb, int m, int n, int k, float alpha, const float *a,
                      int lda, const float *b, int ldb, float beta, float *c, int ldc) {
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++) {
      double acc = 0;
      for (int p = 0; p < k; p++) acc += (double)at(a, ta, lda, i, p) * at(b, tb, ldb, p, j);
      float old = c[i + (size_t)j * ldc];
      c[i + (size_t)j * ldc] = (float)(alpha * acc + (beta == 0.0f ? 0.0 : beta * old));
    }
}

/* Compares C (m x n, leading dimension ldc) and checks the padding rows are untouched. */
static void compare(const char *what, const float *got, const float *want, int m, int n,
                    int ldc, int k, float tol) {
  for (int j = 0; j < n; j++)
    for (int i = 0; i < ldc; i++) {
      size_t x = i + (size_t)j * ldc;
      float limit = tol * (float)(k + 1);
      if (i >= m ? got[x] != want[x] : !(fabsf(got[x] - want[x]) <= limit)) {
        fprintf(stderr, "%s: C(%d, %d) = %g, expected %g\n", what, i, j, got[x], want[x]);
        failures++;
        return;
      }
    }
}

/* One f32 product through knpublasSgemm on a fresh set of padded operands. */
static void sgemm_case(knpublasHandle_t h, int ta, int tb, int m, int n, int k, int pad,
                       float alpha, float beta) {
  int a_rows = ta ? k : m, a_cols = ta ? m : k;
  int b_rows = tb ? n : k, b_cols = tb ? k : n;
  int lda = a_rows + pad, ldb = b_rows + pad, ldc = m + pad;
  size_t na = (size_t)lda * a_cols, nb = (size_t)ldb * b_cols, nc = (size_t)ldc * n;
  float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
  float *c = malloc(nc * sizeof *c), *want = malloc(nc * sizeof *want);
  for (size_t i = 0; i < na; i++) a[i] = value(i, 1);
  for (size_t i = 0; i < nb; i++) b[i] = value(i, 2);
  for (size_t i = 0; i < nc; i++) c[i] = want[i] = value(i, 3);
  float *da, *db, *dc;
  /* k = 0 leaves A and B empty; they are still passed as live allocations. */
  OK(knpuMalloc((void **)&da, (na + 1) * sizeof *a));
  OK(knpuMalloc((void **)&db, (nb + 1) * sizeof *b));
  OK(knpuMalloc((void **)&dc, nc * sizeof *c));
  OK(knpuMemcpy(da, a, na * sizeof *a, knpuMemcpyHostToDevice));
  OK(knpuMemcpy(db, b, nb * sizeof *b, knpuMemcpyHostToDevice));
  OK(knpuMemcpy(dc, c, nc * sizeof *c, knpuMemcpyHostToDevice));
  BLAS(knpublasSgemm(h, ta ? KNPUBLAS_OP_T : KNPUBLAS_OP_N, tb ? KNPUBLAS_OP_T : KNPUBLAS_OP_N,
                     m, n, k, &alpha, da, lda, db, ldb, &beta, dc, ldc));
  OK(knpuStreamSynchronize(stream));
  OK(knpuMemcpy(c, dc, nc * sizeof *c, knpuMemcpyDeviceToHost));
  reference(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, want, ldc);
  char what[128];
  snprintf(what, sizeof what, "sgemm %c%c m=%d n=%d k=%d pad=%d beta=%g", ta ? 'T' : 'N',
           tb ? 'T' : 'N', m, n, k, pad, beta);
  compare(what, c, want, m, n, ldc, k, 1e-6f);
  products++;
  OK(knpuFree(da));
  OK(knpuFree(db));
  OK(knpuFree(dc));
  free(a);
  free(b);
  free(c);
  free(want);
}

/* batch products through knpublasSgemmStridedBatched, A shared when shareA, all three
 * operands in one allocation. */
static void batched_case(knpublasHandle_t h, int ta, int tb, int m, int n, int k, int batch,
                         int shareA) {
  int lda = (ta ? k : m) + 2, ldb = (tb ? n : k) + 1, ldc = m + 3;
  long long sa = shareA ? 0 : (long long)lda * (ta ? m : k) + 5;
  long long sb = (long long)ldb * (tb ? k : n) + 1;
  long long sc = (long long)ldc * n + 4;
  size_t na = shareA ? (size_t)lda * (ta ? m : k) : (size_t)sa * batch;
  size_t nb = (size_t)sb * batch, nc = (size_t)sc * batch;
  size_t total = na + nb + nc;
  float *host = malloc(total * sizeof *host), *want = malloc(nc * sizeof *want);
  for (size_t i = 0; i < total; i++) host[i] = value(i, 4);
  memcpy(want, host + na + nb, nc * sizeof *want);
  float *d;
  OK(knpuMalloc((void **)&d, total * sizeof *host));
  OK(knpuMemcpy(d, host, total * sizeof *host, knpuMemcpyHostToDevice));
  float alpha = 0.5f, beta = -1.25f;
  BLAS(knpublasSgemmStridedBatched(h, ta ? KNPUBLAS_OP_T : KNPUBLAS_OP_N,
                                   tb ? KNPUBLAS_OP_C : KNPUBLAS_OP_N, m, n, k, &alpha, d, lda,
                                   sa, d + na, ldb, sb, &beta, d + na + nb, ldc, sc, batch));
  OK(knpuStreamSynchronize(stream));
  float *c = malloc(nc * sizeof *c);
  OK(knpuMemcpy(c, d + na + nb, nc * sizeof *c, knpuMemcpyDeviceToHost));
  for (int i = 0; i < batch; i++) {
    reference(ta, tb, m, n, k, alpha, host + i * sa, lda, host + na + i * sb, ldb, beta,
              want + i * sc, ldc);
    char what[128];
    snprintf(what, sizeof what, "batched %c%c m=%d n=%d k=%d batch %d of %d shareA=%d",
             ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, i, batch, shareA);
    compare(what, c + i * sc, want + i * sc, m, n, ldc, k, 1e-6f);
  }
  products += batch;
  OK(knpuFree(d));
  free(host);
  free(want);
  free(c);
}

/* IEEE half and bfloat16 from and to float (round to nearest even; finite values here). */
static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
static float from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint16_t to_f16(float f) {
  /* Values here are in [-2, 2] and not tiny: normal halves only. */
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000, exp = (u >> 23) & 0xff, man = u & 0x7fffff;
  if (exp < 113) return (uint16_t)sign; /* below the normal range: 0 */
  uint32_t h = ((exp - 112) << 10) | (man >> 13);
  uint32_t rest = man & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
  return (uint16_t)(sign | h);
}
static float from_f16(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t u = exp == 0 ? sign : sign | ((exp + 112) << 23) | (man << 13);
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* One knpublasGemmEx product with A of type `at`, B of type `bt` and C of type `ct`. */
static void ex_case(knpublasHandle_t h, knpuDataType_t at, knpuDataType_t bt, knpuDataType_t ct,
                    int ta, int tb, int m, int n, int k) {
  int lda = (ta ? k : m) + 1, ldb = (tb ? n : k) + 2, ldc = m + 1;
  size_t na = (size_t)lda * (ta ? m : k), nb = (size_t)ldb * (tb ? k : n);
  size_t nc = (size_t)ldc * n;
  float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc(nc * 4), *want = malloc(nc * 4);
  size_t a_size = at == KNPU_R_32F ? 4 : 2, b_size = bt == KNPU_R_32F ? 4 : 2;
  size_t c_size = ct == KNPU_R_32F ? 4 : 2;
  unsigned char *ha = malloc(na * a_size), *hb = malloc(nb * b_size), *hc = malloc(nc * c_size);
  /* Operands are rounded to their type first, so the reference sees the same inputs. */
#define STORE(type, dst, i, x, rounded)                                                    \
  do {                                                                                      \
    if ((type) == KNPU_R_32F) {                                                             \
      memcpy((dst) + (i)*4, &(x), 4);                                                       \
      rounded = (x);                                                                        \
    } else if ((type) == KNPU_R_16F) {                                                      \
      uint16_t v_ = to_f16(x);                                                              \
      memcpy((dst) + (i)*2, &v_, 2);                                                        \
      rounded = from_f16(v_);                                                               \
    } else {                                                                                \
      uint16_t v_ = to_bf16(x);                                                             \
      memcpy((dst) + (i)*2, &v_, 2);                                                        \
      rounded = from_bf16(v_);                                                              \
    }                                                                                       \
  } while (0)
  for (size_t i = 0; i < na; i++) {
    float x = value(i, 5);
    STORE(at, ha, i, x, a[i]);
  }
  for (size_t i = 0; i < nb; i++) {
    float x = value(i, 6);
    STORE(bt, hb, i, x, b[i]);
  }
  for (size_t i = 0; i < nc; i++) {
    float x = value(i, 7);
    STORE(ct, hc, i, x, want[i]);
  }
  void *da, *db, *dc;
  OK(knpuMalloc(&da, na * a_size));
  OK(knpuMalloc(&db, nb * b_size));
  OK(knpuMalloc(&dc, nc * c_size));
  OK(knpuMemcpy(da, ha, na * a_size, knpuMemcpyHostToDevice));
  OK(knpuMemcpy(db, hb, nb * b_size, knpuMemcpyHostToDevice));
  OK(knpuMemcpy(dc, hc, nc * c_size, knpuMemcpyHostToDevice));
  float alpha = 1.5f, beta = 0.25f;
  BLAS(knpublasGemmEx(h, ta ? KNPUBLAS_OP_T : KNPUBLAS_OP_N, tb ? KNPUBLAS_OP_T : KNPUBLAS_OP_N,
                      m, n, k, &alpha, da, at, lda, db, bt, ldb, &beta, dc, ct, ldc,
                      KNPUBLAS_COMPUTE_32F, KNPUBLAS_GEMM_DEFAULT));
  OK(knpuStreamSynchronize(stream));
  OK(knpuMemcpy(hc, dc, nc * c_size, knpuMemcpyDeviceToHost));
  for (size_t i = 0; i < nc; i++) {
    if (ct == KNPU_R_32F) memcpy(&c[i], hc + i * 4, 4);
    else {
      uint16_t v;
      memcpy(&v, hc + i * 2, 2);
      c[i] = ct == KNPU_R_16F ? from_f16(v) : from_bf16(v);
    }
  }
  reference(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, want, ldc);
  /* The result is rounded once to C's type: a relative 2^-8 (bf16) or 2^-11 (f16) of
   * values up to about k, plus f32 accumulation. */
  float tol = ct == KNPU_R_32F ? 1e-6f : ct == KNPU_R_16F ? 1e-3f : 8e-3f;
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++) {
      size_t x = i + (size_t)j * ldc;
      if (!(fabsf(c[x] - want[x]) <= tol * (fabsf(want[x]) + 1.0f) * (k > 8 ? 4 : 1))) {
        fprintf(stderr, "gemmEx a=%d b=%d c=%d %c%c m=%d n=%d k=%d: C(%d, %d) = %g, expected %g\n",
                (int)at, (int)bt, (int)ct, ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, i, j, c[x], want[x]);
        failures++;
        i = m;
        j = n;
      }
    }
  products++;
  OK(knpuFree(da));
  OK(knpuFree(db));
  OK(knpuFree(dc));
  free(a); free(b); free(c); free(want); free(ha); free(hb); free(hc);
}

/* cuBLAS's argument checks, and what knpublas refuses with a message. */
static void argument_checks(knpublasHandle_t h) {
  float one = 1.0f, zero = 0.0f;
  float *d;
  OK(knpuMalloc((void **)&d, 64 * sizeof *d));
  const knpublasOperation_t N = KNPUBLAS_OP_N, T = KNPUBLAS_OP_T;
  EXPECT_STATUS(KNPUBLAS_STATUS_INVALID_VALUE,
                knpublasSgemm(h, N, N, -1, 2, 2, &one, d, 2, d, 2, &zero, d, 2));
  EXPECT_STATUS(KNPUBLAS_STATUS_INVALID_VALUE,
                knpublasSgemm(h, N, N, 4, 2, 2, &one, d, 3, d, 2, &zero, d, 4)); /* lda < m */
  EXPECT_STATUS(KNPUBLAS_STATUS_INVALID_VALUE,
                knpublasSgemm(h, T, N, 4, 2, 3, &one, d, 2, d, 3, &zero, d, 4)); /* lda < k */
  EXPECT_STATUS(KNPUBLAS_STATUS_INVALID_VALUE,
                knpublasSgemm(h, N, T, 2, 3, 2, &one, d, 2, d, 2, &zero, d, 2)); /* ldb < n */
  EXPECT_STATUS(KNPUBLAS_STATUS_INVALID_VALUE,
                knpublasSgemm(h, N, N, 2, 2, 2, &one, d, 2, d, 2, &zero, d, 1)); /* ldc < m */
  EXPECT_STATUS(KNPUBLAS_STATUS_INVALID_VALUE,
                knpublasSgemm(h, N, N, 0, 2, 2, &one, d, 0, d, 2, &zero, d, 1)); /* lda < 1 */
  EXPECT_STATUS(KNPUBLAS_STATUS_INVALID_VALUE,
                knpublasSgemm(h, (knpublasOperation_t)7, N, 2, 2, 2, &one, d, 2, d, 2, &zero, d, 2));
  EXPECT_STATUS(KNPUBLAS_STATUS_INVALID_VALUE,
                knpublasSgemm(h, N, N, 2, 2, 2, NULL, d, 2, d, 2, &zero, d, 2));
  /* C runs past the end of its allocation: refused at the call, named as C. */
  EXPECT_STATUS(KNPUBLAS_STATUS_INVALID_VALUE,
                knpublasSgemm(h, N, N, 8, 8, 1, &one, d, 8, d, 1, &zero, d + 8, 8));
  const char *msg = knpuGetErrorString(knpuGetLastError());
  if (!strstr(msg, "`C`")) {
    fprintf(stderr, "the overrun message does not name C: %s\n", msg);
    failures++;
  }
  /* A misaligned pointer: A is the launcher's b, and the message says so. */
  EXPECT_STATUS(KNPUBLAS_STATUS_INVALID_VALUE,
                knpublasSgemm(h, N, N, 2, 2, 2, &one, (float *)((char *)d + 2), 2, d, 2, &zero,
                              d + 8, 2));
  msg = knpuGetErrorString(knpuGetLastError());
  if (!strstr(msg, "operand b") || !strstr(msg, "aligned") || !strstr(msg, "whose b is A")) {
    fprintf(stderr, "the misalignment message does not name A in its view: %s\n", msg);
    failures++;
  }
  /* Not a device pointer. */
  float host[4] = {0};
  EXPECT_STATUS(KNPUBLAS_STATUS_INVALID_VALUE,
                knpublasSgemm(h, N, N, 2, 2, 2, &one, host, 2, d, 2, &zero, d + 8, 2));
  EXPECT_STATUS(KNPUBLAS_STATUS_NOT_SUPPORTED,
                knpublasSgemmStridedBatched(h, N, N, 2, 2, 2, &one, d, 2, -4, d, 2, 0, &zero,
                                            d + 8, 2, 4, 2));
  EXPECT_STATUS(KNPUBLAS_STATUS_INVALID_VALUE, /* batches of C overlap */
                knpublasSgemmStridedBatched(h, N, N, 2, 2, 2, &one, d, 2, 0, d, 2, 0, &zero,
                                            d + 8, 2, 1, 3));
  EXPECT_STATUS(KNPUBLAS_STATUS_NOT_SUPPORTED,
                knpublasGemmEx(h, N, N, 2, 2, 2, &one, d, KNPU_R_32F, 2, d, KNPU_R_32F, 2, &zero,
                               d + 8, KNPU_R_32F, 2, (knpublasComputeType_t)77,
                               KNPUBLAS_GEMM_DEFAULT));
  msg = knpuGetErrorString(knpuGetLastError());
  if (!strstr(msg, "computeType")) {
    fprintf(stderr, "the compute type message does not say what is wrong: %s\n", msg);
    failures++;
  }
  /* f32 A with f16 B: not a combination the runtime's GEMM takes. */
  EXPECT_STATUS(KNPUBLAS_STATUS_NOT_SUPPORTED,
                knpublasGemmEx(h, N, N, 2, 2, 2, &one, d, KNPU_R_32F, 2, d + 16, KNPU_R_16F, 2,
                               &zero, d + 8, KNPU_R_32F, 2, KNPUBLAS_COMPUTE_32F,
                               KNPUBLAS_GEMM_DEFAULT));
  EXPECT_STATUS(KNPUBLAS_STATUS_NOT_SUPPORTED,
                knpublasGemmEx(h, N, N, 2, 2, 2, &one, d, (knpuDataType_t)3, 2, d, KNPU_R_32F, 2,
                               &zero, d + 8, KNPU_R_32F, 2, KNPUBLAS_COMPUTE_32F,
                               KNPUBLAS_GEMM_DEFAULT));
  /* Quick returns: m, n or batchCount of 0 queue nothing. */
  EXPECT_STATUS(KNPUBLAS_STATUS_SUCCESS,
                knpublasSgemm(h, N, N, 0, 2, 2, &one, d, 1, d, 2, &zero, d, 1));
  EXPECT_STATUS(KNPUBLAS_STATUS_SUCCESS,
                knpublasSgemmStridedBatched(h, N, N, 2, 2, 2, &one, d, 2, 4, d, 2, 4, &zero,
                                            d + 8, 2, 4, 0));
  OK(knpuFree(d));
}

int main(void) {
  knpublasHandle_t h;
  BLAS(knpublasCreate(&h));
  knpuStream_t s, got = (knpuStream_t)(uintptr_t)1;
  OK(knpuStreamCreate(&s));
  stream = s;
  BLAS(knpublasGetStream(h, &got));
  if (got != NULL) failures++;
  BLAS(knpublasSetStream(h, s));
  BLAS(knpublasGetStream(h, &got));
  if (got != s) failures++;

  static const int sizes[] = {1, 7, 64, 129};
  for (int t = 0; t < 4; t++)
    for (int mi = 0; mi < 4; mi++)
      for (int ni = 0; ni < 4; ni++)
        for (int ki = 0; ki < 4; ki++) {
          int big = (sizes[mi] > 64) + (sizes[ni] > 64) + (sizes[ki] > 64);
          if (big > 1) continue; /* keep the run short: at most one extent of 129 */
          int m = sizes[mi], n = sizes[ni], k = sizes[ki];
          float beta = (m + n + k) % 2 ? 0.75f : 0.0f;
          sgemm_case(h, t & 1, t >> 1, m, n, k, (mi + ni + ki) % 3, 1.25f, beta);
        }
  sgemm_case(h, 1, 1, 129, 129, 129, 1, -0.5f, 2.0f);
  sgemm_case(h, 0, 0, 7, 7, 0, 1, 1.0f, 0.5f); /* k = 0 scales C by beta */
  for (int t = 0; t < 4; t++) {
    batched_case(h, t & 1, t >> 1, 7, 64, 7, 3, 0);
    batched_case(h, t & 1, t >> 1, 64, 1, 129, 2, 1);
  }
  const knpuDataType_t types[] = {KNPU_R_32F, KNPU_R_16F, KNPU_R_16BF};
  for (int ab = 0; ab < 3; ab++)
    for (int ct = 0; ct < 3; ct++) {
      ex_case(h, types[ab], types[ab], types[ct], 0, 1, 7, 64, 129);
      ex_case(h, types[ab], types[ab], types[ct], 1, 0, 64, 7, 7);
    }
  /* Half-precision A with f32 B and C, the runtime's mixed form. */
  ex_case(h, KNPU_R_16F, KNPU_R_32F, KNPU_R_32F, 1, 1, 7, 129, 64);
  ex_case(h, KNPU_R_16BF, KNPU_R_32F, KNPU_R_32F, 0, 0, 64, 7, 7);
  OK(knpuStreamSynchronize(s));
  argument_checks(h);

  /* Back to the default stream, then a destroyed handle is refused. */
  BLAS(knpublasSetStream(h, NULL));
  BLAS(knpublasDestroy(h));
  EXPECT_STATUS(KNPUBLAS_STATUS_NOT_INITIALIZED, knpublasSetStream(h, NULL));
  OK(knpuStreamDestroy(s));
  printf("knpublas: %d products checked, %d failures\n", products, failures);
  return failures == 0 ? 0 : 1;
}
