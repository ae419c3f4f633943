/*
 * knpu.h — the knpu runtime's C API (libknpu).
 *
 * Devices, memory, streams, events and graphs of the knpu runtime for C99 and C++
 * applications. Names follow the CUDA runtime where a concept maps one to one, so a CUDA
 * program ports mostly by renaming (docs/porting-from-cuda.md keeps the table).
 *
 * Conventions that hold for every function below
 *   - Every function returns a knpuError_t (except the few that return a name or string).
 *     knpuSuccess is 0. A failing call also sets this thread's last error
 *     (knpuGetLastError); the detailed message is available from knpuGetErrorString.
 *     Errors are not sticky: after any error, including a fault of queued work, the device
 *     stays usable unless it was lost (knpuErrorDeviceLost).
 *   - Thread safety: any function may be called from any thread at any time. The current
 *     device (knpuSetDevice) and the last error are per thread.
 *   - Handles (knpuStream_t, knpuEvent_t, knpuGraph_t, knpuGraphExec_t, knpuGraphNode_t)
 *     are opaque values, never dereferenced by the library: a NULL (where not allowed),
 *     garbage or destroyed handle gives knpuErrorInvalidHandle, never a crash.
 *   - Device pointers are `void *` values holding a device address. They are never
 *     dereferenced on the host; pointer arithmetic works (d_a + 16 names byte 16 of d_a's
 *     allocation). Every device pointer a call receives is resolved against the live
 *     allocations made through this library: an address outside all of them, or a range
 *     that runs past the end of its allocation, is knpuErrorInvalidValue at the call. A
 *     fault the device finds while running queued work (for example memory freed and
 *     reused by another allocation while a graph still names it) is reported as
 *     knpuErrorIllegalAddress at the next synchronize or query of the stream or event that
 *     owns the work.
 *   - A stream argument of NULL (0) names the current device's default stream.
 *   - Asynchronous calls return once the work is queued. Host memory they name must stay
 *     valid until the work has finished (synchronize the stream or an event after it).
 *   - Structs that may grow start with `structSize`: set it to sizeof(the struct) before
 *     the call (the *_INIT macros do); the library fills only the fields that fit.
 */
#ifndef KNPU_H
#define KNPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The C API's version: 1000 * major + 10 * minor. The major is the soname's
 * (libknpu.so.1); it changes only when a function or struct changes incompatibly. */
#define KNPU_API_VERSION_MAJOR 1
#define KNPU_API_VERSION_MINOR 0
#define KNPU_API_VERSION (1000 * KNPU_API_VERSION_MAJOR + 10 * KNPU_API_VERSION_MINOR)

/* ---- Handles ----------------------------------------------------------------------------- */

/* A stream: an in-order queue of work on one device. NULL is the current device's default
 * stream. */
typedef struct knpuStream_st *knpuStream_t;
/* An event: a marker in a stream's work, for waiting, ordering and timing. */
typedef struct knpuEvent_st *knpuEvent_t;
/* A graph (a DAG of work), an instantiated graph, and a node of a graph. */
typedef struct knpuGraph_st *knpuGraph_t;
typedef struct knpuGraphExec_st *knpuGraphExec_t;
typedef struct knpuGraphNode_st *knpuGraphNode_t;

/* ---- Errors ------------------------------------------------------------------------------ */

/* Error codes. They equal the runtime's stable error codes; new codes are appended. */
typedef enum knpuError {
  knpuSuccess = 0,
  /* An argument is out of range, NULL where it must not be, or inconsistent; or a device
   * pointer is not inside a live allocation, or a range runs past its end. */
  knpuErrorInvalidValue = 1,
  /* A handle is NULL, unknown or already destroyed. */
  knpuErrorInvalidHandle = 2,
  /* Device memory is exhausted even after the caching allocator released its cache. */
  knpuErrorOutOfMemory = 3,
  /* The device or driver does not support this function, kernel, dtype or option. */
  knpuErrorNotSupported = 4,
  /* Queued work addressed device memory outside every live allocation (a device fault). */
  knpuErrorIllegalAddress = 5,
  /* A kernel failed while it ran. */
  knpuErrorKernelFault = 6,
  /* The device is gone; every later call that creates work on it fails. */
  knpuErrorDeviceLost = 7,
  /* A wait ended at its timeout. */
  knpuErrorTimeout = 8,
  /* A driver library was built for another driver ABI major. */
  knpuErrorAbiMismatch = 9,
  /* A bug in knpu or a driver (a caught panic included); the message says what broke. */
  knpuErrorInternal = 10,
  /* Work did not run because work it waited on had failed. */
  knpuErrorDependencyFailed = 11,
  /* A driver library could not be loaded. */
  knpuErrorDriverLoad = 12,
  /* The work asked about has not completed yet (knpuStreamQuery, knpuEventQuery). */
  knpuErrorNotReady = 13,
  /* An operand's shape does not fit the operation. */
  knpuErrorShape = 14,
  /* An operand's element type does not fit the operation. */
  knpuErrorDtype = 15,
  /* Operands (pointers, streams, events, graphs) belong to different devices. */
  knpuErrorDeviceMismatch = 16,
  /* The call is not allowed during a stream capture, or the capture failed. */
  knpuErrorStreamCapture = 17,
  /* A whole-graph update could not be applied; the instance is unchanged. */
  knpuErrorGraphUpdate = 18
} knpuError_t;

