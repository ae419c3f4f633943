/*
 * knpu_driver.h — the knpu driver ABI.
 *
 * The contract between the knpu runtime and every NPU driver, the built-in software NPU
 * included. A driver is a shared library (or a statically linked object) that exports one
 * symbol, `knpu_driver_get_api`, returning a table of C function pointers.
 *
 * Versioning
 *   - KNPU_DRIVER_ABI_MAJOR changes only when an existing field or meaning changes; the
 *     runtime refuses a driver whose major differs from its own.
 *   - KNPU_DRIVER_ABI_MINOR grows when fields are appended. Fields are only ever appended to
 *     KnpuDriverApi and to every struct that starts with `struct_size`; a reader checks
 *     `struct_size` before it touches a field (see KNPU_STRUCT_HAS_FIELD) and treats a
 *     missing field as absent (NULL function, zero value).
 *
 * Threading: every function may be called from any thread at any time, concurrently.
 *
 * Errors: every function returns a KnpuStatus. Failures of asynchronous work are carried by
 * timeline semaphores: a failed submission sets each of its signal semaphores to
 * KNPU_SEMAPHORE_FAILED and records a status and message that `semaphore_get_error` returns.
 *
 * Memory: device memory lives in the device's own address space, named by 64-bit device
 * addresses (KnpuDeviceAddress), never host pointers. Host data reaches device memory only
 * through copy commands on a queue.
 */
#ifndef KNPU_DRIVER_H
#define KNPU_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 2.0: KNPU_KERNEL_ELEMENTWISE keeps only the ops that differ from KNPU_KERNEL_BINARY (AXPY,
 * SCALE); its ADD, MUL and SUB are retired in favour of KNPU_KERNEL_BINARY, which gained SUB,
 * so a driver implements each of them once. */
/* 2.1 (additive): KNPU_KERNEL_SAMPLE (KnpuSampleParams) draws one token id per row of logits
 * on the device, with its random counter in device memory; KNPU_BINARY_DIV joins
 * KNPU_KERNEL_BINARY's ops. A 2.0 driver refuses DIV with INVALID_VALUE at submit and reports
 * no SAMPLE kernel, so a runtime checks the driver's minor before it uses either. */
#define KNPU_DRIVER_ABI_MAJOR 2
#define KNPU_DRIVER_ABI_MINOR 1

/* The name of the one symbol a driver library exports. */
#define KNPU_DRIVER_ENTRY_SYMBOL "knpu_driver_get_api"

/* The semaphore value that marks failed work. Values only grow, so it is final; it is never
 * a value to wait for or to signal. */
#define KNPU_SEMAPHORE_FAILED UINT64_MAX

/* A timeout that never expires. */
#define KNPU_TIMEOUT_INFINITE UINT64_MAX

/* Status codes. Numbering is stable; new codes are appended. */
typedef enum KnpuStatus {
  KNPU_STATUS_SUCCESS = 0,
  /* An argument is out of range, null where it must not be, or inconsistent. */
  KNPU_STATUS_INVALID_VALUE = 1,
  /* A handle is null, unknown, or already destroyed. */
  KNPU_STATUS_INVALID_HANDLE = 2,
  /* Device memory (or a host resource the driver needs) is exhausted. */
  KNPU_STATUS_OUT_OF_MEMORY = 3,
  /* The driver does not implement this function, kernel, dtype or option. */
  KNPU_STATUS_NOT_SUPPORTED = 4,
  /* A command addressed device memory outside every live allocation. */
  KNPU_STATUS_ILLEGAL_ADDRESS = 5,
  /* A kernel failed while it ran (bad parameters found on the device, injected fault). */
  KNPU_STATUS_KERNEL_FAULT = 6,
  /* The device is gone: every later call that creates work or objects on it fails with this
   * status; calls that release objects or only read (free, destroy, queries) still work, so
   * a caller can clean up. */
  KNPU_STATUS_DEVICE_LOST = 7,
  /* A wait ended at its timeout before the value was reached. */
  KNPU_STATUS_TIMEOUT = 8,
  /* The loader's and the driver's ABI majors differ. */
  KNPU_STATUS_ABI_MISMATCH = 9,
  /* A bug or broken invariant inside the driver. */
  KNPU_STATUS_INTERNAL = 10,
  /* The work waited on a semaphore that had failed, so it did not run. */
  KNPU_STATUS_DEPENDENCY_FAILED = 11,
} KnpuStatus;

/* A device memory address, in the device's own address space. 0 is never a valid address. */
typedef uint64_t KnpuDeviceAddress;

/* Opaque objects. Each is created and destroyed through the API table. */
typedef struct KnpuDriverDevice_T *KnpuDriverDevice;
typedef struct KnpuQueue_T *KnpuQueue;
typedef struct KnpuSemaphore_T *KnpuSemaphore;
/* Since ABI 1.1: commands validated and stored by the driver once, run by many submissions. */
typedef struct KnpuCommandList_T *KnpuCommandList;

/* Element types named by kernels and capability queries. Numbering is stable. */
typedef enum KnpuDtype {
  KNPU_DTYPE_F32 = 0,
  KNPU_DTYPE_F16 = 1,
  KNPU_DTYPE_BF16 = 2,
  KNPU_DTYPE_F64 = 3,
  KNPU_DTYPE_I8 = 4,
  KNPU_DTYPE_U8 = 5,
  KNPU_DTYPE_I32 = 6,
  KNPU_DTYPE_U32 = 7,
  KNPU_DTYPE_I64 = 8,
} KnpuDtype;

/* Device attributes, read one at a time with device_get_attribute. Numbering is stable;
 * a driver answers KNPU_STATUS_NOT_SUPPORTED for an attribute it does not know. */
typedef enum KnpuDeviceAttribute {
  /* Bytes of device memory. */
  KNPU_ATTR_TOTAL_MEMORY = 0,
  /* Compute cores (for the software NPU: compute pool threads). */
  KNPU_ATTR_COMPUTE_CORES = 1,
  /* Alignment of every allocation, in bytes. */
  KNPU_ATTR_ALLOCATION_ALIGNMENT = 2,
  /* Most queues the device can create at once. */
  KNPU_ATTR_MAX_QUEUES = 3,
  /* Modeled peak f32 rate, MFLOP/s. */
  KNPU_ATTR_PEAK_F32_MFLOPS = 4,
  /* Modeled peak f16/bf16 rate, MFLOP/s. */
  KNPU_ATTR_PEAK_F16_MFLOPS = 5,
  /* Modeled peak int8 rate, MOP/s. */
  KNPU_ATTR_PEAK_INT8_MOPS = 6,
  /* Modeled device memory bandwidth, MB/s. */
  KNPU_ATTR_MEMORY_BANDWIDTH_MBPS = 7,
  /* Modeled host<->device (DMA) bandwidth, MB/s. */
  KNPU_ATTR_DMA_BANDWIDTH_MBPS = 8,
  /* 1 when the device can copy to and from another device of the same driver directly. */
  KNPU_ATTR_PEER_COPY = 9,
  /* 1 when device_inject_fault works on this device. */
  KNPU_ATTR_FAULT_INJECTION = 10,
} KnpuDeviceAttribute;

