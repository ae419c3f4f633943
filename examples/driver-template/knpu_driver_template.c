/*
 * knpu_driver_template.c — the smallest complete knpu driver, in C99 with POSIX threads.
 *
 * Copy this file to start a driver for a new NPU. It implements every required function
 * of ffi/include/knpu_driver.h for one device whose "device memory" is host memory it
 * allocates itself: memory, copies, fills, host functions, timestamps, queues and timeline
 * semaphores. It runs no kernels: it reports every kernel as unsupported through
 * device_supports_kernel, and queue_submit refuses a kernel command with
 * KNPU_STATUS_NOT_SUPPORTED, so the runtime reports a clear error at the launch.
 * Optional functions (fault injection, profiling, command lists) are left NULL.
 *
 * What a real driver replaces:
 *   - mem_alloc/mem_free and resolve(): the device's allocator and address space;
 *   - run_command(): hand the command to the hardware (DMA engine, compute cores);
 *   - the queue worker: the hardware queue and its completion interrupts.
 *
 * Rules this template keeps, which every driver must:
 *   - every device address a command names is checked against the live allocations, so a
 *     bad address is KNPU_STATUS_ILLEGAL_ADDRESS with a message naming it, never a crash;
 *   - a queue runs its submissions in order on its own thread, and queue_submit returns
 *     without waiting for them;
 *   - a failed submission sets its signal semaphores to KNPU_SEMAPHORE_FAILED with a status
 *     and message, and later submissions that wait on them fail with DEPENDENCY_FAILED;
 *   - every host function is called exactly once, with the failure status if its
 *     submission failed.
 *
 * Build: cc -std=c99 -O2 -fPIC -shared -I ffi/include knpu_driver_template.c -o
 * libknpu_driver_template.so -lpthread; load with KNPU_DRIVER_PATH=/path/to/it.so.
 */
#define _POSIX_C_SOURCE 200809L

#include <knpu_driver.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TEMPLATE_MEMORY (1ull << 30)
#define TEMPLATE_ALIGNMENT 256ull
/* Device addresses start here and are never reused, so a freed address stays invalid. */
#define TEMPLATE_BASE (1ull << 40)
/* An unmapped gap after every allocation, so running past the end is always caught. */
#define TEMPLATE_GUARD (1ull << 20)
#define MESSAGE_CAPACITY 256

#define EXPORT __attribute__((visibility("default")))

/* ---- Device and memory ---------------------------------------------------------------- */

typedef struct Allocation {
  KnpuDeviceAddress base;
  uint64_t size;
  unsigned char *host;
  struct Allocation *next;
} Allocation;

struct KnpuDriverDevice_T {
  pthread_mutex_t lock;
  Allocation *allocations;
  KnpuDeviceAddress next_address;
  uint64_t used;
};

static struct KnpuDriverDevice_T the_device = {PTHREAD_MUTEX_INITIALIZER, NULL, TEMPLATE_BASE, 0};

static uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

static uint64_t clock_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static KnpuStatus device_count(uint32_t *count) {
  if (!count) return KNPU_STATUS_INVALID_VALUE;
  *count = 1;
  return KNPU_STATUS_SUCCESS;
}

static KnpuStatus device_get(uint32_t index, KnpuDriverDevice *device) {
  if (!device || index != 0) return KNPU_STATUS_INVALID_VALUE;
  *device = &the_device;
  return KNPU_STATUS_SUCCESS;
}

static KnpuStatus device_get_name(KnpuDriverDevice device, char *name, size_t capacity) {
  if (device != &the_device) return KNPU_STATUS_INVALID_HANDLE;
  if (!name || capacity == 0) return KNPU_STATUS_INVALID_VALUE;
  snprintf(name, capacity, "knpu C driver template");
  return KNPU_STATUS_SUCCESS;
}

