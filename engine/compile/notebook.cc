#include "engine/compile/notebook.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>
#include <sstream>
#include <vector>

#include "engine/json_text.h"
#include "engine/spec.h"
#include "engine/text.h"

namespace sluice::compile {
namespace {

// One step as the notebook's cells describe it.
struct NotebookStep {
  std::string name;
  int first_cell = 0;                // code-cell number of its step: cell
  std::vector<std::string> after;    // steps it runs after
  std::vector<std::string> code;     // its cells' sources, in order
  std::vector<std::string> metrics;  // variable names
};

struct NotebookParam {
  std::string name;
  Json value;
  std::string type;  // int, number, bool, string, list
};

std::string CellWhere(int n) { return "cell " + std::to_string(n); }

bool IsDnsLabel(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s)
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-'))
      return false;
  return s.front() != '-' && s.back() != '-';
}

std::string ToDnsLabel(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c))) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    else if (!out.empty() && out.back() != '-') out += '-';
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (out.size() > 63) out.resize(63);
  return out;
}

bool IsIdentifier(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// A cell's source: a string or a list of lines.
std::string Source(const Json& cell) {
  const Json& src = cell.contains("source") ? cell["source"] : Json();
  if (src.is_string()) return src.get<std::string>();
  std::string out;
  if (src.is_array())
    for (const auto& line : src)
      if (line.is_string()) out += line.get<std::string>();
  return out;
}

std::vector<std::string> Tags(const Json& cell) {
  std::vector<std::string> tags;
  if (!cell.contains("metadata") || !cell["metadata"].is_object()) return tags;
  const Json& t = cell["metadata"].value("tags", Json::array());
  if (t.is_array())
    for (const auto& tag : t)
      if (tag.is_string()) tags.push_back(std::string(Trim(tag.get<std::string>())));
  return tags;
}

// A Python literal (int, float, bool, None, '...'/"..." string, list of
// those) as JSON; nullopt for anything else.
class PythonLiteral {
 public:
  explicit PythonLiteral(std::string_view text) : s_(text) {}

  std::optional<Json> Parse() {
    auto v = Value(0);
    Space();
    if (!v || i_ != s_.size()) return std::nullopt;
    return v;
  }

 private:
  void Space() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  std::optional<Json> Value(int depth) {
    if (depth > 16) return std::nullopt;
    Space();
    if (i_ >= s_.size()) return std::nullopt;
    char c = s_[i_];
    if (c == '[') return List(depth);
    if (c == '\'' || c == '"') return String(c);
    size_t start = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.' || s_[i_] == '-' ||
                              s_[i_] == '+' || s_[i_] == '_'))
      ++i_;
    std::string word(s_.substr(start, i_ - start));
    if (word == "True") return Json(true);
    if (word == "False") return Json(false);
    if (word == "None") return Json(nullptr);
    word.erase(std::remove(word.begin(), word.end(), '_'), word.end());
    Json n = Json::parse(word, nullptr, /*allow_exceptions=*/false);
    if (n.is_number()) return n;
    return std::nullopt;
  }
  std::optional<Json> List(int depth) {
    ++i_;  // [
    Json out = Json::array();
    Space();
    if (i_ < s_.size() && s_[i_] == ']') {
      ++i_;
      return out;
    }
    while (true) {
      auto v = Value(depth + 1);
      if (!v) return std::nullopt;
      out.push_back(std::move(*v));
      Space();
      if (i_ >= s_.size()) return std::nullopt;
      if (s_[i_] == ',') {
        ++i_;
        Space();
        if (i_ < s_.size() && s_[i_] == ']') {
          ++i_;
          return out;
        }
        continue;
      }
      if (s_[i_] == ']') {
        ++i_;
        return out;
      }
      return std::nullopt;
    }
  }
  std::optional<Json> String(char quote) {
    ++i_;
    std::string out;
    while (i_ < s_.size() && s_[i_] != quote) {
      char c = s_[i_++];
      if (c == '\\' && i_ < s_.size()) {
        char e = s_[i_++];
        out += e == 'n' ? '\n' : e == 't' ? '\t' : e;
      } else {
        out += c;
      }
    }
    if (i_ >= s_.size()) return std::nullopt;
    ++i_;
    return Json(out);
  }

  std::string_view s_;
  size_t i_ = 0;
};

std::string TypeOf(const Json& v) {
  if (v.is_boolean()) return "bool";
  if (v.is_number_integer()) return "int";
  if (v.is_number()) return "number";
  if (v.is_array()) return "list";
  return "string";
}

