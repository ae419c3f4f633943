/* misuse.c — every function of knpu.h called with NULL, garbage and destroyed handles, bad
 * sizes, bad pointers and bad enum values. Each call must return an error code (a known
 * one), and none may crash. Then the same library is hammered from several threads.
 * The Rust test that runs this program also checks that every function declared in knpu.h,
 * knpublas.h and knpu_ops.h appears here. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <knpu_ops.h>
#include <knpublas.h>

#include "test_check.h"

static int failures = 0;
static int checked = 0;

static void expect_error(knpuError_t got, knpuError_t want, const char *call, int line) {
  checked++;
  const char *name = knpuGetErrorName(got);
  if (got == knpuSuccess || strcmp(name, "knpuErrorUnknown") == 0 ||
      (want != knpuSuccess && got != want)) {
    fprintf(stderr, "misuse.c:%d: %s returned %s (%d), expected %s\n", line, call, name,
            (int)got, want == knpuSuccess ? "an error" : knpuGetErrorName(want));
    failures++;
  }
}

/* Any error is fine (the exact one is not part of the contract). */
#define ERR(call) expect_error((call), knpuSuccess, #call, __LINE__)
/* This exact error. */
#define ERR_IS(want, call) expect_error((call), (want), #call, __LINE__)
#define GARBAGE(type) ((type)(uintptr_t)0xdeadbeefcafeULL)
#define GARBAGE2(type) ((type)(uintptr_t)UINTPTR_MAX)

static void host_fn(void *user) { (void)user; }

static void errors_and_versions(void) {
  /* The four error functions never fail; they must cope with unknown codes. */
  if (strcmp(knpuGetErrorName((knpuError_t)9999), "knpuErrorUnknown") != 0) failures++;
  if (knpuGetErrorString((knpuError_t)9999) == NULL) failures++;
  if (knpuGetErrorString((knpuError_t)-1) == NULL) failures++;
  ERR_IS(knpuErrorInvalidValue, knpuSetDevice(-1));
  if (knpuPeekAtLastError() != knpuErrorInvalidValue) failures++;
  if (knpuGetLastError() != knpuErrorInvalidValue) failures++;
  if (knpuGetLastError() != knpuSuccess) failures++;
  ERR_IS(knpuErrorInvalidValue, knpuRuntimeGetVersion(NULL));
  ERR_IS(knpuErrorInvalidValue, knpuDriverGetVersion(NULL));
  ERR_IS(knpuErrorInvalidValue, knpuRuntimeGetVersion((int *)(uintptr_t)1)); /* misaligned */
}

static void devices(void) {
  int64_t v = 0;
  knpuDeviceProp prop = KNPU_DEVICE_PROP_INIT;
  knpuDeviceProp zero;
  memset(&zero, 0, sizeof zero);
  int supported = 0;
  ERR_IS(knpuErrorInvalidValue, knpuGetDeviceCount(NULL));
  ERR_IS(knpuErrorInvalidValue, knpuSetDevice(1 << 30));
  ERR_IS(knpuErrorInvalidValue, knpuGetDevice(NULL));
  ERR_IS(knpuErrorInvalidValue, knpuDeviceGetAttribute(NULL, knpuDevAttrTotalMemory, 0));
  ERR_IS(knpuErrorInvalidValue, knpuDeviceGetAttribute(&v, (knpuDeviceAttr)999, 0));
  ERR_IS(knpuErrorInvalidValue, knpuDeviceGetAttribute(&v, knpuDevAttrTotalMemory, -1));
  ERR_IS(knpuErrorInvalidValue, knpuGetDeviceProperties(NULL, 0));
  ERR_IS(knpuErrorInvalidValue, knpuGetDeviceProperties(&zero, 0));
  ERR_IS(knpuErrorInvalidValue, knpuGetDeviceProperties(&prop, 99));
  ERR_IS(knpuErrorInvalidValue, knpuDeviceSupportsKernel(0, 0x100, 0, NULL));
  ERR_IS(knpuErrorInvalidValue, knpuDeviceSupportsKernel(-1, 0x100, 0, &supported));
  ERR_IS(knpuErrorInvalidValue, knpuMemGetInfo(NULL, NULL));
  ERR_IS(knpuErrorInvalidValue, knpuDeviceGetStreamPriorityRange(NULL, NULL));
  knpuMemoryStats stats = KNPU_MEMORY_STATS_INIT;
  ERR_IS(knpuErrorInvalidValue, knpuDeviceGetMemoryStats(NULL, 0));
  ERR_IS(knpuErrorInvalidValue, knpuDeviceGetMemoryStats(&stats, -3));
  ERR_IS(knpuErrorInvalidValue, knpuDeviceResetPeakMemoryStats(-1));
}

static void memory(knpuStream_t dead_stream) {
  enum { N = 64 };
  char host[N];
  char *d = NULL;
  void *p = NULL;
  OK(knpuMalloc((void **)&d, N));

  ERR_IS(knpuErrorInvalidValue, knpuMalloc(NULL, 16));
  ERR_IS(knpuErrorOutOfMemory, knpuMalloc(&p, SIZE_MAX / 2));
  ERR_IS(knpuErrorInvalidValue, knpuFree(GARBAGE(void *)));
  ERR_IS(knpuErrorInvalidValue, knpuFree(d + 1));
  ERR_IS(knpuErrorInvalidValue, knpuFree(host));
  ERR_IS(knpuErrorInvalidValue, knpuMallocAsync(NULL, 16, NULL));
  ERR_IS(knpuErrorInvalidHandle, knpuMallocAsync(&p, 16, GARBAGE(knpuStream_t)));
  ERR_IS(knpuErrorInvalidHandle, knpuMallocAsync(&p, 16, dead_stream));
  ERR_IS(knpuErrorInvalidHandle, knpuFreeAsync(d, GARBAGE2(knpuStream_t)));
  ERR_IS(knpuErrorInvalidValue, knpuFreeAsync(GARBAGE(void *), NULL));
  ERR_IS(knpuErrorInvalidValue, knpuMallocHost(NULL, 16));
  ERR(knpuMallocHost(&p, SIZE_MAX));
  ERR_IS(knpuErrorInvalidValue, knpuFreeHost(host));
  ERR_IS(knpuErrorInvalidValue, knpuFreeHost(GARBAGE(void *)));

  ERR_IS(knpuErrorInvalidValue, knpuMemcpy(NULL, host, 4, knpuMemcpyHostToDevice));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpy(d, NULL, 4, knpuMemcpyHostToDevice));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpy(host, d + 1, N, knpuMemcpyDeviceToHost));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpy(d + N, host, 1, knpuMemcpyHostToDevice));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpy(d - 1, host, 1, knpuMemcpyHostToDevice));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpy(host, host + 8, 4, knpuMemcpyDeviceToHost));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpy(d, host, 4, knpuMemcpyHostToHost));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpy(d, d, 4, (knpuMemcpyKind)77));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpy(GARBAGE(void *), d, 4, knpuMemcpyDeviceToDevice));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpy(d, d + 8, SIZE_MAX, knpuMemcpyDeviceToDevice));
  ERR_IS(knpuErrorInvalidHandle,
         knpuMemcpyAsync(d, host, 4, knpuMemcpyHostToDevice, GARBAGE(knpuStream_t)));
  ERR_IS(knpuErrorInvalidHandle, knpuMemcpyAsync(d, host, 4, knpuMemcpyHostToDevice, dead_stream));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpyAsync(host, d, N + 1, knpuMemcpyDeviceToHost, NULL));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpyPeer(d, 0, d, 77, 4));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpyPeer(host, 0, d, 0, 4));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpyPeer(d, 0, d, 0, N + 1));
  ERR_IS(knpuErrorInvalidHandle, knpuMemcpyPeerAsync(d, 0, d + 8, 0, 4, GARBAGE(knpuStream_t)));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpyPeerAsync(d, -1, d, 0, 4, NULL));
  ERR_IS(knpuErrorInvalidValue, knpuMemset(GARBAGE(void *), 0, 4));
  ERR_IS(knpuErrorInvalidValue, knpuMemset(d + 60, 0, 8));
  ERR_IS(knpuErrorInvalidValue, knpuMemset(NULL, 0, 4));
  ERR_IS(knpuErrorInvalidHandle, knpuMemsetAsync(d, 0, 4, dead_stream));
  ERR_IS(knpuErrorInvalidValue, knpuMemsetAsync(host, 0, 4, NULL));

  /* Freeing memory with work still queued on it is safe: the memory is reused only after
   * that work, which still sees the right data. */
  knpuStream_t s;
  OK(knpuStreamCreate(&s));
  char pattern[N], back[N];
  for (int i = 0; i < N; i++) pattern[i] = (char)i;
  OK(knpuMemcpyAsync(d, pattern, N, knpuMemcpyHostToDevice, s));
  OK(knpuMemcpyAsync(back, d, N, knpuMemcpyDeviceToHost, s));
  OK(knpuFree(d));
  OK(knpuStreamSynchronize(s));
  if (memcmp(pattern, back, N) != 0) {
    fprintf(stderr, "work queued before a free saw wrong data\n");
    failures++;
  }
  /* And the freed pointer is refused from now on. */
  ERR_IS(knpuErrorInvalidValue, knpuFree(d));
  ERR_IS(knpuErrorInvalidValue, knpuMemcpyAsync(back, d, 4, knpuMemcpyDeviceToHost, s));
  OK(knpuStreamDestroy(s));
}