/* Queue priorities: a higher priority queue's work is preferred by the compute pool. */
typedef enum KnpuQueuePriority {
  KNPU_QUEUE_PRIORITY_LOW = -1,
  KNPU_QUEUE_PRIORITY_NORMAL = 0,
  KNPU_QUEUE_PRIORITY_HIGH = 1,
} KnpuQueuePriority;

/* Kernel ids. Ranges are reserved per family; numbering is stable. */
typedef enum KnpuKernelId {
  /* Scaled elementwise ops (AXPY, SCALE): params KnpuElementwiseParams. Plain add, subtract
   * and multiply are KNPU_KERNEL_BINARY. */
  KNPU_KERNEL_ELEMENTWISE = 1,
  /* GEMM (0x100-0x1FF): params KnpuGemmParams. */
  KNPU_KERNEL_GEMM = 0x100,
  /* Attention and key/value caches (0x200-0x2FF) ----------------------------------------- */
  /* Fused attention over strided K/V: params KnpuAttentionParams. */
  KNPU_KERNEL_ATTENTION = 0x200,
  /* Fused attention over a paged K/V cache: params KnpuPagedAttentionParams. */
  KNPU_KERNEL_PAGED_ATTENTION = 0x201,
  /* Append keys/values to a contiguous cache: params KnpuKvAppendParams. */
  KNPU_KERNEL_KV_APPEND = 0x202,
  /* Append keys/values to a paged cache: params KnpuPagedKvAppendParams. */
  KNPU_KERNEL_PAGED_KV_APPEND = 0x203,

  /* LLM ops (0x400-0x4FF) ----------------------------------------------------------------- */
  /* Every LLM op computes in f32 whatever its storage dtype (F32, F16 or BF16). */
  /* RMS normalisation of rows: params KnpuRmsNormParams. */
  KNPU_KERNEL_RMS_NORM = 0x400,
  /* Layer normalisation of rows: params KnpuLayerNormParams. */
  KNPU_KERNEL_LAYER_NORM = 0x401,
  /* Rotary position embedding: params KnpuRopeParams. */
  KNPU_KERNEL_ROPE = 0x402,
  /* SiLU or GELU (erf or tanh form): params KnpuActivationParams. */
  KNPU_KERNEL_ACTIVATION = 0x403,
  /* silu(gate) * up: params KnpuSwigluParams. */
  KNPU_KERNEL_SWIGLU = 0x404,
  /* Row softmax: params KnpuSoftmaxParams. */
  KNPU_KERNEL_SOFTMAX = 0x405,
  /* Add, subtract, multiply or divide, optionally broadcasting one row: params
   * KnpuBinaryParams. */
  KNPU_KERNEL_BINARY = 0x406,
  /* Embedding lookup by token id: params KnpuEmbeddingParams. */
  KNPU_KERNEL_EMBEDDING = 0x407,
  /* Conversion between F32, F16 and BF16: params KnpuCastParams. */
  KNPU_KERNEL_CAST = 0x408,
  /* Index of the largest value of each row: params KnpuArgmaxParams. */
  KNPU_KERNEL_ARGMAX = 0x409,
  /* The k largest values of each row and their indices: params KnpuTopKParams. */
  KNPU_KERNEL_TOP_K = 0x40A,
  /* One token id drawn from each row of logits (since ABI 2.1): params KnpuSampleParams. */
  KNPU_KERNEL_SAMPLE = 0x40B,

  /* Quantised kernels (0x300-0x3FF) -------------------------------------------------------- */
  /* Quantise f32 rows into a KnpuQuantFormat: params KnpuQuantizeParams. */
  KNPU_KERNEL_QUANTIZE = 0x300,
  /* Dequantise rows of a KnpuQuantFormat to f32: params KnpuDequantizeParams. */
  KNPU_KERNEL_DEQUANTIZE = 0x301,
  /* y = act(x W^T + bias) with quantised W: params KnpuQMatmulParams. */
  KNPU_KERNEL_QMATMUL = 0x302,
  /* y = act((xq sx) (wq sw)^T + bias) over int8 codes: params KnpuW8A8GemmParams. */
  KNPU_KERNEL_W8A8_GEMM = 0x303,
  /* Embedding lookup from a quantised table: params KnpuQEmbeddingParams. */
  KNPU_KERNEL_QEMBEDDING = 0x304,
} KnpuKernelId;

/* Elementwise operations of KNPU_KERNEL_ELEMENTWISE. 0, 1 and 2 (add, multiply, subtract
 * before ABI 2.0) are retired and INVALID_VALUE: use KNPU_KERNEL_BINARY. */
typedef enum KnpuElementwiseOp {
  /* out = alpha * a + b */
  KNPU_ELEMENTWISE_AXPY = 3,
  /* out = alpha * a (b unused) */
  KNPU_ELEMENTWISE_SCALE = 4,
} KnpuElementwiseOp;

/* Parameters of KNPU_KERNEL_ELEMENTWISE over `count` contiguous elements of `dtype`
 * (F32, F16 or BF16; computed in f32). */
typedef struct KnpuElementwiseParams {
  size_t struct_size;
  uint32_t op;    /* KnpuElementwiseOp */
  uint32_t dtype; /* KnpuDtype */
  uint64_t count;
  KnpuDeviceAddress a;
  KnpuDeviceAddress b; /* 0 when the op takes one input */
  KnpuDeviceAddress out;
  float alpha;
} KnpuElementwiseParams;

/* ---- GEMM (KNPU_KERNEL_GEMM) ---------------------------------------------------------- */

/* Activations of fused epilogues; shared by every kernel that fuses one. Numbering is
 * stable. */
typedef enum KnpuActivation {
  /* Identity. */
  KNPU_ACTIVATION_NONE = 0,
  /* max(x, 0); NaN stays NaN. */
  KNPU_ACTIVATION_RELU = 1,
  /* 0.5 x (1 + erf(x / sqrt 2)). */
  KNPU_ACTIVATION_GELU_ERF = 2,
  /* 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))). */
  KNPU_ACTIVATION_GELU_TANH = 3,
  /* x * sigmoid(x). */
  KNPU_ACTIVATION_SILU = 4,
} KnpuActivation;

