// sluice completion / __complete: shell completion that asks the binary.
// The scripts are thin: they pass the words typed so far to
// `sluice __complete`, which walks the CLI11 command tree main.cc built (so
// every subcommand and flag is completed without a second list to keep in
// sync) and reads run ids and step instances from the store.

#include <algorithm>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "engine/cli/output.h"
#include "engine/cli/tooling_commands.h"

namespace sluice::cli {

namespace {

constexpr char kBashScript[] = R"(# bash completion for sluice: source <(sluice completion bash)
_sluice() {
  local IFS=$'\n' cur="${COMP_WORDS[COMP_CWORD]}"
  local -a words=("${COMP_WORDS[@]:1:COMP_CWORD}")
  local -a out
  out=($(sluice __complete "${words[@]}" 2>/dev/null))
  if [[ "${out[0]}" == "__files__" ]]; then
    compopt -o filenames 2>/dev/null
    COMPREPLY=($(compgen -f -- "$cur"))
  else
    COMPREPLY=("${out[@]}")
  fi
}
complete -F _sluice sluice
)";

constexpr char kZshScript[] = R"(#compdef sluice
# zsh completion for sluice: source <(sluice completion zsh)
_sluice() {
  local -a out
  out=("${(@f)$(sluice __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
  if [[ "${out[1]}" == "__files__" ]]; then
    _files
  else
    compadd -Q -- "${out[@]}"
  fi
}
if [[ "$funcstack[1]" == "_sluice" ]]; then _sluice "$@"; else compdef _sluice sluice; fi
)";

constexpr char kFishScript[] = R"(# fish completion for sluice: sluice completion fish | source
function __sluice_complete
    set -l words (commandline -opc) (commandline -ct)
    set -e words[1]
    set -l out (sluice __complete $words 2>/dev/null)
    if test "$out[1]" = __files__
        __fish_complete_path (commandline -ct)
    else
        printf '%s\n' $out
    end
end
complete -c sluice -f -a '(__sluice_complete)'
)";

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// The option of `cmd` (or of the top-level app, for --store) named `flag`
// ("--format", "-o"), nullptr when none.
CLI::Option* FindOption(CLI::App* cmd, CLI::App* app, const std::string& flag) {
  for (CLI::App* scope : {cmd, app}) {
    for (CLI::Option* opt : scope->get_options()) {
      if (!opt->nonpositional()) continue;
      for (const auto& l : opt->get_lnames())
        if (flag == "--" + l) return opt;
      for (const auto& s : opt->get_snames())
        if (flag == "-" + s) return opt;
    }
  }
  return nullptr;
}

bool TakesValue(CLI::Option* opt) { return opt != nullptr && opt->get_type_size() > 0; }

// Values of an option that names a format; empty for free-form values.
std::vector<std::string> OptionValues(CLI::Option* opt) {
  std::vector<std::string> values;
  // CLI::IsMember describes itself as "{a,b,c}"; that is the list of values.
  std::string desc;
  try {
    desc = opt->get_validator()->get_description();
  } catch (const CLI::OptionNotFound&) {
    return values;  // no validator: a free-form value
  }
  if (desc.size() > 2 && desc.front() == '{' && desc.back() == '}') {
    std::string inner = desc.substr(1, desc.size() - 2);
    size_t start = 0;
    while (start <= inner.size()) {
      size_t comma = inner.find(',', start);
      if (comma == std::string::npos) comma = inner.size();
      values.push_back(inner.substr(start, comma - start));
      start = comma + 1;
    }
  }
  return values;
}

// A flag whose value is a path: the shell completes file names.
bool IsPathOption(CLI::Option* opt) {
  for (const auto& l : opt->get_lnames()) {
    for (const char* p : {"store", "file", "kubeconfig", "junit", "config", "pipelines", "from-file",
                          "workspace-host-dir", "state-dir"})
      if (l == p) return true;
  }
  return opt->get_lnames().empty() ? false : opt->get_lnames().front() == "output" && opt->get_type_size() > 0 &&
                                                 OptionValues(opt).empty();
}

std::vector<std::string> RunIds(const std::string& store_flag) {
  std::vector<std::string> ids = {"latest"};
  auto store = OpenExisting(store_flag);
  if (!store) return ids;
  RunFilter filter;
  filter.limit = 200;
  auto runs = (*store)->ListRuns(filter);
  if (!runs) return ids;
  for (const auto& r : *runs) ids.push_back(r.id);
  return ids;
}

// The step instances of a run ("train[1]"), or with `names` its step names
// ("train"), in the store's order, each once.
std::vector<std::string> RunSteps(const std::string& store_flag, const std::string& run_name, bool names) {
  std::vector<std::string> out;
  auto opened = OpenRun(store_flag, run_name);
  if (!opened) return out;
  auto steps = opened->store->ListSteps(opened->run.id);
  if (!steps) return out;
  for (const auto& s : *steps) {
    const std::string& v = names ? s.step : s.instance;
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  }
  return out;
}

}  // namespace

