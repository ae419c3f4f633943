// Generated from ffi/include/knpu.h by tests/header_matches_exports.rs; do not edit.
// Regenerate with `KNPU_BLESS=1 cargo test -p knpu-capi --test header_matches_exports`.
#[allow(unused_imports)]
use crate::header::*;
const _: unsafe extern "C" fn() -> knpuError_t = crate::knpuGetLastError;
const _: unsafe extern "C" fn() -> knpuError_t = crate::knpuPeekAtLastError;
const _: unsafe extern "C" fn(error: knpuError_t) -> *const ::std::os::raw::c_char =
    crate::knpuGetErrorName;
const _: unsafe extern "C" fn(error: knpuError_t) -> *const ::std::os::raw::c_char =
    crate::knpuGetErrorString;
const _: unsafe extern "C" fn(runtimeVersion: *mut ::std::os::raw::c_int) -> knpuError_t =
    crate::knpuRuntimeGetVersion;
const _: unsafe extern "C" fn(driverVersion: *mut ::std::os::raw::c_int) -> knpuError_t =
    crate::knpuDriverGetVersion;
const _: unsafe extern "C" fn(count: *mut ::std::os::raw::c_int) -> knpuError_t =
    crate::knpuGetDeviceCount;
const _: unsafe extern "C" fn(device: ::std::os::raw::c_int) -> knpuError_t = crate::knpuSetDevice;
const _: unsafe extern "C" fn(device: *mut ::std::os::raw::c_int) -> knpuError_t =
    crate::knpuGetDevice;
const _: unsafe extern "C" fn(
    value: *mut i64,
    attr: knpuDeviceAttr,
    device: ::std::os::raw::c_int,
) -> knpuError_t = crate::knpuDeviceGetAttribute;
const _: unsafe extern "C" fn(
    prop: *mut knpuDeviceProp,
    device: ::std::os::raw::c_int,
) -> knpuError_t = crate::knpuGetDeviceProperties;
const _: unsafe extern "C" fn(
    device: ::std::os::raw::c_int,
    kernelId: ::std::os::raw::c_uint,
    dtype: ::std::os::raw::c_uint,
    supported: *mut ::std::os::raw::c_int,
) -> knpuError_t = crate::knpuDeviceSupportsKernel;
const _: unsafe extern "C" fn() -> knpuError_t = crate::knpuDeviceSynchronize;
const _: unsafe extern "C" fn(free: *mut usize, total: *mut usize) -> knpuError_t =
    crate::knpuMemGetInfo;
const _: unsafe extern "C" fn(
    devPtr: *mut *mut ::std::os::raw::c_void,
    size: usize,
) -> knpuError_t = crate::knpuMalloc;
const _: unsafe extern "C" fn(devPtr: *mut ::std::os::raw::c_void) -> knpuError_t = crate::knpuFree;
const _: unsafe extern "C" fn(
    devPtr: *mut *mut ::std::os::raw::c_void,
    size: usize,
    stream: knpuStream_t,
) -> knpuError_t = crate::knpuMallocAsync;
const _: unsafe extern "C" fn(
    devPtr: *mut ::std::os::raw::c_void,
    stream: knpuStream_t,
) -> knpuError_t = crate::knpuFreeAsync;
const _: unsafe extern "C" fn(ptr: *mut *mut ::std::os::raw::c_void, size: usize) -> knpuError_t =
    crate::knpuMallocHost;
const _: unsafe extern "C" fn(ptr: *mut ::std::os::raw::c_void) -> knpuError_t =
    crate::knpuFreeHost;
