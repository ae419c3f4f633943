/*
 * A test double for the conformance kit: the software NPU (a private copy of its shared
 * library, named by KNPU_TEST_SIM_LIBRARY) behind a table that offers memory, copies, fills,
 * host functions, timestamps and semaphores only. It reports every kernel unsupported and
 * refuses kernel commands, and it has no fault injection, profiling or command lists: the
 * smallest driver a vendor might bring, whose kernel families the kit must skip.
 */
#include <dlfcn.h>
#include <stdlib.h>

#include "knpu_driver.h"

static KnpuDriverApi table;
static const KnpuDriverApi *sim;

static KnpuStatus supports_nothing(KnpuDriverDevice device, uint32_t kernel_id, uint32_t dtype,
                                   int32_t *supported) {
  (void)device;
  (void)kernel_id;
  (void)dtype;
  if (supported == NULL) return KNPU_STATUS_INVALID_VALUE;
  *supported = 0;
  return KNPU_STATUS_SUCCESS;
}

static KnpuStatus attribute_without_faults(KnpuDriverDevice device, uint32_t attribute,
                                           int64_t *value) {
  KnpuStatus status = sim->device_get_attribute(device, attribute, value);
  if (status == KNPU_STATUS_SUCCESS && attribute == KNPU_ATTR_FAULT_INJECTION) *value = 0;
  return status;
}

static KnpuStatus submit_without_kernels(KnpuQueue queue, const KnpuSubmitInfo *submit) {
  if (submit != NULL && submit->commands != NULL && submit->command_count > 0) {
    const char *base = (const char *)submit->commands;
    size_t stride = submit->commands[0].struct_size;
    for (uint32_t i = 0; i < submit->command_count; i++) {
      const KnpuCommand *c = (const KnpuCommand *)(base + i * stride);
      if (c->type == KNPU_COMMAND_KERNEL) return KNPU_STATUS_NOT_SUPPORTED;
    }
  }
  return sim->queue_submit(queue, submit);
}

const KnpuDriverApi *knpu_driver_get_api(uint32_t loader_abi_major, uint32_t loader_abi_minor) {
  if (loader_abi_major != KNPU_DRIVER_ABI_MAJOR) return NULL;
  if (sim == NULL) {
    const char *path = getenv("KNPU_TEST_SIM_LIBRARY");
    void *lib = path != NULL ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
    if (lib == NULL) return NULL;
    KnpuDriverGetApiFn get = (KnpuDriverGetApiFn)dlsym(lib, KNPU_DRIVER_ENTRY_SYMBOL);
    if (get == NULL) return NULL;
    const KnpuDriverApi *api = get(loader_abi_major, loader_abi_minor);
    if (api == NULL) return NULL;
    table = *api;
    /* An ABI 1.0 table: it ends before the command list functions. */
    table.struct_size = offsetof(KnpuDriverApi, command_list_create);
    table.abi_minor = 0;
    table.driver_name = "no-kernels";
    table.device_supports_kernel = supports_nothing;
    table.device_get_attribute = attribute_without_faults;
    table.queue_submit = submit_without_kernels;
    table.device_inject_fault = NULL;
    table.device_set_profiling = NULL;
    table.device_read_profile = NULL;
    sim = api;
  }
  return &table;
}