static void streams_and_events(knpuStream_t dead_stream, knpuEvent_t dead_event) {
  knpuStream_t s;
  knpuEvent_t e;
  int prio = 0;
  float ms = 0;
  OK(knpuStreamCreate(&s));
  OK(knpuEventCreate(&e));
  ERR_IS(knpuErrorInvalidValue, knpuStreamCreate(NULL));
  ERR_IS(knpuErrorInvalidValue, knpuStreamCreateWithFlags(NULL, 0));
  ERR_IS(knpuErrorInvalidValue, knpuStreamCreateWithFlags(&s, 0x80));
  ERR_IS(knpuErrorInvalidValue, knpuStreamCreateWithPriority(NULL, 0, 0));
  ERR_IS(knpuErrorInvalidHandle, knpuStreamGetPriority(GARBAGE(knpuStream_t), &prio));
  ERR_IS(knpuErrorInvalidValue, knpuStreamGetPriority(s, NULL));
  ERR_IS(knpuErrorInvalidHandle, knpuStreamDestroy(NULL));
  ERR_IS(knpuErrorInvalidHandle, knpuStreamDestroy(GARBAGE(knpuStream_t)));
  ERR_IS(knpuErrorInvalidHandle, knpuStreamDestroy(dead_stream));
  ERR_IS(knpuErrorInvalidHandle, knpuStreamDestroy((knpuStream_t)e)); /* an event as a stream */
  ERR_IS(knpuErrorInvalidHandle, knpuStreamSynchronize(GARBAGE2(knpuStream_t)));
  ERR_IS(knpuErrorInvalidHandle, knpuStreamSynchronize(dead_stream));
  ERR_IS(knpuErrorInvalidHandle, knpuStreamQuery(dead_stream));
  ERR_IS(knpuErrorInvalidHandle, knpuStreamWaitEvent(s, GARBAGE(knpuEvent_t), 0));
  ERR_IS(knpuErrorInvalidHandle, knpuStreamWaitEvent(s, dead_event, 0));
  ERR_IS(knpuErrorInvalidHandle, knpuStreamWaitEvent(s, NULL, 0));
  ERR_IS(knpuErrorInvalidValue, knpuStreamWaitEvent(s, e, 1));
  ERR_IS(knpuErrorInvalidValue, knpuLaunchHostFunc(s, NULL, NULL));
  ERR_IS(knpuErrorInvalidHandle, knpuLaunchHostFunc(dead_stream, host_fn, NULL));

  ERR_IS(knpuErrorInvalidValue, knpuEventCreate(NULL));
  ERR_IS(knpuErrorInvalidValue, knpuEventCreateWithFlags(NULL, 0));
  ERR_IS(knpuErrorNotSupported, knpuEventCreateWithFlags(&e, knpuEventInterprocess));
  ERR_IS(knpuErrorInvalidValue, knpuEventCreateWithFlags(&e, 0x100));
  ERR_IS(knpuErrorInvalidHandle, knpuEventRecord(GARBAGE(knpuEvent_t), NULL));
  ERR_IS(knpuErrorInvalidHandle, knpuEventRecord(e, dead_stream));
  ERR_IS(knpuErrorInvalidHandle, knpuEventRecord((knpuEvent_t)s, s)); /* a stream as an event */
  ERR_IS(knpuErrorInvalidHandle, knpuEventQuery(dead_event));
  ERR_IS(knpuErrorInvalidHandle, knpuEventSynchronize(GARBAGE(knpuEvent_t)));
  ERR_IS(knpuErrorInvalidValue, knpuEventElapsedTime(NULL, e, e));
  ERR_IS(knpuErrorInvalidHandle, knpuEventElapsedTime(&ms, dead_event, e));
  ERR_IS(knpuErrorInvalidValue, knpuEventElapsedTime(&ms, e, e)); /* never recorded */
  ERR_IS(knpuErrorInvalidHandle, knpuEventDestroy(dead_event));
  ERR_IS(knpuErrorInvalidHandle, knpuEventDestroy(NULL));
  OK(knpuEventDestroy(e));
  ERR_IS(knpuErrorInvalidHandle, knpuEventDestroy(e));
  OK(knpuStreamDestroy(s));
}