/* Returns and clears this thread's last error (knpuSuccess when no call failed since the
 * last clear). */
knpuError_t knpuGetLastError(void);

/* Returns this thread's last error without clearing it. */
knpuError_t knpuPeekAtLastError(void);

/* The code's name, e.g. "knpuErrorInvalidValue"; "knpuErrorUnknown" for a code this
 * library does not know. Static storage; never NULL. */
const char *knpuGetErrorName(knpuError_t error);

/* A description of the code. When `error` is the code of the most recent failure on this
 * thread, the description is that failure's detailed message (what was wrong, with
 * figures), valid until the next failing call on this thread; otherwise a static
 * description of the code. Never NULL. */
const char *knpuGetErrorString(knpuError_t error);

/* ---- Versions ------------------------------------------------------------------------------ */

/* *runtimeVersion = KNPU_API_VERSION of the library (which may be newer than the header the
 * caller compiled against). Errors: knpuErrorInvalidValue for NULL. */
knpuError_t knpuRuntimeGetVersion(int *runtimeVersion);

/* *driverVersion = 1000 * major + 10 * minor of the driver ABI spoken by the current
 * device's driver. Errors: knpuErrorInvalidValue for NULL or no device. */
knpuError_t knpuDriverGetVersion(int *driverVersion);

/* ---- Devices ------------------------------------------------------------------------------ */

/* Device attributes (numbering as KnpuDeviceAttribute of knpu_driver.h). */
typedef enum knpuDeviceAttr {
  /* Bytes of device memory. */
  knpuDevAttrTotalMemory = 0,
  /* Compute cores. */
  knpuDevAttrComputeCores = 1,
  /* Alignment of every allocation, in bytes. */
  knpuDevAttrAllocationAlignment = 2,
  /* Most streams (device queues) at once. */
  knpuDevAttrMaxStreams = 3,
  /* Modeled peak f32 rate, MFLOP/s. */
  knpuDevAttrPeakF32Mflops = 4,
  /* Modeled peak f16/bf16 rate, MFLOP/s. */
  knpuDevAttrPeakF16Mflops = 5,
  /* Modeled peak int8 rate, MOP/s. */
  knpuDevAttrPeakInt8Mops = 6,
  /* Modeled device memory bandwidth, MB/s. */
  knpuDevAttrMemoryBandwidthMbps = 7,
  /* Modeled host<->device bandwidth, MB/s. */
  knpuDevAttrDmaBandwidthMbps = 8,
  /* 1 when peer copies between this device and others of its driver work. */
  knpuDevAttrPeerCopy = 9,
  /* 1 when the device supports fault injection (testing). */
  knpuDevAttrFaultInjection = 10
} knpuDeviceAttr;

/* Device properties, filled by knpuGetDeviceProperties. Set structSize first
 * (knpuDeviceProp p = KNPU_DEVICE_PROP_INIT;); fields appended later are left untouched
 * for callers compiled against an older header. */
typedef struct knpuDeviceProp {
  size_t structSize;
  /* The device's name, NUL-terminated. */
  char name[256];
  /* The driver's name (e.g. "sim") and version string, NUL-terminated. */
  char driverName[64];
  char driverVersion[64];
  /* The device's ordinal (its index for knpuSetDevice). */
  int ordinal;
  /* Compute cores. */
  int computeCores;
  /* Bytes of device memory. */
  uint64_t totalGlobalMem;
  /* Alignment of every allocation, bytes. */
  uint64_t allocationAlignment;
  /* Most streams at once. */
  int maxStreams;
  /* 1 when peer copies with other devices of the driver work. */
  int peerCopy;
  /* Modeled rates (0 when the driver does not report them). */
  int64_t peakF32Mflops;
  int64_t peakF16Mflops;
  int64_t peakInt8Mops;
  int64_t memoryBandwidthMbps;
  int64_t dmaBandwidthMbps;
  /* The driver ABI version the driver speaks. */
  int driverAbiMajor;
  int driverAbiMinor;
} knpuDeviceProp;

