// A tiny test harness for the scheduler's C++ tests: CHECK records a failure and goes on, TEST
// registers a function, run_all() runs every test and returns the number of failed checks.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace clara_rt::testing {

struct Registry {
  std::vector<std::pair<std::string, std::function<void()>>> tests;
  int failures = 0;

  static Registry& get() {
    static Registry registry;
    return registry;
  }
};

struct Register {
  Register(const char* name, std::function<void()> body) {
    Registry::get().tests.emplace_back(name, std::move(body));
  }
};

inline int run_all() {
  Registry& registry = Registry::get();
  for (const auto& [name, body] : registry.tests) {
    const int before = registry.failures;
    try {
      body();
    } catch (const std::exception& error) {
      std::fprintf(stderr, "%s: unexpected exception: %s\n", name.c_str(), error.what());
      ++registry.failures;
    }
    std::printf("%s %s\n", registry.failures == before ? "ok  " : "FAIL", name.c_str());
  }
  std::printf("%zu test(s), %d failed check(s)\n", registry.tests.size(), registry.failures);
  return registry.failures;
}

}  // namespace clara_rt::testing

#define TEST(name)                                                         \
  static void name();                                                      \
  static const ::clara_rt::testing::Register register_##name(#name, name); \
  static void name()

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++::clara_rt::testing::Registry::get().failures;                              \
    }                                                                               \
  } while (0)

/// Checks that `expr` throws `E` whose message contains `text`.
#define CHECK_THROWS(E, expr, text)                                                                \
  do {                                                                                             \
    bool thrown = false;                                                                           \
    try {                                                                                          \
      (void)(expr);                                                                                \
    } catch (const E& error) {                                                                     \
      thrown = std::string(error.what()).find(text) != std::string::npos;                          \
      if (!thrown) std::fprintf(stderr, "%s:%d: message: %s\n", __FILE__, __LINE__, error.what()); \
    }                                                                                              \
    if (!thrown) {                                                                                 \
      std::fprintf(stderr, "%s:%d: %s did not throw " #E "(%s)\n", __FILE__, __LINE__, #expr,      \
                   text);                                                                          \
      ++::clara_rt::testing::Registry::get().failures;                                             \
    }                                                                                              \
  } while (0)