static void graphs(knpuStream_t dead_stream, knpuEvent_t dead_event) {
  knpuStream_t s;
  knpuGraph_t g, dead_graph, other;
  knpuGraphExec_t x, dead_exec;
  knpuGraphNode_t n, n_other;
  knpuStreamCaptureStatus st;
  size_t count = 0;
  char *d = NULL;
  char host[16];
  OK(knpuStreamCreate(&s));
  OK(knpuMalloc((void **)&d, 16));
  OK(knpuGraphCreate(&g, 0));
  OK(knpuGraphCreate(&other, 0));
  OK(knpuGraphAddEmptyNode(&n_other, other, NULL, 0));
  OK(knpuGraphCreate(&dead_graph, 0));
  OK(knpuGraphInstantiate(&dead_exec, dead_graph, 0));
  OK(knpuGraphExecDestroy(dead_exec));
  OK(knpuGraphDestroy(dead_graph));

  ERR_IS(knpuErrorInvalidHandle, knpuStreamBeginCapture(GARBAGE(knpuStream_t), knpuStreamCaptureModeGlobal));
  ERR_IS(knpuErrorInvalidValue, knpuStreamBeginCapture(s, (knpuStreamCaptureMode)42));
  ERR_IS(knpuErrorStreamCapture, knpuStreamEndCapture(s, &g)); /* not capturing */
  ERR_IS(knpuErrorInvalidValue, knpuStreamEndCapture(s, NULL));
  ERR_IS(knpuErrorInvalidHandle, knpuStreamIsCapturing(dead_stream, &st));
  ERR_IS(knpuErrorInvalidValue, knpuStreamIsCapturing(s, NULL));

  /* Calls a capture forbids. */
  OK(knpuStreamBeginCapture(s, knpuStreamCaptureModeGlobal));
  ERR_IS(knpuErrorStreamCapture, knpuStreamBeginCapture(s, knpuStreamCaptureModeGlobal));
  ERR_IS(knpuErrorStreamCapture, knpuDeviceSynchronize());
  ERR_IS(knpuErrorStreamCapture, knpuDeviceEmptyCache());
  ERR_IS(knpuErrorStreamCapture, knpuStreamSynchronize(s));
  ERR_IS(knpuErrorStreamCapture, knpuStreamQuery(s));
  knpuGraph_t failed;
  ERR_IS(knpuErrorStreamCapture, knpuStreamEndCapture(s, &failed)); /* invalidated above */

  ERR_IS(knpuErrorInvalidValue, knpuGraphCreate(NULL, 0));
  knpuGraph_t flagged;
  ERR_IS(knpuErrorInvalidValue, knpuGraphCreate(&flagged, 1));
  ERR_IS(knpuErrorInvalidValue, knpuGraphInstantiate(NULL, g, 0));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphInstantiate(&x, GARBAGE(knpuGraph_t), 0));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphInstantiate(&x, dead_graph, 0));
  ERR_IS(knpuErrorInvalidValue, knpuGraphInstantiate(&x, g, 3));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphLaunch(GARBAGE(knpuGraphExec_t), s));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphLaunch(dead_exec, s));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphLaunch((knpuGraphExec_t)g, s)); /* a graph as an exec */
  ERR_IS(knpuErrorInvalidHandle, knpuGraphExecUpdate(dead_exec, g, NULL));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphDestroy(dead_graph));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphDestroy(NULL));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphExecDestroy(dead_exec));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphExecDestroy(GARBAGE2(knpuGraphExec_t)));

  ERR_IS(knpuErrorInvalidValue, knpuGraphAddEmptyNode(NULL, g, NULL, 0));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphAddEmptyNode(&n, dead_graph, NULL, 0));
  ERR_IS(knpuErrorInvalidValue, knpuGraphAddEmptyNode(&n, g, NULL, 3));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphAddEmptyNode(&n, g, &n_other, 1));
  knpuGraphNode_t garbage_node = GARBAGE(knpuGraphNode_t);
  ERR_IS(knpuErrorInvalidHandle, knpuGraphAddEmptyNode(&n, g, &garbage_node, 1));
  ERR_IS(knpuErrorInvalidValue, knpuGraphAddHostNode(&n, g, NULL, 0, NULL, NULL));
  ERR_IS(knpuErrorInvalidValue, knpuGraphAddMemcpyNode1D(&n, g, NULL, 0, GARBAGE(void *), host, 4,
                                                         knpuMemcpyHostToDevice));
  ERR_IS(knpuErrorInvalidValue, knpuGraphAddMemcpyNode1D(&n, g, NULL, 0, d, host, 17,
                                                         knpuMemcpyHostToDevice));
  ERR_IS(knpuErrorInvalidValue, knpuGraphAddMemsetNode1D(&n, g, NULL, 0, d + 16, 0, 4));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphAddEventRecordNode(&n, g, NULL, 0, GARBAGE(knpuEvent_t)));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphAddEventWaitNode(&n, g, NULL, 0, dead_event));
  ERR_IS(knpuErrorInvalidValue, knpuGraphAddChildGraphNode(&n, g, NULL, 0, g)); /* itself */
  ERR_IS(knpuErrorInvalidHandle, knpuGraphAddChildGraphNode(&n, g, NULL, 0, dead_graph));
  OK(knpuGraphAddEmptyNode(&n, g, NULL, 0));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphAddDependencies(g, &n_other, &n, 1));
  ERR_IS(knpuErrorInvalidValue, knpuGraphAddDependencies(g, NULL, &n, 1));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphAddDependencies(dead_graph, &n, &n, 1));
  ERR_IS(knpuErrorInvalidValue, knpuGraphGetNodes(g, NULL, NULL));
  ERR_IS(knpuErrorInvalidHandle, knpuGraphGetNodes(dead_graph, NULL, &count));

  /* A cycle is found at instantiation. */
  knpuGraphNode_t m;
  OK(knpuGraphAddEmptyNode(&m, g, &n, 1));
  OK(knpuGraphAddDependencies(g, &m, &n, 1));
  ERR(knpuGraphInstantiate(&x, g, 0));

  OK(knpuGraphDestroy(g));
  OK(knpuGraphDestroy(other));
  OK(knpuFree(d));
  OK(knpuStreamDestroy(s));
}

/* Several threads at once: allocations, copies, streams and events, with one shared
 * allocation that every thread copies into its own part of. */
enum { THREADS = 4, ROUNDS = 50, SLICE = 256 };
static unsigned char *shared_dev = NULL;
/* A knpublas handle every worker reads while the others create, use and destroy theirs. */
static knpublasHandle_t shared_blas = NULL;

static void *worker(void *arg) {
  int id = (int)(intptr_t)arg;
  unsigned char in[SLICE], out[SLICE];
  memset(in, id + 1, sizeof in);
  knpublasHandle_t blas;
  if (knpublasCreate(&blas) != KNPUBLAS_STATUS_SUCCESS) return (void *)1;
  const float one = 1.0f, zero = 0.0f;
  for (int r = 0; r < ROUNDS; r++) {
    knpuStream_t s;
    knpuEvent_t e;
    void *mine = NULL;
    if (knpuStreamCreate(&s) != knpuSuccess || knpuEventCreate(&e) != knpuSuccess) return (void *)1;
    if (knpuMallocAsync(&mine, SLICE, s) != knpuSuccess) return (void *)1;
    if (knpuMemcpyAsync(shared_dev + id * SLICE, in, SLICE, knpuMemcpyHostToDevice, s)) return (void *)1;
    if (knpuMemcpyAsync(mine, shared_dev + id * SLICE, SLICE, knpuMemcpyDefault, s)) return (void *)1;
    if (knpuMemcpyAsync(out, mine, SLICE, knpuMemcpyDeviceToHost, s)) return (void *)1;
    if (knpuEventRecord(e, s) || knpuEventSynchronize(e)) return (void *)1;
    if (memcmp(in, out, SLICE) != 0) return (void *)1;
    /* A 4x4x4 product in `mine` (A, B and C 64 bytes apart), queued on this round's stream
     * before the memory is freed on it. */
    float *f = (float *)mine;
    knpuStream_t seen;
    if (knpublasSetStream(blas, s) || knpublasGetStream(shared_blas, &seen) || seen != NULL)
      return (void *)1;
    if (knpublasSgemm(blas, KNPUBLAS_OP_N, KNPUBLAS_OP_T, 4, 4, 4, &one, f, 4, f + 16, 4, &zero,
                      f + 32, 4))
      return (void *)1;
    /* A handle another thread may just have destroyed is refused, not followed. */
    if (knpuStreamQuery(GARBAGE(knpuStream_t)) != knpuErrorInvalidHandle) return (void *)1;
    if (knpuFreeAsync(mine, s) || knpuEventDestroy(e) || knpuStreamDestroy(s)) return (void *)1;
  }
  if (knpublasDestroy(blas)) return (void *)1;
  return NULL;
}

