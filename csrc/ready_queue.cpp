#include "ready_queue.hpp"

namespace clara_rt {

void ReadyQueue::push_back(Priority priority, const Task& task) {
  queues_[index(priority)].push_back(task);
  ++live_[index(priority)];
}

void ReadyQueue::push_front(Priority priority, const Task& task) {
  queues_[index(priority)].push_front(task);
  ++live_[index(priority)];
}

std::optional<Priority> ReadyQueue::select() {
  if (live_[0] > 0) return Priority::kImmediate;
  // nginx's smooth weighted round robin, restricted to non-empty classes: the class with the
  // largest current + weight wins (ties go to the more urgent class). commit() applies the step,
  // so a class that is picked but whose task cannot be dispatched is not charged.
  int best = -1;
  selected_mask_ = 0;
  for (int i = 0; i < 3; ++i) {
    if (live_[i + 1] == 0) continue;
    selected_mask_ |= static_cast<std::uint8_t>(1U << i);
    if (best < 0 || current_[i] + weights_[i] > current_[best] + weights_[best]) best = i;
  }
  if (best < 0) return std::nullopt;
  return static_cast<Priority>(best + 1);
}

void ReadyQueue::commit(Priority priority) {
  if (priority == Priority::kImmediate) return;
  std::int64_t total = 0;
  for (int i = 0; i < 3; ++i) {
    if ((selected_mask_ & (1U << i)) == 0) continue;
    current_[i] += weights_[i];
    total += weights_[i];
  }
  current_[index(priority) - 1] -= total;
}

void ReadyQueue::remove(Priority priority, const Task& task) {
  RingDeque<Task>& queue = queues_[index(priority)];
  if (!queue.empty() && queue.front() == task) {
    queue.pop_front();
  } else if (!queue.empty() && queue.back() == task) {
    queue.pop_back();
  }
  forget(priority, 1);
}

void ReadyQueue::forget(Priority priority, std::int64_t count) {
  live_[index(priority)] -= count;
  // Nothing live is left, so every entry is stale: drop them now rather than one pop at a time.
  if (live_[index(priority)] == 0) queues_[index(priority)].clear();
}

}  // namespace clara_rt
