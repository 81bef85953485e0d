// Dag: the immutable task graph of a pipeline, shared by every job that runs it.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace clara_rt {

/// A read-only view of a node's successors (a slice of the graph's adjacency array).
struct NodeRange {
  const std::int32_t* first;
  const std::int32_t* last;
  const std::int32_t* begin() const { return first; }
  const std::int32_t* end() const { return last; }
};

/// An immutable DAG of nodes 0..n-1. An edge (src, dst) means dst waits for src. Each node names
/// the resource (an operator instance that may be shared) it occupies while it runs, or -1.
class Dag {
 public:
  /// Edge list as handed in by Python: (src, dst) pairs.
  using EdgeList = std::vector<std::pair<std::int64_t, std::int64_t>>;

  /// Validates and builds the graph.
  /// @throws std::invalid_argument on num_nodes < 1, a node id out of range, a duplicate edge,
  ///     resources of the wrong length or holding a value < -1, or a cycle; a cycle is reported
  ///     closed, by node id: "cycle: 2 -> 3 -> 2".
  Dag(std::int64_t num_nodes, const EdgeList& edges, const std::vector<std::int64_t>& resources);

  /// @brief Number of nodes.
  std::int32_t num_nodes() const { return num_nodes_; }
  /// @brief Nodes that wait for `node`, in the order their edges were given.
  NodeRange successors(std::int32_t node) const {
    return {targets_.data() + offsets_[node], targets_.data() + offsets_[node + 1]};
  }
  /// @brief Number of predecessors of every node (the initial dependency counters of a job).
  const std::vector<std::int32_t>& in_degrees() const { return in_degrees_; }
  /// @brief Nodes without predecessors, ascending.
  const std::vector<std::int32_t>& roots() const { return roots_; }
  /// @brief Resource id of every node, -1 for none.
  const std::vector<std::int64_t>& resources() const { return resources_; }

 private:
  void check_acyclic() const;
  void throw_cycle() const;

  std::int32_t num_nodes_;
  std::vector<std::int32_t>
      offsets_;  // CSR: successors of n are targets_[offsets_[n]..offsets_[n+1])
  std::vector<std::int32_t> targets_;
  std::vector<std::int32_t> in_degrees_;
  std::vector<std::int32_t> roots_;
  std::vector<std::int64_t> resources_;
};

}  // namespace clara_rt