const _: unsafe extern "C" fn(
    dst: *mut ::std::os::raw::c_void,
    src: *const ::std::os::raw::c_void,
    count: usize,
    kind: knpuMemcpyKind,
) -> knpuError_t = crate::knpuMemcpy;
const _: unsafe extern "C" fn(
    dst: *mut ::std::os::raw::c_void,
    src: *const ::std::os::raw::c_void,
    count: usize,
    kind: knpuMemcpyKind,
    stream: knpuStream_t,
) -> knpuError_t = crate::knpuMemcpyAsync;
const _: unsafe extern "C" fn(
    dst: *mut ::std::os::raw::c_void,
    dstDevice: ::std::os::raw::c_int,
    src: *const ::std::os::raw::c_void,
    srcDevice: ::std::os::raw::c_int,
    count: usize,
) -> knpuError_t = crate::knpuMemcpyPeer;
const _: unsafe extern "C" fn(
    dst: *mut ::std::os::raw::c_void,
    dstDevice: ::std::os::raw::c_int,
    src: *const ::std::os::raw::c_void,
    srcDevice: ::std::os::raw::c_int,
    count: usize,
    stream: knpuStream_t,
) -> knpuError_t = crate::knpuMemcpyPeerAsync;
const _: unsafe extern "C" fn(
    devPtr: *mut ::std::os::raw::c_void,
    value: ::std::os::raw::c_int,
    count: usize,
) -> knpuError_t = crate::knpuMemset;
const _: unsafe extern "C" fn(
    devPtr: *mut ::std::os::raw::c_void,
    value: ::std::os::raw::c_int,
    count: usize,
    stream: knpuStream_t,
) -> knpuError_t = crate::knpuMemsetAsync;
const _: unsafe extern "C" fn(
    stats: *mut knpuMemoryStats,
    device: ::std::os::raw::c_int,
) -> knpuError_t = crate::knpuDeviceGetMemoryStats;
const _: unsafe extern "C" fn(device: ::std::os::raw::c_int) -> knpuError_t =
    crate::knpuDeviceResetPeakMemoryStats;
const _: unsafe extern "C" fn() -> knpuError_t = crate::knpuDeviceEmptyCache;
const _: unsafe extern "C" fn(stream: *mut knpuStream_t) -> knpuError_t = crate::knpuStreamCreate;
const _: unsafe extern "C" fn(
    stream: *mut knpuStream_t,
    flags: ::std::os::raw::c_uint,
) -> knpuError_t = crate::knpuStreamCreateWithFlags;
const _: unsafe extern "C" fn(
    stream: *mut knpuStream_t,
    flags: ::std::os::raw::c_uint,
    priority: ::std::os::raw::c_int,
) -> knpuError_t = crate::knpuStreamCreateWithPriority;
const _: unsafe extern "C" fn(
    leastPriority: *mut ::std::os::raw::c_int,
    greatestPriority: *mut ::std::os::raw::c_int,
) -> knpuError_t = crate::knpuDeviceGetStreamPriorityRange;
const _: unsafe extern "C" fn(
    stream: knpuStream_t,
    priority: *mut ::std::os::raw::c_int,
) -> knpuError_t = crate::knpuStreamGetPriority;
const _: unsafe extern "C" fn(stream: knpuStream_t) -> knpuError_t = crate::knpuStreamDestroy;
const _: unsafe extern "C" fn(stream: knpuStream_t) -> knpuError_t = crate::knpuStreamSynchronize;
const _: unsafe extern "C" fn(stream: knpuStream_t) -> knpuError_t = crate::knpuStreamQuery;
const _: unsafe extern "C" fn(
    stream: knpuStream_t,
    event: knpuEvent_t,
    flags: ::std::os::raw::c_uint,
) -> knpuError_t = crate::knpuStreamWaitEvent;
const _: unsafe extern "C" fn(
    stream: knpuStream_t,
    fn_: knpuHostFn_t,
    userData: *mut ::std::os::raw::c_void,
) -> knpuError_t = crate::knpuLaunchHostFunc;
const _: unsafe extern "C" fn(event: *mut knpuEvent_t) -> knpuError_t = crate::knpuEventCreate;
const _: unsafe extern "C" fn(
    event: *mut knpuEvent_t,
    flags: ::std::os::raw::c_uint,
) -> knpuError_t = crate::knpuEventCreateWithFlags;
const _: unsafe extern "C" fn(event: knpuEvent_t, stream: knpuStream_t) -> knpuError_t =
    crate::knpuEventRecord;