#if defined(__cplusplus) && __cplusplus < 202002L
#define KNPU_DEVICE_PROP_INIT {sizeof(knpuDeviceProp)}
#else
#define KNPU_DEVICE_PROP_INIT {.structSize = sizeof(knpuDeviceProp)}
#endif

/* *count = number of devices (the built-in software NPU's, then those of each library in
 * KNPU_DRIVER_PATH). Errors: knpuErrorInvalidValue for NULL. */
knpuError_t knpuGetDeviceCount(int *count);

/* Makes `device` this thread's current device. Errors: knpuErrorInvalidValue when
 * device < 0 or >= the count. */
knpuError_t knpuSetDevice(int device);

/* *device = this thread's current device (0 until knpuSetDevice). Errors:
 * knpuErrorInvalidValue for NULL. */
knpuError_t knpuGetDevice(int *device);

/* *value = attribute `attr` of `device`. Errors: knpuErrorInvalidValue (NULL, bad device or
 * unknown attribute), knpuErrorNotSupported (the driver does not report it),
 * knpuErrorDeviceLost. */
knpuError_t knpuDeviceGetAttribute(int64_t *value, knpuDeviceAttr attr, int device);

/* Fills *prop (structSize must be set) for `device`. Attributes the driver does not report
 * are 0. Errors: knpuErrorInvalidValue (NULL, structSize 0, bad device),
 * knpuErrorDeviceLost. */
knpuError_t knpuGetDeviceProperties(knpuDeviceProp *prop, int device);

/* *supported = 1 when `device` runs kernel `kernelId` (a KnpuKernelId of knpu_driver.h)
 * with element type `dtype` (a KnpuDtype), else 0. A kernel launch that is not supported
 * fails with knpuErrorNotSupported at the call. Errors: knpuErrorInvalidValue (NULL, bad
 * device). */
knpuError_t knpuDeviceSupportsKernel(int device, unsigned int kernelId, unsigned int dtype,
                                     int *supported);

/* Waits for the work of every stream of the current device. Returns the first fault of that
 * work (after waiting for all of it). Errors: knpuErrorStreamCapture during a global-mode
 * capture, fault codes of the work. */
knpuError_t knpuDeviceSynchronize(void);

/* ---- Memory ------------------------------------------------------------------------------ */

/* *free and *total = bytes of device memory free and in total on the current device, as
 * the driver reports them (memory cached by the allocator counts as used). Errors:
 * knpuErrorInvalidValue for NULL. */
knpuError_t knpuMemGetInfo(size_t *free, size_t *total);

/* Allocates `size` bytes on the current device, ordered on its default stream; *devPtr
 * receives the device address (NULL for size 0). Contents are unspecified. The memory is
 * the caller's until knpuFree. Errors: knpuErrorInvalidValue (NULL), knpuErrorOutOfMemory
 * (the message names what was requested, allocated, reserved and free),
 * knpuErrorStreamCapture (during a strict capture; use knpuMallocAsync). */
knpuError_t knpuMalloc(void **devPtr, size_t size);

/* Frees memory from knpuMalloc or knpuMallocAsync. Work already queued on it finishes
 * first: the memory is reused only after that work is done. NULL is a no-op. Errors:
 * knpuErrorInvalidValue when devPtr is not the start of a live allocation. */
knpuError_t knpuFree(void *devPtr);

/* Allocates `size` bytes ordered on `stream` (NULL: the default stream): reuse of memory
 * freed on the same stream is immediate, of memory freed on other streams waits for their
 * work. During a capture of `stream` this records an allocation node. Errors: as
 * knpuMalloc, knpuErrorInvalidHandle for a bad stream. */
knpuError_t knpuMallocAsync(void **devPtr, size_t size, knpuStream_t stream);

/* Frees `devPtr` ordered on `stream`: work queued on `stream` before the call (and work of
 * every other stream that used it) finishes before the memory is reused. Errors: as
 * knpuFree, knpuErrorInvalidHandle for a bad stream. */
knpuError_t knpuFreeAsync(void *devPtr, knpuStream_t stream);

/* Allocates `size` bytes of host memory, 64-byte aligned (*ptr = NULL for size 0). It is
 * ordinary host memory: any host memory may be the host side of a copy. Errors:
 * knpuErrorInvalidValue (NULL), knpuErrorOutOfMemory. */
knpuError_t knpuMallocHost(void **ptr, size_t size);

/* Frees memory from knpuMallocHost; NULL is a no-op. Errors: knpuErrorInvalidValue when
 * ptr is not from knpuMallocHost (or was freed already). */
