/* 01-device-query: list the devices with their properties, attributes and capabilities. */
#include <knpu_driver.h> /* kernel ids and dtypes for the capability query */

#include "check.h"

int main(void) {
  int runtime = 0, driver = 0, count = 0, current = -1;
  CHECK(knpuRuntimeGetVersion(&runtime));
  CHECK(knpuDriverGetVersion(&driver));
  EXPECT(runtime == KNPU_API_VERSION);
  printf("libknpu %d, driver ABI %d\n", runtime, driver);

  CHECK(knpuGetDeviceCount(&count));
  EXPECT(count >= 1);
  for (int d = 0; d < count; d++) {
    knpuDeviceProp prop = KNPU_DEVICE_PROP_INIT;
    CHECK(knpuGetDeviceProperties(&prop, d));
    EXPECT(prop.ordinal == d);
    int64_t total = 0, cores = 0;
    CHECK(knpuDeviceGetAttribute(&total, knpuDevAttrTotalMemory, d));
    CHECK(knpuDeviceGetAttribute(&cores, knpuDevAttrComputeCores, d));
    EXPECT((uint64_t)total == prop.totalGlobalMem);
    EXPECT(cores == prop.computeCores);
    int gemm_f32 = -1;
    CHECK(knpuDeviceSupportsKernel(d, KNPU_KERNEL_GEMM, KNPU_DTYPE_F32, &gemm_f32));
    printf("device %d: %s (driver %s %s, ABI %d.%d)\n", d, prop.name, prop.driverName,
           prop.driverVersion, prop.driverAbiMajor, prop.driverAbiMinor);
    printf("  memory %llu bytes, %d cores, alignment %llu, peak f32 %lld MFLOP/s, f32 GEMM %s\n",
           (unsigned long long)prop.totalGlobalMem, prop.computeCores,
           (unsigned long long)prop.allocationAlignment, (long long)prop.peakF32Mflops,
           gemm_f32 ? "supported" : "not supported");
  }

  CHECK(knpuSetDevice(count - 1));
  CHECK(knpuGetDevice(&current));
  EXPECT(current == count - 1);
  EXPECT(knpuSetDevice(count) == knpuErrorInvalidValue);
  EXPECT(knpuGetLastError() == knpuErrorInvalidValue);
  EXPECT(knpuGetLastError() == knpuSuccess);

  size_t free_bytes = 0, total_bytes = 0;
  CHECK(knpuMemGetInfo(&free_bytes, &total_bytes));
  EXPECT(free_bytes <= total_bytes && total_bytes > 0);
  printf("current device %d: %zu of %zu bytes free\n", current, free_bytes, total_bytes);
  return 0;
}
