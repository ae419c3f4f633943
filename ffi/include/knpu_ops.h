/*
 * knpu_ops.h — the knpu runtime's operations beyond GEMM, for C and C++ (libknpu).
 *
 * Attention (dense and paged) and key/value-cache appends, the LLM ops (normalisation,
 * rotary embedding, activations, softmax, binary ops with broadcast, embedding lookup, casts,
 * argmax, top-k) and quantised weights (quantise, dequantise, quantised matmul, W8A8 GEMM,
 * quantised embedding). GEMM itself is knpublas.h.
 *
 * Every function has the same shape:
 *
 *   knpuError_t knpuOp(const knpuOpDesc *desc, <device pointers>, knpuStream_t stream);
 *
 *   - `desc` describes the problem: element types, shapes, strides, enums and scalars. It is
 *     read during the call only. Its first field is `structSize`: set it to sizeof(the
 *     struct), most simply with KNPU_OPS_DESC_INIT(type), which also zeroes the other fields.
 *     Fields are only ever appended, so a program compiled against this header keeps working
 *     with a newer library.
 *   - The device pointers are `void *` device addresses from knpuMalloc or knpuMallocAsync,
 *     pointer arithmetic included, each aligned to its element type. Every operand is
 *     resolved against the live allocations with the extent the op reads or writes (its shape
 *     and strides, from `desc`): a pointer outside every live allocation, or an operand that
 *     runs past the end of its allocation, is knpuErrorInvalidValue at the call. An optional
 *     operand (documented as such) is NULL when not given. An operand the op does not touch
 *     (an empty shape) may be NULL.
 *   - The work is queued on `stream` (NULL: the current device's default stream) and the call
 *     returns; the results are there after a synchronize of the stream or of an event
 *     recorded after the call. During a stream capture the op becomes a graph node.
 *   - Every field of `desc` is checked by the op's definition, the same rules the runtime's
 *     Rust launchers, the Python package and the software NPU use, before anything is queued.
 *     Values that live in device memory (token ids, key lengths, block tables) are checked by
 *     the kernel: a bad one is knpuErrorKernelFault at the stream's next synchronize, and the
 *     kernel writes nothing.
 *
 * Errors (besides those named per function): knpuErrorInvalidValue (desc NULL or misaligned,
 * structSize smaller than the struct, a NULL or out-of-range device pointer, a misaligned
 * pointer, a shape that overflows, an unknown enum value, a broken shape or scalar rule; the
 * message names the field), knpuErrorInvalidHandle (a garbage or destroyed stream),
 * knpuErrorShape (an operand's shape does not fit the others), knpuErrorDtype (an element type
 * the op does not take), knpuErrorNotSupported (the device has no kernel for the op and
 * element type, or a valid combination the op does not define),
 * knpuErrorDeviceMismatch (an operand in another device's memory than the stream's).
 *
 * Thread safety: any function from any thread; descriptors are not kept.
 *
 * Element types: the float ops store f32, f16 or bf16 (knpuDtypeF32, knpuDtypeF16,
 * knpuDtypeBF16) and compute in f32. Indices, token ids, positions, lengths and block numbers
 * are uint32_t (knpuSample may also write int32_t ids). Matrices are row-major and
 * contiguous unless strides are given. An input may be the output itself (in place): the
 * result is as if every input were read before any output was written.
 */
#ifndef KNPU_OPS_H
#define KNPU_OPS_H

#include "knpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Initialises an op descriptor: structSize = sizeof(type), every other field 0. */
#if defined(__cplusplus) && __cplusplus < 202002L
#define KNPU_OPS_DESC_INIT(type) {sizeof(type)}
#else
#define KNPU_OPS_DESC_INIT(type) {.structSize = sizeof(type)}
#endif

/* ---- Enums (the numbers of the driver ABI's enums, knpu_driver.h) ---------------------- */

