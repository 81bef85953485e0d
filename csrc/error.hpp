// Error helpers: every exception raised on purpose names the C++ file and line that raised it.
#pragma once

#include <stdexcept>
#include <string>

namespace clara_rt::detail {

/// Throws `E` with `message` prefixed by "[file:line] ".
template <typename E>
[[noreturn]] inline void throw_at(const char* file, int line, const std::string& message) {
  throw E("[" + std::string(file) + ":" + std::to_string(line) + "] " + message);
}

}  // namespace clara_rt::detail

/// Throws std::invalid_argument (Python: ValueError) with "[file:line] msg" unless `cond` holds.
/// `msg` is evaluated only on failure, so building it may allocate.
#define CLARA_RT_CHECK(cond, msg)                                                                \
  do {                                                                                           \
    if (!(cond)) ::clara_rt::detail::throw_at<std::invalid_argument>(__FILE__, __LINE__, (msg)); \
  } while (0)

/// Throws std::runtime_error (Python: RuntimeError) with "[file:line] msg" unless `cond` holds.
/// For calls that are well formed but not allowed in the current state (after shutdown()).
#define CLARA_RT_CHECK_STATE(cond, msg)                                                       \
  do {                                                                                        \
    if (!(cond)) ::clara_rt::detail::throw_at<std::runtime_error>(__FILE__, __LINE__, (msg)); \
  } while (0)