/* Parameters of KNPU_KERNEL_GEMM: for each batch b < batch_count,
 *
 *   D = act(alpha * op(A) op(B) + beta * C + bias) + residual,   then C := D,
 *
 * in that order: the product is scaled by alpha, beta * C (the incoming C) is added, then
 * the per-column bias, then the activation, then the residual; C is rounded to its dtype
 * once, at the end. Products accumulate in f32; F16 and BF16 inputs are widened exactly.
 *
 * Layout: every matrix is row-major, element (i, j) of a stored matrix with leading
 * dimension ld at element offset i * ld + j from its batch's start. op(A) is m x k: stored
 * m x k (lda >= k) when trans_a is 0, or k x m (lda >= m) when trans_a is 1. op(B) is k x n:
 * stored k x n (ldb >= n), or n x k (ldb >= k) when trans_b is 1 (weights laid out
 * [out, in]). C and the residual are m x n (ldc >= n, ld_residual >= n). Batch b of an
 * operand starts b * its batch stride elements after its address. Leading dimensions and
 * strides count elements, not bytes.
 *
 * Dtypes: A, B and C may be F32, F16 or BF16. The software NPU runs A and B of the same
 * dtype with C of any of the three, and A F32 with B F16 or BF16 and C F32 (half-precision
 * weights); other combinations are KNPU_STATUS_NOT_SUPPORTED at submit.
 *
 * Edge cases: beta == 0 overwrites C without reading it (NaN in C does not propagate);
 * k == 0 or alpha == 0 computes D = act(beta * C + bias) + residual without reading A or B
 * (with k == 0 A and B are empty and their addresses may be 0; with alpha == 0 they must
 * still be valid ranges); m, n or batch_count == 0 does nothing, and then every address may
 * be 0.
 *
 * Aliasing: the result is as if every input (A, B, bias, residual, and C when beta != 0)
 * were read before C is written. The software NPU copies an input whose device range
 * overlaps C's before it runs (so `residual == c` with beta == 0, an in-place residual
 * update, works). Batches of C must not overlap each other (stride_c >= (m - 1) * ldc + n
 * when batch_count > 1); A, B and the residual may repeat across batches (stride 0).
 *
 * Every address must be aligned to its element size. Invalid sizes, leading dimensions,
 * strides or enum values are KNPU_STATUS_INVALID_VALUE at submit; an address range outside
 * every live allocation is KNPU_STATUS_ILLEGAL_ADDRESS when the kernel runs. */
typedef struct KnpuGemmParams {
  size_t struct_size;
  uint32_t a_dtype;   /* KnpuDtype of A */
  uint32_t b_dtype;   /* KnpuDtype of B */
  uint32_t c_dtype;   /* KnpuDtype of C and of the residual */
  uint32_t trans_a;   /* 0: A stored m x k; 1: A stored k x m (op(A) = A^T) */
  uint32_t trans_b;   /* 0: B stored k x n; 1: B stored n x k (op(B) = B^T) */
  uint32_t activation; /* KnpuActivation applied after bias, before the residual */
  uint64_t m;         /* rows of op(A), C and the residual */
  uint64_t n;         /* columns of op(B), C and the residual; length of the bias */
  uint64_t k;         /* columns of op(A), rows of op(B) */
  KnpuDeviceAddress a; /* first element of batch 0 of A */
  KnpuDeviceAddress b; /* first element of batch 0 of B */
  KnpuDeviceAddress c; /* first element of batch 0 of C (read when beta != 0, written) */
  uint64_t lda;       /* leading dimension of A as stored, elements */
  uint64_t ldb;       /* leading dimension of B as stored, elements */
  uint64_t ldc;       /* leading dimension of C, elements */
  uint64_t batch_count; /* independent products; 1 for a plain GEMM */
  uint64_t stride_a;  /* elements between batches of A (0: one A for every batch) */
  uint64_t stride_b;  /* elements between batches of B (0: one B for every batch) */
  uint64_t stride_c;  /* elements between batches of C (ignored when batch_count <= 1) */
  float alpha;        /* scale of op(A) op(B) */
  float beta;         /* scale of the incoming C; 0: C is not read */
  KnpuDeviceAddress bias; /* n F32 values added to every row of every batch, or 0 for none */
  KnpuDeviceAddress residual; /* m x n per batch of c_dtype added last, or 0 for none */
  uint64_t ld_residual; /* leading dimension of the residual, elements (ignored without one) */
  uint64_t stride_residual; /* elements between batches of the residual (0: one for all) */
} KnpuGemmParams;
/* Attention and key/value caches --------------------------------------------------------- */
/* Element types: F32, F16 or BF16 (accumulated in f32); lse is F32, kv_lens, seq_lens and
 * block tables are U32. Shapes and strides count elements, never bytes. */

/* A strided 4-D tensor with logical shape [batch, seq, heads, head_dim]; head_dim is
 * contiguous. Dense [batch, seq, heads, head_dim] has strides (seq*heads*head_dim,
 * heads*head_dim, head_dim); [batch, heads, seq, head_dim] has (heads*seq*head_dim,
 * head_dim, seq*head_dim). */
typedef struct KnpuAttnTensor {
  uint64_t batch;
  uint64_t seq; /* for a cache: its capacity */
  uint64_t heads;
  uint64_t head_dim;
  uint64_t batch_stride;
  uint64_t seq_stride;
  uint64_t head_stride;
} KnpuAttnTensor;

/* A paged key/value cache: num_blocks blocks of block_size positions of kv_heads vectors of
 * head_dim elements. Sequence b's position p lives in block
 * block_table[b * max_blocks_per_seq + p / block_size], slot p % block_size. */
typedef struct KnpuPagedKvCache {
  uint64_t num_blocks;
  uint64_t block_size;
  uint64_t kv_heads;
  uint64_t head_dim;
  uint64_t block_stride;
  uint64_t slot_stride;
  uint64_t head_stride;
} KnpuPagedKvCache;

/* Attention flags. */
typedef enum KnpuAttentionFlags {
  /* Query i of q_len sees keys j <= kv_len - q_len + i. */
  KNPU_ATTENTION_CAUSAL = 1,
} KnpuAttentionFlags;

/* Parameters of KNPU_KERNEL_ATTENTION: out = softmax(scale * q k^T + mask) v. q and out are
 * [batch, q_len, q_heads, head_dim]; k and v are [batch, kv_len, kv_heads, head_dim] with
 * kv_heads dividing q_heads. */
typedef struct KnpuAttentionParams {
  size_t struct_size;
  uint32_t dtype; /* KnpuDtype */
  uint32_t flags; /* KnpuAttentionFlags */
  KnpuAttnTensor q_desc;
  KnpuAttnTensor k_desc;
  KnpuAttnTensor v_desc;
  KnpuAttnTensor out_desc;
  KnpuDeviceAddress q;
  KnpuDeviceAddress k;
  KnpuDeviceAddress v;
  KnpuDeviceAddress out;
  KnpuDeviceAddress lse;     /* F32 [batch, q_heads, q_len] log-sum-exp, or 0 for none */
  KnpuDeviceAddress kv_lens; /* U32 [batch] keys per sequence, or 0: all kv_len keys */
  uint64_t window;           /* sliding window in keys, 0 for none */
  float scale;               /* softmax scale, 0 for 1/sqrt(head_dim) */
} KnpuAttentionParams;

/* Parameters of KNPU_KERNEL_PAGED_ATTENTION: as KNPU_KERNEL_ATTENTION with K and V read from
 * a paged cache; kv_lens is required. */