/* Element types (KnpuDtype). */
typedef enum knpuDtype {
  knpuDtypeF32 = 0,
  knpuDtypeF16 = 1,
  knpuDtypeBF16 = 2,
  knpuDtypeF64 = 3,
  knpuDtypeI8 = 4,
  knpuDtypeU8 = 5,
  knpuDtypeI32 = 6,
  knpuDtypeU32 = 7,
  knpuDtypeI64 = 8
} knpuDtype_t;

/* Activations (KnpuActivation): the function of knpuActivation and the epilogue of
 * knpuQMatmul and knpuW8A8Gemm. */
typedef enum knpuActivation {
  /* Identity. */
  knpuActivationNone = 0,
  /* max(x, 0). */
  knpuActivationRelu = 1,
  /* 0.5 x (1 + erf(x / sqrt 2)) (torch.nn.GELU()). */
  knpuActivationGeluErf = 2,
  /* The tanh approximation of GELU (GELU(approximate="tanh")). */
  knpuActivationGeluTanh = 3,
  /* x * sigmoid(x) (torch.nn.SiLU()). */
  knpuActivationSilu = 4
} knpuActivation_t;

/* Pair layouts of a rotary embedding (KnpuRopeStyle). */
typedef enum knpuRopeStyle {
  /* GPT-J: pairs (2i, 2i + 1). */
  knpuRopeInterleaved = 0,
  /* GPT-NeoX / Llama: pairs (i, i + rotaryDim / 2). */
  knpuRopeNeox = 1
} knpuRopeStyle_t;

/* Operations of knpuBinary (KnpuBinaryOp). */
typedef enum knpuBinaryOp {
  knpuBinaryAdd = 0,
  knpuBinaryMul = 1,
  knpuBinarySub = 2,
  /* out = a / b (IEEE division: x / 0 is +-inf or NaN, never an error). */
  knpuBinaryDiv = 3
} knpuBinaryOp_t;

/* How operand b of knpuBinary is laid out (KnpuBroadcast). */
typedef enum knpuBroadcast {
  /* b is [rows, cols], like a. */
  knpuBroadcastNone = 0,
  /* b is one row [cols], applied to every row of a. */
  knpuBroadcastRow = 1
} knpuBroadcast_t;

/* Storage formats of quantised rows (KnpuQuantFormat), laid out as GGUF stores them: a row
 * of k values is k / blockElems blocks of blockBytes bytes. */
typedef enum knpuQuantFormat {
  /* Blocks of 32 values, 34 bytes (f16 scale, 32 int8). */
  knpuQuantQ8_0 = 0,
  /* Blocks of 32 values, 18 bytes (f16 scale, 16 bytes of nibbles). */
  knpuQuantQ4_0 = 1,
  /* Blocks of 32 values, 20 bytes (f16 scale and minimum, 16 bytes of nibbles). */
  knpuQuantQ4_1 = 2,
  /* Super-blocks of 256 values, 144 bytes. */
  knpuQuantQ4_K = 3,
  /* Super-blocks of 256 values, 210 bytes. */
  knpuQuantQ6_K = 4,
  /* One int8 per value and a required f32 scale per row. */
  knpuQuantI8 = 5,
  /* FP8 E4M3 (OCP E4M3FN), one byte per value, optional f32 scale per row. */
  knpuQuantF8E4M3 = 6,
  /* FP8 E5M2, one byte per value, optional f32 scale per row. */
  knpuQuantF8E5M2 = 7
} knpuQuantFormat_t;

/* Arithmetic of knpuQMatmul (KnpuActQuant). */
typedef enum knpuActQuant {
  /* Integer dot products where the format has them, f32 otherwise. */
  knpuActQuantAuto = 0,
  /* Integer dot products (activations quantised on the fly to 8-bit blocks of 32);
   * knpuErrorNotSupported for FP8 weights and for I8 weights with k % 32 != 0. */
  knpuActQuantInt8 = 1,
  /* Dequantise each weight row to f32 and multiply in f32. */
  knpuActQuantFloat = 2
} knpuActQuant_t;

