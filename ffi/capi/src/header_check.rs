// Generated from ffi/include/knpu.h, knpublas.h and knpu_ops.h by tests/header_matches_exports.rs; do not edit.
// Regenerate with `KNPU_BLESS=1 cargo test -p knpu-capi --test header_matches_exports`.
#[allow(unused_imports)]
use crate::header::*;
const _: unsafe extern "C" fn() -> knpuError_t = crate::knpuGetLastError;
const _: unsafe extern "C" fn() -> knpuError_t = crate::knpuPeekAtLastError;
const _: unsafe extern "C" fn(error: knpuError_t) -> *const ::std::os::raw::c_char = crate::knpuGetErrorName;
const _: unsafe extern "C" fn(error: knpuError_t) -> *const ::std::os::raw::c_char = crate::knpuGetErrorString;
const _: unsafe extern "C" fn(runtimeVersion: *mut ::std::os::raw::c_int) -> knpuError_t = crate::knpuRuntimeGetVersion;
const _: unsafe extern "C" fn(driverVersion: *mut ::std::os::raw::c_int) -> knpuError_t = crate::knpuDriverGetVersion;
const _: unsafe extern "C" fn(count: *mut ::std::os::raw::c_int) -> knpuError_t = crate::knpuGetDeviceCount;
const _: unsafe extern "C" fn(device: ::std::os::raw::c_int) -> knpuError_t = crate::knpuSetDevice;
const _: unsafe extern "C" fn(device: *mut ::std::os::raw::c_int) -> knpuError_t = crate::knpuGetDevice;
const _: unsafe extern "C" fn(value: *mut i64, attr: knpuDeviceAttr, device: ::std::os::raw::c_int) -> knpuError_t = crate::knpuDeviceGetAttribute;
const _: unsafe extern "C" fn(prop: *mut knpuDeviceProp, device: ::std::os::raw::c_int) -> knpuError_t = crate::knpuGetDeviceProperties;
const _: unsafe extern "C" fn(device: ::std::os::raw::c_int, kernelId: ::std::os::raw::c_uint, dtype: ::std::os::raw::c_uint, supported: *mut ::std::os::raw::c_int) -> knpuError_t = crate::knpuDeviceSupportsKernel;
const _: unsafe extern "C" fn() -> knpuError_t = crate::knpuDeviceSynchronize;
const _: unsafe extern "C" fn(free: *mut usize, total: *mut usize) -> knpuError_t = crate::knpuMemGetInfo;
const _: unsafe extern "C" fn(devPtr: *mut *mut ::std::os::raw::c_void, size: usize) -> knpuError_t = crate::knpuMalloc;
const _: unsafe extern "C" fn(devPtr: *mut ::std::os::raw::c_void) -> knpuError_t = crate::knpuFree;
const _: unsafe extern "C" fn(devPtr: *mut *mut ::std::os::raw::c_void, size: usize, stream: knpuStream_t) -> knpuError_t = crate::knpuMallocAsync;
const _: unsafe extern "C" fn(devPtr: *mut ::std::os::raw::c_void, stream: knpuStream_t) -> knpuError_t = crate::knpuFreeAsync;
const _: unsafe extern "C" fn(ptr: *mut *mut ::std::os::raw::c_void, size: usize) -> knpuError_t = crate::knpuMallocHost;
const _: unsafe extern "C" fn(ptr: *mut ::std::os::raw::c_void) -> knpuError_t = crate::knpuFreeHost;
const _: unsafe extern "C" fn(dst: *mut ::std::os::raw::c_void, src: *const ::std::os::raw::c_void, count: usize, kind: knpuMemcpyKind) -> knpuError_t = crate::knpuMemcpy;
const _: unsafe extern "C" fn(dst: *mut ::std::os::raw::c_void, src: *const ::std::os::raw::c_void, count: usize, kind: knpuMemcpyKind, stream: knpuStream_t) -> knpuError_t = crate::knpuMemcpyAsync;
const _: unsafe extern "C" fn(dst: *mut ::std::os::raw::c_void, dstDevice: ::std::os::raw::c_int, src: *const ::std::os::raw::c_void, srcDevice: ::std::os::raw::c_int, count: usize) -> knpuError_t = crate::knpuMemcpyPeer;
const _: unsafe extern "C" fn(dst: *mut ::std::os::raw::c_void, dstDevice: ::std::os::raw::c_int, src: *const ::std::os::raw::c_void, srcDevice: ::std::os::raw::c_int, count: usize, stream: knpuStream_t) -> knpuError_t = crate::knpuMemcpyPeerAsync;
const _: unsafe extern "C" fn(devPtr: *mut ::std::os::raw::c_void, value: ::std::os::raw::c_int, count: usize) -> knpuError_t = crate::knpuMemset;
const _: unsafe extern "C" fn(devPtr: *mut ::std::os::raw::c_void, value: ::std::os::raw::c_int, count: usize, stream: knpuStream_t) -> knpuError_t = crate::knpuMemsetAsync;
const _: unsafe extern "C" fn(stats: *mut knpuMemoryStats, device: ::std::os::raw::c_int) -> knpuError_t = crate::knpuDeviceGetMemoryStats;
const _: unsafe extern "C" fn(device: ::std::os::raw::c_int) -> knpuError_t = crate::knpuDeviceResetPeakMemoryStats;
const _: unsafe extern "C" fn() -> knpuError_t = crate::knpuDeviceEmptyCache;
const _: unsafe extern "C" fn(stream: *mut knpuStream_t) -> knpuError_t = crate::knpuStreamCreate;
const _: unsafe extern "C" fn(stream: *mut knpuStream_t, flags: ::std::os::raw::c_uint) -> knpuError_t = crate::knpuStreamCreateWithFlags;
const _: unsafe extern "C" fn(stream: *mut knpuStream_t, flags: ::std::os::raw::c_uint, priority: ::std::os::raw::c_int) -> knpuError_t = crate::knpuStreamCreateWithPriority;
const _: unsafe extern "C" fn(leastPriority: *mut ::std::os::raw::c_int, greatestPriority: *mut ::std::os::raw::c_int) -> knpuError_t = crate::knpuDeviceGetStreamPriorityRange;
const _: unsafe extern "C" fn(stream: knpuStream_t, priority: *mut ::std::os::raw::c_int) -> knpuError_t = crate::knpuStreamGetPriority;
const _: unsafe extern "C" fn(stream: knpuStream_t) -> knpuError_t = crate::knpuStreamDestroy;
const _: unsafe extern "C" fn(stream: knpuStream_t) -> knpuError_t = crate::knpuStreamSynchronize;
const _: unsafe extern "C" fn(stream: knpuStream_t) -> knpuError_t = crate::knpuStreamQuery;
const _: unsafe extern "C" fn(stream: knpuStream_t, event: knpuEvent_t, flags: ::std::os::raw::c_uint) -> knpuError_t = crate::knpuStreamWaitEvent;
const _: unsafe extern "C" fn(stream: knpuStream_t, fn_: knpuHostFn_t, userData: *mut ::std::os::raw::c_void) -> knpuError_t = crate::knpuLaunchHostFunc;
const _: unsafe extern "C" fn(event: *mut knpuEvent_t) -> knpuError_t = crate::knpuEventCreate;
const _: unsafe extern "C" fn(event: *mut knpuEvent_t, flags: ::std::os::raw::c_uint) -> knpuError_t = crate::knpuEventCreateWithFlags;
const _: unsafe extern "C" fn(event: knpuEvent_t, stream: knpuStream_t) -> knpuError_t = crate::knpuEventRecord;
const _: unsafe extern "C" fn(event: knpuEvent_t) -> knpuError_t = crate::knpuEventQuery;
const _: unsafe extern "C" fn(event: knpuEvent_t) -> knpuError_t = crate::knpuEventSynchronize;
const _: unsafe extern "C" fn(ms: *mut f32, start: knpuEvent_t, end: knpuEvent_t) -> knpuError_t = crate::knpuEventElapsedTime;
const _: unsafe extern "C" fn(event: knpuEvent_t) -> knpuError_t = crate::knpuEventDestroy;
const _: unsafe extern "C" fn(stream: knpuStream_t, mode: knpuStreamCaptureMode) -> knpuError_t = crate::knpuStreamBeginCapture;
const _: unsafe extern "C" fn(stream: knpuStream_t, graph: *mut knpuGraph_t) -> knpuError_t = crate::knpuStreamEndCapture;
const _: unsafe extern "C" fn(stream: knpuStream_t, status: *mut knpuStreamCaptureStatus) -> knpuError_t = crate::knpuStreamIsCapturing;
const _: unsafe extern "C" fn(graph: *mut knpuGraph_t, flags: ::std::os::raw::c_uint) -> knpuError_t = crate::knpuGraphCreate;
const _: unsafe extern "C" fn(exec: *mut knpuGraphExec_t, graph: knpuGraph_t, flags: ::std::os::raw::c_ulonglong) -> knpuError_t = crate::knpuGraphInstantiate;
const _: unsafe extern "C" fn(exec: knpuGraphExec_t, stream: knpuStream_t) -> knpuError_t = crate::knpuGraphLaunch;
const _: unsafe extern "C" fn(exec: knpuGraphExec_t, graph: knpuGraph_t, result: *mut knpuGraphExecUpdateResult) -> knpuError_t = crate::knpuGraphExecUpdate;
const _: unsafe extern "C" fn(graph: knpuGraph_t) -> knpuError_t = crate::knpuGraphDestroy;
const _: unsafe extern "C" fn(exec: knpuGraphExec_t) -> knpuError_t = crate::knpuGraphExecDestroy;
const _: unsafe extern "C" fn(node: *mut knpuGraphNode_t, graph: knpuGraph_t, dependencies: *const knpuGraphNode_t, numDependencies: usize) -> knpuError_t = crate::knpuGraphAddEmptyNode;
const _: unsafe extern "C" fn(node: *mut knpuGraphNode_t, graph: knpuGraph_t, dependencies: *const knpuGraphNode_t, numDependencies: usize, fn_: knpuHostFn_t, userData: *mut ::std::os::raw::c_void) -> knpuError_t = crate::knpuGraphAddHostNode;
const _: unsafe extern "C" fn(node: *mut knpuGraphNode_t, graph: knpuGraph_t, dependencies: *const knpuGraphNode_t, numDependencies: usize, dst: *mut ::std::os::raw::c_void, src: *const ::std::os::raw::c_void, count: usize, kind: knpuMemcpyKind) -> knpuError_t = crate::knpuGraphAddMemcpyNode1D;
const _: unsafe extern "C" fn(node: *mut knpuGraphNode_t, graph: knpuGraph_t, dependencies: *const knpuGraphNode_t, numDependencies: usize, devPtr: *mut ::std::os::raw::c_void, value: ::std::os::raw::c_int, count: usize) -> knpuError_t = crate::knpuGraphAddMemsetNode1D;
const _: unsafe extern "C" fn(node: *mut knpuGraphNode_t, graph: knpuGraph_t, dependencies: *const knpuGraphNode_t, numDependencies: usize, event: knpuEvent_t) -> knpuError_t = crate::knpuGraphAddEventRecordNode;
const _: unsafe extern "C" fn(node: *mut knpuGraphNode_t, graph: knpuGraph_t, dependencies: *const knpuGraphNode_t, numDependencies: usize, event: knpuEvent_t) -> knpuError_t = crate::knpuGraphAddEventWaitNode;
const _: unsafe extern "C" fn(node: *mut knpuGraphNode_t, graph: knpuGraph_t, dependencies: *const knpuGraphNode_t, numDependencies: usize, childGraph: knpuGraph_t) -> knpuError_t = crate::knpuGraphAddChildGraphNode;
const _: unsafe extern "C" fn(graph: knpuGraph_t, from: *const knpuGraphNode_t, to: *const knpuGraphNode_t, numDependencies: usize) -> knpuError_t = crate::knpuGraphAddDependencies;
const _: unsafe extern "C" fn(graph: knpuGraph_t, nodes: *mut knpuGraphNode_t, numNodes: *mut usize) -> knpuError_t = crate::knpuGraphGetNodes;
const _: unsafe extern "C" fn(devPtr: *mut ::std::os::raw::c_void, ndim: ::std::os::raw::c_int, shape: *const i64, strides: *const i64, dtype: DLDataType, tensor: *mut *mut DLManagedTensorVersioned) -> knpuError_t = crate::knpuTensorToDLPack;
const _: unsafe extern "C" fn(tensor: *const DLManagedTensorVersioned, devPtr: *mut *mut ::std::os::raw::c_void, device: *mut ::std::os::raw::c_int) -> knpuError_t = crate::knpuTensorFromDLPack;
const _: unsafe extern "C" fn(handle: *mut knpublasHandle_t) -> knpublasStatus_t = crate::knpublasCreate;
const _: unsafe extern "C" fn(handle: knpublasHandle_t) -> knpublasStatus_t = crate::knpublasDestroy;
const _: unsafe extern "C" fn(handle: knpublasHandle_t, streamId: knpuStream_t) -> knpublasStatus_t = crate::knpublasSetStream;
const _: unsafe extern "C" fn(handle: knpublasHandle_t, streamId: *mut knpuStream_t) -> knpublasStatus_t = crate::knpublasGetStream;
const _: unsafe extern "C" fn(status: knpublasStatus_t) -> *const ::std::os::raw::c_char = crate::knpublasGetStatusName;
const _: unsafe extern "C" fn(status: knpublasStatus_t) -> *const ::std::os::raw::c_char = crate::knpublasGetStatusString;
const _: unsafe extern "C" fn(handle: knpublasHandle_t, transa: knpublasOperation_t, transb: knpublasOperation_t, m: ::std::os::raw::c_int, n: ::std::os::raw::c_int, k: ::std::os::raw::c_int, alpha: *const f32, A: *const f32, lda: ::std::os::raw::c_int, B: *const f32, ldb: ::std::os::raw::c_int, beta: *const f32, C: *mut f32, ldc: ::std::os::raw::c_int) -> knpublasStatus_t = crate::knpublasSgemm;
const _: unsafe extern "C" fn(handle: knpublasHandle_t, transa: knpublasOperation_t, transb: knpublasOperation_t, m: ::std::os::raw::c_int, n: ::std::os::raw::c_int, k: ::std::os::raw::c_int, alpha: *const ::std::os::raw::c_void, A: *const ::std::os::raw::c_void, Atype: knpuDataType_t, lda: ::std::os::raw::c_int, B: *const ::std::os::raw::c_void, Btype: knpuDataType_t, ldb: ::std::os::raw::c_int, beta: *const ::std::os::raw::c_void, C: *mut ::std::os::raw::c_void, Ctype: knpuDataType_t, ldc: ::std::os::raw::c_int, computeType: knpublasComputeType_t, algo: knpublasGemmAlgo_t) -> knpublasStatus_t = crate::knpublasGemmEx;
const _: unsafe extern "C" fn(handle: knpublasHandle_t, transa: knpublasOperation_t, transb: knpublasOperation_t, m: ::std::os::raw::c_int, n: ::std::os::raw::c_int, k: ::std::os::raw::c_int, alpha: *const f32, A: *const f32, lda: ::std::os::raw::c_int, strideA: ::std::os::raw::c_longlong, B: *const f32, ldb: ::std::os::raw::c_int, strideB: ::std::os::raw::c_longlong, beta: *const f32, C: *mut f32, ldc: ::std::os::raw::c_int, strideC: ::std::os::raw::c_longlong, batchCount: ::std::os::raw::c_int) -> knpublasStatus_t = crate::knpublasSgemmStridedBatched;
const _: unsafe extern "C" fn(handle: knpublasHandle_t, transa: knpublasOperation_t, transb: knpublasOperation_t, m: ::std::os::raw::c_int, n: ::std::os::raw::c_int, k: ::std::os::raw::c_int, alpha: *const ::std::os::raw::c_void, A: *const ::std::os::raw::c_void, Atype: knpuDataType_t, lda: ::std::os::raw::c_int, strideA: ::std::os::raw::c_longlong, B: *const ::std::os::raw::c_void, Btype: knpuDataType_t, ldb: ::std::os::raw::c_int, strideB: ::std::os::raw::c_longlong, beta: *const ::std::os::raw::c_void, C: *mut ::std::os::raw::c_void, Ctype: knpuDataType_t, ldc: ::std::os::raw::c_int, strideC: ::std::os::raw::c_longlong, batchCount: ::std::os::raw::c_int, computeType: knpublasComputeType_t, algo: knpublasGemmAlgo_t) -> knpublasStatus_t = crate::knpublasGemmStridedBatchedEx;
const _: unsafe extern "C" fn(desc: *const knpuAttentionDesc, q: *const ::std::os::raw::c_void, k: *const ::std::os::raw::c_void, v: *const ::std::os::raw::c_void, out: *mut ::std::os::raw::c_void, lse: *mut f32, kvLens: *const u32, stream: knpuStream_t) -> knpuError_t = crate::knpuAttention;
const _: unsafe extern "C" fn(desc: *const knpuPagedAttentionDesc, q: *const ::std::os::raw::c_void, kCache: *const ::std::os::raw::c_void, vCache: *const ::std::os::raw::c_void, blockTable: *const u32, kvLens: *const u32, out: *mut ::std::os::raw::c_void, lse: *mut f32, stream: knpuStream_t) -> knpuError_t = crate::knpuPagedAttention;
const _: unsafe extern "C" fn(desc: *const knpuKvAppendDesc, kCache: *mut ::std::os::raw::c_void, vCache: *mut ::std::os::raw::c_void, kNew: *const ::std::os::raw::c_void, vNew: *const ::std::os::raw::c_void, seqLens: *const u32, stream: knpuStream_t) -> knpuError_t = crate::knpuKvAppend;
const _: unsafe extern "C" fn(desc: *const knpuPagedKvAppendDesc, kCache: *mut ::std::os::raw::c_void, vCache: *mut ::std::os::raw::c_void, kNew: *const ::std::os::raw::c_void, vNew: *const ::std::os::raw::c_void, blockTable: *const u32, seqLens: *const u32, stream: knpuStream_t) -> knpuError_t = crate::knpuPagedKvAppend;
const _: unsafe extern "C" fn(desc: *const knpuNormDesc, x: *const ::std::os::raw::c_void, weight: *const ::std::os::raw::c_void, out: *mut ::std::os::raw::c_void, stream: knpuStream_t) -> knpuError_t = crate::knpuRmsNorm;
const _: unsafe extern "C" fn(desc: *const knpuNormDesc, x: *const ::std::os::raw::c_void, weight: *const ::std::os::raw::c_void, bias: *const ::std::os::raw::c_void, out: *mut ::std::os::raw::c_void, stream: knpuStream_t) -> knpuError_t = crate::knpuLayerNorm;
const _: unsafe extern "C" fn(desc: *const knpuRopeDesc, x: *const ::std::os::raw::c_void, positions: *const u32, out: *mut ::std::os::raw::c_void, stream: knpuStream_t) -> knpuError_t = crate::knpuRope;
const _: unsafe extern "C" fn(desc: *const knpuActivationDesc, x: *const ::std::os::raw::c_void, out: *mut ::std::os::raw::c_void, stream: knpuStream_t) -> knpuError_t = crate::knpuActivation;
const _: unsafe extern "C" fn(desc: *const knpuSwigluDesc, gate: *const ::std::os::raw::c_void, up: *const ::std::os::raw::c_void, out: *mut ::std::os::raw::c_void, stream: knpuStream_t) -> knpuError_t = crate::knpuSwiglu;
const _: unsafe extern "C" fn(desc: *const knpuSoftmaxDesc, x: *const ::std::os::raw::c_void, out: *mut ::std::os::raw::c_void, stream: knpuStream_t) -> knpuError_t = crate::knpuSoftmax;
const _: unsafe extern "C" fn(desc: *const knpuBinaryDesc, a: *const ::std::os::raw::c_void, b: *const ::std::os::raw::c_void, out: *mut ::std::os::raw::c_void, stream: knpuStream_t) -> knpuError_t = crate::knpuBinary;
const _: unsafe extern "C" fn(desc: *const knpuEmbeddingDesc, table: *const ::std::os::raw::c_void, ids: *const u32, out: *mut ::std::os::raw::c_void, stream: knpuStream_t) -> knpuError_t = crate::knpuEmbedding;
const _: unsafe extern "C" fn(desc: *const knpuQEmbeddingDesc, table: *const ::std::os::raw::c_void, scales: *const f32, ids: *const u32, out: *mut ::std::os::raw::c_void, stream: knpuStream_t) -> knpuError_t = crate::knpuQEmbedding;
const _: unsafe extern "C" fn(desc: *const knpuCastDesc, src: *const ::std::os::raw::c_void, dst: *mut ::std::os::raw::c_void, stream: knpuStream_t) -> knpuError_t = crate::knpuCast;
const _: unsafe extern "C" fn(desc: *const knpuReduceDesc, x: *const ::std::os::raw::c_void, out: *mut u32, stream: knpuStream_t) -> knpuError_t = crate::knpuArgmax;
const _: unsafe extern "C" fn(desc: *const knpuReduceDesc, x: *const ::std::os::raw::c_void, values: *mut ::std::os::raw::c_void, indices: *mut u32, stream: knpuStream_t) -> knpuError_t = crate::knpuTopK;
const _: unsafe extern "C" fn(desc: *const knpuSampleDesc, logits: *const ::std::os::raw::c_void, out: *mut ::std::os::raw::c_void, rngCounter: *mut u64, stream: knpuStream_t) -> knpuError_t = crate::knpuSample;
const _: unsafe extern "C" fn(desc: *const knpuQuantizeDesc, src: *const f32, dst: *mut ::std::os::raw::c_void, scales: *mut f32, stream: knpuStream_t) -> knpuError_t = crate::knpuQuantize;
const _: unsafe extern "C" fn(desc: *const knpuQuantizeDesc, src: *const ::std::os::raw::c_void, scales: *const f32, dst: *mut f32, stream: knpuStream_t) -> knpuError_t = crate::knpuDequantize;
const _: unsafe extern "C" fn(desc: *const knpuQMatmulDesc, x: *const ::std::os::raw::c_void, w: *const ::std::os::raw::c_void, wScales: *const f32, bias: *const f32, y: *mut ::std::os::raw::c_void, stream: knpuStream_t) -> knpuError_t = crate::knpuQMatmul;
const _: unsafe extern "C" fn(desc: *const knpuW8A8GemmDesc, xq: *const i8, xScales: *const f32, wq: *const i8, wScales: *const f32, bias: *const f32, y: *mut ::std::os::raw::c_void, stream: knpuStream_t) -> knpuError_t = crate::knpuW8A8Gemm;
const _: () = {
    ["Size of DLPackVersion"][::std::mem::size_of::<DLPackVersion>() - 8usize];
    ["Alignment of DLPackVersion"][::std::mem::align_of::<DLPackVersion>() - 4usize];
    ["Offset of field: DLPackVersion::major"]
        [::std::mem::offset_of!(DLPackVersion, major) - 0usize];
    ["Offset of field: DLPackVersion::minor"]
        [::std::mem::offset_of!(DLPackVersion, minor) - 4usize];
};
const _: () = {
    ["Size of DLDevice"][::std::mem::size_of::<DLDevice>() - 8usize];
    ["Alignment of DLDevice"][::std::mem::align_of::<DLDevice>() - 4usize];
    ["Offset of field: DLDevice::device_type"]
        [::std::mem::offset_of!(DLDevice, device_type) - 0usize];
    ["Offset of field: DLDevice::device_id"][::std::mem::offset_of!(DLDevice, device_id) - 4usize];
};
const _: () = {
    ["Size of DLDataType"][::std::mem::size_of::<DLDataType>() - 4usize];
    ["Alignment of DLDataType"][::std::mem::align_of::<DLDataType>() - 2usize];
    ["Offset of field: DLDataType::code"][::std::mem::offset_of!(DLDataType, code) - 0usize];
    ["Offset of field: DLDataType::bits"][::std::mem::offset_of!(DLDataType, bits) - 1usize];
    ["Offset of field: DLDataType::lanes"][::std::mem::offset_of!(DLDataType, lanes) - 2usize];
};
const _: () = {
    ["Size of DLTensor"][::std::mem::size_of::<DLTensor>() - 48usize];
    ["Alignment of DLTensor"][::std::mem::align_of::<DLTensor>() - 8usize];
    ["Offset of field: DLTensor::data"][::std::mem::offset_of!(DLTensor, data) - 0usize];
    ["Offset of field: DLTensor::device"][::std::mem::offset_of!(DLTensor, device) - 8usize];
    ["Offset of field: DLTensor::ndim"][::std::mem::offset_of!(DLTensor, ndim) - 16usize];
    ["Offset of field: DLTensor::dtype"][::std::mem::offset_of!(DLTensor, dtype) - 20usize];
    ["Offset of field: DLTensor::shape"][::std::mem::offset_of!(DLTensor, shape) - 24usize];
    ["Offset of field: DLTensor::strides"][::std::mem::offset_of!(DLTensor, strides) - 32usize];
    ["Offset of field: DLTensor::byte_offset"]
        [::std::mem::offset_of!(DLTensor, byte_offset) - 40usize];
};
const _: () = {
    ["Size of DLManagedTensorVersioned"]
        [::std::mem::size_of::<DLManagedTensorVersioned>() - 80usize];
    ["Alignment of DLManagedTensorVersioned"]
        [::std::mem::align_of::<DLManagedTensorVersioned>() - 8usize];
    ["Offset of field: DLManagedTensorVersioned::version"]
        [::std::mem::offset_of!(DLManagedTensorVersioned, version) - 0usize];
    ["Offset of field: DLManagedTensorVersioned::manager_ctx"]
        [::std::mem::offset_of!(DLManagedTensorVersioned, manager_ctx) - 8usize];
    ["Offset of field: DLManagedTensorVersioned::deleter"]
        [::std::mem::offset_of!(DLManagedTensorVersioned, deleter) - 16usize];
    ["Offset of field: DLManagedTensorVersioned::flags"]
        [::std::mem::offset_of!(DLManagedTensorVersioned, flags) - 24usize];
    ["Offset of field: DLManagedTensorVersioned::dl_tensor"]
        [::std::mem::offset_of!(DLManagedTensorVersioned, dl_tensor) - 32usize];
};