// The `name = literal` lines of a param cell.
Status ParseParamCell(const std::string& source, int cell, std::vector<NotebookParam>* params) {
  std::istringstream in(source);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::string_view t = Trim(line);
    if (t.empty() || t.front() == '#') continue;
    size_t eq = t.find('=');
    std::string name(eq == std::string_view::npos ? "" : Trim(t.substr(0, eq)));
    std::string value(eq == std::string_view::npos ? "" : Trim(t.substr(eq + 1)));
    // A trailing comment after the literal.
    if (size_t hash = value.rfind(" #"); hash != std::string::npos && value.find_first_of("'\"") == std::string::npos)
      value = std::string(Trim(value.substr(0, hash)));
    auto literal = PythonLiteral(value).Parse();
    if (!IsIdentifier(name) || !literal || literal->is_null())
      return Status::InvalidArgument(CellWhere(cell) + " (tagged param), line " + std::to_string(n) + ": '" +
                                     std::string(t) + "' is not `name = literal` (a number, True/False, a quoted "
                                     "string or a list of those)");
    for (const auto& p : *params)
      if (p.name == name)
        return Status::InvalidArgument(CellWhere(cell) + " (tagged param), line " + std::to_string(n) +
                                       ": param '" + name + "' is set twice");
    params->push_back({name, *literal, TypeOf(*literal)});
  }
  return Status::Ok();
}

// IPython magics and shell escapes do not run in plain Python: kept as comments.
std::string WithoutMagics(const std::string& source) {
  std::istringstream in(source);
  std::string line, out;
  while (std::getline(in, line)) {
    std::string_view t = TrimLeft(line);
    if (!t.empty() && (t.front() == '%' || t.front() == '!'))
      out += "# (not run: an IPython magic) " + line + "\n";
    else
      out += line + "\n";
  }
  return out;
}

std::string PyString(const std::string& s) { return Json(s).dump(); }

std::string InputName(const std::string& step) {
  std::string out = step;
  std::replace(out.begin(), out.end(), '-', '_');
  return out;
}

std::string StepScript(const NotebookStep& step, const std::vector<std::string>& imports,
                       const std::vector<NotebookParam>& params, const std::string& file) {
  std::string py;
  py += "#!/usr/bin/env python3\n";
  py += "# Step '" + step.name + "' of the pipeline `sluice import notebook` made from " + file + ".\n";
  py += "# The notebook's cells for this step, between the values of the steps it\n";
  py += "# runs after (--state) and the params (--param name=value) going in, and\n";
  py += "# its own module-level values (state.pkl) and metrics going out.\n";
  py += "import argparse as _argparse\nimport json as _json\nimport numbers as _numbers\n";
  py += "import pickle as _pickle\nimport types as _types\n\n";
  py += "_parser = _argparse.ArgumentParser()\n";
  py += "_parser.add_argument(\"--param\", action=\"append\", default=[])\n";
  py += "_parser.add_argument(\"--state\", action=\"append\", default=[])\n";
  py += "_args = _parser.parse_args()\n";
  py += "for _path in _args.state:\n    with open(_path, \"rb\") as _f:\n        globals().update(_pickle.load(_f))\n";
  Json types = Json::object();
  for (const auto& p : params) types[p.name] = p.type;
  py += "_PARAM_TYPES = " + types.dump() + "\n";
  py += "for _p in _args.param:\n    _k, _v = _p.split(\"=\", 1)\n";
  py += "    globals()[_k] = _v if _PARAM_TYPES.get(_k) == \"string\" else _json.loads(_v)\n";
  py += "\n";
  for (const auto& c : imports) py += "# --- imports\n" + WithoutMagics(c) + "\n";
  for (const auto& c : step.code) py += "# --- cell\n" + WithoutMagics(c) + "\n";
  py += "# --- what this step passes on\n";
  py += "_state = {}\n";
  py += "for _k, _v in list(globals().items()):\n";
  py += "    if _k.startswith(\"_\") or _k in _PARAM_TYPES or _k in (\"In\", \"Out\", \"get_ipython\", \"exit\", "
        "\"quit\"):\n        continue\n";
  py += "    if isinstance(_v, (_types.ModuleType, _types.FunctionType, _types.BuiltinFunctionType, type)):\n"
        "        continue\n";
  py += "    try:\n        _pickle.dumps(_v)\n    except Exception:\n        continue\n    _state[_k] = _v\n";
  py += "with open(\"state.pkl\", \"wb\") as _f:\n    _pickle.dump(_state, _f)\n";
  if (!step.metrics.empty()) {
    Json names = step.metrics;
    py += "_metrics = {}\n";
    py += "for _name in " + names.dump() + ":\n";
    py += "    _value = globals().get(_name)\n";
    py += "    if hasattr(_value, \"item\"):\n        _value = _value.item()\n";
    py += "    if isinstance(_value, bool) or not isinstance(_value, _numbers.Real):\n";
    py += "        raise SystemExit(f\"metrics: {_name} is {type(_value).__name__}, not a number\")\n";
    py += "    _metrics[_name] = _value\n";
    py += "with open(\"metrics.json\", \"w\") as _f:\n    _json.dump(_metrics, _f)\n";
  }
  return py;
}