static KnpuStatus device_get_attribute(KnpuDriverDevice device, uint32_t attribute, int64_t *value) {
  if (device != &the_device) return KNPU_STATUS_INVALID_HANDLE;
  if (!value) return KNPU_STATUS_INVALID_VALUE;
  switch (attribute) {
    case KNPU_ATTR_TOTAL_MEMORY: *value = (int64_t)TEMPLATE_MEMORY; return KNPU_STATUS_SUCCESS;
    case KNPU_ATTR_COMPUTE_CORES: *value = 1; return KNPU_STATUS_SUCCESS;
    case KNPU_ATTR_ALLOCATION_ALIGNMENT: *value = (int64_t)TEMPLATE_ALIGNMENT; return KNPU_STATUS_SUCCESS;
    case KNPU_ATTR_MAX_QUEUES: *value = 64; return KNPU_STATUS_SUCCESS;
    case KNPU_ATTR_PEER_COPY: *value = 0; return KNPU_STATUS_SUCCESS;
    case KNPU_ATTR_FAULT_INJECTION: *value = 0; return KNPU_STATUS_SUCCESS;
    default: return KNPU_STATUS_NOT_SUPPORTED; /* no modeled rates */
  }
}

static KnpuStatus device_supports_kernel(KnpuDriverDevice device, uint32_t kernel_id, uint32_t dtype,
                                         int32_t *supported) {
  (void)kernel_id;
  (void)dtype;
  if (device != &the_device) return KNPU_STATUS_INVALID_HANDLE;
  if (!supported) return KNPU_STATUS_INVALID_VALUE;
  *supported = 0; /* this template runs no kernels */
  return KNPU_STATUS_SUCCESS;
}

static KnpuStatus device_memory_info(KnpuDriverDevice device, uint64_t *free_bytes, uint64_t *total_bytes) {
  if (device != &the_device) return KNPU_STATUS_INVALID_HANDLE;
  if (!free_bytes || !total_bytes) return KNPU_STATUS_INVALID_VALUE;
  pthread_mutex_lock(&the_device.lock);
  *free_bytes = TEMPLATE_MEMORY - the_device.used;
  pthread_mutex_unlock(&the_device.lock);
  *total_bytes = TEMPLATE_MEMORY;
  return KNPU_STATUS_SUCCESS;
}

static KnpuStatus device_get_clock(KnpuDriverDevice device, uint64_t *ns) {
  if (device != &the_device) return KNPU_STATUS_INVALID_HANDLE;
  if (!ns) return KNPU_STATUS_INVALID_VALUE;
  *ns = clock_ns();
  return KNPU_STATUS_SUCCESS;
}

static KnpuStatus mem_alloc(KnpuDriverDevice device, uint64_t size, KnpuDeviceAddress *address) {
  if (device != &the_device) return KNPU_STATUS_INVALID_HANDLE;
  if (!address || size == 0) return KNPU_STATUS_INVALID_VALUE;
  pthread_mutex_lock(&the_device.lock);
  KnpuStatus st = KNPU_STATUS_OUT_OF_MEMORY;
  if (size <= TEMPLATE_MEMORY - the_device.used) {
    Allocation *a = malloc(sizeof *a);
    unsigned char *host = malloc((size_t)size);
    if (a && host) {
      a->base = the_device.next_address;
      a->size = size;
      a->host = host;
      a->next = the_device.allocations;
      the_device.allocations = a;
      the_device.next_address += round_up(size, TEMPLATE_ALIGNMENT) + TEMPLATE_GUARD;
      the_device.used += size;
      *address = a->base;
      st = KNPU_STATUS_SUCCESS;
    } else {
      free(a);
      free(host);
    }
  }
  pthread_mutex_unlock(&the_device.lock);
  return st;
}

static KnpuStatus mem_free(KnpuDriverDevice device, KnpuDeviceAddress address) {
  if (device != &the_device) return KNPU_STATUS_INVALID_HANDLE;
  pthread_mutex_lock(&the_device.lock);
  for (Allocation **p = &the_device.allocations; *p; p = &(*p)->next) {
    if ((*p)->base == address) {
      Allocation *a = *p;
      *p = a->next;
      the_device.used -= a->size;
      pthread_mutex_unlock(&the_device.lock);
      free(a->host);
      free(a);
      return KNPU_STATUS_SUCCESS;
    }
  }
  pthread_mutex_unlock(&the_device.lock);
  return KNPU_STATUS_INVALID_VALUE;
}

