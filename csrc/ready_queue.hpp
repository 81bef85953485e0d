// ReadyQueue: tasks ready to run, in four priority classes served by Clara's policy.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace clara_rt {

/// Job priority classes. A lower value is more urgent.
enum class Priority : std::uint8_t { kImmediate = 0, kHigh = 1, kNormal = 2, kLow = 3 };

/// Number of priority classes.
inline constexpr int kNumPriorities = 4;

/// One node of one job.
struct Task {
  std::int64_t job;
  std::int32_t node;

  bool operator==(const Task& other) const { return job == other.job && node == other.node; }
};

/// A double-ended FIFO on a power-of-two ring buffer. It grows by doubling and never shrinks, so
/// pushing and popping allocate nothing once it has reached its working size (std::deque frees and
/// reallocates blocks as its ends move).
template <typename T>
class RingDeque {
 public:
  /// @brief True when the deque holds nothing.
  bool empty() const { return size_ == 0; }
  /// @brief Number of elements.
  std::size_t size() const { return size_; }
  /// @brief Appends `value` at the back.
  void push_back(const T& value) {
    if (size_ == buffer_.size()) grow();
    buffer_[(head_ + size_) & (buffer_.size() - 1)] = value;
    ++size_;
  }
  /// @brief Inserts `value` at the front.
  void push_front(const T& value) {
    if (size_ == buffer_.size()) grow();
    head_ = (head_ + buffer_.size() - 1) & (buffer_.size() - 1);
    buffer_[head_] = value;
    ++size_;
  }
  /// @brief Removes and returns the front element; the deque must not be empty.
  T pop_front() {
    T value = buffer_[head_];
    head_ = (head_ + 1) & (buffer_.size() - 1);
    --size_;
    return value;
  }
  /// @brief Removes the back element; the deque must not be empty.
  void pop_back() { --size_; }
  /// @brief The front element; the deque must not be empty.
  const T& front() const { return buffer_[head_]; }
  /// @brief The back element; the deque must not be empty.
  const T& back() const { return buffer_[(head_ + size_ - 1) & (buffer_.size() - 1)]; }
  /// @brief Drops every element, keeping the capacity.
  void clear() { head_ = size_ = 0; }

 private:
  void grow() {
    std::vector<T> bigger(buffer_.empty() ? 16 : 2 * buffer_.size());
    for (std::size_t i = 0; i < size_; ++i) bigger[i] = buffer_[(head_ + i) & (buffer_.size() - 1)];
    buffer_ = std::move(bigger);
    head_ = 0;
  }

  std::vector<T> buffer_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

/// Ready tasks in one FIFO per priority class, and the policy that picks the class to serve:
/// immediate first, then high/normal/low by smooth weighted round robin.
///
/// Entries may go stale (their job was stopped); the owner discards them when popped. `live`
/// counts only the entries that are not stale, and only live counts steer the policy, so stale
/// entries never skew the shares. Not thread-safe: the Scheduler's mutex guards it.
class ReadyQueue {
 public:
  /// @param weights Weights of high, normal and low, each >= 1 (checked by the Scheduler).
  explicit ReadyQueue(const std::array<std::int64_t, 3>& weights) : weights_(weights) {}

  /// @brief Appends a live task to the back of class `priority` (FIFO: new jobs queue up).
  void push_back(Priority priority, const Task& task);
  /// @brief Inserts a live task at the front of class `priority` (depth-first: started jobs go on).
  void push_front(Priority priority, const Task& task);

  /// @brief Picks the class to serve next: immediate when it has a live task, else the smooth
  /// weighted round robin choice among high/normal/low classes with live tasks.
  /// @return Nothing when no class holds a live task.
  std::optional<Priority> select();
  /// @brief Removes and returns the front entry of `priority`, which may be stale.
  Task pop(Priority priority) { return queues_[index(priority)].pop_front(); }
  /// @brief Records that a live entry popped from `priority` left the queue (dispatched or parked).
  void take(Priority priority) { forget(priority, 1); }
  /// @brief Takes the live entry `task` out of class `priority` outside the policy (not charged to
  /// the round robin). It is removed at once when it sits at either end (where push_back and
  /// push_front put it), else it stays behind as a stale entry.
  void remove(Priority priority, const Task& task);
  /// @brief Charges a dispatch from `priority` to the round robin, with the classes that were
  /// non-empty at the last select().
  void commit(Priority priority);
  /// @brief Records that `count` live entries of `priority` became stale (their job stopped).
  void forget(Priority priority, std::int64_t count);

  /// @brief Live tasks in class `priority`.
  std::int64_t live(Priority priority) const { return live_[index(priority)]; }
  /// @brief Whether a class more urgent than `priority` holds a live task.
  bool more_urgent_than(Priority priority) const {
    for (std::size_t i = 0; i < index(priority); ++i) {
      if (live_[i] > 0) return true;
    }
    return false;
  }
  /// @brief Live tasks in all classes.
  std::int64_t live_total() const { return live_[0] + live_[1] + live_[2] + live_[3]; }

 private:
  static std::size_t index(Priority priority) { return static_cast<std::size_t>(priority); }

  std::array<RingDeque<Task>, kNumPriorities> queues_;
  std::array<std::int64_t, kNumPriorities> live_{};
  std::array<std::int64_t, 3> weights_;    // high, normal, low
  std::array<std::int64_t, 3> current_{};  // smooth weighted round robin state
  std::uint8_t selected_mask_ = 0;         // weighted classes non-empty at the last select()
};

}  // namespace clara_rt
