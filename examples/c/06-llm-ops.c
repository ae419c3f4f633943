/* 06-llm-ops.c — one decode step of a transformer's attention block through knpu_ops.h:
 * RMS normalisation, a rotary embedding, key/value-cache appends (a 3-token prefill, then
 * one decoded token), decode attention over the cache, and the next token drawn from logits
 * (a division, then greedy and seeded sampling on the device), each checked against a plain C
 * reference on the host. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <knpu_ops.h>

#include "check.h"

enum {
  HEADS = 2,    /* query heads */
  KV_HEADS = 1, /* key/value heads (grouped-query attention) */
  HEAD_DIM = 8,
  HIDDEN = HEADS * HEAD_DIM,
  CAPACITY = 8, /* cache positions */
  PREFILL = 3   /* tokens appended before the decoded one */
};

static float value(int i, int salt) { return (float)((i * 7 + salt * 13) % 17) / 17.0f - 0.5f; }

static double worst_error(const float *got, const float *want, int n) {
  double worst = 0;
  for (int i = 0; i < n; i++) {
    double e = fabs((double)got[i] - want[i]);
    if (e > worst) worst = e;
  }
  return worst;
}

/* x [rows, HIDDEN] -> out, as knpuRmsNorm. */
static void rms_norm_ref(const float *x, const float *w, float *out, int rows, float eps) {
  for (int r = 0; r < rows; r++) {
    double ss = 0;
    for (int c = 0; c < HIDDEN; c++) ss += (double)x[r * HIDDEN + c] * x[r * HIDDEN + c];
    double inv = 1.0 / sqrt(ss / HIDDEN + eps);
    for (int c = 0; c < HIDDEN; c++) out[r * HIDDEN + c] = (float)(x[r * HIDDEN + c] * inv * w[c]);
  }
}

/* NeoX rotary embedding of [rows, heads, HEAD_DIM] at positions start + r. */
static void rope_ref(const float *x, float *out, int rows, int heads, int start, float base) {
  const int half = HEAD_DIM / 2;
  for (int r = 0; r < rows; r++)
    for (int h = 0; h < heads; h++) {
      const float *v = x + (r * heads + h) * HEAD_DIM;
      float *o = out + (r * heads + h) * HEAD_DIM;
      for (int i = 0; i < half; i++) {
        double angle = (start + r) * pow(base, -2.0 * i / HEAD_DIM);
        double c = cos(angle), s = sin(angle);
        o[i] = (float)(v[i] * c - v[i + half] * s);
        o[i + half] = (float)(v[i] * s + v[i + half] * c);
      }
    }
}

