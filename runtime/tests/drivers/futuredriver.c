/* A driver of the next ABI major: its table says KNPU_DRIVER_ABI_MAJOR + 1, minor 3. */
#include "knpu_driver.h"
static KnpuDriverApi api;
const KnpuDriverApi *knpu_driver_get_api(uint32_t major, uint32_t minor) {
  (void)major; (void)minor;
  api.struct_size = sizeof(api);
  api.abi_major = KNPU_DRIVER_ABI_MAJOR + 1;
  api.abi_minor = 3;
  api.driver_name = "future";
  return &api;
}