/* Attention flags (KnpuAttentionFlags). */
typedef enum knpuAttentionFlags {
  /* Query i of qLen sees keys j <= kvLen - qLen + i (bottom-right aligned, which serves
   * chunked prefill and decode). */
  knpuAttentionCausal = 1
} knpuAttentionFlags_t;

/* ---- Attention and key/value caches ----------------------------------------------------- */

/* A strided view with the logical shape [batch, seq, heads, headDim]; strides count elements
 * and headDim is contiguous. flash-attn's [batch, seq, heads, headDim] memory has strides
 * (seq * heads * headDim, heads * headDim, headDim); PyTorch's scaled_dot_product_attention
 * layout [batch, heads, seq, headDim] has (heads * seq * headDim, headDim, seq * headDim). */
typedef struct knpuAttnTensor {
  uint64_t batch;
  uint64_t seq;
  uint64_t heads;
  uint64_t headDim;
  uint64_t batchStride;
  uint64_t seqStride;
  uint64_t headStride;
} knpuAttnTensor;

/* A dense [batch, seq, heads, headDim] tensor. */
static inline knpuAttnTensor knpuAttnTensorBshd(uint64_t batch, uint64_t seq, uint64_t heads,
                                                uint64_t headDim) {
  knpuAttnTensor t;
  t.batch = batch;
  t.seq = seq;
  t.heads = heads;
  t.headDim = headDim;
  t.batchStride = seq * heads * headDim;
  t.seqStride = heads * headDim;
  t.headStride = headDim;
  return t;
}

/* A paged key/value cache (vLLM's layout): numBlocks blocks of blockSize positions, each
 * holding kvHeads vectors of headDim elements. Sequence b's position p lives in block
 * blockTable[b * maxBlocksPerSeq + p / blockSize], slot p % blockSize. */
typedef struct knpuPagedKvCache {
  uint64_t numBlocks;
  uint64_t blockSize;
  uint64_t kvHeads;
  uint64_t headDim;
  /* Elements between consecutive blocks, positions of a block, and heads. */
  uint64_t blockStride;
  uint64_t slotStride;
  uint64_t headStride;
} knpuPagedKvCache;

/* A dense [numBlocks, blockSize, kvHeads, headDim] cache. */
static inline knpuPagedKvCache knpuPagedKvCacheDense(uint64_t numBlocks, uint64_t blockSize,
                                                     uint64_t kvHeads, uint64_t headDim) {
  knpuPagedKvCache c;
  c.numBlocks = numBlocks;
  c.blockSize = blockSize;
  c.kvHeads = kvHeads;
  c.headDim = headDim;
  c.blockStride = blockSize * kvHeads * headDim;
  c.slotStride = kvHeads * headDim;
  c.headStride = headDim;
  return c;
}

/* knpuAttention: out = softmax(scale * q k^T + mask) v. q and out are
 * [batch, qLen, qHeads, headDim]; k and v are [batch, kvLen, kvHeads, headDim] with kvHeads
 * dividing qHeads (grouped-query attention). */
typedef struct knpuAttentionDesc {
  size_t structSize;
  /* Element type of q, k, v and out (f32, f16 or bf16). */
  knpuDtype_t dtype;
  /* knpuAttentionFlags bits (0 for none). */
  uint32_t flags;
  knpuAttnTensor q;
  knpuAttnTensor k;
  knpuAttnTensor v;
  knpuAttnTensor out;
  /* Sliding window in keys, 0 for none. */
  uint64_t window;
  /* Softmax scale, 0 for 1 / sqrt(headDim); finite. */
  float scale;
} knpuAttentionDesc;

/* Queues fused attention. `lse` (optional, float [batch, qHeads, qLen]) receives each row's
 * log-sum-exp (-inf for a row that sees no key). `kvLens` (optional, uint32_t [batch]) holds
 * each sequence's key count (<= k.seq; keys past it are padding); a count past k.seq is
 * knpuErrorKernelFault at the next synchronize. */
knpuError_t knpuAttention(const knpuAttentionDesc *desc, const void *q, const void *k,
                          const void *v, void *out, float *lse, const uint32_t *kvLens,
                          knpuStream_t stream);

