/*
 * knpublas.h — matrix products on knpu devices in the style of cuBLAS (libknpu).
 *
 * A cuBLAS program ports by renaming: cublas -> knpublas, CUBLAS_ -> KNPUBLAS_, CUDA_R_ ->
 * KNPU_R_, cudaStream_t -> knpuStream_t (docs/porting-from-cuda.md keeps the table). The
 * functions take cuBLAS's arguments in cuBLAS's order with cuBLAS's meaning:
 *
 *   - Matrices are column-major: element (i, j) of a matrix with leading dimension ld is at
 *     i + j * ld. op(X) is X (KNPUBLAS_OP_N) or its transpose (KNPUBLAS_OP_T, and
 *     KNPUBLAS_OP_C, which is the same for real types). C is m x n, op(A) m x k, op(B) k x n.
 *   - alpha and beta are host pointers (KNPUBLAS_POINTER_MODE_HOST, the only mode). With
 *     beta == 0, C is not read, so it may hold anything, NaN included.
 *   - A, B and C are device pointers from knpuMalloc or knpuMallocAsync, aligned to their
 *     element type; each is resolved against the live allocations like every device pointer
 *     of knpu.h, so a matrix that runs past the end of its allocation is refused at the call.
 *   - Calls are asynchronous on the handle's stream (knpublasSetStream; NULL, the default, is
 *     the default stream of the device the handle was created on).
 *
 * Errors: a failing call returns a knpublasStatus_t and also sets the thread's knpu last
 * error, so knpuGetErrorString(knpuGetLastError()) gives the detailed message (which
 * argument was wrong, with figures). Handles are validated: a NULL, garbage or destroyed
 * handle is KNPUBLAS_STATUS_NOT_INITIALIZED, never a crash. Any function may be called from
 * any thread; a handle may be shared between threads (its stream is read at each call).
 */
#ifndef KNPUBLAS_H
#define KNPUBLAS_H

#include "knpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A math library context: the device it was created on and its stream. */
typedef struct knpublasContext *knpublasHandle_t;

/* Status codes, with cuBLAS's numbers. */
typedef enum knpublasStatus {
  KNPUBLAS_STATUS_SUCCESS = 0,
  /* The handle is NULL, unknown or destroyed. */
  KNPUBLAS_STATUS_NOT_INITIALIZED = 1,
  /* Device memory is exhausted. */
  KNPUBLAS_STATUS_ALLOC_FAILED = 3,
  /* An argument is out of range or inconsistent (a dimension, leading dimension, stride,
   * pointer or enum value). */
  KNPUBLAS_STATUS_INVALID_VALUE = 7,
  /* The device failed to run the work, or the call is not allowed now (for example a
   * device that was lost). */
  KNPUBLAS_STATUS_EXECUTION_FAILED = 13,
  /* A bug in knpu or a driver. */
  KNPUBLAS_STATUS_INTERNAL_ERROR = 14,
  /* The combination of types, compute type or option is not supported (by this library
   * or by the device). */
  KNPUBLAS_STATUS_NOT_SUPPORTED = 15
} knpublasStatus_t;

/* How a matrix operand is used. */
typedef enum knpublasOperation {
  KNPUBLAS_OP_N = 0,
  KNPUBLAS_OP_T = 1,
  /* Conjugate transpose; for the real types here the same as KNPUBLAS_OP_T. */
  KNPUBLAS_OP_C = 2
} knpublasOperation_t;

/* Element types of the *Ex functions, with the numbers of cudaDataType. */
typedef enum knpuDataType {
  KNPU_R_32F = 0,
  KNPU_R_16F = 2,
  KNPU_R_16BF = 14
} knpuDataType_t;

/* The arithmetic of the *Ex functions, with cublasComputeType_t's numbers. Products
 * accumulate in f32; KNPUBLAS_COMPUTE_32F is the only compute type. */
typedef enum knpublasComputeType {
  KNPUBLAS_COMPUTE_32F = 68
} knpublasComputeType_t;

/* Algorithm hints of the *Ex functions. knpu picks its kernel itself; both values are
 * accepted and mean the same. */
typedef enum knpublasGemmAlgo {
  KNPUBLAS_GEMM_DEFAULT = -1,
  KNPUBLAS_GEMM_DEFAULT_TENSOR_OP = 99
} knpublasGemmAlgo_t;

/* Creates a handle on the calling thread's current device (knpuSetDevice), with the NULL
 * stream. Errors: KNPUBLAS_STATUS_INVALID_VALUE (handle is NULL),
 * KNPUBLAS_STATUS_NOT_INITIALIZED (no usable device). */
knpublasStatus_t knpublasCreate(knpublasHandle_t *handle);