static void threads(void) {
  OK(knpuMalloc((void **)&shared_dev, THREADS * SLICE));
  OK(knpublasCreate(&shared_blas) == KNPUBLAS_STATUS_SUCCESS ? knpuSuccess : knpuErrorInternal);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
  for (int i = 0; i < THREADS; i++) {
    void *r = NULL;
    pthread_join(t[i], &r);
    if (r != NULL) {
      fprintf(stderr, "thread %d failed: %s\n", i, knpuGetErrorString(knpuPeekAtLastError()));
      failures++;
    }
  }
  OK(knpuFree(shared_dev));
  OK(knpublasDestroy(shared_blas) == KNPUBLAS_STATUS_SUCCESS ? knpuSuccess : knpuErrorInternal);
}

static void dlpack(void) {
  int64_t shape[1] = {4};
  DLDataType f32 = {kDLFloat, 32, 1}, bad = {kDLFloat, 32, 8};
  DLManagedTensorVersioned *t = NULL;
  void *p = NULL;
  int device = 0;
  ERR_IS(knpuErrorInvalidValue, knpuTensorToDLPack(NULL, 1, shape, NULL, f32, &t));
  ERR_IS(knpuErrorInvalidValue, knpuTensorToDLPack(GARBAGE(void *), 1, shape, NULL, f32, &t));
  ERR_IS(knpuErrorInvalidValue,
         knpuTensorToDLPack(GARBAGE(void *), 1, GARBAGE(int64_t *), NULL, f32, &t));
  float *d = NULL;
  OK(knpuMalloc((void **)&d, 16));
  ERR_IS(knpuErrorInvalidValue, knpuTensorToDLPack(d, 1, shape, NULL, f32, NULL));
  ERR_IS(knpuErrorInvalidValue,
         knpuTensorToDLPack(d, 1, shape, NULL, f32, (DLManagedTensorVersioned **)(uintptr_t)1));
  ERR_IS(knpuErrorNotSupported, knpuTensorToDLPack(d, 1, shape, NULL, bad, &t));
  ERR_IS(knpuErrorInvalidValue, knpuTensorToDLPack(d + 1, 1, shape, NULL, f32, &t));
  ERR_IS(knpuErrorInvalidValue, knpuTensorFromDLPack(NULL, &p, &device));
  ERR_IS(knpuErrorInvalidValue,
         knpuTensorFromDLPack((const DLManagedTensorVersioned *)(uintptr_t)3, &p, &device));
  OK(knpuTensorToDLPack(d, 1, shape, NULL, f32, &t));
  ERR_IS(knpuErrorInvalidValue, knpuTensorFromDLPack(t, (void **)(uintptr_t)1, &device));
  OK(knpuFree(d));
  /* Freed: the export keeps the memory, but it is no longer an address knpu accepts. */
  ERR_IS(knpuErrorInvalidValue, knpuTensorFromDLPack(t, &p, &device));
  t->deleter(t);
}

/* knpu_ops.h: for every op, a NULL descriptor, a descriptor whose structSize is too small, a
 * garbage and a destroyed stream, NULL, garbage, past-the-end and freed device pointers, an
 * unknown element type or enum value, and a shape that overflows. */