/* knpuPagedAttention: as knpuAttention with K and V read from a paged cache. */
typedef struct knpuPagedAttentionDesc {
  size_t structSize;
  /* Element type of q, the caches and out. */
  knpuDtype_t dtype;
  /* knpuAttentionFlags bits. */
  uint32_t flags;
  /* Queries [batch, qLen, qHeads, headDim], and the output of the same shape. */
  knpuAttnTensor q;
  knpuAttnTensor out;
  /* The layout of both kCache and vCache. */
  knpuPagedKvCache cache;
  /* Row length of the block table. */
  uint64_t maxBlocksPerSeq;
  /* Sliding window in keys, 0 for none. */
  uint64_t window;
  /* Softmax scale, 0 for 1 / sqrt(headDim). */
  float scale;
} knpuPagedAttentionDesc;

/* Queues attention over a paged cache: kvLens[b] keys of sequence b (uint32_t [batch],
 * required) found through blockTable (uint32_t [batch, maxBlocksPerSeq]). `lse` is optional
 * as for knpuAttention. A key count past the table's capacity or a used table entry outside
 * the cache is knpuErrorKernelFault at the next synchronize. */
knpuError_t knpuPagedAttention(const knpuPagedAttentionDesc *desc, const void *q,
                               const void *kCache, const void *vCache,
                               const uint32_t *blockTable, const uint32_t *kvLens, void *out,
                               float *lse, knpuStream_t stream);

/* knpuKvAppend: appends new keys and values to a contiguous cache. */
typedef struct knpuKvAppendDesc {
  size_t structSize;
  /* Element type of the caches and the new keys and values. */
  knpuDtype_t dtype;
  /* The layout of kCache and vCache; cache.seq is the capacity. */
  knpuAttnTensor cache;
  /* The layout of kNew and vNew: newPositions = new.seq per sequence. */
  knpuAttnTensor newKv;
} knpuKvAppendDesc;

/* Queues the append: sequence b's new position t is written at cache position
 * seqLens[b] + t (seqLens: uint32_t [batch], the positions already held). The caller
 * advances seqLens afterwards. A sequence that would pass the capacity is
 * knpuErrorKernelFault at the next synchronize, and nothing is written. */
knpuError_t knpuKvAppend(const knpuKvAppendDesc *desc, void *kCache, void *vCache,
                         const void *kNew, const void *vNew, const uint32_t *seqLens,
                         knpuStream_t stream);

/* knpuPagedKvAppend: appends new keys and values to a paged cache. */
typedef struct knpuPagedKvAppendDesc {
  size_t structSize;
  knpuDtype_t dtype;
  /* The layout of kCache and vCache. */
  knpuPagedKvCache cache;
  /* The layout of kNew and vNew. */
  knpuAttnTensor newKv;
  /* Row length of the block table. */
  uint64_t maxBlocksPerSeq;
} knpuPagedKvAppendDesc;

/* Queues the append: sequence b's new position t goes to position p = seqLens[b] + t, block
 * blockTable[b * maxBlocksPerSeq + p / blockSize], slot p % blockSize. A position past the
 * table or a table entry outside the cache is knpuErrorKernelFault at the next synchronize,
 * and nothing is written. */
knpuError_t knpuPagedKvAppend(const knpuPagedKvAppendDesc *desc, void *kCache, void *vCache,
                              const void *kNew, const void *vNew, const uint32_t *blockTable,
                              const uint32_t *seqLens, knpuStream_t stream);

/* ---- LLM ops ---------------------------------------------------------------------------- */

/* knpuRmsNorm and knpuLayerNorm: rows of x normalised. */
typedef struct knpuNormDesc {
  size_t structSize;
  /* Element type of x, weight, bias and out. */
  knpuDtype_t dtype;
  uint64_t rows;
  uint64_t cols;
  /* Added to the variance: finite and >= 0. */
  float eps;
} knpuNormDesc;

/* Queues out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight; x and out are
 * [rows, cols], weight [cols]. */