std::string PipelineYaml(const std::vector<NotebookStep>& steps, const std::vector<NotebookParam>& params,
                         const std::string& name, const NotebookImportOptions& options, const std::string& file) {
  std::string y;
  y += "# Made from " + file + " by `sluice import notebook`: each step runs\n";
  y += "# steps/<name>.py, the notebook's cells for that step.\n";
  y += "apiVersion: sluice.dev/v1\nkind: Pipeline\nmetadata:\n  name: " + name + "\n";
  y += "  description: " + PyString("Imported from the notebook " + file) + "\n";
  if (!params.empty()) {
    y += "params:\n";
    for (const auto& p : params) y += "  " + p.name + ": {type: " + p.type + ", default: " + p.value.dump() + "}\n";
  }
  if (!options.image.empty()) y += "defaults:\n  image: " + PyString(options.image) + "\n";
  y += "steps:\n";
  for (const auto& s : steps) {
    y += "  - name: " + s.name + "\n";
    if (!s.after.empty()) {
      y += "    inputs:\n";
      for (const auto& a : s.after)
        y += "      " + InputName(a) + ": \"{{ steps." + a + ".outputs.artifacts.state }}\"\n";
    }
    y += "    command: [python3, \"{{ pipeline.dir }}/steps/" + s.name + ".py\"";
    for (const auto& p : params) y += ", --param, \"" + p.name + "={{ params." + p.name + " }}\"";
    for (const auto& a : s.after) y += ", --state, \"{{ inputs." + InputName(a) + " }}\"";
    y += "]\n";
    y += "    code: [steps/" + s.name + ".py]\n";
    y += "    outputs:\n      artifacts:\n        - {name: state, path: state.pkl, type: other}\n";
    if (!s.metrics.empty()) y += "      metrics: metrics.json\n";
  }
  return y;
}

// What one cell's tags say.
struct CellTags {
  bool skip = false, imports = false, param = false, metrics = false;
  std::string step;
  std::vector<std::string> after;
};

Result<CellTags> ReadTags(const Json& cell, int n) {
  CellTags t;
  for (const auto& tag : Tags(cell)) {
    if (tag == "skip") t.skip = true;
    else if (tag == "imports") t.imports = true;
    else if (tag == "param" || tag == "parameters") t.param = true;
    else if (tag == "metrics" || tag == "pipeline-metrics") t.metrics = true;
    else if (tag.starts_with("step:")) t.step = std::string(Trim(tag.substr(5)));
    else if (tag.starts_with("after:")) t.after.push_back(std::string(Trim(tag.substr(6))));
    else if (tag.find(':') != std::string::npos)
      return Error(Status::InvalidArgument(CellWhere(n) + ": unknown tag '" + tag +
                                           "'; sluice reads step:NAME, after:NAME, param, imports, metrics and skip"));
  }
  if (!t.step.empty() && !IsDnsLabel(t.step)) {
    const std::string fix = ToDnsLabel(t.step);
    return Error(Status::InvalidArgument(CellWhere(n) + ": invalid step name '" + t.step +
                                         "': use lower-case letters, digits and '-'" +
                                         (fix.empty() ? "" : "; did you mean 'step:" + fix + "'?")));
  }
  if (!t.after.empty() && t.step.empty())
    return Error(Status::InvalidArgument(CellWhere(n) + ": after: goes on the cell tagged step:NAME that starts "
                                         "the step"));
  return t;
}

