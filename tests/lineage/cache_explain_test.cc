// `sluice plan` predictions (engine/run/cache_explain.h) for foreach steps, and
// the cache of a real run: pipelines in YAML, the real Runner and local
// executor, a real SQLite store.
#include "engine/run/cache_explain.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "dsl/dsl.h"
#include "engine/store/artifact_store.h"
#include "engine/run/runner.h"
#include "engine/store/sqlite_store.h"
#include "executors/local/local_executor.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

// prepare writes the list of models; train fans out over it (items known
// only once prepare ran); score fans out over a literal list after prepare.
constexpr char kPipeline[] = R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: fan
params:
  models:
    type: list
    default: [a, b]
steps:
  - name: prepare
    command: [sh, -c, "echo '{{ params.models }}' > models.json"]
    outputs:
      params:
        - {name: models, path: models.json}
  - name: train
    foreach: "{{ steps.prepare.outputs.params.models }}"
    command: [sh, -c, "echo {{ item }} > model.txt"]
    outputs:
      artifacts:
        - {name: model, path: model.txt}
  - name: score
    depends: [prepare]
    foreach: [x, y, z]
    command: [sh, -c, "echo {{ item }} > score.txt"]
    outputs:
      artifacts:
        - {name: score, path: score.txt}
)yaml";

class CacheExplainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sluice-plan-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    state_ = dir_ + "/.sluice";
    auto store = SqliteStore::Open(state_);
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }

  PipelineSpec Load(const std::string& yaml) {
    std::ofstream(dir_ + "/pipeline.yaml") << yaml;
    dsl::LoadResult r = dsl::LoadPipelineFile(dir_ + "/pipeline.yaml");
    EXPECT_TRUE(r.ok()) << dsl::FormatDiagnosticsText(r.diagnostics);
    return r.ok() ? *r.spec : PipelineSpec{};
  }

  Json Params(const PipelineSpec& spec, std::map<std::string, std::string> values = {}) {
    auto p = dsl::BindParams(spec, values);
    EXPECT_TRUE(p.has_value()) << p.error().ToString();
    return p ? *p : Json::object();
  }

  void RunIt(const PipelineSpec& spec, const Json& params, const std::string& run_id) {
    ExecutorRegistry executors;
    LocalExecutorOptions lo;
    lo.parallelism = 2;
    ASSERT_TRUE(RegisterLocalExecutor(executors, lo).ok());
    FileArtifactStore artifacts(state_);
    RunOptions o;
    o.run_id = run_id;
    o.params = params;
    o.parallelism = 2;
    o.state_dir = state_;
    Runner runner(spec, store_.get(), &artifacts, &executors, o);
    auto s = runner.Run();
    ASSERT_TRUE(s.has_value()) << s.error().ToString();
    ASSERT_EQ(s->run.phase, RunPhase::kSucceeded) << s->run.message;
  }

  // "instance verdict: reason; reason" per prediction, in pipeline order.
  std::vector<std::string> Predict(const PipelineSpec& spec, const Json& params) {
    auto p = PredictCache(spec, params, store_.get(), state_, PredictOptions());
    EXPECT_TRUE(p.has_value()) << p.error().ToString();
    std::vector<std::string> out;
    if (!p) return out;
    for (const auto& s : *p) {
      std::string line = s.instance + " " + VerdictName(s.verdict);
      if (!s.reuse_from.empty()) line += " " + s.reuse_from;
      for (size_t i = 0; i < s.reasons.size(); ++i) line += (i ? "; " : ": ") + s.reasons[i];
      out.push_back(line);
    }
    return out;
  }

  std::string dir_, state_;
  SqliteStorePtr store_;
};

TEST_F(CacheExplainTest, ForeachStepsWaitingOnAnUpstreamSayWhatIsUnknown) {
  PipelineSpec spec = Load(kPipeline);
  EXPECT_EQ(Predict(spec, Params(spec)),
            (std::vector<std::string>{
                "prepare run: never ran",
                "train wait: upstream prepare will run, so its outputs are unknown, and so are the foreach "
                "items ({{ steps.prepare.outputs.params.models }}): how many instances will run is "
                "not known yet",
                "score wait: upstream prepare will run, so its outputs are unknown; its 3 foreach instances wait "
                "for it",
            }));
}

TEST_F(CacheExplainTest, ForeachInstancesArePredictedOnceTheirUpstreamIsCached) {
  PipelineSpec spec = Load(kPipeline);
  RunIt(spec, Params(spec), "fan-1");
  EXPECT_EQ(Predict(spec, Params(spec)), (std::vector<std::string>{
                                             "prepare hit fan-1/prepare",
                                             "train[0] hit fan-1/train[0]",
                                             "train[1] hit fan-1/train[1]",
                                             "score[0] hit fan-1/score[0]",
                                             "score[1] hit fan-1/score[1]",
                                             "score[2] hit fan-1/score[2]",
                                         }));
  // A new list: prepare runs again, so train's items are unknown; score's
  // instances only wait (its key does not read prepare's outputs).
  EXPECT_EQ(Predict(spec, Params(spec, {{"models", "a,b,c"}})),
            (std::vector<std::string>{
                "prepare run: param models changed: [a, b] → [a, b, c]",
                "train wait: upstream prepare will run, so its outputs are unknown, and so are the foreach "
                "items ({{ steps.prepare.outputs.params.models }}): how many instances will run is "
                "not known yet",
                "score wait: upstream prepare will run, so its outputs are unknown; its 3 foreach instances wait "
                "for it",
            }));
}

}  // namespace
}  // namespace sluice