knpuError_t knpuRmsNorm(const knpuNormDesc *desc, const void *x, const void *weight, void *out,
                        knpuStream_t stream);

/* Queues out[r, :] = (x[r, :] - mean) / sqrt(var + eps) * weight + bias; bias ([cols]) is
 * optional. */
knpuError_t knpuLayerNorm(const knpuNormDesc *desc, const void *x, const void *weight,
                          const void *bias, void *out, knpuStream_t stream);

/* knpuRope: a rotary position embedding. */
typedef struct knpuRopeDesc {
  size_t structSize;
  /* Element type of x and out. */
  knpuDtype_t dtype;
  /* The pair layout. */
  knpuRopeStyle_t style;
  /* x and out are [rows, heads, headDim]. */
  uint64_t rows;
  uint64_t heads;
  uint64_t headDim;
  /* Rotated elements at the start of each head: even, at most headDim. */
  uint64_t rotaryDim;
  /* Row r is at position startPosition + r when no positions are given. */
  uint64_t startPosition;
  /* The frequency base theta: finite, > 0. */
  float base;
} knpuRopeDesc;

/* Queues out = x with pair i of each head turned by pos * base^(-2i / rotaryDim); elements
 * past rotaryDim are copied. `positions` (optional, uint32_t [rows]) gives each row's
 * position; without it row r is at startPosition + r. */
knpuError_t knpuRope(const knpuRopeDesc *desc, const void *x, const uint32_t *positions,
                     void *out, knpuStream_t stream);

/* knpuActivation: an activation function over a vector. */
typedef struct knpuActivationDesc {
  size_t structSize;
  knpuDtype_t dtype;
  /* knpuActivationSilu, knpuActivationGeluErf or knpuActivationGeluTanh (any other is
   * knpuErrorNotSupported). */
  knpuActivation_t activation;
  /* Elements of x and out. */
  uint64_t len;
} knpuActivationDesc;

/* Queues out[i] = activation(x[i]). */
knpuError_t knpuActivation(const knpuActivationDesc *desc, const void *x, void *out,
                           knpuStream_t stream);

/* knpuSwiglu: the gated activation of Llama's MLP. */
typedef struct knpuSwigluDesc {
  size_t structSize;
  knpuDtype_t dtype;
  /* Elements of gate, up and out. */
  uint64_t len;
} knpuSwigluDesc;

/* Queues out[i] = silu(gate[i]) * up[i]. */
knpuError_t knpuSwiglu(const knpuSwigluDesc *desc, const void *gate, const void *up, void *out,
                       knpuStream_t stream);

/* knpuSoftmax: a softmax of each row. */
typedef struct knpuSoftmaxDesc {
  size_t structSize;
  knpuDtype_t dtype;
  uint64_t rows;
  uint64_t cols;
  /* Multiplies x before the softmax: finite (1 for a plain softmax). */
  float scale;
} knpuSoftmaxDesc;

/* Queues out[r, :] = softmax(scale * x[r, :]); x and out are [rows, cols]. */
knpuError_t knpuSoftmax(const knpuSoftmaxDesc *desc, const void *x, void *out,
                        knpuStream_t stream);

/* knpuBinary: an elementwise binary op with broadcast. */
typedef struct knpuBinaryDesc {
  size_t structSize;
  knpuDtype_t dtype;
  knpuBinaryOp_t op;
  knpuBroadcast_t broadcast;
  /* a and out are [rows, cols]; b as `broadcast` says. */
  uint64_t rows;
  uint64_t cols;
} knpuBinaryDesc;

/* Queues out = a op b. */
knpuError_t knpuBinary(const knpuBinaryDesc *desc, const void *a, const void *b, void *out,
                       knpuStream_t stream);

/* knpuEmbedding: an embedding lookup from a float table. */
typedef struct knpuEmbeddingDesc {
  size_t structSize;
  /* Element types of the table and of out (the lookup converts). */
  knpuDtype_t tableDtype;
  knpuDtype_t outDtype;
  /* The table is [vocab, dim]; ids is [tokens]; out is [tokens, dim]. */
  uint64_t vocab;
  uint64_t dim;
  uint64_t tokens;
} knpuEmbeddingDesc;