/* The host memory behind [address, address + size), or NULL with a message. The caller
 * guarantees (per mem_free's contract) that no allocation is freed while work uses it. */
static unsigned char *resolve(KnpuDeviceAddress address, uint64_t size, char *message) {
  unsigned char *host = NULL;
  pthread_mutex_lock(&the_device.lock);
  for (Allocation *a = the_device.allocations; a; a = a->next) {
    if (address >= a->base && address - a->base < a->size) {
      if (size <= a->size - (address - a->base)) {
        host = a->host + (address - a->base);
      } else {
        snprintf(message, MESSAGE_CAPACITY,
                 "address %#llx + %llu bytes runs past the end of allocation %#llx (%llu bytes)",
                 (unsigned long long)address, (unsigned long long)size,
                 (unsigned long long)a->base, (unsigned long long)a->size);
      }
      pthread_mutex_unlock(&the_device.lock);
      return host;
    }
  }
  pthread_mutex_unlock(&the_device.lock);
  snprintf(message, MESSAGE_CAPACITY, "address %#llx is not inside any live allocation",
           (unsigned long long)address);
  return NULL;
}

/* ---- Timeline semaphores -------------------------------------------------------------- */

struct KnpuSemaphore_T {
  pthread_mutex_t lock;
  pthread_cond_t changed;
  uint64_t value;
  KnpuStatus status;
  char message[MESSAGE_CAPACITY];
};

static KnpuStatus semaphore_create(KnpuDriverDevice device, uint64_t initial, KnpuSemaphore *out) {
  if (device != &the_device) return KNPU_STATUS_INVALID_HANDLE;
  if (!out || initial == KNPU_SEMAPHORE_FAILED) return KNPU_STATUS_INVALID_VALUE;
  struct KnpuSemaphore_T *s = calloc(1, sizeof *s);
  if (!s) return KNPU_STATUS_OUT_OF_MEMORY;
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->changed, NULL);
  s->value = initial;
  *out = s;
  return KNPU_STATUS_SUCCESS;
}

static KnpuStatus semaphore_destroy(KnpuSemaphore s) {
  if (!s) return KNPU_STATUS_INVALID_HANDLE;
  pthread_cond_destroy(&s->changed);
  pthread_mutex_destroy(&s->lock);
  free(s);
  return KNPU_STATUS_SUCCESS;
}

static KnpuStatus semaphore_query(KnpuSemaphore s, uint64_t *value) {
  if (!s) return KNPU_STATUS_INVALID_HANDLE;
  if (!value) return KNPU_STATUS_INVALID_VALUE;
  pthread_mutex_lock(&s->lock);
  *value = s->value;
  pthread_mutex_unlock(&s->lock);
  return KNPU_STATUS_SUCCESS;
}

static KnpuStatus semaphore_wait(KnpuSemaphore s, uint64_t value, uint64_t timeout_ns) {
  if (!s) return KNPU_STATUS_INVALID_HANDLE;
  struct timespec deadline;
  if (timeout_ns != KNPU_TIMEOUT_INFINITE) {
    clock_gettime(CLOCK_REALTIME, &deadline);
    uint64_t ns = (uint64_t)deadline.tv_nsec + timeout_ns % 1000000000ull;
    deadline.tv_sec += (time_t)(timeout_ns / 1000000000ull + ns / 1000000000ull);
    deadline.tv_nsec = (long)(ns % 1000000000ull);
  }
  KnpuStatus st = KNPU_STATUS_SUCCESS;
  pthread_mutex_lock(&s->lock);
  while (s->value < value) {
    if (timeout_ns == KNPU_TIMEOUT_INFINITE) {
      pthread_cond_wait(&s->changed, &s->lock);
    } else if (pthread_cond_timedwait(&s->changed, &s->lock, &deadline) == ETIMEDOUT) {
      if (s->value < value) st = KNPU_STATUS_TIMEOUT;
      break;
    }
  }
  if (s->value == KNPU_SEMAPHORE_FAILED) st = s->status;
  pthread_mutex_unlock(&s->lock);
  return st;
}

