#include "engine/plan.h"

#include "engine/foreach_group.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <sstream>

namespace sluice {
namespace {

bool IsFailureClass(NodePhase p) {
  return p == NodePhase::kFailed || p == NodePhase::kError || p == NodePhase::kCancelled ||
         p == NodePhase::kOmitted;
}

bool IsKeptPhase(NodePhase p) { return p == NodePhase::kSucceeded || p == NodePhase::kCached; }

std::string UpstreamReason(const std::string& step, NodePhase p) {
  switch (p) {
    case NodePhase::kFailed: return "upstream step '" + step + "' failed";
    case NodePhase::kError: return "upstream step '" + step + "' had a system error";
    case NodePhase::kCancelled: return "upstream step '" + step + "' was cancelled";
    case NodePhase::kOmitted: return "upstream step '" + step + "' was omitted";
    case NodePhase::kSkipped: return "upstream step '" + step + "' was skipped";
    default: return "upstream step '" + step + "' did not succeed";
  }
}

// Wait before the n-th retry (n >= 1): min(backoff * factor^(n-1), max).
Duration RetryDelay(const RetryPolicy& rp, int n) {
  double ms = static_cast<double>(rp.backoff.count()) * std::pow(rp.factor, n - 1);
  constexpr double kDay = 24.0 * 3600 * 1000;
  if (!std::isfinite(ms) || ms > kDay) ms = kDay;
  if (ms < 0) ms = 0;
  Duration d(static_cast<int64_t>(ms));
  if (rp.max_backoff && d > *rp.max_backoff) d = *rp.max_backoff;
  return d;
}

}  // namespace

std::string FormatCpu(int64_t millis) {
  if (millis % 1000 == 0) return std::to_string(millis / 1000);
  std::string s = std::to_string(millis / 1000) + ".";
  std::string frac = std::to_string(1000 + millis % 1000).substr(1);
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  return s + frac;
}

std::string FormatBytes(int64_t bytes) {
  static const char* kUnits[] = {"Ki", "Mi", "Gi", "Ti"};
  const char* unit = "";
  int64_t v = bytes;
  for (const char* u : kUnits) {
    if (v == 0 || v % 1024 != 0) break;
    v /= 1024;
    unit = u;
  }
  return std::to_string(v) + unit;
}

std::string FormatDuration(Duration d) {
  int64_t ms = d.count();
  if (ms < 1000) return std::to_string(ms) + "ms";
  if (ms % 1000 != 0 && ms < 60000) {
    std::string s = std::to_string(ms / 1000) + "." + std::to_string(1000 + ms % 1000).substr(1);
    while (s.back() == '0') s.pop_back();
    return s + "s";
  }
  int64_t sec = ms / 1000;
  std::string out;
  if (sec >= 3600) out += std::to_string(sec / 3600) + "h";
  if (sec % 3600 >= 60) out += std::to_string(sec % 3600 / 60) + "m";
  if (sec % 60) out += std::to_string(sec % 60) + "s";
  return out;
}

Plan::Plan(const PipelineGraph& graph, PlanOptions options) : graph_(graph), options_(options) {
  if (options_.slots < 1) options_.slots = 1;
  const int n = graph_.size();
  steps_.resize(n);
  instances_.reserve(n);
  by_name_.reserve(n * 2);
  for (int v = 0; v < n; ++v) {
    const StepSpec& spec = graph_.step(v);
    StepState& s = steps_[v];
    Instance head;
    head.name = spec.name;
    head.step = v;
    s.head = static_cast<int>(instances_.size());
    s.instances.push_back(s.head);
    s.unfinished_instances = 1;
    s.priority = spec.priority;
    s.parallelism = spec.foreach ? spec.foreach->parallelism : 0;
    s.group = ForeachGroup(spec);
    s.min_ratio = MinSuccessRatio(spec);
    by_name_[head.name] = s.head;
    instances_.push_back(std::move(head));
    ++unfinished_;
    for (int u : graph_.Upstream(v)) {
      if (!graph_.IsFinally(v) || graph_.IsFinally(u)) ++s.unfinished_upstreams;
    }
  }
  main_unfinished_steps_ = graph_.num_main();
}

void Plan::Seed(const std::vector<SeedInstance>& instances) {
  if (initialized_) return;
  for (const auto& seed : instances) {
    seeds_[seed.name] = seed;
    // Attempts of a non-foreach step that runs again continue counting.
    int i = FindInstance(seed.name);
    if (i < 0 || graph_.step(instances_[i].step).foreach) continue;
    // Finally steps are never kept, but their attempts continue too.
    if (!IsKeptPhase(seed.phase) || graph_.IsFinally(instances_[i].step))
      instances_[i].attempts = instances_[i].base_attempts = seed.attempts;
  }
}

void Plan::Init() {
  initialized_ = true;
  const int n = graph_.size();
  for (int v = 0; v < graph_.num_main(); ++v)
    if (steps_[v].unfinished_upstreams == 0) Resolve(v);
  if (main_unfinished_steps_ == 0) {
    for (int v = graph_.num_main(); v < n; ++v)
      if (steps_[v].unfinished_upstreams == 0 && !steps_[v].resolved) Resolve(v);
  }
  ProcessTerminalSteps();
}

void Plan::Resolve(int step) {
  StepState& s = steps_[step];
  if (s.resolved) return;
  const StepSpec& spec = graph_.step(step);
  const bool is_finally = graph_.IsFinally(step);
  if (is_finally) {
    if (cancelled_ == CancelMode::kTerminate) return OmitStep(step, phase_message_);
  } else {
    if (cancelled_) return OmitStep(step, phase_message_);
    if (stopping_) return OmitStep(step, "not started: the run stopped after the first failure (" +
                                             phase_message_ + "); --keep-going runs independent steps");
    if (s.upstream_failed) return OmitStep(step, s.upstream_reason);
    if (s.upstream_skipped && spec.upstream_skipped == UpstreamSkippedPolicy::kSkip) {
      s.resolved = true;
      SetTerminal(s.head, NodePhase::kSkipped, s.upstream_reason);
      return;
    }
    if (!spec.foreach) {
      auto it = seeds_.find(spec.name);
      if (it != seeds_.end() && IsKeptPhase(it->second.phase)) {
        s.resolved = true;
        instances_[s.head].attempts = it->second.attempts;
        SetTerminal(s.head, it->second.phase, "", /*kept=*/true);
        return;
      }
    }
  }
  s.resolved = true;
  if (spec.foreach) {
    instances_[s.head].state = State::kExpanding;
    expansions_.push_back(s.head);
  } else {
    Queue(s.head);
  }
}

Plan::ReadyKey Plan::KeyOf(int instance) const {
  const Instance& in = instances_[instance];
  return {-steps_[in.step].priority, in.step, in.index, instance};
}

void Plan::Queue(int instance) {
  Instance& in = instances_[instance];
  in.state = State::kQueued;
  ++steps_[in.step].released;
  ready_.insert(KeyOf(instance));
}

void Plan::ReleaseHeld(int step) {
  StepState& s = steps_[step];
  const int cap = s.parallelism > 0 ? s.parallelism : INT_MAX;
  while (s.next_held < s.held.size() && s.released < cap) {
    int i = s.held[s.next_held++];
    if (instances_[i].state == State::kHeld) Queue(i);
  }
}

void Plan::Expand(int step, int n) {
  if (step < 0 || step >= graph_.size()) return;
  StepState& s = steps_[step];
  if (instances_[s.head].state != State::kExpanding) return;
  if (n <= 0) {
    SetTerminal(s.head, NodePhase::kSucceeded, "foreach over an empty list: no instances to run");
    ProcessTerminalSteps();
    return;
  }
  Instance& head = instances_[s.head];
  head.retired = true;
  head.state = State::kTerminal;
  --unfinished_;
  s.expanded = true;
  s.instances.clear();
  s.unfinished_instances = n;
  const std::string& name = graph_.step(step).name;
  const std::string& group = s.group;
  std::vector<std::pair<int, NodePhase>> kept;
  for (int k = 0; k < n; ++k) {
    Instance in;
    in.name = group.empty() ? name + "[" + std::to_string(k) + "]"
                            : group + "[" + std::to_string(k) + "]" + name.substr(group.size());
    in.step = step;
    in.index = k;
    in.state = State::kHeld;
    int id = static_cast<int>(instances_.size());
    auto seed = seeds_.find(in.name);
    if (seed != seeds_.end()) {
      in.attempts = seed->second.attempts;
      if (IsKeptPhase(seed->second.phase) && !graph_.IsFinally(step)) kept.push_back({id, seed->second.phase});
      else in.base_attempts = seed->second.attempts;
    }
    by_name_[in.name] = id;
    instances_.push_back(std::move(in));
    s.instances.push_back(id);
    ++unfinished_;
  }
  // Group items wait for the same item of the group's steps they need.
  std::vector<std::pair<int, std::pair<NodePhase, std::string>>> decided;
  for (int k = 0; k < n; ++k) {
    const int id = s.instances[k];
    for (int u : graph_.Upstream(step)) {
      if (!ItemWise(u, step) || !steps_[u].expanded || k >= static_cast<int>(steps_[u].instances.size())) continue;
      const Instance& up = instances_[steps_[u].instances[k]];
      if (up.state != State::kTerminal) ++instances_[id].waiting_items;
      else if (IsFailureClass(up.phase) || (up.phase == NodePhase::kSkipped &&
                                            graph_.step(step).upstream_skipped == UpstreamSkippedPolicy::kSkip))
        decided.push_back({id, {IsFailureClass(up.phase) ? NodePhase::kOmitted : NodePhase::kSkipped,
                                UpstreamReason(up.name, up.phase)}});
    }
    if (instances_[id].waiting_items > 0) instances_[id].state = State::kWaiting;
    else s.held.push_back(id);
  }
  for (auto [id, phase] : kept) SetTerminal(id, phase, "", /*kept=*/true);
  for (const auto& [id, what] : decided)
    if (instances_[id].state != State::kTerminal) SetTerminal(id, what.first, what.second);
  ReleaseHeld(step);
  ReleaseItems(step);
  ProcessTerminalSteps();
}

bool Plan::ItemWise(int from, int to) const {
  return !steps_[to].group.empty() && steps_[from].group == steps_[to].group;
}

// Item-wise downstreams of `step` may expand once it has: they need its
// items, not its end.
void Plan::ReleaseItems(int step) {
  StepState& s = steps_[step];
  if (s.items_released) return;
  s.items_released = true;
  for (int d : graph_.Downstream(step)) {
    if (!ItemWise(step, d)) continue;
    StepState& ds = steps_[d];
    if (--ds.unfinished_upstreams == 0 && !ds.resolved && !ds.upstream_failed) Resolve(d);
  }
}

// Item `instance` of a group step ended: the same item of its item-wise
// downstreams may start, or is omitted / skipped with it.
void Plan::ItemFinished(int instance) {
  const Instance& in = instances_[instance];
  if (in.index < 0 || !steps_[in.step].items_released) return;
  for (int d : graph_.Downstream(in.step)) {
    if (!ItemWise(in.step, d) || !steps_[d].expanded) continue;
    StepState& ds = steps_[d];
    if (in.index >= static_cast<int>(ds.instances.size())) continue;
    const int dk = ds.instances[in.index];
    Instance& down = instances_[dk];
    if (down.state != State::kWaiting) continue;
    const NodePhase phase = instances_[instance].phase;
    if (IsFailureClass(phase)) {
      SetTerminal(dk, NodePhase::kOmitted, UpstreamReason(instances_[instance].name, phase));
    } else if (phase == NodePhase::kSkipped && graph_.step(d).upstream_skipped == UpstreamSkippedPolicy::kSkip) {
      SetTerminal(dk, NodePhase::kSkipped, UpstreamReason(instances_[instance].name, phase));
    } else if (--down.waiting_items == 0) {
      down.state = State::kHeld;
      ds.held.push_back(dk);
      ReleaseHeld(d);
    }
  }
}

// The phase of minSuccessRatio step `step` whose instances aggregate to
// `agg`: Succeeded when enough items did not fail (noting the failed ones),
// Failed otherwise.
NodePhase Plan::RatioPhase(int step, NodePhase agg) {
  StepState& s = steps_[step];
  if (!s.min_ratio || !s.expanded || agg == NodePhase::kCancelled || agg == NodePhase::kSucceeded) return agg;
  std::string failed;
  int n = 0, bad = 0;
  for (int i : s.instances) {
    ++n;
    if (!IsFailureClass(instances_[i].phase)) continue;
    ++bad;
    failed += (failed.empty() ? "" : ", ") + instances_[i].name;
  }
  if (bad == 0) return agg;
  const std::string& name = graph_.step(step).name;
  std::ostringstream ratio;
  ratio << *s.min_ratio;
  const int need = static_cast<int>(std::ceil(*s.min_ratio * n - 1e-9));
  if (n - bad >= need) {
    tolerated_message_ += (tolerated_message_.empty() ? "" : "; ") + std::to_string(bad) + " of " +
                          std::to_string(n) + " items of step '" + name + "' failed (" + failed +
                          "); minSuccessRatio " + ratio.str() + " met";
    return NodePhase::kSucceeded;
  }
  s.ratio_failed = true;
  ++failed_[graph_.IsFinally(step) ? 1 : 0];
  if (phase_message_.empty())
    phase_message_ = "step '" + name + "': " + std::to_string(n - bad) + " of " + std::to_string(n) +
                     " items succeeded, fewer than minSuccessRatio " + ratio.str() + " needs (" +
                     std::to_string(need) + "); failed: " + failed;
  return NodePhase::kFailed;
}

void Plan::FailExpansion(int step, const std::string& message) {
  if (step < 0 || step >= graph_.size()) return;
  int head = steps_[step].head;
  if (instances_[head].state != State::kExpanding) return;
  SetTerminal(head, NodePhase::kError, message);
  OnFinalFailure(head, message);
  ProcessTerminalSteps();
}

void Plan::SetTerminal(int instance, NodePhase phase, const std::string& message, bool kept) {
  Instance& in = instances_[instance];
  if (in.state == State::kQueued) {
    ready_.erase(KeyOf(instance));
    --steps_[in.step].released;
  }
  in.state = State::kTerminal;
  in.phase = phase;
  --unfinished_;
  const int fin = graph_.IsFinally(in.step) ? 1 : 0;
  // An item of a minSuccessRatio step counts when its step is decided.
  const bool tolerant = steps_[in.step].min_ratio && in.index >= 0;
  if (phase == NodePhase::kFailed && !tolerant) ++failed_[fin];
  if (phase == NodePhase::kError && !tolerant) ++errors_[fin];
  if (phase == NodePhase::kCancelled) ++cancelled_count_[fin];
  changes_.push_back({instance, phase, message, std::nullopt, kept});

  StepState& s = steps_[in.step];
  if (--s.unfinished_instances == 0) {
    // Aggregate the instances (fan-in).
    bool any[9] = {};
    for (int i : s.instances) any[static_cast<int>(instances_[i].phase)] = true;
    auto has = [&](NodePhase p) { return any[static_cast<int>(p)]; };
    NodePhase agg = NodePhase::kSucceeded;
    if (has(NodePhase::kFailed)) agg = NodePhase::kFailed;
    else if (has(NodePhase::kError)) agg = NodePhase::kError;
    else if (has(NodePhase::kCancelled)) agg = NodePhase::kCancelled;
    else if (has(NodePhase::kOmitted)) agg = NodePhase::kOmitted;
    else if (has(NodePhase::kSkipped) && !has(NodePhase::kSucceeded) && !has(NodePhase::kCached))
      agg = NodePhase::kSkipped;
    s.phase = RatioPhase(in.step, agg);
    s.terminal = true;
    terminal_steps_.push_back(in.step);
  }
  ItemFinished(instance);
}

void Plan::OnFinalFailure(int instance, const std::string& message) {
  const Instance& in = instances_[instance];
  // Decided with the whole step (RatioPhase).
  if (steps_[in.step].min_ratio && in.index >= 0 && in.phase != NodePhase::kCancelled) return;
  if (phase_message_.empty()) {
    const char* what = in.phase == NodePhase::kFailed  ? "failed"
                       : in.phase == NodePhase::kError ? "had a system error"
                                                       : "was cancelled";
    phase_message_ = "step '" + in.name + "' " + what + (message.empty() ? "" : ": " + message);
  }
  if (graph_.IsFinally(in.step) || cancelled_) return;
  if (!options_.keep_going) {
    if (!stopping_) {
      stopping_ = true;
      StopAll("not started: the run stopped after the first failure (" + phase_message_ +
              "); --keep-going runs independent steps");
    }
    return;
  }
  // keep-going: the step will end in a failure phase whatever its other
  // instances do, so its dependents are omitted now.
  const std::string reason = UpstreamReason(graph_.step(in.step).name, in.phase);
  for (int d : graph_.Downstream(in.step)) {
    if (graph_.IsFinally(d)) continue;
    StepState& ds = steps_[d];
    if (!ds.upstream_failed) ds.upstream_reason = reason;
    ds.upstream_failed = true;
    if (!ds.resolved) OmitStep(d, ds.upstream_reason);
  }
}

void Plan::OmitStep(int step, const std::string& message) {
  StepState& s = steps_[step];
  s.resolved = true;
  for (int i : s.instances) {
    State st = instances_[i].state;
    if (st == State::kWaiting || st == State::kHeld || st == State::kQueued || st == State::kExpanding)
      SetTerminal(i, NodePhase::kOmitted, message);
  }
}

void Plan::StopAll(const std::string& message) {
  for (int v = 0; v < graph_.num_main(); ++v)
    if (!steps_[v].terminal) OmitStep(v, message);
}

void Plan::ProcessTerminalSteps() {
  while (!terminal_steps_.empty()) {
    int step = terminal_steps_.back();
    terminal_steps_.pop_back();
    const StepState& s = steps_[step];
    if (!graph_.IsFinally(step)) {
      --main_unfinished_steps_;
      const std::string& name = graph_.step(step).name;
      if (s.ratio_failed && !options_.keep_going && !stopping_ && !cancelled_) {
        stopping_ = true;
        StopAll("not started: the run stopped after the first failure (" + phase_message_ +
                "); --keep-going runs independent steps");
      }
      for (int d : graph_.Downstream(step)) {
        if (graph_.IsFinally(d)) continue;
        // Told at expansion; its items were handled one by one.
        if (ItemWise(step, d) && s.items_released) continue;
        StepState& ds = steps_[d];
        --ds.unfinished_upstreams;
        if (IsFailureClass(s.phase)) {
          if (!ds.upstream_failed) ds.upstream_reason = UpstreamReason(name, s.phase);
          ds.upstream_failed = true;
        } else if (s.phase == NodePhase::kSkipped) {
          if (!ds.upstream_failed && !ds.upstream_skipped) ds.upstream_reason = UpstreamReason(name, s.phase);
          ds.upstream_skipped = true;
        }
        if (ds.resolved) continue;
        if (ds.upstream_failed) OmitStep(d, ds.upstream_reason);
        else if (ds.unfinished_upstreams == 0) Resolve(d);
      }
      if (main_unfinished_steps_ == 0) {
        for (int v = graph_.num_main(); v < graph_.size(); ++v)
          if (steps_[v].unfinished_upstreams == 0 && !steps_[v].resolved) Resolve(v);
      }
    } else {
      for (int d : graph_.Downstream(step)) {
        StepState& ds = steps_[d];
        if (--ds.unfinished_upstreams == 0 && main_unfinished_steps_ == 0 && !ds.resolved) Resolve(d);
      }
    }
  }
}

std::string Plan::NeverFits(int instance) const {
  const Instance& in = instances_[instance];
  const Resources& r = graph_.step(in.step).resources;
  const bool cpu = options_.cpu_millis > 0 && r.cpu_millis > options_.cpu_millis;
  const bool memory = options_.memory_bytes > 0 && r.memory_bytes > options_.memory_bytes;
  if (!cpu && !memory && r.gpu <= options_.gpu) return "";  // the usual case: no allocation
  const std::string who = "step '" + in.name + "' requests ";
  if (cpu)
    return who + FormatCpu(r.cpu_millis) + " CPUs but the run's CPU budget is " +
           FormatCpu(options_.cpu_millis) + "; lower resources.cpu or raise --cpus";
  if (memory)
    return who + FormatBytes(r.memory_bytes) + " of memory but the run's memory budget is " +
           FormatBytes(options_.memory_bytes) + "; lower resources.memory or raise --memory";
  if (r.gpu > options_.gpu)
    return who + std::to_string(r.gpu) + " GPU" + (r.gpu == 1 ? "" : "s") + " but the run has " +
           std::to_string(options_.gpu) + "; lower resources.gpu or raise --gpus";
  return "";
}

void Plan::Take(int instance, bool) {
  Instance& in = instances_[instance];
  const Resources& r = graph_.step(in.step).resources;
  in.state = State::kRunning;
  ++in.attempts;
  ++running_;
  ++steps_[in.step].running;
  cpu_used_ += r.cpu_millis;
  memory_used_ += r.memory_bytes;
  gpu_used_ += r.gpu;
}

void Plan::Release(int instance) {
  Instance& in = instances_[instance];
  const Resources& r = graph_.step(in.step).resources;
  --running_;
  --steps_[in.step].running;
  --steps_[in.step].released;
  cpu_used_ -= r.cpu_millis;
  memory_used_ -= r.memory_bytes;
  gpu_used_ -= r.gpu;
}

std::vector<ReadyNode> Plan::Ready(TimePoint now) {
  if (!initialized_) Init();
  std::vector<ReadyNode> out;
  while (!retries_.empty() && retries_.top().first <= now) {
    auto [t, i] = retries_.top();
    retries_.pop();
    if (instances_[i].state == State::kBackoff && instances_[i].retry_at == t) Queue(i);
  }
  for (int h : expansions_) {
    if (instances_[h].state == State::kExpanding)
      out.push_back({ReadyNode::Kind::kExpand, h, instances_[h].step, 0});
  }
  expansions_.clear();

  std::vector<int> never_fit;
  for (auto it = ready_.begin(); it != ready_.end() && running_ < options_.slots;) {
    const int i = std::get<3>(*it);
    Instance& in = instances_[i];
    StepState& s = steps_[in.step];
    if (s.parallelism > 0 && s.running >= s.parallelism) {
      ++it;
      continue;
    }
    const Resources& r = graph_.step(in.step).resources;
    if (!NeverFits(i).empty()) {
      never_fit.push_back(i);
      ++it;
      continue;
    }
    bool fits = (options_.cpu_millis <= 0 || cpu_used_ + r.cpu_millis <= options_.cpu_millis) &&
                (options_.memory_bytes <= 0 || memory_used_ + r.memory_bytes <= options_.memory_bytes) &&
                (r.gpu == 0 || gpu_used_ + r.gpu <= options_.gpu);
    if (!fits) {
      ++it;
      continue;
    }
    it = ready_.erase(it);
    Take(i, true);
    out.push_back({ReadyNode::Kind::kRun, i, in.step, in.attempts});
  }
  for (int i : never_fit) {
    if (instances_[i].state != State::kQueued) continue;
    std::string msg = NeverFits(i);
    SetTerminal(i, NodePhase::kError, msg);
    OnFinalFailure(i, msg);
    ReleaseHeld(instances_[i].step);
  }
  if (!never_fit.empty()) ProcessTerminalSteps();
  return out;
}

void Plan::Finished(int instance, AttemptResult result, const std::string& message, TimePoint now,
                    bool retryable) {
  if (instance < 0 || instance >= num_instances()) return;
  Instance& in = instances_[instance];
  if (in.state != State::kRunning) return;
  Release(instance);
  const int step = in.step;
  switch (result) {
    case AttemptResult::kSucceeded: SetTerminal(instance, NodePhase::kSucceeded, message); break;
    case AttemptResult::kCached: SetTerminal(instance, NodePhase::kCached, message); break;
    case AttemptResult::kSkipped: SetTerminal(instance, NodePhase::kSkipped, message); break;
    case AttemptResult::kCancelled:
      SetTerminal(instance, NodePhase::kCancelled, message);
      OnFinalFailure(instance, message);
      break;
    case AttemptResult::kFailed:
    case AttemptResult::kError:
    case AttemptResult::kTimedOut: {
      const bool user = result == AttemptResult::kFailed;
      const RetryPolicy& rp = graph_.step(step).retries;
      const int n = in.attempts - in.base_attempts;  // attempts made in this run
      const bool allowed = rp.retry_on == RetryOn::kAlways ||
                           (user ? rp.retry_on == RetryOn::kOnFailure : rp.retry_on == RetryOn::kOnError);
      const bool may_start = !cancelled_ || (*cancelled_ != CancelMode::kTerminate && graph_.IsFinally(step));
      if (retryable && may_start && allowed && n <= rp.limit) {
        Duration delay = RetryDelay(rp, n);
        in.state = State::kBackoff;
        in.retry_at = now + delay;
        retries_.push({in.retry_at, instance});
        changes_.push_back({instance, NodePhase::kRunning,
                            "attempt " + std::to_string(in.attempts) + " " +
                                (result == AttemptResult::kTimedOut ? "timed out" : user ? "failed" : "had an error") +
                                (message.empty() ? "" : ": " + message) + "; retry " + std::to_string(n) + " of " +
                                std::to_string(rp.limit) + " in " + FormatDuration(delay),
                            in.retry_at, false});
      } else {
        SetTerminal(instance, user ? NodePhase::kFailed : NodePhase::kError, message);
        OnFinalFailure(instance, message);
      }
      break;
    }
  }
  ReleaseHeld(step);
  ProcessTerminalSteps();
}

void Plan::Return(int instance) {
  if (instance < 0 || instance >= num_instances()) return;
  Instance& in = instances_[instance];
  if (in.state != State::kRunning) return;
  Release(instance);
  --in.attempts;
  Queue(instance);
}

void Plan::Cancel(CancelMode mode, const std::string& reason) {
  if (!initialized_) Init();
  // Terminate ends it all; a user's cancel overrides the timeout (the run
  // ends Cancelled), not the other way round.
  if (cancelled_ == CancelMode::kTerminate || cancelled_ == mode) return;
  if (cancelled_ && mode == CancelMode::kTimeout) return;
  cancelled_ = mode;
  phase_message_ = reason;
  const int limit = mode == CancelMode::kTerminate ? graph_.size() : graph_.num_main();
  for (int v = 0; v < limit; ++v) {
    if (steps_[v].terminal) continue;
    OmitStep(v, reason);
    for (int i : steps_[v].instances)
      if (instances_[i].state == State::kBackoff) SetTerminal(i, NodePhase::kCancelled, reason);
  }
  ProcessTerminalSteps();
}

std::optional<TimePoint> Plan::NextWakeup() {
  while (!retries_.empty()) {
    auto [t, i] = retries_.top();
    if (instances_[i].state == State::kBackoff && instances_[i].retry_at == t) return t;
    retries_.pop();
  }
  return std::nullopt;
}

std::vector<PlanChange> Plan::TakeChanges() {
  std::vector<PlanChange> out;
  out.swap(changes_);
  return out;
}

RunPhase Plan::Phase() const {
  if (cancelled_) return *cancelled_ == CancelMode::kTimeout ? RunPhase::kFailed : RunPhase::kCancelled;
  if (failed_[0] + failed_[1]) return RunPhase::kFailed;
  if (errors_[0] + errors_[1]) return RunPhase::kError;
  if (cancelled_count_[0] + cancelled_count_[1]) return RunPhase::kCancelled;
  return RunPhase::kSucceeded;
}

RunPhase Plan::MainPhase() const {
  if (cancelled_) return *cancelled_ == CancelMode::kTimeout ? RunPhase::kFailed : RunPhase::kCancelled;
  if (failed_[0]) return RunPhase::kFailed;
  if (errors_[0]) return RunPhase::kError;
  if (cancelled_count_[0]) return RunPhase::kCancelled;
  return RunPhase::kSucceeded;
}

int Plan::FindInstance(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? -1 : it->second;
}

}  // namespace sluice