/* Queues out[t, :] = table[ids[t], :]. An id >= vocab is knpuErrorKernelFault at the next
 * synchronize, and out is left unwritten. */
knpuError_t knpuEmbedding(const knpuEmbeddingDesc *desc, const void *table, const uint32_t *ids,
                          void *out, knpuStream_t stream);

/* knpuQEmbedding: an embedding lookup from a quantised table. */
typedef struct knpuQEmbeddingDesc {
  size_t structSize;
  /* The table's storage format. */
  knpuQuantFormat_t format;
  /* Element type of out (f32, f16 or bf16). */
  knpuDtype_t outDtype;
  /* The table is vocab rows of dim values (dim a multiple of the format's block size); ids is
   * [tokens]; out is [tokens, dim]. */
  uint64_t vocab;
  uint64_t dim;
  uint64_t tokens;
} knpuQEmbeddingDesc;

/* Queues out[t, :] = row ids[t] of the table, dequantised. `scales` (float [vocab]) is
 * required for knpuQuantI8, optional for FP8, and must be NULL for the GGUF block formats. An
 * id >= vocab is knpuErrorKernelFault at the next synchronize. */
knpuError_t knpuQEmbedding(const knpuQEmbeddingDesc *desc, const void *table,
                           const float *scales, const uint32_t *ids, void *out,
                           knpuStream_t stream);

/* knpuCast: an element type conversion. */
typedef struct knpuCastDesc {
  size_t structSize;
  knpuDtype_t srcDtype;
  knpuDtype_t dstDtype;
  /* Elements of src and dst. */
  uint64_t len;
} knpuCastDesc;

/* Queues dst[i] = src[i] converted (round to nearest even). */
knpuError_t knpuCast(const knpuCastDesc *desc, const void *src, void *dst, knpuStream_t stream);

/* knpuArgmax and knpuTopK: reductions along rows. */
typedef struct knpuReduceDesc {
  size_t structSize;
  /* Element type of x (and of topK's values). */
  knpuDtype_t dtype;
  /* x is [rows, cols]; cols >= 1 when rows > 0, and fits a uint32_t. */
  uint64_t rows;
  uint64_t cols;
  /* knpuTopK: values per row, at most cols. Unused by knpuArgmax. */
  uint64_t k;
} knpuReduceDesc;

/* Queues out[r] = the column of the largest value of row r (uint32_t [rows]; the lowest index
 * on ties). */
knpuError_t knpuArgmax(const knpuReduceDesc *desc, const void *x, uint32_t *out,
                       knpuStream_t stream);

/* Queues the k largest values of each row in descending order (ties to the lower index) into
 * values ([rows, k], x's type) and their columns into indices (uint32_t [rows, k]); values
 * and indices may not overlap. */
knpuError_t knpuTopK(const knpuReduceDesc *desc, const void *x, void *values,
                     uint32_t *indices, knpuStream_t stream);

/* knpuSample: one token id drawn from each row of logits. */
typedef struct knpuSampleDesc {
  size_t structSize;
  /* Element type of logits (f32, f16 or bf16). */
  knpuDtype_t dtype;
  /* Element type of out: knpuDtypeU32 or knpuDtypeI32. */
  knpuDtype_t outDtype;
  /* logits is [rows, vocab]; out is [rows]. vocab >= 1 when rows > 0, and every id fits
   * outDtype. */
  uint64_t rows;
  uint64_t vocab;
  /* Keep only the topK largest logits of a row; 0 keeps all. At most vocab. */
  uint64_t topK;
  /* The generator's seed. */
  uint64_t seed;
  /* Divides the logits: finite and >= 0; 0 is greedy (the argmax, lowest index on ties). */
  float temperature;
  /* Keep the shortest prefix of the sorted probabilities whose sum reaches topP: in (0, 1];
   * 1 keeps all. */
  float topP;
} knpuSampleDesc;