knpuError_t knpuFreeHost(void *ptr);

/* Direction of a copy. knpuMemcpyDefault infers each side from the pointer: an address
 * inside a live device allocation is device memory, any other is host memory. */
typedef enum knpuMemcpyKind {
  knpuMemcpyHostToHost = 0,
  knpuMemcpyHostToDevice = 1,
  knpuMemcpyDeviceToHost = 2,
  knpuMemcpyDeviceToDevice = 3,
  knpuMemcpyDefault = 4
} knpuMemcpyKind;

/* Copies `count` bytes and waits for the copy. Device-side copies run on the default
 * stream of the device that owns the device memory, after the work already queued there
 * (and not after other streams' work: synchronize those first). Device-to-device copies
 * between devices of one driver are peer copies; overlapping ranges of one allocation
 * behave as memmove. count 0 is a no-op. Errors: knpuErrorInvalidValue (NULL, a device
 * pointer outside a live allocation, a range past its end, a host pointer where `kind`
 * says device or the reverse, an unknown kind), knpuErrorStreamCapture (the default
 * stream is capturing), fault codes of the copy. */
knpuError_t knpuMemcpy(void *dst, const void *src, size_t count, knpuMemcpyKind kind);

/* Queues a copy of `count` bytes on `stream` and returns. Host memory must stay valid, and
 * unmodified (source) or unread (destination), until the copy has finished.
 * knpuMemcpyHostToHost runs in stream order on a driver thread. During a capture the copy
 * becomes a graph node and the host memory must stay valid for every launch. Errors: as
 * knpuMemcpy, knpuErrorInvalidHandle (bad stream), knpuErrorDeviceMismatch (device memory
 * of another device than the stream's). */
knpuError_t knpuMemcpyAsync(void *dst, const void *src, size_t count, knpuMemcpyKind kind,
                            knpuStream_t stream);

/* Copies `count` bytes from `src` on device `srcDevice` to `dst` on device `dstDevice` and
 * waits; the copy runs on dstDevice's default stream. Errors: knpuErrorInvalidValue (a
 * pointer not on the device named for it, a range past its allocation's end),
 * knpuErrorNotSupported (devices of different drivers). */
knpuError_t knpuMemcpyPeer(void *dst, int dstDevice, const void *src, int srcDevice,
                           size_t count);

/* Queues the peer copy on `stream`, which must be a stream of dstDevice (NULL: dstDevice's
 * default stream). Errors: as knpuMemcpyPeer, knpuErrorInvalidHandle,
 * knpuErrorDeviceMismatch. */
knpuError_t knpuMemcpyPeerAsync(void *dst, int dstDevice, const void *src, int srcDevice,
                                size_t count, knpuStream_t stream);

/* Sets `count` bytes at devPtr to (unsigned char)value and waits; ordered as knpuMemcpy.
 * Errors: knpuErrorInvalidValue (pointer or range), knpuErrorStreamCapture. */
knpuError_t knpuMemset(void *devPtr, int value, size_t count);

/* Queues the fill on `stream`. Errors: as knpuMemset, knpuErrorInvalidHandle,
 * knpuErrorDeviceMismatch. */
knpuError_t knpuMemsetAsync(void *devPtr, int value, size_t count, knpuStream_t stream);

/* The caching allocator's statistics (like PyTorch's memory_stats). Set structSize first. */
typedef struct knpuMemoryStats {
  size_t structSize;
  /* Bytes in live allocations (rounded block sizes), and the peak since the last reset. */
  uint64_t allocatedBytes;
  uint64_t peakAllocatedBytes;
  /* Bytes asked for by live allocations (before rounding). */
  uint64_t requestedBytes;
  /* Bytes held from the driver (live plus cached), and the peak since the last reset. */
  uint64_t reservedBytes;
  uint64_t peakReservedBytes;
  /* Live allocations; free blocks in the cache; segments held from the driver. */
  uint64_t activeBlocks;
  uint64_t cachedBlocks;
  uint64_t segments;
  /* Allocations and frees so far; driver segment allocations and frees. */
  uint64_t numAllocs;
  uint64_t numFrees;
  uint64_t numSegmentAllocs;
  uint64_t numSegmentFrees;
  /* Times the cache was released to retry an allocation; allocations that failed. */
  uint64_t numAllocRetries;
  uint64_t numOoms;
} knpuMemoryStats;

#if defined(__cplusplus) && __cplusplus < 202002L
#define KNPU_MEMORY_STATS_INIT {sizeof(knpuMemoryStats)}
#else
#define KNPU_MEMORY_STATS_INIT {.structSize = sizeof(knpuMemoryStats)}
#endif

