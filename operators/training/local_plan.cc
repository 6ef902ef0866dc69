#include "operators/training/local_plan.h"

#include <algorithm>
#include <cctype>
#include <string_view>

#include <nlohmann/json.hpp>

namespace sluice::local {
namespace {

constexpr std::string_view kLoopback = "127.0.0.1";

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

struct ReplicaGroup {
  std::string type;  // canonical lower-case
  int replicas = 1;
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
};

// The section for `op` inside `config`: config[op] when present, else config.
const Json& Section(const Json& config, const std::string& op) {
  if (config.is_object()) {
    auto it = config.find(op);
    if (it != config.end() && it->is_object()) return *it;
  }
  return config;
}

// Reads the replica groups of a tfjob/pytorchjob section, in `order` (the
// canonical types, lower-case). Every type in the config must be in `order`.
Result<std::vector<ReplicaGroup>> ReadGroups(const Task& task, const Json& section,
                                             const std::string& op,
                                             const std::vector<std::string>& order,
                                             const std::vector<std::string>& display,
                                             std::vector<std::string>* error_path) {
  auto at = [&](std::vector<std::string> path) {
    if (error_path) *error_path = std::move(path);
  };
  if (!section.is_object()) {
    return Error(Status::InvalidArgument(op + ": config must be a mapping with 'replicas'"));
  }
  const Json* replicas = nullptr;
  std::string replicas_key = "replicas";
  for (const char* key : {"replicas", "tfReplicaSpecs", "pytorchReplicaSpecs"}) {
    auto it = section.find(key);
    if (it != section.end()) {
      replicas = &*it;
      replicas_key = key;
      break;
    }
  }
  std::string all_types;
  for (const auto& d : display) all_types += (all_types.empty() ? "" : ", ") + d;
  if (replicas == nullptr || !replicas->is_object() || replicas->empty()) {
    if (replicas != nullptr) at({replicas_key});
    return Error(Status::InvalidArgument(
        op + ": 'replicas' must map replica types (" + all_types +
        ") to {replicas: N}, e.g. replicas: {Worker: {replicas: 2}}"));
  }
  std::vector<ReplicaGroup> groups;
  for (auto it = replicas->begin(); it != replicas->end(); ++it) {
    std::string type = Lower(it.key());
    if (std::find(order.begin(), order.end(), type) == order.end()) {
      at({replicas_key, it.key()});
      return Error(Status::InvalidArgument(op + ": unknown replica type '" + it.key() +
                                           "'; expected one of " + all_types));
    }
    const std::string where = op + ".replicas." + it.key();
    ReplicaGroup g;
    g.type = type;
    g.argv = task.argv;
    // `Worker: 2` is short for `Worker: {replicas: 2}`.
    const Json spec = it.value().is_number_integer() ? Json{{"replicas", it.value()}} : it.value();
    if (!spec.is_object()) {
      at({replicas_key, it.key()});
      return Error(Status::InvalidArgument(where + " must be a mapping, e.g. {replicas: 1}"));
    }
    if (auto r = spec.find("replicas"); r != spec.end()) {
      if (!r->is_number_integer() || r->get<int64_t>() < 0 || r->get<int64_t>() > 1024) {
        at({replicas_key, it.key(), "replicas"});
        return Error(Status::InvalidArgument(where + ".replicas must be an integer from 0 to 1024"));
      }
      g.replicas = r->get<int>();
    }
    if (auto c = spec.find("command"); c != spec.end()) {
      if (!c->is_array() || c->empty()) {
        at({replicas_key, it.key(), "command"});
        return Error(Status::InvalidArgument(where + ".command must be a non-empty list of strings"));
      }
      g.argv.clear();
      for (const auto& a : *c) {
        if (!a.is_string()) {
          at({replicas_key, it.key(), "command"});
          return Error(Status::InvalidArgument(where + ".command must be a list of strings"));
        }
        g.argv.push_back(a.get<std::string>());
      }
    }
    if (auto e = spec.find("env"); e != spec.end()) {
      if (!e->is_object()) {
        at({replicas_key, it.key(), "env"});
        return Error(Status::InvalidArgument(where + ".env must be a mapping of names to strings"));
      }
      for (auto ev = e->begin(); ev != e->end(); ++ev) {
        if (!ev.value().is_string()) {
          at({replicas_key, it.key(), "env", ev.key()});
          return Error(Status::InvalidArgument(where + ".env." + ev.key() + " must be a string"));
        }
        g.env[ev.key()] = ev.value().get<std::string>();
      }
    }
    if (g.replicas > 0 && g.argv.empty()) {
      at({replicas_key, it.key()});
      return Error(Status::InvalidArgument(where + " has no command: set the step's command or " +
                                           where + ".command"));
    }
    groups.push_back(std::move(g));
  }
  std::sort(groups.begin(), groups.end(), [&](const ReplicaGroup& a, const ReplicaGroup& b) {
    return std::find(order.begin(), order.end(), a.type) <
           std::find(order.begin(), order.end(), b.type);
  });
  int total = 0;
  for (const auto& g : groups) {
    if (std::count_if(groups.begin(), groups.end(),
                      [&](const ReplicaGroup& o) { return o.type == g.type; }) > 1) {
      at({replicas_key});
      return Error(Status::InvalidArgument(op + ": replica type '" + g.type +
                                           "' is given twice (names are case-insensitive)"));
    }
    total += g.replicas;
  }
  if (total == 0) {
    at({replicas_key});
    return Error(Status::InvalidArgument(op + ": all replica counts are 0; nothing would run"));
  }
  return groups;
}

int Count(const std::vector<ReplicaGroup>& groups, const std::string& type) {
  for (const auto& g : groups) {
    if (g.type == type) return g.replicas;
  }
  return 0;
}

ReplicaLaunch NewLaunch(const Task& task, const ReplicaGroup& g, int index) {
  ReplicaLaunch r;
  r.type = g.type;
  r.index = index;
  r.argv = g.argv;
  r.env = task.env;
  for (const auto& [k, v] : g.env) r.env[k] = v;
  r.env["SLUICE_REPLICA_TYPE"] = g.type;
  r.env["SLUICE_REPLICA_INDEX"] = std::to_string(index);
  return r;
}

}  // namespace

Result<TaskPlan> PlanTfJob(const Task& task, const PortAllocator& ports, std::vector<std::string>* error_path) {
  auto at = [&](std::vector<std::string> path) {
    if (error_path) *error_path = std::move(path);
  };
  const Json& section = Section(task.config, "tfjob");
  auto groups = ReadGroups(task, section, "tfjob",
                           {"chief", "master", "worker", "ps", "evaluator"},
                           {"Chief", "Master", "Worker", "PS", "Evaluator"}, error_path);
  if (!groups) return Error(groups.error());
  std::string success_policy;
  if (auto it = section.find("successPolicy"); it != section.end()) {
    if (!it->is_string() || (*it != "" && *it != "AllWorkers")) {
      at({"successPolicy"});
      return Error(Status::InvalidArgument(
          "tfjob.successPolicy must be \"\" (chief, else worker 0) or \"AllWorkers\""));
    }
    success_policy = it->get<std::string>();
  }
  if (Count(*groups, "chief") + Count(*groups, "master") > 1 ||
      (Count(*groups, "chief") > 0 && Count(*groups, "master") > 0)) {
    at({"replicas"});
    return Error(Status::InvalidArgument("tfjob: at most one Chief (or Master) replica is allowed"));
  }

  // The cluster spec, in Go's json.Marshal order for a map: sorted keys.
  nlohmann::ordered_json cluster = nlohmann::ordered_json::object();
  std::map<std::string, std::vector<std::string>> addresses;
  for (const auto& g : *groups) {
    if (g.type == "evaluator") continue;  // not part of the training cluster
    auto& list = addresses[g.type];
    for (int i = 0; i < g.replicas; ++i) {
      auto port = ports();
      if (!port) return Error(port.error());
      list.push_back(std::string(kLoopback) + ":" + std::to_string(*port));
    }
  }
  for (const auto& [type, list] : addresses) cluster[type] = list;

  TaskPlan plan;
  plan.distributed = true;
  for (const auto& g : *groups) {
    for (int i = 0; i < g.replicas; ++i) {
      ReplicaLaunch r = NewLaunch(task, g, i);
      nlohmann::ordered_json tf_config;
      tf_config["cluster"] = cluster;
      tf_config["task"] = {{"type", g.type}, {"index", i}};
      tf_config["environment"] = "cloud";
      r.env["TF_CONFIG"] = tf_config.dump();
      plan.replicas.push_back(std::move(r));
    }
  }
  const bool has_chief = Count(*groups, "chief") + Count(*groups, "master") > 0;
  for (size_t i = 0; i < plan.replicas.size(); ++i) {
    const auto& r = plan.replicas[i];
    bool defines_success = false;
    if (has_chief) {
      defines_success = r.type == "chief" || r.type == "master";
    } else if (r.type == "worker") {
      defines_success = success_policy == "AllWorkers" || r.index == 0;
    }
    if (defines_success) plan.success_set.push_back(i);
  }
  if (plan.success_set.empty()) {
    at({"replicas"});
    return Error(Status::InvalidArgument(
        "tfjob: needs a Chief, a Master or at least one Worker; it succeeds when the Chief "
        "(or worker 0) succeeds"));
  }
  return plan;
}

Result<TaskPlan> PlanPyTorchJob(const Task& task, const PortAllocator& ports,
                                std::vector<std::string>* error_path) {
  auto at = [&](std::vector<std::string> path) {
    if (error_path) *error_path = std::move(path);
  };
  const Json& section = Section(task.config, "pytorchjob");
  auto groups = ReadGroups(task, section, "pytorchjob", {"master", "worker"}, {"Master", "Worker"}, error_path);
  if (!groups) return Error(groups.error());
  if (Count(*groups, "master") > 1) {
    at({"replicas"});
    return Error(Status::InvalidArgument("pytorchjob: at most one Master replica is allowed"));
  }
  std::string nproc = "1";
  int nproc_int = 1;
  if (auto it = section.find("nprocPerNode"); it != section.end()) {
    if (it->is_number_integer() && it->get<int64_t>() >= 1) {
      nproc_int = it->get<int>();
      nproc = std::to_string(nproc_int);
    } else if (it->is_string() && !it->get<std::string>().empty()) {
      nproc = it->get<std::string>();
      // As the training-operator: a non-numeric value ("auto") counts as 1.
      try {
        nproc_int = std::max(1, std::stoi(nproc));
      } catch (const std::exception&) {
        nproc_int = 1;
      }
    } else {
      at({"nprocPerNode"});
      return Error(Status::InvalidArgument(
          "pytorchjob.nprocPerNode must be a positive integer or a string such as \"auto\""));
    }
  }
  auto port = ports();
  if (!port) return Error(port.error());
  const bool has_master = Count(*groups, "master") > 0;
  int nodes = Count(*groups, "master") + Count(*groups, "worker");

  TaskPlan plan;
  plan.distributed = true;
  for (const auto& g : *groups) {
    for (int i = 0; i < g.replicas; ++i) {
      ReplicaLaunch r = NewLaunch(task, g, i);
      int rank = (g.type == "worker" && has_master) ? i + 1 : i;
      r.env["MASTER_ADDR"] = std::string(kLoopback);
      r.env["MASTER_PORT"] = std::to_string(*port);
      r.env["PET_MASTER_ADDR"] = std::string(kLoopback);
      r.env["PET_MASTER_PORT"] = std::to_string(*port);
      r.env["WORLD_SIZE"] = std::to_string(nodes * nproc_int);
      r.env["RANK"] = std::to_string(rank);
      r.env["PET_NODE_RANK"] = std::to_string(rank);
      r.env["PET_NNODES"] = std::to_string(nodes);
      r.env["PET_NPROC_PER_NODE"] = nproc;
      plan.replicas.push_back(std::move(r));
    }
  }
  for (size_t i = 0; i < plan.replicas.size(); ++i) {
    const auto& r = plan.replicas[i];
    if (has_master ? r.type == "master" : r.type == "worker") plan.success_set.push_back(i);
  }
  return plan;
}

Result<TaskPlan> PlanTask(const Task& task, const PortAllocator& ports) {
  auto op = LocalOperator(OperatorRegistry::Global(), task.operator_type);
  if (!op) return Error(op.error());
  return (*op)->PlanLocal(task, ports);
}

}  // namespace sluice::local
