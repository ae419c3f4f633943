/* 04-graph: capture a stream into a graph, replay it, update it, and build a graph with
 * the explicit node API (copy, fill, host and child nodes). */
#include "check.h"

enum { N = 256 };

static void count_launch(void *user) { *(int *)user += 1; }

int main(void) {
  knpuStream_t s;
  CHECK(knpuStreamCreate(&s));
  int *h_in = NULL, *h_out = NULL;
  CHECK(knpuMallocHost((void **)&h_in, N * sizeof(int)));
  CHECK(knpuMallocHost((void **)&h_out, N * sizeof(int)));
  int *d_a = NULL, *d_b = NULL;
  CHECK(knpuMalloc((void **)&d_a, N * sizeof(int)));
  CHECK(knpuMalloc((void **)&d_b, N * sizeof(int)));

  /* Capture: upload, copy half of it on the device, download, count. */
  int launches = 0;
  CHECK(knpuStreamBeginCapture(s, knpuStreamCaptureModeGlobal));
  knpuStreamCaptureStatus status = knpuStreamCaptureStatusNone;
  CHECK(knpuStreamIsCapturing(s, &status));
  EXPECT(status == knpuStreamCaptureStatusActive);
  CHECK(knpuMemcpyAsync(d_a, h_in, N * sizeof(int), knpuMemcpyHostToDevice, s));
  CHECK(knpuMemsetAsync(d_b, 0, N * sizeof(int), s));
  CHECK(knpuMemcpyAsync(d_b, d_a + N / 2, (N / 2) * sizeof(int), knpuMemcpyDeviceToDevice, s));
  CHECK(knpuMemcpyAsync(h_out, d_b, N * sizeof(int), knpuMemcpyDeviceToHost, s));
  CHECK(knpuLaunchHostFunc(s, count_launch, &launches));
  knpuGraph_t graph;
  CHECK(knpuStreamEndCapture(s, &graph));
  CHECK(knpuStreamIsCapturing(s, &status));
  EXPECT(status == knpuStreamCaptureStatusNone);

  size_t nodes = 0;
  CHECK(knpuGraphGetNodes(graph, NULL, &nodes));
  EXPECT(nodes >= 5);
  knpuGraphExec_t exec;
  CHECK(knpuGraphInstantiate(&exec, graph, 0));

  /* Replay with new inputs each time: the graph reads h_in at launch. */
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++) h_in[i] = round * 1000 + i;
    CHECK(knpuGraphLaunch(exec, s));
    CHECK(knpuStreamSynchronize(s));
    for (int i = 0; i < N / 2; i++) EXPECT(h_out[i] == round * 1000 + N / 2 + i);
    for (int i = N / 2; i < N; i++) EXPECT(h_out[i] == 0);
  }
  EXPECT(launches == 3);

  /* An update from a graph of another shape is refused and says why. */
  knpuGraph_t other;
  CHECK(knpuGraphCreate(&other, 0));
  knpuGraphNode_t lone;
  CHECK(knpuGraphAddEmptyNode(&lone, other, NULL, 0));
  knpuGraphExecUpdateResult result = knpuGraphExecUpdateSuccess;
  EXPECT(knpuGraphExecUpdate(exec, other, &result) == knpuErrorGraphUpdate);
  EXPECT(result != knpuGraphExecUpdateSuccess);
  /* The same graph updates cleanly. */
  CHECK(knpuGraphExecUpdate(exec, graph, &result));
  EXPECT(result == knpuGraphExecUpdateSuccess);

  /* Explicit building: fill -> upload-into-the-middle -> download, then a host node, all
   * inside a child graph of a parent with an empty join node. */
  knpuGraph_t child, parent;
  CHECK(knpuGraphCreate(&child, 0));
  knpuGraphNode_t fill, up, down, host, join, child_node;
  CHECK(knpuGraphAddMemsetNode1D(&fill, child, NULL, 0, d_a, 0, N * sizeof(int)));
  CHECK(knpuGraphAddMemcpyNode1D(&up, child, &fill, 1, d_a + 8, h_in, 4 * sizeof(int),
                                 knpuMemcpyHostToDevice));
  CHECK(knpuGraphAddMemcpyNode1D(&down, child, &up, 1, h_out, d_a, 16 * sizeof(int),
                                 knpuMemcpyDefault));
  CHECK(knpuGraphAddHostNode(&host, child, &down, 1, count_launch, &launches));
  /* A node of another graph is not a valid dependency. */
  knpuGraphNode_t bad;
  EXPECT(knpuGraphAddEmptyNode(&bad, child, &lone, 1) == knpuErrorInvalidHandle);
  CHECK(knpuGraphCreate(&parent, 0));
  CHECK(knpuGraphAddEmptyNode(&join, parent, NULL, 0));
  CHECK(knpuGraphAddChildGraphNode(&child_node, parent, &join, 1, child));
  knpuGraphExec_t exec2;
  CHECK(knpuGraphInstantiate(&exec2, parent, 0));
  for (int i = 0; i < N; i++) h_in[i] = 7 + i;
  CHECK(knpuGraphLaunch(exec2, s));
  CHECK(knpuStreamSynchronize(s));
  for (int i = 0; i < 16; i++) EXPECT(h_out[i] == ((i >= 8 && i < 12) ? 7 + (i - 8) : 0));
  EXPECT(launches == 4);

  CHECK(knpuGraphExecDestroy(exec));
  CHECK(knpuGraphExecDestroy(exec2));
  CHECK(knpuGraphDestroy(graph));
  CHECK(knpuGraphDestroy(other));
  CHECK(knpuGraphDestroy(child));
  CHECK(knpuGraphDestroy(parent));
  EXPECT(knpuGraphLaunch(exec, s) == knpuErrorInvalidHandle);
  CHECK(knpuFree(d_a));
  CHECK(knpuFree(d_b));
  CHECK(knpuFreeHost(h_in));
  CHECK(knpuFreeHost(h_out));
  CHECK(knpuStreamDestroy(s));
  printf("graph capture and replay: ok\n");
  return 0;
}