static void ops(knpuStream_t dead_stream) {
  enum { N = 64 };
  float *d = NULL, *freed = NULL;
  OK(knpuMalloc((void **)&d, N * sizeof *d));
  OK(knpuMalloc((void **)&freed, N * sizeof *freed));
  OK(knpuFree(freed));
  float *garbage = GARBAGE(float *);
  uint32_t *u = (uint32_t *)(d + 48);
  const knpuStream_t bad = GARBAGE(knpuStream_t);
  const knpuError_t IV = knpuErrorInvalidValue, IH = knpuErrorInvalidHandle,
                    DT = knpuErrorDtype, NS = knpuErrorNotSupported;

  knpuAttentionDesc at = KNPU_OPS_DESC_INIT(knpuAttentionDesc);
  at.dtype = knpuDtypeF32;
  at.q = at.out = knpuAttnTensorBshd(1, 1, 2, 4);
  at.k = at.v = knpuAttnTensorBshd(1, 2, 1, 4);
  OK(knpuAttention(&at, d, d + 8, d + 16, d + 24, NULL, NULL, NULL));
  ERR_IS(IV, knpuAttention(NULL, d, d + 8, d + 16, d + 24, NULL, NULL, NULL));
  ERR_IS(IH, knpuAttention(&at, d, d + 8, d + 16, d + 24, NULL, NULL, bad));
  ERR_IS(IH, knpuAttention(&at, d, d + 8, d + 16, d + 24, NULL, NULL, dead_stream));
  ERR_IS(IV, knpuAttention(&at, NULL, d + 8, d + 16, d + 24, NULL, NULL, NULL));
  ERR_IS(IV, knpuAttention(&at, d, garbage, d + 16, d + 24, NULL, NULL, NULL));
  ERR_IS(IV, knpuAttention(&at, d, d + 8, d + 16, d + N - 4, NULL, NULL, NULL)); /* past the end */
  ERR_IS(IV, knpuAttention(&at, d, d + 8, freed, d + 24, NULL, NULL, NULL));
  ERR_IS(IV, knpuAttention(&at, d, d + 8, d + 16, d + 24, garbage, NULL, NULL));
  ERR_IS(IV, knpuAttention(&at, d, d + 8, d + 16, (char *)(d + 24) + 1, NULL, NULL, NULL));
  at.flags = 0x80;
  ERR_IS(IV, knpuAttention(&at, d, d + 8, d + 16, d + 24, NULL, NULL, NULL));
  at.flags = 0;
  at.scale = NAN;
  ERR_IS(IV, knpuAttention(&at, d, d + 8, d + 16, d + 24, NULL, NULL, NULL));
  at.scale = 0;
  at.dtype = (knpuDtype_t)99;
  ERR_IS(DT, knpuAttention(&at, d, d + 8, d + 16, d + 24, NULL, NULL, NULL));
  at.dtype = knpuDtypeI32;
  ERR_IS(DT, knpuAttention(&at, d, d + 8, d + 16, d + 24, NULL, NULL, NULL));
  at.dtype = knpuDtypeF32;
  at.k.heads = at.v.heads = 3; /* does not divide the query heads */
  ERR(knpuAttention(&at, d, d + 8, d + 16, d + 24, NULL, NULL, NULL));
  at.structSize = 8;
  ERR_IS(IV, knpuAttention(&at, d, d + 8, d + 16, d + 24, NULL, NULL, NULL));

  knpuPagedAttentionDesc pa = KNPU_OPS_DESC_INIT(knpuPagedAttentionDesc);
  pa.dtype = knpuDtypeF32;
  pa.q = pa.out = knpuAttnTensorBshd(1, 1, 2, 4);
  pa.cache = knpuPagedKvCacheDense(2, 2, 1, 4);
  pa.maxBlocksPerSeq = 2;
  OK(knpuMemset(u, 0, 4 * sizeof *u));
  OK(knpuPagedAttention(&pa, d, d + 8, d + 24, u, u + 2, d + 40, NULL, NULL));
  ERR_IS(IV, knpuPagedAttention(NULL, d, d + 8, d + 24, u, u + 2, d + 40, NULL, NULL));
  ERR_IS(IH, knpuPagedAttention(&pa, d, d + 8, d + 24, u, u + 2, d + 40, NULL, dead_stream));
  ERR_IS(IV, knpuPagedAttention(&pa, d, d + 8, d + 24, u, NULL, d + 40, NULL, NULL));
  ERR_IS(IV, knpuPagedAttention(&pa, d, d + 8, d + 24, (uint32_t *)garbage, u + 2, d + 40, NULL,
                                NULL));
  ERR_IS(IV, knpuPagedAttention(&pa, d, d + 8, d + 60, u, u + 2, d + 40, NULL, NULL));
  pa.cache.blockSize = 0;
  ERR_IS(IV, knpuPagedAttention(&pa, d, d + 8, d + 24, u, u + 2, d + 40, NULL, NULL));
  pa.cache = knpuPagedKvCacheDense(UINT64_MAX / 2, 4, 1, 4); /* overflows */
  ERR_IS(IV, knpuPagedAttention(&pa, d, d + 8, d + 24, u, u + 2, d + 40, NULL, NULL));

  knpuKvAppendDesc ka = KNPU_OPS_DESC_INIT(knpuKvAppendDesc);
  ka.dtype = knpuDtypeF32;
  ka.cache = knpuAttnTensorBshd(1, 4, 1, 4);
  ka.newKv = knpuAttnTensorBshd(1, 1, 1, 4);
  OK(knpuKvAppend(&ka, d, d + 16, d + 32, d + 36, u, NULL));
  ERR_IS(IV, knpuKvAppend(NULL, d, d + 16, d + 32, d + 36, u, NULL));
  ERR_IS(IH, knpuKvAppend(&ka, d, d + 16, d + 32, d + 36, u, bad));
  ERR_IS(IV, knpuKvAppend(&ka, d, d + 16, d + 32, d + 36, NULL, NULL));
  ERR_IS(IV, knpuKvAppend(&ka, d, d + 16, d + 32, freed, u, NULL));
  ERR_IS(IV, knpuKvAppend(&ka, d + 50, d + 16, d + 32, d + 36, u, NULL));
  ka.newKv.seq = 5; /* more than the capacity */
  ERR_IS(IV, knpuKvAppend(&ka, d, d + 16, d + 32, d + 36, u, NULL));
  ka.newKv.seq = 1;
  ka.dtype = (knpuDtype_t)-1;
  ERR_IS(DT, knpuKvAppend(&ka, d, d + 16, d + 32, d + 36, u, NULL));

  knpuPagedKvAppendDesc pk = KNPU_OPS_DESC_INIT(knpuPagedKvAppendDesc);
  pk.dtype = knpuDtypeF32;
  pk.cache = knpuPagedKvCacheDense(2, 2, 1, 4);
  pk.newKv = knpuAttnTensorBshd(1, 1, 1, 4);
  pk.maxBlocksPerSeq = 2;
  OK(knpuPagedKvAppend(&pk, d, d + 16, d + 32, d + 36, u, u + 2, NULL));
  ERR_IS(IV, knpuPagedKvAppend(NULL, d, d + 16, d + 32, d + 36, u, u + 2, NULL));
  ERR_IS(IH, knpuPagedKvAppend(&pk, d, d + 16, d + 32, d + 36, u, u + 2, dead_stream));
  ERR_IS(IV, knpuPagedKvAppend(&pk, d, d + 16, d + 32, d + 36, NULL, u + 2, NULL));
  ERR_IS(IV, knpuPagedKvAppend(&pk, d, GARBAGE2(float *), d + 32, d + 36, u, u + 2, NULL));
  pk.newKv.heads = 2;
  ERR_IS(IV, knpuPagedKvAppend(&pk, d, d + 16, d + 32, d + 36, u, u + 2, NULL));

  knpuNormDesc nd = {.structSize = sizeof(knpuNormDesc), .dtype = knpuDtypeF32, .rows = 2,
                     .cols = 8, .eps = 1e-5f};
  OK(knpuRmsNorm(&nd, d, d + 16, d + 32, NULL));
  OK(knpuLayerNorm(&nd, d, d + 16, NULL, d + 32, NULL));
  ERR_IS(IV, knpuRmsNorm(NULL, d, d + 16, d + 32, NULL));
  ERR_IS(IH, knpuRmsNorm(&nd, d, d + 16, d + 32, bad));
  ERR_IS(IV, knpuRmsNorm(&nd, d, NULL, d + 32, NULL));
  ERR_IS(IV, knpuRmsNorm(&nd, d, d + 16, d + 60, NULL));
  ERR_IS(IV, knpuLayerNorm(NULL, d, d + 16, NULL, d + 32, NULL));
  ERR_IS(IH, knpuLayerNorm(&nd, d, d + 16, NULL, d + 32, dead_stream));
  ERR_IS(IV, knpuLayerNorm(&nd, d, d + 16, garbage, d + 32, NULL));
  ERR_IS(IV, knpuLayerNorm(&nd, d, d + 16, freed, d + 32, NULL));
  nd.eps = -1.0f;
  ERR_IS(IV, knpuRmsNorm(&nd, d, d + 16, d + 32, NULL));
  ERR_IS(IV, knpuLayerNorm(&nd, d, d + 16, NULL, d + 32, NULL));
  nd.eps = 1e-5f;
  nd.rows = UINT64_MAX;
  ERR_IS(IV, knpuRmsNorm(&nd, d, d + 16, d + 32, NULL));
  nd.rows = 2;
  nd.dtype = knpuDtypeU8;
  ERR_IS(DT, knpuLayerNorm(&nd, d, d + 16, NULL, d + 32, NULL));
  nd.structSize = 0;
  ERR_IS(IV, knpuRmsNorm(&nd, d, d + 16, d + 32, NULL));

  knpuRopeDesc rd = {.structSize = sizeof(knpuRopeDesc), .dtype = knpuDtypeF32,
                     .style = knpuRopeNeox, .rows = 2, .heads = 2, .headDim = 4, .rotaryDim = 4,
                     .base = 10000.0f};
  OK(knpuRope(&rd, d, NULL, d + 16, NULL));
  OK(knpuRope(&rd, d, u, d + 16, NULL));
  ERR_IS(IV, knpuRope(NULL, d, NULL, d + 16, NULL));
  ERR_IS(IH, knpuRope(&rd, d, NULL, d + 16, bad));
  ERR_IS(IV, knpuRope(&rd, d, (uint32_t *)garbage, d + 16, NULL));
  ERR_IS(IV, knpuRope(&rd, d, NULL, NULL, NULL));
  rd.style = (knpuRopeStyle_t)7;
  ERR_IS(IV, knpuRope(&rd, d, NULL, d + 16, NULL));
  rd.style = knpuRopeInterleaved;
  rd.base = -1.0f;
  ERR_IS(IV, knpuRope(&rd, d, NULL, d + 16, NULL));
  rd.base = 10000.0f;
  rd.startPosition = UINT64_MAX;
  ERR_IS(IV, knpuRope(&rd, d, NULL, d + 16, NULL));

  knpuActivationDesc ad = {.structSize = sizeof(knpuActivationDesc), .dtype = knpuDtypeF32,
                           .activation = knpuActivationSilu, .len = 16};
  OK(knpuActivation(&ad, d, d + 16, NULL));
  ERR_IS(IV, knpuActivation(NULL, d, d + 16, NULL));
  ERR_IS(IH, knpuActivation(&ad, d, d + 16, dead_stream));
  ERR_IS(IV, knpuActivation(&ad, d, d + 60, NULL));
  ad.activation = knpuActivationRelu; /* not an activation of this op */
  ERR_IS(NS, knpuActivation(&ad, d, d + 16, NULL));
  ad.activation = (knpuActivation_t)42;
  ERR_IS(IV, knpuActivation(&ad, d, d + 16, NULL));

  knpuSwigluDesc sw = {.structSize = sizeof(knpuSwigluDesc), .dtype = knpuDtypeF32, .len = 16};
  OK(knpuSwiglu(&sw, d, d + 16, d + 32, NULL));
  ERR_IS(IV, knpuSwiglu(NULL, d, d + 16, d + 32, NULL));
  ERR_IS(IH, knpuSwiglu(&sw, d, d + 16, d + 32, bad));
  ERR_IS(IV, knpuSwiglu(&sw, d, garbage, d + 32, NULL));
  sw.len = UINT64_MAX / 2;
  ERR_IS(IV, knpuSwiglu(&sw, d, d + 16, d + 32, NULL));

  knpuSoftmaxDesc sd = {.structSize = sizeof(knpuSoftmaxDesc), .dtype = knpuDtypeF32, .rows = 2,
                        .cols = 8, .scale = 1.0f};
  OK(knpuSoftmax(&sd, d, d + 16, NULL));
  ERR_IS(IV, knpuSoftmax(NULL, d, d + 16, NULL));
  ERR_IS(IH, knpuSoftmax(&sd, d, d + 16, dead_stream));
  ERR_IS(IV, knpuSoftmax(&sd, freed, d + 16, NULL));
  sd.scale = INFINITY;
  ERR_IS(IV, knpuSoftmax(&sd, d, d + 16, NULL));

  knpuBinaryDesc bd = {.structSize = sizeof(knpuBinaryDesc), .dtype = knpuDtypeF32,
                       .op = knpuBinarySub, .broadcast = knpuBroadcastRow, .rows = 2, .cols = 8};
  OK(knpuBinary(&bd, d, d + 16, d + 32, NULL));
  ERR_IS(IV, knpuBinary(NULL, d, d + 16, d + 32, NULL));
  ERR_IS(IH, knpuBinary(&bd, d, d + 16, d + 32, bad));
  ERR_IS(IV, knpuBinary(&bd, d, NULL, d + 32, NULL));
  bd.op = (knpuBinaryOp_t)9;
  ERR_IS(IV, knpuBinary(&bd, d, d + 16, d + 32, NULL));
  bd.op = knpuBinaryAdd;
  bd.broadcast = (knpuBroadcast_t)9;
  ERR_IS(IV, knpuBinary(&bd, d, d + 16, d + 32, NULL));
  bd.op = knpuBinaryDiv;
  bd.broadcast = knpuBroadcastNone;
  OK(knpuBinary(&bd, d, d + 16, d + 32, NULL));
  ERR_IS(IV, knpuBinary(&bd, d, d + 16, d + 56, NULL)); /* out runs past the end */

  knpuEmbeddingDesc ed = {.structSize = sizeof(knpuEmbeddingDesc), .tableDtype = knpuDtypeF32,
                          .outDtype = knpuDtypeBF16, .vocab = 4, .dim = 4, .tokens = 2};
  OK(knpuEmbedding(&ed, d, u, d + 16, NULL));
  ERR_IS(IV, knpuEmbedding(NULL, d, u, d + 16, NULL));
  ERR_IS(IH, knpuEmbedding(&ed, d, u, d + 16, dead_stream));
  ERR_IS(IV, knpuEmbedding(&ed, d, NULL, d + 16, NULL));
  ERR_IS(IV, knpuEmbedding(&ed, d + 60, u, d + 16, NULL));
  ed.outDtype = knpuDtypeI64;
  ERR_IS(DT, knpuEmbedding(&ed, d, u, d + 16, NULL));

  knpuQEmbeddingDesc qe = {.structSize = sizeof(knpuQEmbeddingDesc), .format = knpuQuantI8,
                           .outDtype = knpuDtypeF32, .vocab = 4, .dim = 8, .tokens = 2};
  OK(knpuQEmbedding(&qe, d, d + 8, u, d + 16, NULL));
  ERR_IS(IV, knpuQEmbedding(NULL, d, d + 8, u, d + 16, NULL));
  ERR_IS(IH, knpuQEmbedding(&qe, d, d + 8, u, d + 16, bad));
  ERR_IS(IV, knpuQEmbedding(&qe, d, NULL, u, d + 16, NULL)); /* I8 needs its scales */
  ERR_IS(IV, knpuQEmbedding(&qe, d, garbage, u, d + 16, NULL));
  qe.format = knpuQuantQ4_K;
  ERR_IS(IV, knpuQEmbedding(&qe, d, NULL, u, d + 16, NULL)); /* dim 8 is not blocks of 256 */
  qe.format = (knpuQuantFormat_t)99;
  ERR_IS(IV, knpuQEmbedding(&qe, d, NULL, u, d + 16, NULL));

  knpuCastDesc cd = {.structSize = sizeof(knpuCastDesc), .srcDtype = knpuDtypeF32,
                     .dstDtype = knpuDtypeF16, .len = 16};
  OK(knpuCast(&cd, d, d + 16, NULL));
  ERR_IS(IV, knpuCast(NULL, d, d + 16, NULL));
  ERR_IS(IH, knpuCast(&cd, d, d + 16, dead_stream));
  ERR_IS(IV, knpuCast(&cd, d + 56, d + 16, NULL));
  cd.dstDtype = (knpuDtype_t)12345;
  ERR_IS(DT, knpuCast(&cd, d, d + 16, NULL));

  knpuReduceDesc rr = {.structSize = sizeof(knpuReduceDesc), .dtype = knpuDtypeF32, .rows = 2,
                       .cols = 8, .k = 2};
  OK(knpuArgmax(&rr, d, u, NULL));
  OK(knpuTopK(&rr, d, d + 16, u, NULL));
  ERR_IS(IV, knpuArgmax(NULL, d, u, NULL));
  ERR_IS(IH, knpuArgmax(&rr, d, u, bad));
  ERR_IS(IV, knpuArgmax(&rr, d, (uint32_t *)freed, NULL));
  ERR_IS(IV, knpuTopK(NULL, d, d + 16, u, NULL));
  ERR_IS(IH, knpuTopK(&rr, d, d + 16, u, dead_stream));
  ERR_IS(IV, knpuTopK(&rr, d, d + 16, (uint32_t *)(d + 17), NULL)); /* outputs overlap */
  rr.k = 9; /* more than cols */
  ERR_IS(IV, knpuTopK(&rr, d, d + 16, u, NULL));
  rr.cols = 0;
  ERR_IS(IV, knpuArgmax(&rr, d, u, NULL));

  uint64_t *ctr = (uint64_t *)(d + 60);
  knpuSampleDesc sp = {.structSize = sizeof(knpuSampleDesc), .dtype = knpuDtypeF32,
                       .outDtype = knpuDtypeU32, .rows = 2, .vocab = 8, .temperature = 1.0f,
                       .topP = 1.0f, .seed = 7};
  OK(knpuSample(&sp, d, u, ctr, NULL));
  ERR_IS(IV, knpuSample(NULL, d, u, ctr, NULL));
  ERR_IS(IH, knpuSample(&sp, d, u, ctr, bad));
  ERR_IS(IH, knpuSample(&sp, d, u, ctr, dead_stream));
  ERR_IS(IV, knpuSample(&sp, garbage, u, ctr, NULL));
  ERR_IS(IV, knpuSample(&sp, freed, u, ctr, NULL));
  ERR_IS(IV, knpuSample(&sp, d, u, NULL, NULL));                     /* temperature > 0 */
  ERR_IS(IV, knpuSample(&sp, d, u, (uint64_t *)u, NULL));            /* counter overlaps out */
  ERR_IS(IV, knpuSample(&sp, d, u, (uint64_t *)(d + 61), NULL));     /* misaligned counter */
  ERR_IS(IV, knpuSample(&sp, d, u, (uint64_t *)(d + 64), NULL));     /* past the end */
  ERR_IS(IV, knpuSample(&sp, d, u, (uint64_t *)(freed + 60), NULL)); /* freed */
  sp.temperature = 0.0f;
  OK(knpuSample(&sp, d, u, NULL, NULL)); /* greedy needs no counter */
  sp.temperature = -1.0f;
  ERR_IS(IV, knpuSample(&sp, d, u, ctr, NULL));
  sp.temperature = NAN;
  ERR_IS(IV, knpuSample(&sp, d, u, ctr, NULL));
  sp.temperature = 1.0f;
  sp.topP = 0.0f;
  ERR_IS(IV, knpuSample(&sp, d, u, ctr, NULL));
  sp.topP = 1.0f;
  sp.topK = 9; /* more than vocab */
  ERR_IS(IV, knpuSample(&sp, d, u, ctr, NULL));
  sp.topK = 0;
  sp.vocab = 0;
  ERR_IS(IV, knpuSample(&sp, d, u, ctr, NULL));
  sp.vocab = 8;
  sp.rows = UINT64_MAX;
  ERR_IS(IV, knpuSample(&sp, d, u, ctr, NULL));
  sp.rows = 2;
  sp.outDtype = knpuDtypeF32;
  ERR_IS(DT, knpuSample(&sp, d, u, ctr, NULL));
  sp.outDtype = knpuDtypeI32;
  OK(knpuSample(&sp, d, u, ctr, NULL));
  sp.dtype = knpuDtypeU8;
  ERR_IS(DT, knpuSample(&sp, d, u, ctr, NULL));
  sp.dtype = knpuDtypeF32;
  sp.structSize = 8;
  ERR_IS(IV, knpuSample(&sp, d, u, ctr, NULL));

  knpuQuantizeDesc qd = {.structSize = sizeof(knpuQuantizeDesc), .format = knpuQuantQ8_0,
                         .rows = 1, .k = 32};
  OK(knpuQuantize(&qd, d, d + 32, NULL, NULL));
  OK(knpuDequantize(&qd, d + 32, NULL, d, NULL));
  ERR_IS(IV, knpuQuantize(NULL, d, d + 32, NULL, NULL));
  ERR_IS(IH, knpuQuantize(&qd, d, d + 32, NULL, bad));
  ERR_IS(IV, knpuQuantize(&qd, d, d + 32, d + 48, NULL)); /* Q8_0 takes no scale tensor */
  ERR_IS(IV, knpuQuantize(&qd, d, d + 60, NULL, NULL));
  ERR_IS(IV, knpuDequantize(NULL, d + 32, NULL, d, NULL));
  ERR_IS(IH, knpuDequantize(&qd, d + 32, NULL, d, dead_stream));
  ERR_IS(IV, knpuDequantize(&qd, garbage, NULL, d, NULL));
  qd.k = 33;
  ERR_IS(IV, knpuQuantize(&qd, d, d + 32, NULL, NULL));
  ERR_IS(IV, knpuDequantize(&qd, d + 32, NULL, d, NULL));
  qd.format = (knpuQuantFormat_t)8;
  ERR_IS(IV, knpuDequantize(&qd, d + 32, NULL, d, NULL));

  knpuQMatmulDesc qm = {.structSize = sizeof(knpuQMatmulDesc), .format = knpuQuantI8,
                        .xDtype = knpuDtypeF32, .yDtype = knpuDtypeF32, .m = 1, .n = 2, .k = 32};
  OK(knpuQMatmul(&qm, d, d + 32, d + 48, NULL, d + 56, NULL));
  ERR_IS(IV, knpuQMatmul(NULL, d, d + 32, d + 48, NULL, d + 56, NULL));
  ERR_IS(IH, knpuQMatmul(&qm, d, d + 32, d + 48, NULL, d + 56, bad));
  ERR_IS(IV, knpuQMatmul(&qm, d, d + 32, NULL, NULL, d + 56, NULL)); /* I8 needs its scales */
  ERR_IS(IV, knpuQMatmul(&qm, d, d + 32, d + 48, garbage, d + 56, NULL));
  ERR_IS(IV, knpuQMatmul(&qm, d, d + 32, d + 48, NULL, d + 63, NULL));
  qm.actQuant = (knpuActQuant_t)5;
  ERR_IS(IV, knpuQMatmul(&qm, d, d + 32, d + 48, NULL, d + 56, NULL));
  qm.actQuant = knpuActQuantInt8;
  qm.format = knpuQuantF8E4M3; /* FP8 has no integer dot products */
  ERR_IS(NS, knpuQMatmul(&qm, d, d + 32, NULL, NULL, d + 56, NULL));
  qm.actQuant = knpuActQuantAuto;
  qm.xDtype = knpuDtypeI8;
  ERR_IS(DT, knpuQMatmul(&qm, d, d + 32, NULL, NULL, d + 56, NULL));

  knpuW8A8GemmDesc wg = {.structSize = sizeof(knpuW8A8GemmDesc), .yDtype = knpuDtypeF32, .m = 1,
                         .n = 2, .k = 32};
  const int8_t *i8 = (const int8_t *)d;
  OK(knpuW8A8Gemm(&wg, i8, d + 8, i8 + 64, d + 32, NULL, d + 40, NULL));
  ERR_IS(IV, knpuW8A8Gemm(NULL, i8, d + 8, i8 + 64, d + 32, NULL, d + 40, NULL));
  ERR_IS(IH, knpuW8A8Gemm(&wg, i8, d + 8, i8 + 64, d + 32, NULL, d + 40, dead_stream));
  ERR_IS(IV, knpuW8A8Gemm(&wg, i8, NULL, i8 + 64, d + 32, NULL, d + 40, NULL));
  ERR_IS(IV, knpuW8A8Gemm(&wg, i8, d + 8, (const int8_t *)garbage, d + 32, NULL, d + 40, NULL));
  wg.activation = (knpuActivation_t)77;
  ERR_IS(IV, knpuW8A8Gemm(&wg, i8, d + 8, i8 + 64, d + 32, NULL, d + 40, NULL));
  wg.activation = knpuActivationNone;
  wg.k = (1 << 17) + 32; /* past the exact int32 sums */
  ERR(knpuW8A8Gemm(&wg, i8, d + 8, i8 + 64, d + 32, NULL, d + 40, NULL));

  OK(knpuDeviceSynchronize());
  OK(knpuFree(d));
  /* Freed: no op accepts the memory any more. */
  sw.len = 16;
  ERR_IS(IV, knpuSwiglu(&sw, d, d, d, NULL));
}

