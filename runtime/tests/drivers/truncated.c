/* A table of the current ABI major, minor 0, that ends before device_get, a function the
 * runtime needs. */
#include "knpu_driver.h"
#include <stddef.h>
static KnpuDriverApi api;
static KnpuStatus count(uint32_t *n) { *n = 0; return KNPU_STATUS_SUCCESS; }
const KnpuDriverApi *knpu_driver_get_api(uint32_t major, uint32_t minor) {
  (void)major; (void)minor;
  api.struct_size = offsetof(KnpuDriverApi, device_get);
  api.abi_major = KNPU_DRIVER_ABI_MAJOR;
  api.abi_minor = 0;
  api.device_count = count;
  return &api;
}