static void semaphore_set(KnpuSemaphore s, uint64_t value, KnpuStatus status, const char *message) {
  pthread_mutex_lock(&s->lock);
  if (s->value != KNPU_SEMAPHORE_FAILED && value > s->value) {
    s->value = value;
    if (value == KNPU_SEMAPHORE_FAILED) {
      s->status = status;
      snprintf(s->message, sizeof s->message, "%s", message);
    }
  }
  pthread_cond_broadcast(&s->changed);
  pthread_mutex_unlock(&s->lock);
}

static KnpuStatus semaphore_signal(KnpuSemaphore s, uint64_t value) {
  if (!s) return KNPU_STATUS_INVALID_HANDLE;
  if (value == KNPU_SEMAPHORE_FAILED) return KNPU_STATUS_INVALID_VALUE;
  semaphore_set(s, value, KNPU_STATUS_SUCCESS, "");
  return KNPU_STATUS_SUCCESS;
}

static KnpuStatus semaphore_get_error(KnpuSemaphore s, KnpuStatus *status, char *message, size_t capacity) {
  if (!s) return KNPU_STATUS_INVALID_HANDLE;
  if (!status) return KNPU_STATUS_INVALID_VALUE;
  pthread_mutex_lock(&s->lock);
  int failed = s->value == KNPU_SEMAPHORE_FAILED;
  *status = failed ? s->status : KNPU_STATUS_SUCCESS;
  if (message && capacity > 0) snprintf(message, capacity, "%s", failed ? s->message : "");
  pthread_mutex_unlock(&s->lock);
  return KNPU_STATUS_SUCCESS;
}

/* ---- Queues ----------------------------------------------------------------------------- */

typedef struct Submission {
  uint32_t wait_count, command_count, signal_count;
  KnpuSemaphore *wait_semaphores;
  uint64_t *wait_values;
  KnpuCommand *commands;
  KnpuSemaphore *signal_semaphores;
  uint64_t *signal_values;
  struct Submission *next;
} Submission;

struct KnpuQueue_T {
  pthread_mutex_t lock;
  pthread_cond_t work;
  Submission *head, *tail;
  int stopping;
  pthread_t worker;
};

static const char *command_name(uint32_t type) {
  switch (type) {
    case KNPU_COMMAND_COPY_HOST_TO_DEVICE: return "copy host-to-device";
    case KNPU_COMMAND_COPY_DEVICE_TO_HOST: return "copy device-to-host";
    case KNPU_COMMAND_COPY_DEVICE_TO_DEVICE: return "copy device-to-device";
    case KNPU_COMMAND_COPY_PEER: return "copy peer";
    case KNPU_COMMAND_FILL: return "fill";
    case KNPU_COMMAND_KERNEL: return "kernel";
    case KNPU_COMMAND_HOST_FUNCTION: return "host function";
    case KNPU_COMMAND_TIMESTAMP: return "timestamp";
    default: return "unknown";
  }
}