/* Fills *stats (structSize must be set) for `device`. Errors: knpuErrorInvalidValue (NULL,
 * structSize 0, bad device). */
knpuError_t knpuDeviceGetMemoryStats(knpuMemoryStats *stats, int device);

/* Resets the peak figures of `device`'s statistics to the current ones. Errors:
 * knpuErrorInvalidValue (bad device). */
knpuError_t knpuDeviceResetPeakMemoryStats(int device);

/* Returns every cached, wholly free segment of the current device to the driver (waiting
 * for work that may still use them), so other processes or drivers can use the memory.
 * Errors: knpuErrorStreamCapture during a strict capture. */
knpuError_t knpuDeviceEmptyCache(void);

/* ---- Streams ------------------------------------------------------------------------------ */

/* Stream flags. Every knpu stream is non-blocking with respect to the default stream (there
 * is no implicit synchronisation between streams), so both flags behave the same. */
#define knpuStreamDefault 0x0u
#define knpuStreamNonBlocking 0x1u

/* Creates a stream of normal priority on the current device. The caller owns it until
 * knpuStreamDestroy. Errors: knpuErrorInvalidValue (NULL), knpuErrorDeviceLost, driver
 * resource errors. */
knpuError_t knpuStreamCreate(knpuStream_t *stream);

/* As knpuStreamCreate, with flags (knpuStreamDefault or knpuStreamNonBlocking). Errors:
 * knpuErrorInvalidValue for unknown flags. */
knpuError_t knpuStreamCreateWithFlags(knpuStream_t *stream, unsigned int flags);

/* As knpuStreamCreateWithFlags, with a priority: lower numbers are higher priorities, as in
 * CUDA; values outside knpuDeviceGetStreamPriorityRange are clamped to it. */
knpuError_t knpuStreamCreateWithPriority(knpuStream_t *stream, unsigned int flags, int priority);

/* *leastPriority = 1 (low), *greatestPriority = -1 (high); 0 is normal. Either may be NULL,
 * not both (knpuErrorInvalidValue). */
knpuError_t knpuDeviceGetStreamPriorityRange(int *leastPriority, int *greatestPriority);

/* *priority = the stream's priority (-1, 0 or 1). Errors: knpuErrorInvalidHandle,
 * knpuErrorInvalidValue (NULL). */
knpuError_t knpuStreamGetPriority(knpuStream_t stream, int *priority);

/* Releases the stream handle and returns at once; work already queued still runs, and the
 * stream's resources go once it has finished. Errors: knpuErrorInvalidHandle (NULL,
 * garbage, destroyed). */
knpuError_t knpuStreamDestroy(knpuStream_t stream);

/* Waits for all work queued on the stream; returns the first fault of that work (the
 * stream stays usable). Errors: knpuErrorInvalidHandle, knpuErrorStreamCapture (the stream
 * is capturing), fault codes. */
knpuError_t knpuStreamSynchronize(knpuStream_t stream);

/* knpuSuccess when all queued work has finished, knpuErrorNotReady when some is still
 * running, or the fault of that work. Errors: knpuErrorInvalidHandle,
 * knpuErrorStreamCapture. */
knpuError_t knpuStreamQuery(knpuStream_t stream);

/* Makes work queued on `stream` after this call wait until `event`'s recorded work has
 * finished (an event never recorded imposes no wait). flags must be 0. During a capture,
 * waiting on an event recorded in the capture forks or joins streams into it. Errors:
 * knpuErrorInvalidHandle, knpuErrorInvalidValue (flags), knpuErrorStreamCapture. */
knpuError_t knpuStreamWaitEvent(knpuStream_t stream, knpuEvent_t event,
                                unsigned int flags);

/* A host function for knpuLaunchHostFunc and host graph nodes. */
typedef void (*knpuHostFn_t)(void *userData);

/* Queues fn(userData) to run on a driver thread once all earlier work on `stream` is done;
 * later work waits for it. If earlier work fails, fn does not run. fn must not call knpu
 * functions that wait for this stream. During a capture it becomes a host node, called on
 * every launch. Errors: knpuErrorInvalidValue (fn NULL), knpuErrorInvalidHandle. */
knpuError_t knpuLaunchHostFunc(knpuStream_t stream, knpuHostFn_t fn, void *userData);

/* ---- Events ------------------------------------------------------------------------------ */

/* Event flags. knpuEventBlockingSync is accepted (waits already spin briefly, then block);
 * knpuEventInterprocess is not supported. */
#define knpuEventDefault 0x0u
#define knpuEventBlockingSync 0x1u
#define knpuEventDisableTiming 0x2u
#define knpuEventInterprocess 0x4u