/* Queues out[r] = one token id drawn from row r of logits by the descriptor's rule (the
 * driver header's KNPU_KERNEL_SAMPLE gives it exactly). rngCounter is one uint64_t of device
 * memory (8-aligned, not overlapping out) that the launch reads and then increments by one:
 * row r draws from (seed, *rngCounter, r), so the same seed and counter give the same ids on
 * every device, and a replayed graph draws fresh numbers. Initialise it (for instance with
 * knpuMemset to 0) before the first launch. It may be NULL only when temperature is 0. A
 * driver older than ABI 2.1 has no sampling: knpuErrorNotSupported. */
knpuError_t knpuSample(const knpuSampleDesc *desc, const void *logits, void *out,
                       uint64_t *rngCounter, knpuStream_t stream);

/* ---- Quantised weights ------------------------------------------------------------------ */

/* knpuQuantize and knpuDequantize: rows of k values between f32 and a storage format. */
typedef struct knpuQuantizeDesc {
  size_t structSize;
  knpuQuantFormat_t format;
  uint64_t rows;
  /* Values per row: a multiple of the format's block size. */
  uint64_t k;
} knpuQuantizeDesc;

/* Queues quantisation of src (float [rows, k]) into dst (rows rows of the format's row
 * bytes). `scales` (float [rows]) receives each row's scale: required for knpuQuantI8
 * (max|x| / 127), optional for FP8 (written as 1), NULL for the GGUF block formats. */
knpuError_t knpuQuantize(const knpuQuantizeDesc *desc, const float *src, void *dst,
                         float *scales, knpuStream_t stream);

/* Queues dequantisation of src (rows rows in the format) into dst (float [rows, k]);
 * `scales` follows the rule of knpuQuantize. */
knpuError_t knpuDequantize(const knpuQuantizeDesc *desc, const void *src, const float *scales,
                           float *dst, knpuStream_t stream);

/* knpuQMatmul: y = act(x W^T + bias) with W quantised. */
typedef struct knpuQMatmulDesc {
  size_t structSize;
  /* W's storage format. */
  knpuQuantFormat_t format;
  /* Element types of x and y (f32, f16 or bf16). */
  knpuDtype_t xDtype;
  knpuDtype_t yDtype;
  /* Applied after the bias. */
  knpuActivation_t activation;
  /* Integer or f32 arithmetic. */
  knpuActQuant_t actQuant;
  /* x is [m, k]; W is n rows of k values (nn.Linear's layout); y is [m, n]. */
  uint64_t m;
  uint64_t n;
  uint64_t k;
} knpuQMatmulDesc;

/* Queues y = act(x W^T + bias). `wScales` (float [n]) follows the format's scale rule (see
 * knpuQuantize); `bias` (float [n]) is optional. */
knpuError_t knpuQMatmul(const knpuQMatmulDesc *desc, const void *x, const void *w,
                        const float *wScales, const float *bias, void *y, knpuStream_t stream);

/* knpuW8A8Gemm: y[i, j] = act(xScales[i] wScales[j] sum_l xq[i, l] wq[j, l] + bias[j]). */
typedef struct knpuW8A8GemmDesc {
  size_t structSize;
  /* Element type of y (f32, f16 or bf16). */
  knpuDtype_t yDtype;
  /* Applied after the bias. */
  knpuActivation_t activation;
  /* xq is int8 [m, k], wq int8 [n, k], y [m, n]; k at most 131072 (exact int32 sums). */
  uint64_t m;
  uint64_t n;
  uint64_t k;
} knpuW8A8GemmDesc;

/* Queues the W8A8 GEMM: xScales float [m], wScales float [n], bias float [n] (optional). */
knpuError_t knpuW8A8Gemm(const knpuW8A8GemmDesc *desc, const int8_t *xq, const float *xScales,
                         const int8_t *wq, const float *wScales, const float *bias, void *y,
                         knpuStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* KNPU_OPS_H */
