#include "dag.hpp"

#include <limits>
#include <string>

#include "error.hpp"

namespace clara_rt {

namespace {

std::string edge_name(std::int64_t src, std::int64_t dst) {
  return "(" + std::to_string(src) + ", " + std::to_string(dst) + ")";
}

}  // namespace

Dag::Dag(std::int64_t num_nodes, const EdgeList& edges, const std::vector<std::int64_t>& resources)
    : num_nodes_(0) {
  CLARA_RT_CHECK(num_nodes >= 1, "num_nodes must be >= 1, got " + std::to_string(num_nodes));
  CLARA_RT_CHECK(num_nodes < std::numeric_limits<std::int32_t>::max(),
                 "num_nodes is too large: " + std::to_string(num_nodes));
  CLARA_RT_CHECK(edges.size() < static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()),
                 "too many edges: " + std::to_string(edges.size()));
  num_nodes_ = static_cast<std::int32_t>(num_nodes);
  CLARA_RT_CHECK(resources.size() == static_cast<std::size_t>(num_nodes),
                 "resources has " + std::to_string(resources.size()) + " entries, expected " +
                     std::to_string(num_nodes) + " (one per node, -1 for none)");
  for (std::int32_t node = 0; node < num_nodes_; ++node) {
    CLARA_RT_CHECK(resources[node] >= -1, "resource of node " + std::to_string(node) +
                                              " must be >= -1, got " +
                                              std::to_string(resources[node]));
  }
  resources_ = resources;

  offsets_.assign(num_nodes_ + 1, 0);
  in_degrees_.assign(num_nodes_, 0);
  for (const auto& [src, dst] : edges) {
    for (std::int64_t node : {src, dst}) {
      CLARA_RT_CHECK(node >= 0 && node < num_nodes,
                     "edge " + edge_name(src, dst) + ": node " + std::to_string(node) +
                         " out of range [0, " + std::to_string(num_nodes) + ")");
    }
    ++offsets_[src + 1];
    ++in_degrees_[dst];
  }
  for (std::int32_t node = 0; node < num_nodes_; ++node) offsets_[node + 1] += offsets_[node];
  targets_.resize(edges.size());
  std::vector<std::int32_t> fill(offsets_.begin(), offsets_.end() - 1);
  for (const auto& [src, dst] : edges) targets_[fill[src]++] = static_cast<std::int32_t>(dst);

  std::vector<std::int32_t> seen_from(num_nodes_, -1);
  for (std::int32_t src = 0; src < num_nodes_; ++src) {
    for (std::int32_t dst : successors(src)) {
      CLARA_RT_CHECK(seen_from[dst] != src, "duplicate edge " + edge_name(src, dst));
      seen_from[dst] = src;
    }
  }
  for (std::int32_t node = 0; node < num_nodes_; ++node) {
    if (in_degrees_[node] == 0) roots_.push_back(node);
  }
  check_acyclic();
}

void Dag::check_acyclic() const {
  // Kahn's algorithm is linear and allocation-light; only a failing graph pays for the search.
  std::vector<std::int32_t> pending = in_degrees_;
  std::vector<std::int32_t> stack = roots_;
  std::int32_t visited = 0;
  while (!stack.empty()) {
    std::int32_t node = stack.back();
    stack.pop_back();
    ++visited;
    for (std::int32_t next : successors(node)) {
      if (--pending[next] == 0) stack.push_back(next);
    }
  }
  if (visited != num_nodes_) throw_cycle();
}

void Dag::throw_cycle() const {
  // Depth-first search from the lowest node id; the first back edge closes the reported cycle.
  enum : std::uint8_t { kWhite, kGray, kBlack };
  std::vector<std::uint8_t> color(num_nodes_, kWhite);
  std::vector<std::pair<std::int32_t, std::int32_t>> path;  // (node, next successor index)
  for (std::int32_t start = 0; start < num_nodes_; ++start) {
    if (color[start] != kWhite) continue;
    color[start] = kGray;
    path.emplace_back(start, offsets_[start]);
    while (!path.empty()) {
      auto& [node, next] = path.back();
      if (next == offsets_[node + 1]) {
        color[node] = kBlack;
        path.pop_back();
        continue;
      }
      std::int32_t succ = targets_[next++];
      if (color[succ] == kWhite) {
        color[succ] = kGray;
        path.emplace_back(succ, offsets_[succ]);
      } else if (color[succ] == kGray) {
        std::string message = "graph has a cycle: ";
        bool in_cycle = false;
        for (const auto& entry : path) {
          in_cycle = in_cycle || entry.first == succ;
          if (in_cycle) message += std::to_string(entry.first) + " -> ";
        }
        CLARA_RT_CHECK(false, message + std::to_string(succ));
      }
    }
  }
  CLARA_RT_CHECK(false, "graph has a cycle");  // unreachable: Kahn's algorithm found one
}

}  // namespace clara_rt
