#pragma once
// An in-memory Store for unit tests of the Runner: keeps records in maps and
// a text log of every PutStep, so tests can assert exact phase sequences.

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/store.h"

namespace sluice::testing {

class FakeStore : public Store {
 public:
  // "instance=Phase#attempts" for every PutStep, in order.
  std::vector<std::string> put_log;
  std::map<std::string, RunRecord> runs;
  std::map<std::string, std::map<std::string, StepRecord>> steps;  // run -> instance -> record
  std::vector<ExecutionRecord> executions;                          // index = id - 1
  std::map<int64_t, std::vector<ArtifactBinding>> exec_inputs, exec_outputs;

  // All PutStep lines of `instance` joined by " ", e.g. "Running#1 Succeeded#1".
  std::string PhasesOf(const std::string& instance) const {
    std::string out;
    for (const auto& line : put_log) {
      if (line.rfind(instance + "=", 0) != 0) continue;
      out += (out.empty() ? "" : " ") + line.substr(instance.size() + 1);
    }
    return out;
  }

  Status CreateRun(const RunRecord& run) override {
    if (runs.count(run.id)) return Status::AlreadyExists("run " + run.id);
    runs[run.id] = run;
    return Status::Ok();
  }
  Status UpdateRun(const RunRecord& run) override {
    if (!runs.count(run.id)) return Status::NotFound("run " + run.id);
    runs[run.id] = run;
    return Status::Ok();
  }
  Result<RunRecord> GetRun(const std::string& id) override {
    auto it = runs.find(id);
    if (it == runs.end()) return Error(Status::NotFound("no run '" + id + "'"));
    return it->second;
  }
  Result<std::vector<RunRecord>> ListRuns(const RunFilter&) override {
    std::vector<RunRecord> out;
    for (const auto& [id, r] : runs) out.push_back(r);
    return out;
  }
  // Fault injection (a full disk): once put_log holds `fail_puts_after`
  // lines, every PutStep returns `put_failure` and records nothing.
  int fail_puts_after = -1;
  Status put_failure;

  Status PutStep(const StepRecord& step) override {
    if (fail_puts_after >= 0 && static_cast<int>(put_log.size()) >= fail_puts_after) return put_failure;
    put_log.push_back(step.instance + "=" + NodePhaseName(step.phase) + "#" + std::to_string(step.attempts));
    steps[step.run_id][step.instance] = step;
    return Status::Ok();
  }
  Result<std::vector<StepRecord>> ListSteps(const std::string& run_id) override {
    std::vector<StepRecord> out;
    for (const auto& [i, s] : steps[run_id]) out.push_back(s);
    return out;
  }
  Result<StepRecord> GetStep(const std::string& run_id, const std::string& instance) override {
    auto& m = steps[run_id];
    auto it = m.find(instance);
    if (it == m.end()) return Error(Status::NotFound(instance));
    return it->second;
  }
  Result<int64_t> StartExecution(const ExecutionRecord& execution) override {
    executions.push_back(execution);
    ExecutionRecord& e = executions.back();
    if (!e.snapshot_text.empty()) {  // as a real store reads it back
      e.snapshot = Json::parse(e.snapshot_text, nullptr, /*allow_exceptions=*/false);
      e.snapshot_text.clear();
    }
    executions.back().id = static_cast<int64_t>(executions.size());
    return executions.back().id;
  }
  Status FinishExecution(const ExecutionRecord& execution, const std::vector<ArtifactBinding>& inputs,
                         const std::vector<ArtifactBinding>& outputs) override {
    if (execution.id < 1 || execution.id > static_cast<int64_t>(executions.size()))
      return Status::NotFound("execution");
    executions[execution.id - 1] = execution;
    exec_inputs[execution.id] = inputs;
    exec_outputs[execution.id] = outputs;
    return Status::Ok();
  }
  Result<std::vector<ExecutionRecord>> ListExecutions(const std::string& run_id) override {
    std::vector<ExecutionRecord> out;
    for (const auto& e : executions)
      if (e.run_id == run_id) out.push_back(e);
    return out;
  }
  Result<StepRecord> FindCached(const std::string& cache_key, std::optional<TimePoint> not_before) override {
    const StepRecord* best = nullptr;
    for (const auto& [run, m] : steps)
      for (const auto& [i, s] : m)
        if (s.cache_key == cache_key && s.phase == NodePhase::kSucceeded &&
            (!not_before || (s.finished_at && *s.finished_at >= *not_before)))
          best = &s;
    if (!best) return Error(Status::NotFound("no cached step"));
    return *best;
  }
  Result<ArtifactRecord> GetArtifact(const std::string&) override {
    return Error(Status::NotFound("not in the fake"));
  }
  Result<ExecutionRecord> GetExecution(int64_t id) override {
    if (id < 1 || id > static_cast<int64_t>(executions.size())) return Error(Status::NotFound("execution"));
    return executions[id - 1];
  }
  Result<std::vector<ExecutionRecord>> ProducersOf(const std::string&) override {
    return std::vector<ExecutionRecord>{};
  }
  Result<std::vector<ExecutionRecord>> ConsumersOf(const std::string&) override {
    return std::vector<ExecutionRecord>{};
  }
  Result<std::vector<ArtifactBinding>> InputsOf(int64_t id) override { return exec_inputs[id]; }
  Result<std::vector<ArtifactBinding>> OutputsOf(int64_t id) override { return exec_outputs[id]; }
  Result<int64_t> RecordDeployment(const DeploymentRecord&) override { return 1; }
  Result<std::vector<DeploymentRecord>> ListDeployments(const std::string&, int) override {
    return std::vector<DeploymentRecord>{};
  }
};

}  // namespace sluice::testing