typedef struct KnpuPagedAttentionParams {
  size_t struct_size;
  uint32_t dtype; /* KnpuDtype */
  uint32_t flags; /* KnpuAttentionFlags */
  KnpuAttnTensor q_desc;
  KnpuAttnTensor out_desc;
  KnpuPagedKvCache cache; /* layout of both k_cache and v_cache */
  uint64_t max_blocks_per_seq;
  KnpuDeviceAddress q;
  KnpuDeviceAddress k_cache;
  KnpuDeviceAddress v_cache;
  KnpuDeviceAddress out;
  KnpuDeviceAddress lse;         /* F32 [batch, q_heads, q_len], or 0 for none */
  KnpuDeviceAddress kv_lens;     /* U32 [batch] */
  KnpuDeviceAddress block_table; /* U32 [batch, max_blocks_per_seq] */
  uint64_t window;               /* 0 for none */
  float scale;                   /* 0 for 1/sqrt(head_dim) */
} KnpuPagedAttentionParams;

/* Parameters of KNPU_KERNEL_KV_APPEND: sequence b's new position t is written at cache
 * position seq_lens[b] + t of k_cache and v_cache (both laid out as cache_desc). Nothing is
 * written when a sequence would pass the capacity cache_desc.seq. */
typedef struct KnpuKvAppendParams {
  size_t struct_size;
  uint32_t dtype;    /* KnpuDtype */
  uint32_t reserved; /* 0 */
  KnpuAttnTensor cache_desc;
  KnpuAttnTensor new_desc; /* layout of k_new and v_new */
  KnpuDeviceAddress k_cache;
  KnpuDeviceAddress v_cache;
  KnpuDeviceAddress k_new;
  KnpuDeviceAddress v_new;
  KnpuDeviceAddress seq_lens; /* U32 [batch] positions already held */
} KnpuKvAppendParams;

/* Parameters of KNPU_KERNEL_PAGED_KV_APPEND: as KNPU_KERNEL_KV_APPEND into a paged cache.
 * Nothing is written when a position passes the table or names a block outside the cache. */
typedef struct KnpuPagedKvAppendParams {
  size_t struct_size;
  uint32_t dtype;    /* KnpuDtype */
  uint32_t reserved; /* 0 */
  KnpuPagedKvCache cache;
  KnpuAttnTensor new_desc;
  uint64_t max_blocks_per_seq;
  KnpuDeviceAddress k_cache;
  KnpuDeviceAddress v_cache;
  KnpuDeviceAddress k_new;
  KnpuDeviceAddress v_new;
  KnpuDeviceAddress block_table; /* U32 [batch, max_blocks_per_seq] */
  KnpuDeviceAddress seq_lens;    /* U32 [batch] */
} KnpuPagedKvAppendParams;
/* LLM ops (0x400-0x4FF) ------------------------------------------------------------------- */
/* Matrices are row-major and contiguous; shapes count elements. Every address must be a
 * multiple of its element size. Inputs may overlap outputs (out == x is an in-place update):
 * the result is as if every input were read before any output was written. Outputs of one
 * kernel may not overlap each other. */

/* KNPU_KERNEL_RMS_NORM: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight[:]. */
typedef struct KnpuRmsNormParams {
  size_t struct_size;
  uint32_t dtype; /* KnpuDtype of x, weight and out */
  uint32_t reserved;
  uint64_t rows;
  uint64_t cols;
  KnpuDeviceAddress x;      /* [rows, cols] */
  KnpuDeviceAddress weight; /* [cols] */
  KnpuDeviceAddress out;    /* [rows, cols] */
  float eps;                /* finite, >= 0 */
} KnpuRmsNormParams;

/* KNPU_KERNEL_LAYER_NORM: out[r, :] = (x[r, :] - mean) / sqrt(var + eps) * weight + bias. */
typedef struct KnpuLayerNormParams {
  size_t struct_size;
  uint32_t dtype; /* KnpuDtype of x, weight, bias and out */
  uint32_t reserved;
  uint64_t rows;
  uint64_t cols;
  KnpuDeviceAddress x;      /* [rows, cols] */
  KnpuDeviceAddress weight; /* [cols] */
  KnpuDeviceAddress bias;   /* [cols], or 0 for none */
  KnpuDeviceAddress out;    /* [rows, cols] */
  float eps;                /* finite, >= 0 */
} KnpuLayerNormParams;

/* Pair layouts of KNPU_KERNEL_ROPE. */
typedef enum KnpuRopeStyle {
  /* GPT-J: pairs (2i, 2i + 1). */
  KNPU_ROPE_INTERLEAVED = 0,
  /* GPT-NeoX / Llama: pairs (i, i + rotary_dim / 2). */
  KNPU_ROPE_NEOX = 1,
} KnpuRopeStyle;

/* KNPU_KERNEL_ROPE: rotates the first rotary_dim elements of every head of every row by the
 * row's position; the rest of each head is copied. */
typedef struct KnpuRopeParams {
  size_t struct_size;
  uint32_t dtype; /* KnpuDtype of x and out */
  uint32_t style; /* KnpuRopeStyle */
  uint64_t rows;
  uint64_t heads;
  uint64_t head_dim;
  uint64_t rotary_dim;         /* even, <= head_dim */
  KnpuDeviceAddress x;         /* [rows, heads, head_dim] */
  KnpuDeviceAddress out;       /* [rows, heads, head_dim] */
  KnpuDeviceAddress positions; /* [rows] uint32 positions, or 0: row r is at start_position + r */
  uint64_t start_position;
  float base; /* frequency base theta: finite, > 0 */
} KnpuRopeParams;

/* Functions of KNPU_KERNEL_ACTIVATION. */

/* KNPU_KERNEL_ACTIVATION: out[i] = f(x[i]) for i < len. */
typedef struct KnpuActivationParams {
  size_t struct_size;
  uint32_t dtype;      /* KnpuDtype of x and out */
  uint32_t activation; /* KnpuActivation: SILU, GELU_ERF or GELU_TANH */
  uint64_t len;
  KnpuDeviceAddress x;
  KnpuDeviceAddress out;
} KnpuActivationParams;

/* KNPU_KERNEL_SWIGLU: out[i] = silu(gate[i]) * up[i] for i < len. */
typedef struct KnpuSwigluParams {
  size_t struct_size;
  uint32_t dtype; /* KnpuDtype of gate, up and out */
  uint32_t reserved;
  uint64_t len;
  KnpuDeviceAddress gate;
  KnpuDeviceAddress up;
  KnpuDeviceAddress out;
} KnpuSwigluParams;

/* KNPU_KERNEL_SOFTMAX: out[r, :] = softmax(scale * x[r, :]). */
typedef struct KnpuSoftmaxParams {
  size_t struct_size;
  uint32_t dtype; /* KnpuDtype of x and out */
  uint32_t reserved;
  uint64_t rows;
  uint64_t cols;
  KnpuDeviceAddress x;   /* [rows, cols] */
  KnpuDeviceAddress out; /* [rows, cols] */
  float scale;           /* finite */
} KnpuSoftmaxParams;