/* Creates an event with timing on the current device. The caller owns it until
 * knpuEventDestroy. Errors: knpuErrorInvalidValue (NULL). */
knpuError_t knpuEventCreate(knpuEvent_t *event);

/* Creates an event with flags. Errors: knpuErrorInvalidValue (NULL, unknown flags),
 * knpuErrorNotSupported (knpuEventInterprocess). */
knpuError_t knpuEventCreateWithFlags(knpuEvent_t *event, unsigned int flags);

/* Records the event at the current end of `stream`'s work, replacing an earlier record.
 * Errors: knpuErrorInvalidHandle, knpuErrorDeviceMismatch (stream of another device). */
knpuError_t knpuEventRecord(knpuEvent_t event, knpuStream_t stream);

/* knpuSuccess when the recorded work has finished (or the event was never recorded),
 * knpuErrorNotReady when it has not, or the fault of that work. Errors:
 * knpuErrorInvalidHandle. */
knpuError_t knpuEventQuery(knpuEvent_t event);

/* Waits for the recorded work; returns its fault if it failed. Errors:
 * knpuErrorInvalidHandle, knpuErrorStreamCapture. */
knpuError_t knpuEventSynchronize(knpuEvent_t event);

/* *ms = device time between two events' records, in milliseconds. Both must have timing
 * and have finished. Errors: knpuErrorInvalidHandle, knpuErrorInvalidValue (NULL, an event
 * without timing or never recorded), knpuErrorNotReady. */
knpuError_t knpuEventElapsedTime(float *ms, knpuEvent_t start, knpuEvent_t end);

/* Releases the event handle; a pending record still completes. Errors:
 * knpuErrorInvalidHandle. */
knpuError_t knpuEventDestroy(knpuEvent_t event);

/* ---- Graphs ------------------------------------------------------------------------------ */

/* Which other calls a capture forbids while it runs (as cudaStreamCaptureMode). */
typedef enum knpuStreamCaptureMode {
  knpuStreamCaptureModeGlobal = 0,
  knpuStreamCaptureModeThreadLocal = 1,
  knpuStreamCaptureModeRelaxed = 2
} knpuStreamCaptureMode;

typedef enum knpuStreamCaptureStatus {
  knpuStreamCaptureStatusNone = 0,
  knpuStreamCaptureStatusActive = 1
} knpuStreamCaptureStatus;

/* What knpuGraphExecUpdate found (as cudaGraphExecUpdateResult). */
typedef enum knpuGraphExecUpdateResult {
  knpuGraphExecUpdateSuccess = 0,
  knpuGraphExecUpdateError = 1,
  knpuGraphExecUpdateErrorTopologyChanged = 2,
  knpuGraphExecUpdateErrorNodeTypeChanged = 3,
  knpuGraphExecUpdateErrorFunctionChanged = 4,
  knpuGraphExecUpdateErrorParametersChanged = 5,
  knpuGraphExecUpdateErrorNotSupported = 6
} knpuGraphExecUpdateResult;

/* Starts capturing `stream` (NULL: the default stream): work queued on it becomes nodes of
 * a graph instead of running. Errors: knpuErrorInvalidHandle, knpuErrorInvalidValue
 * (mode), knpuErrorStreamCapture (already capturing). */
knpuError_t knpuStreamBeginCapture(knpuStream_t stream, knpuStreamCaptureMode mode);

/* Ends the capture begun on `stream`; *graph receives the captured graph, owned by the
 * caller (knpuGraphDestroy). Errors: knpuErrorInvalidHandle, knpuErrorInvalidValue (NULL),
 * knpuErrorStreamCapture (not capturing, invalidated, or a forked stream not joined). */
knpuError_t knpuStreamEndCapture(knpuStream_t stream, knpuGraph_t *graph);

/* *status = whether `stream` is capturing. Errors: knpuErrorInvalidHandle,
 * knpuErrorInvalidValue (NULL). */
knpuError_t knpuStreamIsCapturing(knpuStream_t stream, knpuStreamCaptureStatus *status);

/* Creates an empty graph for the current device (flags must be 0). The caller owns it. */
knpuError_t knpuGraphCreate(knpuGraph_t *graph, unsigned int flags);

/* Validates, orders and pre-encodes `graph` (flags must be 0); *exec receives the instance,
 * owned by the caller (knpuGraphExecDestroy). The graph may change or be destroyed
 * afterwards without affecting the instance. Errors: knpuErrorInvalidHandle,
 * knpuErrorInvalidValue (NULL, flags, a cycle). */
knpuError_t knpuGraphInstantiate(knpuGraphExec_t *exec, knpuGraph_t graph,
                                 unsigned long long flags);