static void expect_blas(knpublasStatus_t got, knpublasStatus_t want, const char *call, int line) {
  checked++;
  const char *name = knpublasGetStatusName(got);
  if (got == KNPUBLAS_STATUS_SUCCESS || strcmp(name, "KNPUBLAS_STATUS_UNKNOWN") == 0 ||
      got != want) {
    fprintf(stderr, "misuse.c:%d: %s returned %s (%d), expected %s\n", line, call, name,
            (int)got, knpublasGetStatusName(want));
    failures++;
  }
}
#define BLAS_IS(want, call) expect_blas((call), (want), #call, __LINE__)

static void blas(knpuStream_t dead_stream) {
  if (strcmp(knpublasGetStatusName((knpublasStatus_t)9999), "KNPUBLAS_STATUS_UNKNOWN") != 0)
    failures++;
  if (knpublasGetStatusString((knpublasStatus_t)-1) == NULL) failures++;
  knpublasHandle_t dead, h;
  OK(knpublasCreate(&dead) == KNPUBLAS_STATUS_SUCCESS ? knpuSuccess : knpuErrorInternal);
  OK(knpublasDestroy(dead) == KNPUBLAS_STATUS_SUCCESS ? knpuSuccess : knpuErrorInternal);
  OK(knpublasCreate(&h) == KNPUBLAS_STATUS_SUCCESS ? knpuSuccess : knpuErrorInternal);
  const knpublasStatus_t NI = KNPUBLAS_STATUS_NOT_INITIALIZED, IV = KNPUBLAS_STATUS_INVALID_VALUE;
  BLAS_IS(IV, knpublasCreate(NULL));
  BLAS_IS(IV, knpublasCreate((knpublasHandle_t *)(uintptr_t)1)); /* misaligned */
  BLAS_IS(NI, knpublasDestroy(NULL));
  BLAS_IS(NI, knpublasDestroy(dead));
  BLAS_IS(NI, knpublasDestroy(GARBAGE(knpublasHandle_t)));
  BLAS_IS(NI, knpublasSetStream(dead, NULL));
  BLAS_IS(NI, knpublasSetStream(GARBAGE2(knpublasHandle_t), NULL));
  BLAS_IS(IV, knpublasSetStream(h, dead_stream));
  BLAS_IS(IV, knpublasSetStream(h, GARBAGE(knpuStream_t)));
  knpuStream_t s;
  BLAS_IS(NI, knpublasGetStream(dead, &s));
  BLAS_IS(IV, knpublasGetStream(h, NULL));

  float one = 1.0f, zero = 0.0f;
  float *d = NULL;
  OK(knpuMalloc((void **)&d, 16 * sizeof *d));
  float *garbage = GARBAGE(float *);
  const knpublasOperation_t N = KNPUBLAS_OP_N;
  BLAS_IS(NI, knpublasSgemm(dead, N, N, 2, 2, 2, &one, d, 2, d, 2, &zero, d, 2));
  BLAS_IS(NI, knpublasSgemm(GARBAGE(knpublasHandle_t), N, N, 2, 2, 2, &one, d, 2, d, 2, &zero,
                            d, 2));
  BLAS_IS(IV, knpublasSgemm(h, N, N, 2, 2, 2, &one, garbage, 2, d, 2, &zero, d + 8, 2));
  BLAS_IS(IV, knpublasSgemm(h, N, N, 2, 2, 2, &one, NULL, 2, d, 2, &zero, d + 8, 2));
  BLAS_IS(IV, knpublasSgemm(h, N, N, 2, 2, 2, &one, d, 2, d, 2, NULL, d + 8, 2));
  BLAS_IS(IV, knpublasSgemm(h, N, N, 4, 4, 4, &one, d, 4, d, 4, &zero, d + 8, 4)); /* overrun */
  BLAS_IS(IV, knpublasSgemm(h, N, N, 2, -2, 2, &one, d, 2, d, 2, &zero, d + 8, 2));
  BLAS_IS(NI, knpublasGemmEx(dead, N, N, 2, 2, 2, &one, d, KNPU_R_32F, 2, d, KNPU_R_32F, 2,
                             &zero, d + 8, KNPU_R_32F, 2, KNPUBLAS_COMPUTE_32F,
                             KNPUBLAS_GEMM_DEFAULT));
  BLAS_IS(IV, knpublasGemmEx(h, N, N, 2, 2, 2, &one, garbage, KNPU_R_16F, 2, d, KNPU_R_16F, 2,
                             &zero, d + 8, KNPU_R_32F, 2, KNPUBLAS_COMPUTE_32F,
                             KNPUBLAS_GEMM_DEFAULT));
  BLAS_IS(IV, knpublasGemmEx(h, N, N, 2, 2, 2, &one, d, KNPU_R_32F, 2, d, KNPU_R_32F, 2, &zero,
                             d + 8, KNPU_R_32F, 2, KNPUBLAS_COMPUTE_32F, (knpublasGemmAlgo_t)12345));
  BLAS_IS(KNPUBLAS_STATUS_NOT_SUPPORTED,
          knpublasGemmEx(h, N, N, 2, 2, 2, &one, d, (knpuDataType_t)-5, 2, d, KNPU_R_32F, 2,
                         &zero, d + 8, KNPU_R_32F, 2, KNPUBLAS_COMPUTE_32F,
                         KNPUBLAS_GEMM_DEFAULT));
  BLAS_IS(NI, knpublasSgemmStridedBatched(dead, N, N, 2, 2, 2, &one, d, 2, 4, d, 2, 4, &zero,
                                          d + 8, 2, 4, 2));
  BLAS_IS(IV, knpublasSgemmStridedBatched(h, N, N, 2, 2, 2, &one, d, 2, 4, d, 2, 4, &zero,
                                          d + 8, 2, 4, -1));
  BLAS_IS(IV, knpublasSgemmStridedBatched(h, N, N, 2, 2, 2, &one, d, 2, 4, d, 2, 4, &zero,
                                          d + 8, 2, 4, 3)); /* C's batches run past the end */
  BLAS_IS(NI, knpublasGemmStridedBatchedEx(dead, N, N, 2, 2, 2, &one, d, KNPU_R_32F, 2, 4, d,
                                           KNPU_R_32F, 2, 4, &zero, d + 8, KNPU_R_32F, 2, 4, 2,
                                           KNPUBLAS_COMPUTE_32F, KNPUBLAS_GEMM_DEFAULT));
  BLAS_IS(IV, knpublasGemmStridedBatchedEx(h, N, N, 2, 2, 2, &one, d, KNPU_R_32F, 2, 4, garbage,
                                           KNPU_R_32F, 2, 4, &zero, d + 8, KNPU_R_32F, 2, 4, 2,
                                           KNPUBLAS_COMPUTE_32F, KNPUBLAS_GEMM_DEFAULT));
  /* Freed memory is not a live allocation any more. */
  OK(knpuFree(d));
  BLAS_IS(IV, knpublasSgemm(h, N, N, 2, 2, 2, &one, d, 2, d, 2, &zero, d + 8, 2));
  OK(knpublasDestroy(h) == KNPUBLAS_STATUS_SUCCESS ? knpuSuccess : knpuErrorInternal);
}

int main(void) {
  knpuStream_t dead_stream;
  knpuEvent_t dead_event;
  OK(knpuStreamCreate(&dead_stream));
  OK(knpuStreamDestroy(dead_stream));
  OK(knpuEventCreate(&dead_event));
  OK(knpuEventDestroy(dead_event));

  errors_and_versions();
  devices();
  memory(dead_stream);
  streams_and_events(dead_stream, dead_event);
  graphs(dead_stream, dead_event);
  blas(dead_stream);
  ops(dead_stream);
  dlpack();
  threads();

  /* After all that the device still works: errors are not sticky. */
  int x = 5, y = 0;
  void *d = NULL;
  OK(knpuMalloc(&d, sizeof x));
  OK(knpuMemcpy(d, &x, sizeof x, knpuMemcpyHostToDevice));
  OK(knpuMemcpy(&y, d, sizeof y, knpuMemcpyDeviceToHost));
  OK(knpuFree(d));
  OK(knpuDeviceSynchronize());
  if (y != 5) failures++;

  printf("%d misuse calls checked, %d failures\n", checked, failures);
  return failures == 0 ? 0 : 1;
}