/* Operations of KNPU_KERNEL_BINARY. */
typedef enum KnpuBinaryOp {
  /* out = a + b */
  KNPU_BINARY_ADD = 0,
  /* out = a * b */
  KNPU_BINARY_MUL = 1,
  /* out = a - b (since ABI 2.0) */
  KNPU_BINARY_SUB = 2,
  /* out = a / b, IEEE division in f32 (x / 0 is +-inf, 0 / 0 NaN) (since ABI 2.1) */
  KNPU_BINARY_DIV = 3,
} KnpuBinaryOp;

/* How operand b of KNPU_KERNEL_BINARY is laid out. */
typedef enum KnpuBroadcast {
  /* b is [rows, cols], like a. */
  KNPU_BROADCAST_NONE = 0,
  /* b is one row [cols], applied to every row of a. */
  KNPU_BROADCAST_ROW = 1,
} KnpuBroadcast;

/* KNPU_KERNEL_BINARY: out = a op b. The one family of plain binary elementwise ops: a vector
 * add is rows = 1, cols = n, broadcast NONE. */
typedef struct KnpuBinaryParams {
  size_t struct_size;
  uint32_t op;        /* KnpuBinaryOp */
  uint32_t dtype;     /* KnpuDtype of a, b and out */
  uint32_t broadcast; /* KnpuBroadcast */
  uint32_t reserved;
  uint64_t rows;
  uint64_t cols;
  KnpuDeviceAddress a;   /* [rows, cols] */
  KnpuDeviceAddress b;   /* [rows, cols] or [cols] */
  KnpuDeviceAddress out; /* [rows, cols] */
} KnpuBinaryParams;

/* KNPU_KERNEL_EMBEDDING: out[t, :] = table[ids[t], :] converted to out_dtype. An id >= vocab
 * is a KNPU_STATUS_KERNEL_FAULT naming the id; nothing is written then. */
typedef struct KnpuEmbeddingParams {
  size_t struct_size;
  uint32_t table_dtype; /* KnpuDtype of table */
  uint32_t out_dtype;   /* KnpuDtype of out */
  uint64_t vocab;
  uint64_t dim;
  uint64_t tokens;
  KnpuDeviceAddress table; /* [vocab, dim] */
  KnpuDeviceAddress ids;   /* [tokens] uint32 */
  KnpuDeviceAddress out;   /* [tokens, dim] */
} KnpuEmbeddingParams;

/* KNPU_KERNEL_CAST: dst[i] = src[i] converted (round to nearest even) for i < len. */
typedef struct KnpuCastParams {
  size_t struct_size;
  uint32_t src_dtype; /* KnpuDtype of src */
  uint32_t dst_dtype; /* KnpuDtype of dst */
  uint64_t len;
  KnpuDeviceAddress src;
  KnpuDeviceAddress dst;
} KnpuCastParams;

/* KNPU_KERNEL_ARGMAX: out[r] = index of the largest value of x[r, :] (lowest index on ties). */
typedef struct KnpuArgmaxParams {
  size_t struct_size;
  uint32_t dtype; /* KnpuDtype of x */
  uint32_t reserved;
  uint64_t rows;
  uint64_t cols;         /* >= 1 */
  KnpuDeviceAddress x;   /* [rows, cols] */
  KnpuDeviceAddress out; /* [rows] uint32 */
} KnpuArgmaxParams;

/* KNPU_KERNEL_TOP_K: the k largest values of each row in descending order (ties to the lower
 * index) and their indices. */
typedef struct KnpuTopKParams {
  size_t struct_size;
  uint32_t dtype; /* KnpuDtype of x and values */
  uint32_t reserved;
  uint64_t rows;
  uint64_t cols;
  uint64_t k;                /* <= cols */
  KnpuDeviceAddress x;       /* [rows, cols] */
  KnpuDeviceAddress values;  /* [rows, k] */
  KnpuDeviceAddress indices; /* [rows, k] uint32 */
} KnpuTopKParams;

/* KNPU_KERNEL_SAMPLE (since ABI 2.1): out[r] = one token id drawn from row r of logits
 * ([rows, vocab], computed in f32 or wider), so only the chosen id leaves the device.
 *
 * temperature == 0 is greedy: out[r] is the row's argmax in KNPU_KERNEL_ARGMAX's order (the
 * lowest index on ties), and no random number is used. Otherwise, with z = logits[r, :] /
 * temperature (NaN counts as -inf):
 *   1. keep the top_k largest z (top_k == 0 or top_k == vocab: all), ties to the lower index;
 *   2. p = softmax of the kept z (if the largest kept z is +inf, the +inf entries share all
 *      the probability equally; if it is -inf, out[r] is the row's argmax);
 *   3. nucleus: order the kept entries by p descending (ties to the lower index) and keep the
 *      shortest prefix whose sum reaches top_p (top_p == 1: all; always at least one);
 *   4. draw: with u the row's uniform number in [0, 1), walk the kept entries in ascending
 *      index order summing their p renormalised over the kept set; out[r] is the first index
 *      at which the sum exceeds u (the last kept index with p > 0 if rounding leaves u above
 *      the total).
 *
 * The uniform number is counter-based, so a driver keeps no random state and a replayed
 * command list draws fresh numbers: with c the U64 at rng_counter when the kernel starts,
 *   mix(z)  = splitmix64's finaliser: z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
 *             z *= 0x94D049BB133111EB; z ^= z >> 31   (64-bit wrapping arithmetic)
 *   step(z) = mix(z + 0x9E3779B97F4A7C15)
 *   h       = step(step(step(seed) ^ c) ^ r)
 *   u       = (h >> 11) * 2^-53
 * and the kernel stores c + 1 (wrapping) at rng_counter once it has drawn for every row. The
 * same seed and counter give the same ids on every driver up to the rounding of the
 * probabilities (a draw within a few ulps of a boundary may land on either side).
 *
 * rng_counter may be 0 only when temperature == 0 (greedy reads and writes no counter; a
 * counter that is given is still incremented). Rules checked at submit (INVALID_VALUE):
 * temperature finite and >= 0, top_p in (0, 1], top_k <= vocab, vocab >= 1 when rows > 0,
 * vocab <= 2^31 for I32 ids, out and rng_counter disjoint; the dtypes of logits (F32, F16,
 * BF16) and out (U32, I32) are NOT_SUPPORTED otherwise. rows == 0 reads and writes nothing. */
typedef struct KnpuSampleParams {
  size_t struct_size;
  uint32_t dtype;     /* KnpuDtype of logits */
  uint32_t out_dtype; /* KnpuDtype of out: U32 or I32 */
  uint64_t rows;
  uint64_t vocab;
  uint64_t top_k;                /* 0: all */
  uint64_t seed;
  KnpuDeviceAddress logits;      /* [rows, vocab] */
  KnpuDeviceAddress out;         /* [rows] token ids */
  KnpuDeviceAddress rng_counter; /* one U64 (8-aligned), read then incremented by 1 */
  float temperature;             /* finite, >= 0; 0: greedy */
  float top_p;                   /* in (0, 1]; 1: no nucleus cut */
} KnpuSampleParams;