/* Queues the whole instance on `stream` (a stream of the graph's device; NULL: the current
 * device's default stream). Errors: knpuErrorInvalidHandle, knpuErrorDeviceMismatch. */
knpuError_t knpuGraphLaunch(knpuGraphExec_t exec, knpuStream_t stream);

/* Updates the instance's parameters from `graph`, which must have the same topology and
 * node kinds. *result (may be NULL) says what differed. Errors: knpuErrorInvalidHandle,
 * knpuErrorGraphUpdate (the instance is unchanged). */
knpuError_t knpuGraphExecUpdate(knpuGraphExec_t exec, knpuGraph_t graph,
                                knpuGraphExecUpdateResult *result);

/* Releases a graph. Instances made from it are not affected. Errors:
 * knpuErrorInvalidHandle. */
knpuError_t knpuGraphDestroy(knpuGraph_t graph);

/* Releases an instance; launches already queued still run. Errors: knpuErrorInvalidHandle. */
knpuError_t knpuGraphExecDestroy(knpuGraphExec_t exec);

/* Explicit graph building. Every knpuGraphAdd*Node call adds one node that runs after the
 * `numDependencies` nodes in `dependencies` (NULL when 0) and writes its handle to *node.
 * Node handles belong to their graph. Errors common to all: knpuErrorInvalidHandle (graph
 * or a dependency), knpuErrorInvalidValue (node NULL, dependencies NULL with a count). */

/* A node that does nothing: a join point. */
knpuError_t knpuGraphAddEmptyNode(knpuGraphNode_t *node, knpuGraph_t graph,
                                  const knpuGraphNode_t *dependencies, size_t numDependencies);

/* A node that calls fn(userData) on a driver thread on every launch. Errors also:
 * knpuErrorInvalidValue (fn NULL). */
knpuError_t knpuGraphAddHostNode(knpuGraphNode_t *node, knpuGraph_t graph,
                                 const knpuGraphNode_t *dependencies, size_t numDependencies,
                                 knpuHostFn_t fn, void *userData);

/* A copy node, checked as knpuMemcpyAsync is. Host memory must stay valid for every launch.
 * Errors also: as knpuMemcpyAsync. */
knpuError_t knpuGraphAddMemcpyNode1D(knpuGraphNode_t *node, knpuGraph_t graph,
                                     const knpuGraphNode_t *dependencies,
                                     size_t numDependencies, void *dst, const void *src,
                                     size_t count, knpuMemcpyKind kind);

/* A fill node, checked as knpuMemsetAsync is. */
knpuError_t knpuGraphAddMemsetNode1D(knpuGraphNode_t *node, knpuGraph_t graph,
                                     const knpuGraphNode_t *dependencies,
                                     size_t numDependencies, void *devPtr, int value,
                                     size_t count);

/* A node that records `event` on every launch. Errors also: knpuErrorDeviceMismatch. */
knpuError_t knpuGraphAddEventRecordNode(knpuGraphNode_t *node, knpuGraph_t graph,
                                        const knpuGraphNode_t *dependencies,
                                        size_t numDependencies, knpuEvent_t event);

/* A node that waits, on every launch, for `event`'s latest record. */
knpuError_t knpuGraphAddEventWaitNode(knpuGraphNode_t *node, knpuGraph_t graph,
                                      const knpuGraphNode_t *dependencies,
                                      size_t numDependencies, knpuEvent_t event);

/* A node that runs a copy of `childGraph` (later changes to the child are not seen). */
knpuError_t knpuGraphAddChildGraphNode(knpuGraphNode_t *node, knpuGraph_t graph,
                                       const knpuGraphNode_t *dependencies,
                                       size_t numDependencies, knpuGraph_t childGraph);

/* Adds edges: to[i] runs after from[i], for i < numDependencies. Cycles are found at
 * instantiation. */
knpuError_t knpuGraphAddDependencies(knpuGraph_t graph, const knpuGraphNode_t *from,
                                     const knpuGraphNode_t *to, size_t numDependencies);

/* With nodes NULL: *numNodes = the number of nodes. Otherwise writes up to *numNodes node
 * handles (in creation order) to nodes and sets *numNodes to the number written. */
knpuError_t knpuGraphGetNodes(knpuGraph_t graph, knpuGraphNode_t *nodes, size_t *numNodes);

/* ---- DLPack ------------------------------------------------------------------------------ */

/* The DLPack 1.x ABI (dlpack.h, https://github.com/dmlc/dlpack), declared here so no other
 * header is needed. A program that includes its own dlpack.h (1.0 or later) before this
 * header uses that one instead; this block also defines dlpack.h's include guard, so a
 * dlpack.h included later is skipped. */