/* Runs one command on the worker thread; fills `message` on failure. */
static KnpuStatus run_command(const KnpuCommand *c, char *message) {
  const KnpuCopyCommand *cp = &c->u.copy;
  unsigned char *src, *dst;
  switch (c->type) {
    case KNPU_COMMAND_COPY_HOST_TO_DEVICE:
      if (!(dst = resolve(cp->dst, cp->size, message))) return KNPU_STATUS_ILLEGAL_ADDRESS;
      memcpy(dst, cp->host_src, (size_t)cp->size);
      return KNPU_STATUS_SUCCESS;
    case KNPU_COMMAND_COPY_DEVICE_TO_HOST:
      if (!(src = resolve(cp->src, cp->size, message))) return KNPU_STATUS_ILLEGAL_ADDRESS;
      memcpy(cp->host_dst, src, (size_t)cp->size);
      return KNPU_STATUS_SUCCESS;
    case KNPU_COMMAND_COPY_DEVICE_TO_DEVICE:
    case KNPU_COMMAND_COPY_PEER: /* one device: a peer is this device */
      if (!(src = resolve(cp->src, cp->size, message))) return KNPU_STATUS_ILLEGAL_ADDRESS;
      if (!(dst = resolve(cp->dst, cp->size, message))) return KNPU_STATUS_ILLEGAL_ADDRESS;
      memmove(dst, src, (size_t)cp->size);
      return KNPU_STATUS_SUCCESS;
    case KNPU_COMMAND_FILL: {
      const KnpuFillCommand *f = &c->u.fill;
      if (!(dst = resolve(f->dst, f->size, message))) return KNPU_STATUS_ILLEGAL_ADDRESS;
      unsigned char pattern[8];
      memcpy(pattern, &f->pattern, 8); /* little-endian: the pattern's low bytes first */
      for (uint64_t i = 0; i < f->size; i++) dst[i] = pattern[i % f->pattern_size];
      return KNPU_STATUS_SUCCESS;
    }
    case KNPU_COMMAND_HOST_FUNCTION:
      c->u.host_function.fn(c->u.host_function.user_data, KNPU_STATUS_SUCCESS);
      return KNPU_STATUS_SUCCESS;
    case KNPU_COMMAND_TIMESTAMP:
      *c->u.timestamp.host_dst = clock_ns();
      return KNPU_STATUS_SUCCESS;
    default:
      snprintf(message, MESSAGE_CAPACITY, "command type %u is not supported", c->type);
      return KNPU_STATUS_NOT_SUPPORTED;
  }
}

static void run_submission(Submission *s) {
  char message[MESSAGE_CAPACITY] = "";
  char detail[MESSAGE_CAPACITY] = "";
  KnpuStatus st = KNPU_STATUS_SUCCESS;
  uint32_t done = 0;
  for (uint32_t i = 0; i < s->wait_count && st == KNPU_STATUS_SUCCESS; i++) {
    if (semaphore_wait(s->wait_semaphores[i], s->wait_values[i], KNPU_TIMEOUT_INFINITE) !=
        KNPU_STATUS_SUCCESS) {
      KnpuStatus ignored;
      semaphore_get_error(s->wait_semaphores[i], &ignored, detail, sizeof detail);
      snprintf(message, sizeof message, "waited-on work failed: %.200s", detail);
      st = KNPU_STATUS_DEPENDENCY_FAILED;
    }
  }
  for (; done < s->command_count && st == KNPU_STATUS_SUCCESS; done++) {
    st = run_command(&s->commands[done], detail);
    if (st != KNPU_STATUS_SUCCESS) {
      snprintf(message, sizeof message, "command %u (%s): %.200s", done,
               command_name(s->commands[done].type), detail);
    }
  }
  /* Host functions that did not run are still called once, with the failure status. */
  for (uint32_t i = done; i < s->command_count && st != KNPU_STATUS_SUCCESS; i++) {
    if (s->commands[i].type == KNPU_COMMAND_HOST_FUNCTION) {
      s->commands[i].u.host_function.fn(s->commands[i].u.host_function.user_data, st);
    }
  }
  for (uint32_t i = 0; i < s->signal_count; i++) {
    semaphore_set(s->signal_semaphores[i],
                  st == KNPU_STATUS_SUCCESS ? s->signal_values[i] : KNPU_SEMAPHORE_FAILED, st,
                  message);
  }
}

static void free_submission(Submission *s) {
  free(s->wait_semaphores);
  free(s->wait_values);
  free(s->commands);
  free(s->signal_semaphores);
  free(s->signal_values);
  free(s);
}