/* Quantised kernels (0x300-0x3FF) ----------------------------------------------------------
 * Quantised matrices are raw bytes: rows of k values one after another, each row k /
 * block_elems blocks laid out exactly as GGUF stores them (little-endian f16 block scales),
 * so a row takes row_bytes = k / block_elems * block_bytes bytes and k must be a multiple of
 * block_elems (otherwise KNPU_STATUS_INVALID_VALUE at submit):
 *
 *   format    block_elems  block_bytes  per-row scales (F32, one per row)
 *   Q8_0           32           34      none: passing one is INVALID_VALUE
 *   Q4_0           32           18      none
 *   Q4_1           32           20      none
 *   Q4_K          256          144      none
 *   Q6_K          256          210      none
 *   I8              1            1      required: x = scale[row] * q
 *   F8E4M3          1            1      optional (absent: 1)
 *   F8E5M2          1            1      optional (absent: 1)
 *
 * Matrices are row-major and contiguous; shapes count elements (bytes for quantised data).
 * Every float address must be a multiple of its element size. Outputs may not overlap any
 * operand of the same kernel (KNPU_STATUS_INVALID_VALUE at submit). An address range outside
 * every live allocation is KNPU_STATUS_ILLEGAL_ADDRESS when the kernel runs. Numbering is
 * stable. */
typedef enum KnpuQuantFormat {
  /* 32 values: f16 d, 32 int8; x = d q. */
  KNPU_QUANT_Q8_0 = 0,
  /* 32 values: f16 d, 16 bytes of nibbles (low: elements 0..16); x = d (q - 8). */
  KNPU_QUANT_Q4_0 = 1,
  /* 32 values: f16 d, f16 m, 16 bytes of nibbles; x = d q + m. */
  KNPU_QUANT_Q4_1 = 2,
  /* 256 values: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles. */
  KNPU_QUANT_Q4_K = 3,
  /* 256 values: 128 bytes low nibbles, 64 bytes high bits, 16 int8 scales, f16 d. */
  KNPU_QUANT_Q6_K = 4,
  /* One int8 per value with a required F32 scale per row. */
  KNPU_QUANT_I8 = 5,
  /* OCP FP8 E4M3FN (no infinities, largest finite 448), optional F32 scale per row. */
  KNPU_QUANT_F8E4M3 = 6,
  /* FP8 E5M2 (IEEE-like, largest finite 57344), optional F32 scale per row. */
  KNPU_QUANT_F8E5M2 = 7,
} KnpuQuantFormat;

/* How KNPU_KERNEL_QMATMUL multiplies activations with the weights. */
typedef enum KnpuActQuant {
  /* Integer dot products where the format has them (activations quantised on the fly to
   * 8-bit blocks of 32), f32 otherwise (FP8 weights, I8 weights with k % 32 != 0). */
  KNPU_ACT_QUANT_AUTO = 0,
  /* Integer dot products; KNPU_STATUS_NOT_SUPPORTED at submit for FP8 weights and for I8
   * weights with k % 32 != 0. */
  KNPU_ACT_QUANT_INT8 = 1,
  /* Dequantise each weight row to f32 and multiply in f32. */
  KNPU_ACT_QUANT_FLOAT = 2,
} KnpuActQuant;

/* KNPU_KERNEL_QUANTIZE: dst = quantise(src) row by row. Q8_0, Q4_0 and Q4_1 round as the
 * reference GGUF quantiser does; Q4_K and Q6_K search scales by min/max; I8 writes
 * scales[r] = max|src[r, :]| / 127; FP8 rounds to nearest even, saturates finite overflow and
 * writes scales (when given) as 1. */
typedef struct KnpuQuantizeParams {
  size_t struct_size;
  uint32_t format; /* KnpuQuantFormat */
  uint32_t reserved;
  uint64_t rows;
  uint64_t k;               /* values per row: a multiple of the format's block_elems */
  KnpuDeviceAddress src;    /* [rows, k] F32 */
  KnpuDeviceAddress dst;    /* rows * row_bytes bytes */
  KnpuDeviceAddress scales; /* [rows] F32 written; required for I8, optional for FP8, else 0 */
} KnpuQuantizeParams;

/* KNPU_KERNEL_DEQUANTIZE: dst[r, :] = dequantise(src row r) (times scales[r] when given). */
typedef struct KnpuDequantizeParams {
  size_t struct_size;
  uint32_t format; /* KnpuQuantFormat */
  uint32_t reserved;
  uint64_t rows;
  uint64_t k;               /* values per row: a multiple of the format's block_elems */
  KnpuDeviceAddress src;    /* rows * row_bytes bytes */
  KnpuDeviceAddress scales; /* [rows] F32; required for I8, optional for FP8, else 0 */
  KnpuDeviceAddress dst;    /* [rows, k] F32 */
} KnpuDequantizeParams;

/* KNPU_KERNEL_QMATMUL: y[i, j] = act(sum_l x[i, l] W[j, l] + bias[j]) with W [n, k] quantised
 * rows (an nn.Linear weight, one row per output). x and y are F32, F16 or BF16 (any pair);
 * arithmetic is f32, y is rounded once. With act_quant INT8 (or AUTO on a format that has
 * it) x is quantised on the fly to 8-bit blocks of 32, which adds at most max|x_block| / 254
 * of rounding per value; FLOAT is the dequantised product up to f32 summation error. */
typedef struct KnpuQMatmulParams {
  size_t struct_size;
  uint32_t format;     /* KnpuQuantFormat of W */
  uint32_t x_dtype;    /* KnpuDtype of x */
  uint32_t y_dtype;    /* KnpuDtype of y */
  uint32_t activation; /* KnpuActivation applied after the bias */
  uint32_t act_quant;  /* KnpuActQuant */
  uint32_t reserved;
  uint64_t m;                 /* rows of x and y (tokens) */
  uint64_t n;                 /* rows of W, columns of y (outputs) */
  uint64_t k;                 /* columns of x and W: a multiple of the format's block_elems */
  KnpuDeviceAddress x;        /* [m, k] */
  KnpuDeviceAddress w;        /* n * row_bytes bytes */
  KnpuDeviceAddress w_scales; /* [n] F32; required for I8, optional for FP8, else 0 */
  KnpuDeviceAddress bias;     /* [n] F32, or 0 for none */
  KnpuDeviceAddress y;        /* [m, n] */
} KnpuQMatmulParams;

/* KNPU_KERNEL_W8A8_GEMM: y[i, j] = act(x_scales[i] w_scales[j] sum_l xq[i, l] wq[j, l]
 * + bias[j]) over int8 codes (-128 accepted), with exact i32 sums: k <= 131072, else
 * KNPU_STATUS_NOT_SUPPORTED at submit. y is F32, F16 or BF16. */