std::optional<std::string> CompletionScript(const std::string& shell) {
  if (shell == "bash") return std::string(kBashScript);
  if (shell == "zsh") return std::string(kZshScript);
  if (shell == "fish") return std::string(kFishScript);
  return std::nullopt;
}

std::vector<std::string> CompletionCandidates(CLI::App* app, const std::vector<std::string>& words) {
  const std::string cur = words.empty() ? "" : words.back();
  CLI::App* cmd = app;
  std::string store_flag;
  std::vector<std::string> positionals;  // values given to cmd's positionals so far
  CLI::Option* pending = nullptr;  // the flag whose value `cur` is
  for (size_t i = 0; i + 1 < words.size(); ++i) {
    const std::string& w = words[i];
    if (pending != nullptr) {
      if (pending->get_lnames() == std::vector<std::string>{"store"}) store_flag = w;
      pending = nullptr;
      continue;
    }
    if (StartsWith(w, "-") && w.size() > 1) {
      const std::string flag = w.substr(0, w.find('='));
      CLI::Option* opt = FindOption(cmd, app, flag);
      if (opt != nullptr && flag == "--store" && w.find('=') != std::string::npos)
        store_flag = w.substr(w.find('=') + 1);
      if (TakesValue(opt) && w.find('=') == std::string::npos) pending = opt;
      continue;
    }
    CLI::App* sub = nullptr;
    if (positionals.empty()) {
      try {
        sub = cmd->get_subcommand(w);
      } catch (const CLI::OptionNotFound&) {
        sub = nullptr;
      }
    }
    if (sub != nullptr) {
      cmd = sub;
    } else {
      positionals.push_back(w);
    }
  }

  std::vector<std::string> candidates;
  if (pending != nullptr) {
    candidates = OptionValues(pending);
    // rerun RUN --from STEP: the run's step names.
    if (pending->get_lnames() == std::vector<std::string>{"from"} && cmd->get_name() == "rerun" &&
        !positionals.empty())
      candidates = RunSteps(store_flag, positionals.front(), /*names=*/true);
    if (candidates.empty() && IsPathOption(pending)) return {"__files__"};
  } else if (StartsWith(cur, "-")) {
    for (CLI::App* scope : {cmd, app}) {
      for (CLI::Option* opt : scope->get_options()) {
        if (!opt->nonpositional()) continue;
        for (const auto& l : opt->get_lnames()) candidates.push_back("--" + l);
        for (const auto& s : opt->get_snames()) candidates.push_back("-" + s);
      }
      if (scope == app) break;
    }
    if (cmd != app) candidates.push_back("--store");
  } else {
    if (positionals.empty()) {
      for (const CLI::App* sub : cmd->get_subcommands({})) {
        if (!sub->get_name().empty() && !StartsWith(sub->get_name(), "__") && !sub->get_group().empty())
          candidates.push_back(sub->get_name());
      }
    }
    // The positional that `cur` fills: the first whose count is not reached.
    std::vector<CLI::Option*> slots;
    for (CLI::Option* opt : cmd->get_options())
      if (opt->get_positional()) slots.push_back(opt);
    size_t used = positionals.size();
    for (CLI::Option* slot : slots) {
      const int max = slot->get_items_expected_max();
      if (used >= static_cast<size_t>(max)) {
        used -= static_cast<size_t>(max);
        continue;
      }
      const std::string name = slot->get_name(true, false);
      if (name == "RUN" || name == "RUN1" || name == "RUN2") {
        for (auto& id : RunIds(store_flag)) candidates.push_back(id);
      } else if (name == "STEP" && !positionals.empty()) {
        for (auto& s : RunSteps(store_flag, positionals.back(), /*names=*/false)) candidates.push_back(s);
      } else if (name == "FILE" || name == "DIR" || name == "PIPELINE_FILE") {
        if (candidates.empty()) return {"__files__"};
      }
      break;
    }
  }
  std::vector<std::string> out;
  for (auto& c : candidates)
    if (StartsWith(c, cur) && std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  return out;
}

Dispatch RegisterToolingCommands(CLI::App& app) {
  auto* schema = app.add_subcommand(
      "schema", "Print the pipeline format's JSON Schema (for editors: yaml-language-server, VS Code)");
  auto* completion = app.add_subcommand("completion", "Print a shell completion script: source <(sluice completion bash)");
  auto shell = std::make_shared<std::string>();
  completion->add_option("SHELL", *shell, "bash, zsh or fish")->required()->check(CLI::IsMember({"bash", "zsh", "fish"}));
  return [schema, completion, shell]() -> std::optional<int> {
    if (*schema) {
      std::cout << PipelineSchemaText();
      return kExitOk;
    }
    if (*completion) {
      std::cout << *CompletionScript(*shell);
      return kExitOk;
    }
    return std::nullopt;
  };
}

}  // namespace sluice::cli
