/* 02-memcpy: copies with pointer arithmetic on device pointers, memset, knpuMemcpyDefault,
 * host memory, a bounds error that is reported instead of crashing, and a peer copy when
 * there are two devices. */
#include <string.h>

#include "check.h"

enum { N = 1024 };

int main(void) {
  float *h_a = NULL, *h_b = NULL;
  CHECK(knpuMallocHost((void **)&h_a, N * sizeof(float)));
  CHECK(knpuMallocHost((void **)&h_b, N * sizeof(float)));
  for (int i = 0; i < N; i++) h_a[i] = (float)i;

  float *d_a = NULL, *d_b = NULL;
  CHECK(knpuMalloc((void **)&d_a, N * sizeof(float)));
  CHECK(knpuMalloc((void **)&d_b, N * sizeof(float)));

  /* Whole-buffer round trip. */
  CHECK(knpuMemcpy(d_a, h_a, N * sizeof(float), knpuMemcpyHostToDevice));
  CHECK(knpuMemset(d_b, 0, N * sizeof(float)));
  /* Device-to-device with pointer arithmetic: the second half of d_a into the first of d_b. */
  CHECK(knpuMemcpy(d_b, d_a + N / 2, (N / 2) * sizeof(float), knpuMemcpyDeviceToDevice));
  /* Overlapping copy inside one allocation (memmove): shift d_a left by 16 elements. */
  CHECK(knpuMemcpy(d_a, d_a + 16, (N - 16) * sizeof(float), knpuMemcpyDefault));
  CHECK(knpuMemcpy(h_b, d_b, N * sizeof(float), knpuMemcpyDeviceToHost));
  for (int i = 0; i < N / 2; i++) EXPECT(h_b[i] == (float)(i + N / 2));
  for (int i = N / 2; i < N; i++) EXPECT(h_b[i] == 0.0f);
  CHECK(knpuMemcpy(h_b, d_a, N * sizeof(float), knpuMemcpyDefault));
  for (int i = 0; i < N - 16; i++) EXPECT(h_b[i] == (float)(i + 16));

  /* Interior pointers work for device-to-host copies too. */
  float tail[4];
  CHECK(knpuMemcpy(tail, d_b + N / 2 - 4, sizeof tail, knpuMemcpyDeviceToHost));
  EXPECT(tail[3] == (float)(N - 1));

  /* A range running past the end of its allocation is an error at the call. */
  knpuError_t err = knpuMemcpy(h_b, d_a + 1, N * sizeof(float), knpuMemcpyDeviceToHost);
  EXPECT(err == knpuErrorInvalidValue);
  printf("past-the-end copy refused: %s\n", knpuGetErrorString(err));
  EXPECT(knpuGetLastError() == knpuErrorInvalidValue);

  /* Memset through an interior pointer. */
  CHECK(knpuMemset((char *)d_b + 4, 0xFF, 4));
  CHECK(knpuMemcpy(h_b, d_b, 3 * sizeof(float), knpuMemcpyDeviceToHost));
  unsigned char bytes[4];
  memcpy(bytes, &h_b[1], 4);
  EXPECT(bytes[0] == 0xFF && bytes[3] == 0xFF);
  EXPECT(h_b[0] == (float)(N / 2) && h_b[2] == (float)(N / 2 + 2));

  int count = 0;
  CHECK(knpuGetDeviceCount(&count));
  if (count >= 2) {
    float *d_peer = NULL;
    CHECK(knpuSetDevice(1));
    CHECK(knpuMalloc((void **)&d_peer, N * sizeof(float)));
    CHECK(knpuMemcpyPeer(d_peer, 1, d_b, 0, N * sizeof(float)));
    CHECK(knpuMemcpy(h_a, d_peer, N * sizeof(float), knpuMemcpyDeviceToHost));
    EXPECT(h_a[0] == (float)(N / 2));
    CHECK(knpuFree(d_peer));
    CHECK(knpuSetDevice(0));
    printf("peer copy between devices 0 and 1: ok\n");
  }

  CHECK(knpuFree(d_a));
  CHECK(knpuFree(d_b));
  /* A freed pointer is no longer a device pointer. */
  EXPECT(knpuMemset(d_a, 0, 4) == knpuErrorInvalidValue);
  CHECK(knpuFreeHost(h_a));
  CHECK(knpuFreeHost(h_b));
  printf("memcpy with pointer arithmetic: ok\n");
  return 0;
}