typedef struct KnpuW8A8GemmParams {
  size_t struct_size;
  uint32_t y_dtype;    /* KnpuDtype of y */
  uint32_t activation; /* KnpuActivation applied after the bias */
  uint64_t m;
  uint64_t n;
  uint64_t k;
  KnpuDeviceAddress xq;       /* [m, k] I8 */
  KnpuDeviceAddress x_scales; /* [m] F32 */
  KnpuDeviceAddress wq;       /* [n, k] I8 */
  KnpuDeviceAddress w_scales; /* [n] F32 */
  KnpuDeviceAddress bias;     /* [n] F32, or 0 for none */
  KnpuDeviceAddress y;        /* [m, n] */
} KnpuW8A8GemmParams;

/* KNPU_KERNEL_QEMBEDDING: out[t, :] = dequantise(table row ids[t]) converted to out_dtype
 * (KNPU_KERNEL_EMBEDDING covers F32/F16/BF16 tables). An id >= vocab is a
 * KNPU_STATUS_KERNEL_FAULT naming the id; nothing is written then. */
typedef struct KnpuQEmbeddingParams {
  size_t struct_size;
  uint32_t format;    /* KnpuQuantFormat of the table */
  uint32_t out_dtype; /* KnpuDtype of out: F32, F16 or BF16 */
  uint64_t vocab;
  uint64_t dim;               /* a multiple of the format's block_elems */
  uint64_t tokens;
  KnpuDeviceAddress table;    /* vocab * row_bytes bytes */
  KnpuDeviceAddress scales;   /* [vocab] F32; required for I8, optional for FP8, else 0 */
  KnpuDeviceAddress ids;      /* [tokens] uint32 */
  KnpuDeviceAddress out;      /* [tokens, dim] */
} KnpuQEmbeddingParams;

/* Command kinds. */
typedef enum KnpuCommandType {
  /* Copy `size` bytes from host memory `host_src` to device address `dst`. */
  KNPU_COMMAND_COPY_HOST_TO_DEVICE = 0,
  /* Copy `size` bytes from device address `src` to host memory `host_dst`. */
  KNPU_COMMAND_COPY_DEVICE_TO_HOST = 1,
  /* Copy `size` bytes between device addresses of the queue's device. Overlap is allowed and
   * behaves as memmove. */
  KNPU_COMMAND_COPY_DEVICE_TO_DEVICE = 2,
  /* Copy `size` bytes from `src` on `peer_device` to `dst` on the queue's device. */
  KNPU_COMMAND_COPY_PEER = 3,
  /* Fill `size` bytes at `dst` with the `pattern_size`-byte pattern (1, 2, 4 or 8). */
  KNPU_COMMAND_FILL = 4,
  /* Run kernel `kernel_id` with the parameter struct at `params` (`params_size` bytes). */
  KNPU_COMMAND_KERNEL = 5,
  /* Call `fn(user_data, status)` on a driver thread when all earlier work on the queue is
   * done. Called exactly once: with KNPU_STATUS_SUCCESS normally, or with the failure status
   * when the submission failed or was abandoned, so the callee can always release user_data.
   * The callback must not block on work submitted after it to the same queue. */
  KNPU_COMMAND_HOST_FUNCTION = 6,
  /* Write the device clock (nanoseconds, same clock as command timestamps) to host memory
   * `host_dst` (8 bytes, 8-aligned) when all earlier work on the queue is done. */
  KNPU_COMMAND_TIMESTAMP = 7,
} KnpuCommandType;

typedef void (*KnpuHostFunction)(void *user_data, KnpuStatus status);

typedef struct KnpuCopyCommand {
  KnpuDeviceAddress src;
  KnpuDeviceAddress dst;
  const void *host_src;
  void *host_dst;
  uint64_t size;
  KnpuDriverDevice peer_device;
} KnpuCopyCommand;

typedef struct KnpuFillCommand {
  KnpuDeviceAddress dst;
  uint64_t size;
  uint64_t pattern;
  uint32_t pattern_size;
} KnpuFillCommand;

typedef struct KnpuKernelCommand {
  uint32_t kernel_id;
  const void *params;
  size_t params_size;
} KnpuKernelCommand;

typedef struct KnpuHostFunctionCommand {
  KnpuHostFunction fn;
  void *user_data;
} KnpuHostFunctionCommand;

typedef struct KnpuTimestampCommand {
  uint64_t *host_dst;
} KnpuTimestampCommand;

/* One command. The driver copies the command and its kernel parameter struct during
 * queue_submit, so both may be freed as soon as queue_submit returns. Host memory named by
 * a copy or timestamp command must stay valid until the submission completes. */
typedef struct KnpuCommand {
  size_t struct_size;
  uint32_t type; /* KnpuCommandType */
  uint32_t flags; /* reserved, 0 */
  union {
    KnpuCopyCommand copy;
    KnpuFillCommand fill;
    KnpuKernelCommand kernel;
    KnpuHostFunctionCommand host_function;
    KnpuTimestampCommand timestamp;
  } u;
} KnpuCommand;

/* One submission: wait until every wait semaphore reaches its value, run the commands in
 * order, then set every signal semaphore to its value. If any wait semaphore has failed,
 * the commands do not run and the submission fails with KNPU_STATUS_DEPENDENCY_FAILED. If a
 * command fails, the remaining commands do not run. A failed submission sets every signal
 * semaphore to KNPU_SEMAPHORE_FAILED and records the status and a message naming the
 * command (its index and kind) and, for an address fault, the device address. */
typedef struct KnpuSubmitInfo {
  size_t struct_size;
  /* `commands` is an array whose elements are `commands[0].struct_size` bytes apart; every
   * command states the same struct_size. */
  uint32_t wait_count;
  const KnpuSemaphore *wait_semaphores;
  const uint64_t *wait_values;
  uint32_t command_count;
  const KnpuCommand *commands;
  uint32_t signal_count;
  const KnpuSemaphore *signal_semaphores;
  const uint64_t *signal_values;
  /* Since ABI 1.1: a command list of the queue's device (or NULL) whose commands run after
   * `commands`, as part of this submission. The submission runs the list as it is when
   * queue_submit is called; a later command_list_update does not affect it. */
  KnpuCommandList command_list;
} KnpuSubmitInfo;

/* Kinds of injected fault (testing). */
typedef enum KnpuFaultKind {
  /* Clear every armed fault. */
  KNPU_FAULT_NONE = 0,
  /* The `count`-th mem_alloc from now (1 = the next one) fails with OUT_OF_MEMORY. */
  KNPU_FAULT_FAIL_ALLOC = 1,
  /* The `count`-th kernel command from now faults with KERNEL_FAULT (if `kernel_id` is not 0,
   * counting only launches of that kernel). */
  KNPU_FAULT_KERNEL = 2,
  /* The device is lost now: pending and future work fails with DEVICE_LOST. */
  KNPU_FAULT_LOSE_DEVICE = 3,
} KnpuFaultKind;

typedef struct KnpuFaultInjection {
  size_t struct_size;
  uint32_t kind; /* KnpuFaultKind */
  uint32_t kernel_id;
  uint64_t count;
} KnpuFaultInjection;