static void *queue_worker(void *arg) {
  struct KnpuQueue_T *q = arg;
  for (;;) {
    pthread_mutex_lock(&q->lock);
    while (!q->head && !q->stopping) pthread_cond_wait(&q->work, &q->lock);
    Submission *s = q->head;
    if (!s) {
      pthread_mutex_unlock(&q->lock);
      return NULL; /* stopping, and everything submitted has run */
    }
    q->head = s->next;
    if (!q->head) q->tail = NULL;
    pthread_mutex_unlock(&q->lock);
    run_submission(s);
    free_submission(s);
  }
}

static KnpuStatus queue_create(KnpuDriverDevice device, int32_t priority, KnpuQueue *out) {
  (void)priority; /* one worker per queue; a real driver maps priorities to hardware */
  if (device != &the_device) return KNPU_STATUS_INVALID_HANDLE;
  if (!out) return KNPU_STATUS_INVALID_VALUE;
  struct KnpuQueue_T *q = calloc(1, sizeof *q);
  if (!q) return KNPU_STATUS_OUT_OF_MEMORY;
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->work, NULL);
  if (pthread_create(&q->worker, NULL, queue_worker, q) != 0) {
    free(q);
    return KNPU_STATUS_OUT_OF_MEMORY;
  }
  *out = q;
  return KNPU_STATUS_SUCCESS;
}

static KnpuStatus queue_destroy(KnpuQueue q) {
  if (!q) return KNPU_STATUS_INVALID_HANDLE;
  pthread_mutex_lock(&q->lock);
  q->stopping = 1;
  pthread_cond_signal(&q->work);
  pthread_mutex_unlock(&q->lock);
  pthread_join(q->worker, NULL);
  pthread_cond_destroy(&q->work);
  pthread_mutex_destroy(&q->lock);
  free(q);
  return KNPU_STATUS_SUCCESS;
}

/* Copies `n` items of `size` bytes (NULL when n is 0); 0 on allocation failure. */
static int copy_array(void **dst, const void *src, size_t n, size_t size) {
  *dst = NULL;
  if (n == 0) return 1;
  if (!src) return 0;
  *dst = malloc(n * size);
  if (!*dst) return 0;
  memcpy(*dst, src, n * size);
  return 1;
}

