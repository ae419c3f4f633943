/* A driver whose entry point declines every loader version: it returns no table. */
#include "knpu_driver.h"
const KnpuDriverApi *knpu_driver_get_api(uint32_t major, uint32_t minor) {
  (void)major; (void)minor;
  return 0;
}