/* One executed command, as the profiler records it. */
typedef struct KnpuCommandRecord {
  size_t struct_size;
  uint32_t queue_id;      /* small integer naming the queue, unique per device */
  uint32_t type;          /* KnpuCommandType */
  uint32_t kernel_id;     /* for KNPU_COMMAND_KERNEL, else 0 */
  KnpuStatus status;
  uint64_t bytes;         /* bytes moved by copies and fills, else 0 */
  uint64_t start_ns;      /* device clock, nanoseconds */
  uint64_t end_ns;
  uint64_t modeled_ns;    /* duration the device's timing model predicts (0: no model) */
} KnpuCommandRecord;

/* The function table. Every function returns a KnpuStatus. Appended fields only. */
typedef struct KnpuDriverApi {
  size_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;
  /* A short, stable driver name such as "sim"; static storage. */
  const char *driver_name;
  /* The driver's own version string; static storage. */
  const char *driver_version;

  /* Devices ------------------------------------------------------------------------------ */
  KnpuStatus (*device_count)(uint32_t *count);
  /* Opens device `index` (< device_count). Opening the same index twice gives the same
   * handle; devices live until the library is unloaded. */
  KnpuStatus (*device_get)(uint32_t index, KnpuDriverDevice *device);
  /* Copies the device's name, NUL-terminated and truncated to `capacity` bytes. */
  KnpuStatus (*device_get_name)(KnpuDriverDevice device, char *name, size_t capacity);
  KnpuStatus (*device_get_attribute)(KnpuDriverDevice device, uint32_t attribute, int64_t *value);
  /* Sets *supported to 1 when the device runs `kernel_id` with element type `dtype`. */
  KnpuStatus (*device_supports_kernel)(KnpuDriverDevice device, uint32_t kernel_id, uint32_t dtype,
                                       int32_t *supported);
  KnpuStatus (*device_memory_info)(KnpuDriverDevice device, uint64_t *free_bytes, uint64_t *total_bytes);
  /* Arms a fault (testing). NOT_SUPPORTED where KNPU_ATTR_FAULT_INJECTION is 0. */
  KnpuStatus (*device_inject_fault)(KnpuDriverDevice device, const KnpuFaultInjection *fault);

  /* Memory ------------------------------------------------------------------------------- */
  /* Allocates `size` (> 0) bytes aligned to KNPU_ATTR_ALLOCATION_ALIGNMENT. Contents are
   * unspecified. */
  KnpuStatus (*mem_alloc)(KnpuDriverDevice device, uint64_t size, KnpuDeviceAddress *address);
  /* Frees an allocation by its base address. The caller guarantees no pending work uses it. */
  KnpuStatus (*mem_free)(KnpuDriverDevice device, KnpuDeviceAddress address);

  /* Queues ------------------------------------------------------------------------------- */
  /* A queue runs its submissions in order, one after another. */
  KnpuStatus (*queue_create)(KnpuDriverDevice device, int32_t priority, KnpuQueue *queue);
  /* Waits for the queue's submitted work to finish, then destroys it. */
  KnpuStatus (*queue_destroy)(KnpuQueue queue);
  /* Enqueues one submission and returns without waiting for it. When it returns an error,
   * nothing was enqueued: no command runs, no semaphore is signalled and no host function
   * is called. */
  KnpuStatus (*queue_submit)(KnpuQueue queue, const KnpuSubmitInfo *submit);

  /* Timeline semaphores ------------------------------------------------------------------ */
  KnpuStatus (*semaphore_create)(KnpuDriverDevice device, uint64_t initial_value, KnpuSemaphore *semaphore);
  /* The caller guarantees no pending submission names the semaphore. */
  KnpuStatus (*semaphore_destroy)(KnpuSemaphore semaphore);
  /* Reads the current value (KNPU_SEMAPHORE_FAILED after a failure). */
  KnpuStatus (*semaphore_query)(KnpuSemaphore semaphore, uint64_t *value);
  /* Waits until the value is >= `value`. Returns SUCCESS when reached; the failure status
   * (see semaphore_get_error) when the semaphore has failed; TIMEOUT after `timeout_ns`. */
  KnpuStatus (*semaphore_wait)(KnpuSemaphore semaphore, uint64_t value, uint64_t timeout_ns);
  /* Sets the value from the host. It must not go down. */
  KnpuStatus (*semaphore_signal)(KnpuSemaphore semaphore, uint64_t value);
  /* For a failed semaphore: the failure status and a NUL-terminated message (truncated to
   * `capacity`). For a healthy one: *status = SUCCESS and an empty message. */
  KnpuStatus (*semaphore_get_error)(KnpuSemaphore semaphore, KnpuStatus *status, char *message,
                                    size_t capacity);

  /* Profiling ---------------------------------------------------------------------------- */
  /* Starts (enable != 0) or stops recording a KnpuCommandRecord per executed command. */
  KnpuStatus (*device_set_profiling)(KnpuDriverDevice device, int32_t enable);
  /* Moves up to `capacity` recorded commands, oldest first, into `records` (each record's
   * struct_size must be set by the caller, and records are `records[0].struct_size` bytes
   * apart) and sets *count. A driver keeps a bounded number of records and drops the oldest
   * beyond that. */
  KnpuStatus (*device_read_profile)(KnpuDriverDevice device, KnpuCommandRecord *records, size_t capacity,
                                    size_t *count);
  /* The device clock now, nanoseconds (the clock of timestamps and records). */
  KnpuStatus (*device_get_clock)(KnpuDriverDevice device, uint64_t *ns);

  /* Command lists (since ABI 1.1) --------------------------------------------------------- */
  /* Validates `count` commands (elements `commands[0].struct_size` bytes apart) and stores
   * them, kernel parameter structs included, so the caller may free its copies. Host memory
   * and host functions named by the commands must stay valid while any submission of the
   * list is pending. A list with no commands is valid. */
  KnpuStatus (*command_list_create)(KnpuDriverDevice device, const KnpuCommand *commands, uint32_t count,
                                    KnpuCommandList *list);
  /* Replaces command `index` of the list (validated as in command_list_create). Submissions
   * already made keep the commands they were given. */
  KnpuStatus (*command_list_update)(KnpuCommandList list, uint32_t index, const KnpuCommand *command);
  /* Destroys the list; pending submissions that use it are not affected. */
  KnpuStatus (*command_list_destroy)(KnpuCommandList list);
} KnpuDriverApi;

/* True when a struct whose first field is `struct_size` has field `field`. */
#define KNPU_STRUCT_HAS_FIELD(ptr, type, field) \
  ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* The entry point. `loader_abi_major`/`loader_abi_minor` are the loader's version; a driver
 * may return NULL when it cannot serve that major. The table has static storage. */
typedef const KnpuDriverApi *(*KnpuDriverGetApiFn)(uint32_t loader_abi_major, uint32_t loader_abi_minor);

const KnpuDriverApi *knpu_driver_get_api(uint32_t loader_abi_major, uint32_t loader_abi_minor);

#ifdef __cplusplus
}
#endif

#endif /* KNPU_DRIVER_H */