#ifndef DLPACK_DLPACK_H_
#define DLPACK_DLPACK_H_
#define DLPACK_MAJOR_VERSION 1
#define DLPACK_MINOR_VERSION 1
#define DLPACK_FLAG_BITMASK_READ_ONLY (1UL << 0UL)
#define DLPACK_FLAG_BITMASK_IS_COPIED (1UL << 1UL)

typedef struct {
  uint32_t major;
  uint32_t minor;
} DLPackVersion;

/* Device types; knpu's devices are kDLExtDev with the device index as device_id. */
typedef enum {
  kDLCPU = 1,
  kDLCUDA = 2,
  kDLCUDAHost = 3,
  kDLOpenCL = 4,
  kDLVulkan = 7,
  kDLMetal = 8,
  kDLVPI = 9,
  kDLROCM = 10,
  kDLROCMHost = 11,
  kDLExtDev = 12,
  kDLCUDAManaged = 13,
  kDLOneAPI = 14,
  kDLWebGPU = 15,
  kDLHexagon = 16,
  kDLMAIA = 17
} DLDeviceType;

typedef struct {
  DLDeviceType device_type;
  int32_t device_id;
} DLDevice;

typedef enum {
  kDLInt = 0U,
  kDLUInt = 1U,
  kDLFloat = 2U,
  kDLOpaqueHandle = 3U,
  kDLBfloat = 4U,
  kDLComplex = 5U,
  kDLBool = 6U,
  kDLFloat8_e3m4 = 7U,
  kDLFloat8_e4m3 = 8U,
  kDLFloat8_e4m3b11fnuz = 9U,
  kDLFloat8_e4m3fn = 10U,
  kDLFloat8_e4m3fnuz = 11U,
  kDLFloat8_e5m2 = 12U,
  kDLFloat8_e5m2fnuz = 13U,
  kDLFloat8_e8m0fnu = 14U,
  kDLFloat6_e2m3fn = 15U,
  kDLFloat6_e3m2fn = 16U,
  kDLFloat4_e2m1fn = 17U
} DLDataTypeCode;

typedef struct {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
} DLDataType;

typedef struct {
  void *data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
} DLTensor;

typedef struct DLManagedTensor {
  DLTensor dl_tensor;
  void *manager_ctx;
  void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;

typedef struct DLManagedTensorVersioned {
  DLPackVersion version;
  void *manager_ctx;
  void (*deleter)(struct DLManagedTensorVersioned *self);
  uint64_t flags;
  DLTensor dl_tensor;
} DLManagedTensorVersioned;
#endif /* DLPACK_DLPACK_H_ */

/* Exports device memory as a DLPack tensor, without a copy. devPtr (a device pointer; pointer
 * arithmetic allowed) is element (0, ..., 0); shape and strides (in elements; strides NULL for
 * row-major contiguous, negative strides allowed) hold ndim values (ndim 0 is a scalar, and
 * shape may then be NULL). The tensor is kDLExtDev with device_id the index of the device
 * that owns the memory, and its shape and strides are knpu's copies. Every element must lie
 * inside the live allocation devPtr is in. The tensor keeps that allocation alive: memory
 * freed with knpuFree while a tensor still names it is released when the tensor's deleter
 * runs. The consumer must call (*tensor)->deleter(*tensor) exactly once.
 * Errors: knpuErrorInvalidValue (NULL or misplaced pointers, negative sizes, elements
 * outside the allocation), knpuErrorNotSupported (a dtype knpu does not hold, lanes != 1). */
knpuError_t knpuTensorToDLPack(void *devPtr, int ndim, const int64_t *shape,
                               const int64_t *strides, DLDataType dtype,
                               DLManagedTensorVersioned **tensor);

/* Imports a DLPack tensor of knpu device memory, without a copy: *devPtr = the address of
 * element (0, ..., 0) (data + byte_offset), usable with every knpu function, and *device =
 * its device index (either output may be NULL). The tensor must be kDLExtDev on a knpu
 * device, of a dtype knpu holds, and all its elements inside one live allocation of that
 * device. The import does not take ownership: the caller keeps the tensor alive while it uses
 * the memory and calls its deleter once when done (knpu never calls it).
 * Errors: knpuErrorInvalidValue (NULL tensor, negative sizes, a misaligned offset, memory
 * outside every live allocation or of another device than device_id),
 * knpuErrorNotSupported (a DLPack major version other than 1, a device type other than
 * kDLExtDev, a dtype knpu does not hold). */
knpuError_t knpuTensorFromDLPack(const DLManagedTensorVersioned *tensor, void **devPtr,
                                 int *device);

#ifdef __cplusplus
}
#endif

#endif /* KNPU_H */
