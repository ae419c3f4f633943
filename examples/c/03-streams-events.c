/* 03-streams-events: two streams, ordering across them with an event, a host function,
 * stream-ordered allocation, and device-time measurement with events. */
#include "check.h"

enum { N = 1 << 20 };

static void on_done(void *user) { *(int *)user += 1; }

int main(void) {
  int least = 0, greatest = 0;
  CHECK(knpuDeviceGetStreamPriorityRange(&least, &greatest));
  knpuStream_t copy_stream, work_stream;
  CHECK(knpuStreamCreateWithPriority(&copy_stream, knpuStreamNonBlocking, greatest));
  CHECK(knpuStreamCreate(&work_stream));
  int prio = 0;
  CHECK(knpuStreamGetPriority(copy_stream, &prio));
  EXPECT(prio == greatest);

  knpuEvent_t start, stop, uploaded;
  CHECK(knpuEventCreate(&start));
  CHECK(knpuEventCreate(&stop));
  CHECK(knpuEventCreateWithFlags(&uploaded, knpuEventDisableTiming));

  float *h = NULL;
  CHECK(knpuMallocHost((void **)&h, N * sizeof(float)));
  for (int i = 0; i < N; i++) h[i] = 1.0f;

  unsigned char *d = NULL, *d2 = NULL;
  CHECK(knpuMallocAsync((void **)&d, N * sizeof(float), copy_stream));
  CHECK(knpuMallocAsync((void **)&d2, N * sizeof(float), work_stream));

  CHECK(knpuEventRecord(start, copy_stream));
  CHECK(knpuMemcpyAsync(d, h, N * sizeof(float), knpuMemcpyHostToDevice, copy_stream));
  CHECK(knpuEventRecord(uploaded, copy_stream));
  CHECK(knpuEventRecord(stop, copy_stream));

  /* The work stream waits for the upload, then copies it and runs a host function. */
  int done = 0;
  CHECK(knpuStreamWaitEvent(work_stream, uploaded, 0));
  CHECK(knpuMemcpyAsync(d2, d, N * sizeof(float), knpuMemcpyDeviceToDevice, work_stream));
  CHECK(knpuLaunchHostFunc(work_stream, on_done, &done));
  CHECK(knpuMemcpyAsync(h, d2 + 4 * sizeof(float), 4 * sizeof(float), knpuMemcpyDeviceToHost,
                        work_stream));
  CHECK(knpuStreamSynchronize(work_stream));
  EXPECT(done == 1);
  EXPECT(knpuStreamQuery(work_stream) == knpuSuccess);
  EXPECT(knpuEventQuery(uploaded) == knpuSuccess);

  CHECK(knpuEventSynchronize(stop));
  float ms = -1.0f;
  CHECK(knpuEventElapsedTime(&ms, start, stop));
  EXPECT(ms >= 0.0f);
  printf("uploaded %zu bytes in %.3f ms of device time\n", (size_t)N * sizeof(float), ms);
  /* An event without timing cannot be timed. */
  EXPECT(knpuEventElapsedTime(&ms, start, uploaded) == knpuErrorInvalidValue);

  CHECK(knpuFreeAsync(d, copy_stream));
  CHECK(knpuFreeAsync(d2, work_stream));
  CHECK(knpuDeviceSynchronize());

  knpuMemoryStats stats = KNPU_MEMORY_STATS_INIT;
  CHECK(knpuDeviceGetMemoryStats(&stats, 0));
  printf("allocator: %llu allocations, peak %llu bytes allocated, %llu reserved\n",
         (unsigned long long)stats.numAllocs, (unsigned long long)stats.peakAllocatedBytes,
         (unsigned long long)stats.reservedBytes);
  EXPECT(stats.numAllocs >= 2 && stats.peakAllocatedBytes >= 2 * N * sizeof(float));
  CHECK(knpuDeviceEmptyCache());
  CHECK(knpuDeviceResetPeakMemoryStats(0));

  CHECK(knpuEventDestroy(start));
  CHECK(knpuEventDestroy(stop));
  CHECK(knpuEventDestroy(uploaded));
  CHECK(knpuStreamDestroy(copy_stream));
  CHECK(knpuStreamDestroy(work_stream));
  /* A destroyed handle is refused, never followed. */
  EXPECT(knpuStreamSynchronize(work_stream) == knpuErrorInvalidHandle);
  CHECK(knpuFreeHost(h));
  printf("streams and events: ok\n");
  return 0;
}