/* Destroys a handle; work it queued still runs. The handle (and every copy of it) is invalid
 * afterwards. */
knpublasStatus_t knpublasDestroy(knpublasHandle_t handle);

/* Sets the stream later calls on the handle queue their work on (NULL: the default stream of
 * the handle's device). The stream must belong to the handle's device
 * (KNPUBLAS_STATUS_INVALID_VALUE otherwise, and for a destroyed or garbage stream). */
knpublasStatus_t knpublasSetStream(knpublasHandle_t handle, knpuStream_t streamId);

/* *streamId = the handle's stream (NULL if none was set). */
knpublasStatus_t knpublasGetStream(knpublasHandle_t handle, knpuStream_t *streamId);

/* The status's name, e.g. "KNPUBLAS_STATUS_INVALID_VALUE"; static storage, never NULL. */
const char *knpublasGetStatusName(knpublasStatus_t status);

/* A static description of the status; never NULL. The message of the latest failure is
 * knpuGetErrorString(knpuGetLastError()). */
const char *knpublasGetStatusString(knpublasStatus_t status);

/* C = alpha * op(A) op(B) + beta * C in f32 (cublasSgemm). m, n, k >= 0; lda >= max(1, rows
 * of A as stored: m for OP_N, k for OP_T), ldb >= max(1, k for OP_N, n for OP_T),
 * ldc >= max(1, m); otherwise KNPUBLAS_STATUS_INVALID_VALUE. m or n of 0 queues nothing; k of
 * 0 scales C by beta. Errors also: KNPUBLAS_STATUS_NOT_INITIALIZED (handle),
 * KNPUBLAS_STATUS_INVALID_VALUE (a NULL alpha or beta, a device pointer outside a live
 * allocation or a matrix running past its end, a misaligned pointer),
 * KNPUBLAS_STATUS_NOT_SUPPORTED (the device has no f32 GEMM). */
knpublasStatus_t knpublasSgemm(knpublasHandle_t handle, knpublasOperation_t transa,
                               knpublasOperation_t transb, int m, int n, int k,
                               const float *alpha, const float *A, int lda, const float *B,
                               int ldb, const float *beta, float *C, int ldc);

/* As knpublasSgemm with element types given at run time (cublasGemmEx). The runtime's GEMM
 * takes A and B of one type (KNPU_R_32F, KNPU_R_16F or KNPU_R_16BF) with C of any of the
 * three, or half-precision A (f16 or bf16) with B and C f32. computeType is
 * KNPUBLAS_COMPUTE_32F, and alpha and beta point to floats. Other combinations are
 * KNPUBLAS_STATUS_NOT_SUPPORTED with the reason in the last error's message. */
knpublasStatus_t knpublasGemmEx(knpublasHandle_t handle, knpublasOperation_t transa,
                                knpublasOperation_t transb, int m, int n, int k,
                                const void *alpha, const void *A, knpuDataType_t Atype, int lda,
                                const void *B, knpuDataType_t Btype, int ldb, const void *beta,
                                void *C, knpuDataType_t Ctype, int ldc,
                                knpublasComputeType_t computeType, knpublasGemmAlgo_t algo);

/* batchCount products as knpublasSgemm; product i uses A + i * strideA, B + i * strideB and
 * C + i * strideC (strides in elements, >= 0; a stride of 0 for A or B reuses one matrix for
 * every product). Batches of C must not overlap (KNPUBLAS_STATUS_INVALID_VALUE).
 * batchCount >= 0; 0 queues nothing. */
knpublasStatus_t knpublasSgemmStridedBatched(knpublasHandle_t handle,
                                             knpublasOperation_t transa,
                                             knpublasOperation_t transb, int m, int n, int k,
                                             const float *alpha, const float *A, int lda,
                                             long long int strideA, const float *B, int ldb,
                                             long long int strideB, const float *beta,
                                             float *C, int ldc, long long int strideC,
                                             int batchCount);

/* As knpublasSgemmStridedBatched with the element types of knpublasGemmEx. */
knpublasStatus_t knpublasGemmStridedBatchedEx(
    knpublasHandle_t handle, knpublasOperation_t transa, knpublasOperation_t transb, int m, int n,
    int k, const void *alpha, const void *A, knpuDataType_t Atype, int lda, long long int strideA,
    const void *B, knpuDataType_t Btype, int ldb, long long int strideB, const void *beta, void *C,
    knpuDataType_t Ctype, int ldc, long long int strideC, int batchCount,
    knpublasComputeType_t computeType, knpublasGemmAlgo_t algo);

#ifdef __cplusplus
}
#endif

#endif /* KNPUBLAS_H */