const _: unsafe extern "C" fn(event: knpuEvent_t) -> knpuError_t = crate::knpuEventQuery;
const _: unsafe extern "C" fn(event: knpuEvent_t) -> knpuError_t = crate::knpuEventSynchronize;
const _: unsafe extern "C" fn(ms: *mut f32, start: knpuEvent_t, end: knpuEvent_t) -> knpuError_t =
    crate::knpuEventElapsedTime;
const _: unsafe extern "C" fn(event: knpuEvent_t) -> knpuError_t = crate::knpuEventDestroy;
const _: unsafe extern "C" fn(stream: knpuStream_t, mode: knpuStreamCaptureMode) -> knpuError_t =
    crate::knpuStreamBeginCapture;
const _: unsafe extern "C" fn(stream: knpuStream_t, graph: *mut knpuGraph_t) -> knpuError_t =
    crate::knpuStreamEndCapture;
const _: unsafe extern "C" fn(
    stream: knpuStream_t,
    status: *mut knpuStreamCaptureStatus,
) -> knpuError_t = crate::knpuStreamIsCapturing;
const _: unsafe extern "C" fn(
    graph: *mut knpuGraph_t,
    flags: ::std::os::raw::c_uint,
) -> knpuError_t = crate::knpuGraphCreate;
const _: unsafe extern "C" fn(
    exec: *mut knpuGraphExec_t,
    graph: knpuGraph_t,
    flags: ::std::os::raw::c_ulonglong,
) -> knpuError_t = crate::knpuGraphInstantiate;
const _: unsafe extern "C" fn(exec: knpuGraphExec_t, stream: knpuStream_t) -> knpuError_t =
    crate::knpuGraphLaunch;
const _: unsafe extern "C" fn(
    exec: knpuGraphExec_t,
    graph: knpuGraph_t,
    result: *mut knpuGraphExecUpdateResult,
) -> knpuError_t = crate::knpuGraphExecUpdate;
const _: unsafe extern "C" fn(graph: knpuGraph_t) -> knpuError_t = crate::knpuGraphDestroy;
const _: unsafe extern "C" fn(exec: knpuGraphExec_t) -> knpuError_t = crate::knpuGraphExecDestroy;
const _: unsafe extern "C" fn(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
) -> knpuError_t = crate::knpuGraphAddEmptyNode;
const _: unsafe extern "C" fn(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
    fn_: knpuHostFn_t,
    userData: *mut ::std::os::raw::c_void,
) -> knpuError_t = crate::knpuGraphAddHostNode;
const _: unsafe extern "C" fn(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
    dst: *mut ::std::os::raw::c_void,
    src: *const ::std::os::raw::c_void,
    count: usize,
    kind: knpuMemcpyKind,
) -> knpuError_t = crate::knpuGraphAddMemcpyNode1D;
const _: unsafe extern "C" fn(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
    devPtr: *mut ::std::os::raw::c_void,
    value: ::std::os::raw::c_int,
    count: usize,
) -> knpuError_t = crate::knpuGraphAddMemsetNode1D;
const _: unsafe extern "C" fn(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
    event: knpuEvent_t,
) -> knpuError_t = crate::knpuGraphAddEventRecordNode;
const _: unsafe extern "C" fn(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
    event: knpuEvent_t,
) -> knpuError_t = crate::knpuGraphAddEventWaitNode;
const _: unsafe extern "C" fn(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
    childGraph: knpuGraph_t,
) -> knpuError_t = crate::knpuGraphAddChildGraphNode;
const _: unsafe extern "C" fn(
    graph: knpuGraph_t,
    from: *const knpuGraphNode_t,
    to: *const knpuGraphNode_t,
    numDependencies: usize,
) -> knpuError_t = crate::knpuGraphAddDependencies;
const _: unsafe extern "C" fn(
    graph: knpuGraph_t,
    nodes: *mut knpuGraphNode_t,
    numNodes: *mut usize,
) -> knpuError_t = crate::knpuGraphGetNodes;