int main(void) {
  knpuStream_t stream;
  CHECK(knpuStreamCreate(&stream));
  const float eps = 1e-5f, base = 10000.0f;

  /* 1. RMS norm of the decoded token's hidden state. */
  float x[HIDDEN], w[HIDDEN], normed[HIDDEN], normed_ref[HIDDEN];
  for (int i = 0; i < HIDDEN; i++) {
    x[i] = value(i, 1);
    w[i] = 1.0f + value(i, 2);
  }
  float *d_x, *d_w, *d_normed;
  CHECK(knpuMalloc((void **)&d_x, sizeof x));
  CHECK(knpuMalloc((void **)&d_w, sizeof w));
  CHECK(knpuMalloc((void **)&d_normed, sizeof normed));
  CHECK(knpuMemcpyAsync(d_x, x, sizeof x, knpuMemcpyHostToDevice, stream));
  CHECK(knpuMemcpyAsync(d_w, w, sizeof w, knpuMemcpyHostToDevice, stream));
  knpuNormDesc norm = KNPU_OPS_DESC_INIT(knpuNormDesc);
  norm.dtype = knpuDtypeF32;
  norm.rows = 1;
  norm.cols = HIDDEN;
  norm.eps = eps;
  CHECK(knpuRmsNorm(&norm, d_x, d_w, d_normed, stream));
  CHECK(knpuMemcpyAsync(normed, d_normed, sizeof normed, knpuMemcpyDeviceToHost, stream));
  CHECK(knpuStreamSynchronize(stream));
  rms_norm_ref(x, w, normed_ref, 1, eps);
  double e_norm = worst_error(normed, normed_ref, HIDDEN);
  EXPECT(e_norm < 1e-5);

  /* 2. The query (here the normed state itself, HEADS heads) turned by RoPE at the decoded
   * position, in place. */
  knpuRopeDesc rope = KNPU_OPS_DESC_INIT(knpuRopeDesc);
  rope.dtype = knpuDtypeF32;
  rope.style = knpuRopeNeox;
  rope.rows = 1;
  rope.heads = HEADS;
  rope.headDim = HEAD_DIM;
  rope.rotaryDim = HEAD_DIM;
  rope.startPosition = PREFILL;
  rope.base = base;
  CHECK(knpuRope(&rope, d_normed, NULL, d_normed, stream));
  float q[HIDDEN], q_ref[HIDDEN];
  CHECK(knpuMemcpyAsync(q, d_normed, sizeof q, knpuMemcpyDeviceToHost, stream));
  CHECK(knpuStreamSynchronize(stream));
  rope_ref(normed, q_ref, 1, HEADS, PREFILL, base);
  double e_rope = worst_error(q, q_ref, HIDDEN);
  EXPECT(e_rope < 1e-5);

  /* 3. The cache: PREFILL positions appended at once, then the decoded token's. */
  enum { KV = KV_HEADS * HEAD_DIM, TOKENS = PREFILL + 1 };
  float keys[TOKENS * KV], vals[TOKENS * KV];
  for (int i = 0; i < TOKENS * KV; i++) {
    keys[i] = value(i, 3);
    vals[i] = value(i, 4);
  }
  float *d_k, *d_v, *d_knew, *d_vnew;
  uint32_t *d_lens;
  CHECK(knpuMalloc((void **)&d_k, sizeof(float) * CAPACITY * KV));
  CHECK(knpuMalloc((void **)&d_v, sizeof(float) * CAPACITY * KV));
  CHECK(knpuMalloc((void **)&d_knew, sizeof keys));
  CHECK(knpuMalloc((void **)&d_vnew, sizeof vals));
  CHECK(knpuMalloc((void **)&d_lens, sizeof(uint32_t)));
  CHECK(knpuMemsetAsync(d_k, 0, sizeof(float) * CAPACITY * KV, stream));
  CHECK(knpuMemsetAsync(d_v, 0, sizeof(float) * CAPACITY * KV, stream));
  CHECK(knpuMemcpyAsync(d_knew, keys, sizeof keys, knpuMemcpyHostToDevice, stream));
  CHECK(knpuMemcpyAsync(d_vnew, vals, sizeof vals, knpuMemcpyHostToDevice, stream));
  uint32_t held = 0;
  CHECK(knpuMemcpyAsync(d_lens, &held, sizeof held, knpuMemcpyHostToDevice, stream));

  knpuKvAppendDesc append = KNPU_OPS_DESC_INIT(knpuKvAppendDesc);
  append.dtype = knpuDtypeF32;
  append.cache = knpuAttnTensorBshd(1, CAPACITY, KV_HEADS, HEAD_DIM);
  append.newKv = knpuAttnTensorBshd(1, PREFILL, KV_HEADS, HEAD_DIM);
  CHECK(knpuKvAppend(&append, d_k, d_v, d_knew, d_vnew, d_lens, stream));
  /* The caller advances the lengths; the copy is ordered after the append on the stream, and
   * the host value stays valid until the synchronize below. */
  uint32_t after_prefill = PREFILL;
  CHECK(knpuMemcpyAsync(d_lens, &after_prefill, sizeof after_prefill, knpuMemcpyHostToDevice,
                        stream));
  append.newKv = knpuAttnTensorBshd(1, 1, KV_HEADS, HEAD_DIM);
  CHECK(knpuKvAppend(&append, d_k, d_v, d_knew + PREFILL * KV, d_vnew + PREFILL * KV, d_lens,
                     stream));
  uint32_t total = TOKENS;
  CHECK(knpuMemcpyAsync(d_lens, &total, sizeof total, knpuMemcpyHostToDevice, stream));

  /* 4. Decode attention: one query row per head over the TOKENS keys held (kvLens), causal. */
  float *d_out;
  CHECK(knpuMalloc((void **)&d_out, sizeof q));
  knpuAttentionDesc attn = KNPU_OPS_DESC_INIT(knpuAttentionDesc);
  attn.dtype = knpuDtypeF32;
  attn.flags = knpuAttentionCausal;
  attn.q = knpuAttnTensorBshd(1, 1, HEADS, HEAD_DIM);
  attn.out = attn.q;
  attn.k = knpuAttnTensorBshd(1, CAPACITY, KV_HEADS, HEAD_DIM);
  attn.v = attn.k;
  CHECK(knpuAttention(&attn, d_normed, d_k, d_v, d_out, NULL, d_lens, stream));
  float out[HIDDEN], out_ref[HIDDEN];
  CHECK(knpuMemcpyAsync(out, d_out, sizeof out, knpuMemcpyDeviceToHost, stream));
  CHECK(knpuStreamSynchronize(stream));

  const double scale = 1.0 / sqrt((double)HEAD_DIM);
  for (int h = 0; h < HEADS; h++) {
    const int kvh = h / (HEADS / KV_HEADS);
    double s[TOKENS], top = -INFINITY, sum = 0;
    for (int t = 0; t < TOKENS; t++) {
      double dot = 0;
      for (int i = 0; i < HEAD_DIM; i++)
        dot += (double)q_ref[h * HEAD_DIM + i] * keys[t * KV + kvh * HEAD_DIM + i];
      s[t] = dot * scale;
      if (s[t] > top) top = s[t];
    }
    for (int t = 0; t < TOKENS; t++) sum += s[t] = exp(s[t] - top);
    for (int i = 0; i < HEAD_DIM; i++) {
      double acc = 0;
      for (int t = 0; t < TOKENS; t++) acc += s[t] / sum * vals[t * KV + kvh * HEAD_DIM + i];
      out_ref[h * HEAD_DIM + i] = (float)acc;
    }
  }
  double e_attn = worst_error(out, out_ref, HIDDEN);
  EXPECT(e_attn < 1e-5);

  /* 5. Logits: the attention output (HEADS rows of HEAD_DIM "ids") divided by w, then one id
   * drawn per row. Greedy sampling (temperature 0) is the argmax; seeded sampling at
   * temperature 1 draws from (seed, counter, row) and advances the device counter. */
  enum { ROWS = HEADS, VOCAB = HEAD_DIM };
  float *d_logits;
  uint32_t *d_ids;
  uint64_t *d_counter;
  CHECK(knpuMalloc((void **)&d_logits, sizeof out));
  CHECK(knpuMalloc((void **)&d_ids, sizeof(uint32_t) * ROWS));
  CHECK(knpuMalloc((void **)&d_counter, sizeof(uint64_t)));
  CHECK(knpuMemsetAsync(d_counter, 0, sizeof(uint64_t), stream));
  knpuBinaryDesc div = KNPU_OPS_DESC_INIT(knpuBinaryDesc);
  div.dtype = knpuDtypeF32;
  div.op = knpuBinaryDiv;
  div.broadcast = knpuBroadcastRow;
  div.rows = ROWS;
  div.cols = VOCAB;
  CHECK(knpuBinary(&div, d_out, d_w, d_logits, stream));
  knpuSampleDesc pick = KNPU_OPS_DESC_INIT(knpuSampleDesc);
  pick.dtype = knpuDtypeF32;
  pick.outDtype = knpuDtypeU32;
  pick.rows = ROWS;
  pick.vocab = VOCAB;
  pick.topP = 1.0f; /* every id; 0 (what KNPU_OPS_DESC_INIT leaves) is out of range */
  pick.temperature = 0.0f;
  CHECK(knpuSample(&pick, d_logits, d_ids, NULL, stream));
  float logits[HIDDEN];
  uint32_t greedy[ROWS], drawn[ROWS];
  uint64_t counter = 0;
  CHECK(knpuMemcpyAsync(logits, d_logits, sizeof logits, knpuMemcpyDeviceToHost, stream));
  CHECK(knpuMemcpyAsync(greedy, d_ids, sizeof greedy, knpuMemcpyDeviceToHost, stream));
  pick.temperature = 1.0f;
  pick.seed = 42;
  CHECK(knpuSample(&pick, d_logits, d_ids, d_counter, stream));
  CHECK(knpuMemcpyAsync(drawn, d_ids, sizeof drawn, knpuMemcpyDeviceToHost, stream));
  CHECK(knpuMemcpyAsync(&counter, d_counter, sizeof counter, knpuMemcpyDeviceToHost, stream));
  CHECK(knpuStreamSynchronize(stream));
  float logits_ref[HIDDEN];
  for (int r = 0; r < ROWS; r++)
    for (int c = 0; c < VOCAB; c++) logits_ref[r * VOCAB + c] = out[r * VOCAB + c] / w[c];
  double e_div = worst_error(logits, logits_ref, HIDDEN);
  EXPECT(e_div == 0); /* one IEEE division of the same floats */
  for (int r = 0; r < ROWS; r++) {
    uint32_t best = 0;
    for (uint32_t c = 1; c < VOCAB; c++)
      if (logits_ref[r * VOCAB + c] > logits_ref[r * VOCAB + best]) best = c;
    EXPECT(greedy[r] == best);
    EXPECT(drawn[r] < VOCAB);
  }
  EXPECT(counter == 1);

  /* A descriptor the op's definition refuses fails at the call, and nothing is queued. */
  rope.rotaryDim = 3;
  EXPECT(knpuRope(&rope, d_normed, NULL, d_normed, stream) == knpuErrorInvalidValue);
  printf("refused: %s\n", knpuGetErrorString(knpuGetLastError()));

  pick.topP = 0.0f;
  EXPECT(knpuSample(&pick, d_logits, d_ids, d_counter, stream) == knpuErrorInvalidValue);
  printf("refused: %s\n", knpuGetErrorString(knpuGetLastError()));

  printf("rms_norm %.1e, rope %.1e, kv append + decode attention %.1e, division %.1e: max errors "
         "against the C reference; greedy ids %u %u (the argmax), sampled ids %u %u\n",
         e_norm, e_rope, e_attn, e_div, greedy[0], greedy[1], drawn[0], drawn[1]);

  CHECK(knpuStreamDestroy(stream));
  float *bufs[] = {d_x, d_w, d_normed, d_k, d_v, d_knew, d_vnew, d_out, d_logits};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) CHECK(knpuFree(bufs[i]));
  CHECK(knpuFree(d_lens));
  CHECK(knpuFree(d_ids));
  CHECK(knpuFree(d_counter));
  return 0;
}