static KnpuStatus queue_submit(KnpuQueue q, const KnpuSubmitInfo *info) {
  if (!q) return KNPU_STATUS_INVALID_HANDLE;
  if (!info || info->struct_size < sizeof(size_t)) return KNPU_STATUS_INVALID_VALUE;
  if (KNPU_STRUCT_HAS_FIELD(info, KnpuSubmitInfo, command_list) && info->command_list)
    return KNPU_STATUS_NOT_SUPPORTED; /* this driver offers no command lists */
  if ((info->command_count && !info->commands)) return KNPU_STATUS_INVALID_VALUE;
  /* Validate every command before anything is enqueued. */
  size_t stride = info->command_count ? info->commands[0].struct_size : 0;
  if (info->command_count && stride < offsetof(KnpuCommand, u)) return KNPU_STATUS_INVALID_VALUE;
  Submission *s = calloc(1, sizeof *s);
  if (!s) return KNPU_STATUS_OUT_OF_MEMORY;
  s->commands = info->command_count ? calloc(info->command_count, sizeof(KnpuCommand)) : NULL;
  if (info->command_count && !s->commands) {
    free(s);
    return KNPU_STATUS_OUT_OF_MEMORY;
  }
  s->command_count = info->command_count;
  for (uint32_t i = 0; i < info->command_count; i++) {
    const KnpuCommand *c = (const KnpuCommand *)((const char *)info->commands + i * stride);
    memcpy(&s->commands[i], c, stride < sizeof(KnpuCommand) ? stride : sizeof(KnpuCommand));
    KnpuStatus bad = KNPU_STATUS_SUCCESS;
    switch (c->type) {
      case KNPU_COMMAND_KERNEL: bad = KNPU_STATUS_NOT_SUPPORTED; break;
      case KNPU_COMMAND_FILL: {
        uint32_t ps = c->u.fill.pattern_size;
        if (!(ps == 1 || ps == 2 || ps == 4 || ps == 8) || c->u.fill.size % ps) bad = KNPU_STATUS_INVALID_VALUE;
        break;
      }
      case KNPU_COMMAND_HOST_FUNCTION: if (!c->u.host_function.fn) bad = KNPU_STATUS_INVALID_VALUE; break;
      case KNPU_COMMAND_TIMESTAMP: if (!c->u.timestamp.host_dst) bad = KNPU_STATUS_INVALID_VALUE; break;
      case KNPU_COMMAND_COPY_HOST_TO_DEVICE: if (!c->u.copy.host_src) bad = KNPU_STATUS_INVALID_VALUE; break;
      case KNPU_COMMAND_COPY_DEVICE_TO_HOST: if (!c->u.copy.host_dst) bad = KNPU_STATUS_INVALID_VALUE; break;
      case KNPU_COMMAND_COPY_DEVICE_TO_DEVICE: break;
      case KNPU_COMMAND_COPY_PEER:
        if (c->u.copy.peer_device != &the_device) bad = KNPU_STATUS_NOT_SUPPORTED;
        break;
      default: bad = KNPU_STATUS_INVALID_VALUE;
    }
    if (bad != KNPU_STATUS_SUCCESS) {
      free_submission(s);
      return bad;
    }
  }
  if (!copy_array((void **)&s->wait_semaphores, info->wait_semaphores, info->wait_count, sizeof(KnpuSemaphore)) ||
      !copy_array((void **)&s->wait_values, info->wait_values, info->wait_count, sizeof(uint64_t)) ||
      !copy_array((void **)&s->signal_semaphores, info->signal_semaphores, info->signal_count, sizeof(KnpuSemaphore)) ||
      !copy_array((void **)&s->signal_values, info->signal_values, info->signal_count, sizeof(uint64_t))) {
    free_submission(s);
    return KNPU_STATUS_INVALID_VALUE;
  }
  s->wait_count = info->wait_count;
  s->signal_count = info->signal_count;
  pthread_mutex_lock(&q->lock);
  if (q->tail) q->tail->next = s; else q->head = s;
  q->tail = s;
  pthread_cond_signal(&q->work);
  pthread_mutex_unlock(&q->lock);
  return KNPU_STATUS_SUCCESS;
}

/* ---- The entry point -------------------------------------------------------------------- */

static const KnpuDriverApi api = {
    .struct_size = sizeof(KnpuDriverApi),
    .abi_major = KNPU_DRIVER_ABI_MAJOR,
    .abi_minor = KNPU_DRIVER_ABI_MINOR,
    .driver_name = "c-template",
    .driver_version = "0.1.0",
    .device_count = device_count,
    .device_get = device_get,
    .device_get_name = device_get_name,
    .device_get_attribute = device_get_attribute,
    .device_supports_kernel = device_supports_kernel,
    .device_memory_info = device_memory_info,
    .device_inject_fault = NULL,
    .mem_alloc = mem_alloc,
    .mem_free = mem_free,
    .queue_create = queue_create,
    .queue_destroy = queue_destroy,
    .queue_submit = queue_submit,
    .semaphore_create = semaphore_create,
    .semaphore_destroy = semaphore_destroy,
    .semaphore_query = semaphore_query,
    .semaphore_wait = semaphore_wait,
    .semaphore_signal = semaphore_signal,
    .semaphore_get_error = semaphore_get_error,
    .device_set_profiling = NULL,
    .device_read_profile = NULL,
    .device_get_clock = device_get_clock,
    .command_list_create = NULL,
    .command_list_update = NULL,
    .command_list_destroy = NULL,
};

EXPORT const KnpuDriverApi *knpu_driver_get_api(uint32_t loader_abi_major, uint32_t loader_abi_minor) {
  (void)loader_abi_minor;
  return loader_abi_major == KNPU_DRIVER_ABI_MAJOR ? &api : NULL;
}