// Adds code cell `n` (tagged `t`) to the steps, params or imports.
Status TakeCell(const std::string& source, const CellTags& t, int n, std::vector<NotebookStep>* steps,
                std::vector<NotebookParam>* params, std::vector<std::string>* imports) {
  if (t.param) return ParseParamCell(source, n, params);
  if (t.imports) {
    imports->push_back(source);
    return Status::Ok();
  }
  if (!t.step.empty()) {
    for (const auto& s : *steps)
      if (s.name == t.step)
        return Status::InvalidArgument(CellWhere(n) + ": step '" + t.step + "' already starts at " +
                                       CellWhere(s.first_cell));
    if (steps->size() >= kMaxNotebookSteps)
      return Status::InvalidArgument(CellWhere(n) + ": more than " + std::to_string(kMaxNotebookSteps) + " steps");
    NotebookStep s{t.step, n, t.after, {}, {}};
    for (const auto& a : s.after) {
      bool known = std::any_of(steps->begin(), steps->end(), [&](const NotebookStep& e) { return e.name == a; });
      if (!known)
        return Status::InvalidArgument(CellWhere(n) + ": after:" + a + " names no step before this one");
    }
    if (s.after.empty() && !steps->empty()) s.after.push_back(steps->back().name);
    steps->push_back(std::move(s));
  }
  if (steps->empty()) {
    if (Trim(source).empty()) return Status::Ok();
    return Status::InvalidArgument(CellWhere(n) + " has code but comes before the first cell tagged step:NAME; tag "
                                   "it step:NAME, imports, param or skip");
  }
  if (!t.metrics) {
    steps->back().code.push_back(source);
    return Status::Ok();
  }
  std::istringstream in(source);
  std::string line;
  while (std::getline(in, line)) {
    std::string_view name = Trim(line);
    if (name.empty() || name.front() == '#') continue;
    if (!IsIdentifier(name))
      return Status::InvalidArgument(CellWhere(n) + " (tagged metrics): '" + std::string(name) +
                                     "' is not a variable name; write one name per line");
    steps->back().metrics.emplace_back(name);
  }
  return Status::Ok();
}

}  // namespace

Result<NotebookPipeline> ImportNotebook(const std::string& text, const std::string& file,
                                        const NotebookImportOptions& options) {
  if (text.size() > kMaxNotebookBytes)
    return Error(Status::InvalidArgument(file + ": larger than " + std::to_string(kMaxNotebookBytes >> 20) +
                                         " MiB; is it a notebook?"));
  Json nb = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (nb.is_discarded() || !nb.is_object() || !nb.contains("cells") || !nb["cells"].is_array())
    return Error(Status::InvalidArgument(file + ": not a Jupyter notebook (a JSON object with 'cells')"));
  if (nb.value("nbformat", 0) != 4)
    return Error(Status::InvalidArgument(file + ": nbformat " + nb.value("nbformat", Json(0)).dump() +
                                         "; sluice reads nbformat 4 (save it with Jupyter 4 or later)"));
  if (nb["cells"].size() > kMaxNotebookCells)
    return Error(Status::InvalidArgument(file + ": more than " + std::to_string(kMaxNotebookCells) + " cells"));
  std::vector<NotebookStep> steps;
  std::vector<NotebookParam> params;
  std::vector<std::string> imports;
  int n = 0;
  for (const auto& cell : nb["cells"]) {
    if (!cell.is_object() || cell.value("cell_type", "") != "code") continue;
    ++n;
    auto tags = ReadTags(cell, n);
    if (!tags) return Error(tags.error().WithContext(file));
    if (tags->skip) continue;
    if (Status s = TakeCell(Source(cell), *tags, n, &steps, &params, &imports); !s.ok())
      return Error(s.WithContext(file));
  }
  if (steps.empty())
    return Error(Status::InvalidArgument(file + ": no cell is tagged step:NAME; tag the first cell of each step"));
  NotebookPipeline out;
  std::string name = options.name.empty() ? ToDnsLabel(std::filesystem::path(file).stem().string()) : options.name;
  if (!IsDnsLabel(name)) name = "notebook";
  const std::string base = std::filesystem::path(file).filename().string();
  out.files["pipeline.yaml"] = PipelineYaml(steps, params, name, options, base);
  for (const auto& s : steps) {
    out.files["steps/" + s.name + ".py"] = StepScript(s, imports, params, base);
    out.steps.push_back(s.name);
  }
  for (const auto& p : params) out.params.push_back(p.name);
  return out;
}

}  // namespace sluice::compile
