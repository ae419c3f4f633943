// 01-raii: C++17 RAII wrappers over knpu.h — errors become exceptions, device memory,
// streams, events and graphs release themselves — and a small pipeline built with them.
#include <knpu.h>

#include <cstdio>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace knpu {

struct Error : std::runtime_error {
  knpuError_t code;
  Error(knpuError_t c, const char *what)
      : std::runtime_error(std::string(knpuGetErrorName(c)) + ": " + knpuGetErrorString(c) +
                           " (in " + what + ")"),
        code(c) {}
};

inline void check(knpuError_t e, const char *what) {
  if (e != knpuSuccess) throw Error(e, what);
}

// A move-only owner of one handle, released with `Destroy`.
template <typename H, knpuError_t (*Destroy)(H)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(H h) : h_(h) {}
  Handle(Handle &&o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  Handle &operator=(Handle &&o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  Handle(const Handle &) = delete;
  Handle &operator=(const Handle &) = delete;
  ~Handle() { reset(); }
  H get() const { return h_; }

 private:
  void reset() {
    if (h_) Destroy(h_);  // errors in a destructor have no one to go to
    h_ = nullptr;
  }
  H h_ = nullptr;
};

class Stream : public Handle<knpuStream_t, knpuStreamDestroy> {
 public:
  explicit Stream(int priority = 0) : Handle(make(priority)) {}
  void synchronize() const { check(knpuStreamSynchronize(get()), "knpuStreamSynchronize"); }

 private:
  static knpuStream_t make(int priority) {
    knpuStream_t s = nullptr;
    check(knpuStreamCreateWithPriority(&s, knpuStreamNonBlocking, priority),
          "knpuStreamCreateWithPriority");
    return s;
  }
};

class Event : public Handle<knpuEvent_t, knpuEventDestroy> {
 public:
  Event() : Handle(make()) {}
  void record(const Stream &s) const { check(knpuEventRecord(get(), s.get()), "knpuEventRecord"); }
  float elapsed_since(const Event &start) const {
    float ms = 0;
    check(knpuEventSynchronize(get()), "knpuEventSynchronize");
    check(knpuEventElapsedTime(&ms, start.get(), get()), "knpuEventElapsedTime");
    return ms;
  }

 private:
  static knpuEvent_t make() {
    knpuEvent_t e = nullptr;
    check(knpuEventCreate(&e), "knpuEventCreate");
    return e;
  }
};

// Device memory for `n` elements of T, freed in stream order on destruction.
template <typename T>
class DeviceArray {
 public:
  DeviceArray(std::size_t n, const Stream &s) : n_(n), stream_(s.get()) {
    check(knpuMallocAsync(reinterpret_cast<void **>(&p_), n * sizeof(T), stream_),
          "knpuMallocAsync");
  }
  DeviceArray(DeviceArray &&o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(o.n_), stream_(o.stream_) {}
  DeviceArray(const DeviceArray &) = delete;
  DeviceArray &operator=(const DeviceArray &) = delete;
  ~DeviceArray() {
    if (p_) knpuFreeAsync(p_, stream_);
  }
  T *data() const { return p_; }
  std::size_t size() const { return n_; }

  void upload(const std::vector<T> &h, const Stream &s) {
    check(knpuMemcpyAsync(p_, h.data(), h.size() * sizeof(T), knpuMemcpyHostToDevice, s.get()),
          "knpuMemcpyAsync");
  }
  void download(std::vector<T> &h, const Stream &s) const {
    check(knpuMemcpyAsync(h.data(), p_, h.size() * sizeof(T), knpuMemcpyDeviceToHost, s.get()),
          "knpuMemcpyAsync");
  }

 private:
  T *p_ = nullptr;
  std::size_t n_;
  knpuStream_t stream_;
};

class GraphExec : public Handle<knpuGraphExec_t, knpuGraphExecDestroy> {
 public:
  using Handle::Handle;
  void launch(const Stream &s) const { check(knpuGraphLaunch(get(), s.get()), "knpuGraphLaunch"); }
};

class Graph : public Handle<knpuGraph_t, knpuGraphDestroy> {
 public:
  using Handle::Handle;
  // Captures what `body` queues on `s`.
  template <typename F>
  static Graph capture(const Stream &s, F &&body) {
    check(knpuStreamBeginCapture(s.get(), knpuStreamCaptureModeThreadLocal),
          "knpuStreamBeginCapture");
    body();
    knpuGraph_t g = nullptr;
    check(knpuStreamEndCapture(s.get(), &g), "knpuStreamEndCapture");
    return Graph(g);
  }
  GraphExec instantiate() const {
    knpuGraphExec_t x = nullptr;
    check(knpuGraphInstantiate(&x, get(), 0), "knpuGraphInstantiate");
    return GraphExec(x);
  }
};

}  // namespace knpu

int main() {
  try {
    int least = 0, greatest = 0;
    knpu::check(knpuDeviceGetStreamPriorityRange(&least, &greatest), "priority range");
    knpu::Stream s(greatest);
    std::vector<int> in(4096), out(4096, -1);
    std::iota(in.begin(), in.end(), 0);

    knpu::Event start, stop;
    {
      knpu::DeviceArray<int> a(in.size(), s), b(in.size(), s);
      start.record(s);
      auto graph = knpu::Graph::capture(s, [&] {
        a.upload(in, s);
        knpu::check(knpuMemcpyAsync(b.data(), a.data() + 1, (a.size() - 1) * sizeof(int),
                                    knpuMemcpyDeviceToDevice, s.get()),
                    "knpuMemcpyAsync");
        b.download(out, s);
      });
      auto exec = graph.instantiate();
      for (int i = 0; i < 2; i++) exec.launch(s);
      stop.record(s);
      s.synchronize();
    }  // a and b are freed here, in stream order
    for (std::size_t i = 0; i + 1 < in.size(); i++) {
      if (out[i] != in[i + 1]) {
        std::fprintf(stderr, "mismatch at %zu: %d\n", i, out[i]);
        return 1;
      }
    }
    std::printf("two graph launches in %.3f ms of device time\n", stop.elapsed_since(start));

    // Errors are exceptions that carry the code and the detailed message.
    try {
      knpu::DeviceArray<int> small(4, s);
      std::vector<int> too_big(8);
      small.upload(too_big, s);
      std::fprintf(stderr, "an oversized upload was not refused\n");
      return 1;
    } catch (const knpu::Error &e) {
      if (e.code != knpuErrorInvalidValue) throw;
      std::printf("refused as expected: %s\n", e.what());
    }
    s.synchronize();
    std::printf("C++ RAII wrappers: ok\n");
    return 0;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
