#include "dsl/notebook.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

#include "dsl/names.h"
#include "dsl/suggest.h"
#include "engine/json_text.h"
#include "engine/spec.h"
#include "engine/text.h"

namespace sluice::dsl {
namespace {

// One step as the notebook's cells describe it.
struct NotebookStep {
  std::string name;
  int first_cell = 0;                    // code-cell number of its step: cell
  std::vector<std::string> after;        // steps it runs after
  std::vector<std::string> code;         // its cells' sources, in order
  std::vector<std::string> metric_code;  // the sources of its cells tagged metrics
};

struct NotebookParam {
  std::string name;
  Json value;
  std::string type;  // int, number, bool, string, list
};

std::string CellWhere(int n) { return "cell " + std::to_string(n); }

// "LINE:COL" (both from 1) of byte `offset` in `text`; an offset past the
// end is the place just after the last byte.
std::string LineCol(const std::string& text, size_t offset) {
  offset = std::min(offset, text.size());
  size_t line = 1, line_start = 0;
  for (size_t i = 0; i < offset; ++i)
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  return std::to_string(line) + ":" + std::to_string(offset - line_start + 1);
}

// The offset of the first '[' or '{' nested deeper than kMaxNotebookDepth,
// outside strings; nullopt when there is none. Checked before parsing, so
// that no tree deeper than that is ever built.
std::optional<size_t> TooDeep(const std::string& text) {
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxNotebookDepth) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::nullopt;
}

// The notebook JSON, or an error with the line and column of the mistake.
Result<Json> ParseNotebookJson(const std::string& text, const std::string& file) {
  if (text.size() > kMaxNotebookBytes)
    return Error(Status::InvalidArgument(file + ": larger than " + std::to_string(kMaxNotebookBytes >> 20) +
                                         " MiB; is it a notebook?"));
  if (auto deep = TooDeep(text))
    return Error(Status::InvalidArgument(file + ":" + LineCol(text, *deep) + ": JSON nested deeper than " +
                                         std::to_string(kMaxNotebookDepth) + " levels; is it a notebook?"));
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    // what() is "[json.exception.parse_error.N] parse error at line L,
    // column C: WHAT"; the place is computed here from the byte offset.
    std::string what = e.what();
    if (size_t col = what.find(", column "); col != std::string::npos)
      if (size_t colon = what.find(": ", col); colon != std::string::npos) what = what.substr(colon + 2);
    const size_t offset = e.byte > 0 ? e.byte - 1 : 0;
    return Error(Status::InvalidArgument(file + ":" + LineCol(text, offset) + ": not JSON: " + what));
  } catch (const Json::exception& e) {
    // A number too large for a double (out_of_range.406); nlohmann gives no
    // place for it.
    std::string what = e.what();
    if (size_t end = what.find("] "); end != std::string::npos) what = what.substr(end + 2);
    return Error(Status::InvalidArgument(file + ": not JSON: " + what));
  }
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
    if (name.front() == '_')
      return Status::InvalidArgument(CellWhere(cell) + " (tagged param), line " + std::to_string(n) + ": param '" +
                                     name + "' starts with '_', which the step scripts keep for their own names; "
                                     "rename it");
    for (const auto& p : *params)
      if (p.name == name)
        return Status::InvalidArgument(CellWhere(cell) + " (tagged param), line " + std::to_string(n) +
                                       ": param '" + name + "' is set twice");
    if (params->size() >= kMaxNotebookParams)
      return Status::InvalidArgument(CellWhere(cell) + " (tagged param), line " + std::to_string(n) +
                                     ": more than " + std::to_string(kMaxNotebookParams) + " params");
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

// `s` as a Python (and YAML) double-quoted string literal: JSON's escapes
// are both languages' too.
std::string Quoted(std::string_view s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

// The input that carries step `step`'s state: an identifier, since it is
// used as inputs.NAME ("load-data" -> load_data, "8load" -> step_8load).
std::string InputName(const std::string& step) {
  std::string out = step;
  std::replace(out.begin(), out.end(), '-', '_');
  if (!IsIdentifier(out)) out = "step_" + out;
  return out;
}

// The end of a step's script that writes metrics.json: the numbers a cell
// already wrote there, as any sluice step reports metrics, and the top-level
// numeric variables of its cells tagged metrics, found with Python's ast
// (assignment targets, and bare names a notebook shows as the cell's value).
std::string MetricsCode(const NotebookStep& step) {
  std::string py;
  py += "# --- the step's metrics: metrics.json as a cell wrote it, and the\n";
  py += "# numeric top-level variables of its cells tagged metrics\n";
  py += "_metrics = {}\n";
  py += "if _os.path.exists(\"metrics.json\"):\n";
  py += "    with open(\"metrics.json\") as _f:\n        _metrics = _json.load(_f)\n";
  py += "_names = []\n";
  py += "for _source in [";
  for (size_t i = 0; i < step.metric_code.size(); ++i)
    py += (i ? ", " : "") + Quoted(WithoutMagics(step.metric_code[i]));
  py += "]:\n";
  py += "    for _node in _ast.parse(_source).body:\n";
  py += "        if isinstance(_node, _ast.Assign):\n            _targets = _node.targets\n";
  py += "        elif isinstance(_node, (_ast.AnnAssign, _ast.AugAssign)):\n            _targets = [_node.target]\n";
  py += "        elif isinstance(_node, _ast.Expr) and isinstance(_node.value, _ast.Name):\n";
  py += "            _targets = [_node.value]\n";
  py += "        else:\n            continue\n";
  py += "        for _target in _targets:\n";
  py += "            for _n in _ast.walk(_target):\n";
  py += "                if isinstance(_n, _ast.Name) and _n.id not in _names:\n";
  py += "                    _names.append(_n.id)\n";
  py += "for _name in _names:\n";
  py += "    _value = globals().get(_name)\n";
  py += "    try:\n        _value = _value.item()  # a numpy scalar\n    except Exception:\n        pass\n";
  py += "    if isinstance(_value, _numbers.Real) and not isinstance(_value, bool) and _math.isfinite(_value):\n";
  py += "        _metrics[_name] = _value\n";
  py += "with open(\"metrics.json\", \"w\") as _f:\n    _json.dump(_metrics, _f)\n";
  return py;
}

std::string StepScript(const NotebookStep& step, const std::vector<std::string>& imports,
                       const std::vector<NotebookParam>& params, const std::string& file) {
  std::string py;
  py += "#!/usr/bin/env python3\n";
  py += "# Step '" + step.name + "' of the pipeline `sluice import notebook` made from the notebook\n";
  py += "# " + Quoted(file) + ": its cells for this step, between the values of the\n";
  py += "# steps it runs after (--state) and the params (--param name=value) going\n";
  py += "# in, and its own module-level values (state.pkl) and metrics going out.\n";
  py += "import argparse as _argparse\nimport ast as _ast\nimport json as _json\nimport math as _math\n";
  py += "import numbers as _numbers\nimport os as _os\nimport pickle as _pickle\nimport types as _types\n\n";
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
  py += "# --- what this step passes on: its picklable module-level values\n";
  py += "_state = {}\n";
  py += "for _k, _v in list(globals().items()):\n";
  py += "    if _k.startswith(\"_\") or _k in _PARAM_TYPES or _k in (\"In\", \"Out\", \"get_ipython\", \"exit\", "
        "\"quit\"):\n        continue\n";
  py += "    if isinstance(_v, (_types.ModuleType, _types.FunctionType, _types.BuiltinFunctionType, type)):\n"
        "        continue\n";
  py += "    try:\n        _pickle.dumps(_v)\n    except Exception:\n        continue\n    _state[_k] = _v\n";
  py += "with open(\"state.pkl\", \"wb\") as _f:\n    _pickle.dump(_state, _f)\n";
  if (!step.metric_code.empty()) py += MetricsCode(step);
  return py;
}

// Whether the step reports metrics: it has cells tagged metrics, or a cell
// of its own writes metrics.json as sluice steps do.
bool HasMetrics(const NotebookStep& step) {
  if (!step.metric_code.empty()) return true;
  return std::any_of(step.code.begin(), step.code.end(),
                     [](const std::string& c) { return c.find("metrics.json") != std::string::npos; });
}

std::string PipelineYaml(const std::vector<NotebookStep>& steps, const std::vector<NotebookParam>& params,
                         const std::string& name, const NotebookImportOptions& options, const std::string& file) {
  std::string y;
  y += "# Made by `sluice import notebook`: each step runs steps/<name>.py,\n";
  y += "# the notebook's cells for that step.\n";
  y += "apiVersion: sluice.dev/v1\nkind: Pipeline\nmetadata:\n  name: " + name + "\n";
  y += "  description: " + Quoted("Imported from the notebook " + file) + "\n";
  if (!params.empty()) {
    y += "params:\n";
    for (const auto& p : params) {
      std::string value;
      if (p.value.is_string()) value = Quoted(p.value.get<std::string>());
      else value = p.value.dump(-1, ' ', false, Json::error_handler_t::replace);
      y += "  " + p.name + ": {type: " + p.type + ", default: " + value + "}\n";
    }
  }
  if (!options.image.empty()) y += "defaults:\n  image: " + Quoted(options.image) + "\n";
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
    if (HasMetrics(s)) y += "      metrics: metrics.json\n";
  }
  return y;
}

// What one cell's tags say.
struct CellTags {
  bool skip = false, imports = false, param = false, metrics = false;
  std::string step;
  std::vector<std::string> after;
};

constexpr char kKnownTags[] = "step:NAME, after:NAME, param, imports, functions, metrics and skip";

// The error for a tag that is none of sluice's: `word:value` tags always
// (they look like ours), plain words when they are a typo of one of ours.
std::optional<Status> UnknownTag(const std::string& tag, int n) {
  const size_t colon = tag.find(':');
  std::string fix;
  if (colon != std::string::npos) {
    std::string prefix = ClosestMatch(tag.substr(0, colon), {"step", "after", "block", "prev"});
    if (!prefix.empty()) fix = prefix + tag.substr(colon);
  } else {
    fix = ClosestMatch(tag, {"param", "parameters", "imports", "functions", "metrics", "skip"});
    if (fix.empty()) return std::nullopt;
  }
  return Status::InvalidArgument(CellWhere(n) + ": unknown tag '" + tag + "'" +
                                 (fix.empty() ? "" : "; did you mean '" + fix + "'?") + " (sluice reads " +
                                 kKnownTags + ")");
}

Result<CellTags> ReadTags(const Json& cell, int n) {
  CellTags t;
  for (const auto& tag : Tags(cell)) {
    if (tag == "skip") t.skip = true;
    else if (tag == "imports" || tag == "functions") t.imports = true;
    else if (tag == "param" || tag == "parameters" || tag == "pipeline-parameters") t.param = true;
    else if (tag == "metrics" || tag == "pipeline-metrics") t.metrics = true;
    else if (tag.starts_with("step:") || tag.starts_with("block:")) {
      std::string step(Trim(tag.substr(tag.find(':') + 1)));
      if (step.empty())
        return Error(Status::InvalidArgument(CellWhere(n) + ": tag '" + tag + "' names no step; write step:NAME"));
      if (!t.step.empty() && t.step != step)
        return Error(Status::InvalidArgument(CellWhere(n) + ": tagged step:" + t.step + " and step:" + step +
                                             "; a cell starts one step"));
      t.step = step;
    } else if (tag.starts_with("after:") || tag.starts_with("prev:")) {
      std::string after(Trim(tag.substr(tag.find(':') + 1)));
      if (std::find(t.after.begin(), t.after.end(), after) == t.after.end()) t.after.push_back(after);
    } else if (auto unknown = UnknownTag(tag, n)) {
      return Error(*unknown);
    }
  }
  if (!t.step.empty() && !IsDnsLabel(t.step)) {
    const std::string fix = ToDnsLabel(t.step);
    return Error(Status::InvalidArgument(CellWhere(n) + ": invalid step name '" + t.step +
                                         "': use lower-case letters, digits and '-' (at most 63, starting and "
                                         "ending with a letter or digit)" +
                                         (fix.empty() ? "" : "; did you mean 'step:" + fix + "'?")));
  }
  if (!t.after.empty() && t.step.empty())
    return Error(Status::InvalidArgument(CellWhere(n) + ": after: goes on the cell tagged step:NAME that starts "
                                         "the step"));
  const int roles = int(t.param) + int(t.imports) + int(!t.step.empty() || t.metrics);
  if (roles > 1)
    return Error(Status::InvalidArgument(
        CellWhere(n) + ": a cell is one of a step's cells (step:, metrics), an imports/functions cell or the param "
                       "cell; split it"));
  return t;
}

// The cells read so far. Untagged cells go where the last cell tagged
// step:, metrics, imports or functions went.
struct Notebook {
  std::vector<NotebookStep> steps;
  std::vector<NotebookParam> params;
  std::vector<std::string> imports;
  bool in_imports = false;
};

// Adds code cell `n` (tagged `t`) to the steps, params or imports.
Status TakeCell(const std::string& source, const CellTags& t, int n, Notebook* nb) {
  if (t.param) return ParseParamCell(source, n, &nb->params);
  if (t.imports) nb->in_imports = true;
  if (!t.step.empty()) {
    for (const auto& s : nb->steps)
      if (s.name == t.step)
        return Status::InvalidArgument(CellWhere(n) + ": step '" + t.step + "' already starts at " +
                                       CellWhere(s.first_cell));
    if (nb->steps.size() >= kMaxNotebookSteps)
      return Status::InvalidArgument(CellWhere(n) + ": more than " + std::to_string(kMaxNotebookSteps) + " steps");
    nb->steps.push_back({t.step, n, t.after, {}, {}});
    nb->in_imports = false;
  }
  if (t.metrics) nb->in_imports = false;
  if (nb->in_imports) {
    nb->imports.push_back(source);
    return Status::Ok();
  }
  if (nb->steps.empty()) {
    if (Trim(source).empty()) return Status::Ok();
    return Status::InvalidArgument(CellWhere(n) + " has code but comes before the first cell tagged step:NAME; tag "
                                   "it step:NAME, imports, functions, param or skip");
  }
  nb->steps.back().code.push_back(source);
  if (t.metrics) nb->steps.back().metric_code.push_back(source);
  return Status::Ok();
}

// Checks the after: names and gives a step without one the step before it.
Status ResolveAfter(std::vector<NotebookStep>* steps) {
  std::vector<std::string> names;
  for (const auto& s : *steps) names.push_back(s.name);
  for (size_t i = 0; i < steps->size(); ++i) {
    NotebookStep& s = (*steps)[i];
    for (const auto& a : s.after)
      if (std::find(names.begin(), names.end(), a) == names.end())
        return Status::InvalidArgument(CellWhere(s.first_cell) + ": after:" + a + " names no step" +
                                       DidYouMean(a, names) + " (the steps: " + Join(names, ", ") + ")");
    if (s.after.empty() && i > 0) s.after.push_back((*steps)[i - 1].name);
  }
  return Status::Ok();
}

// The first cycle of after: tags, depth first from the steps in order:
// "cell N: the after: tags make a cycle: a -> b -> a".
Status CheckCycles(const std::vector<NotebookStep>& steps) {
  std::map<std::string, const NotebookStep*> by_name;
  for (const auto& s : steps) by_name[s.name] = &s;
  std::map<std::string, int> state;  // 1 on the path, 2 done
  std::vector<std::string> path;
  std::function<std::optional<Status>(const NotebookStep&)> visit =
      [&](const NotebookStep& s) -> std::optional<Status> {
    state[s.name] = 1;
    path.push_back(s.name);
    for (const auto& a : s.after) {
      if (state[a] == 1) {
        auto from = std::find(path.begin(), path.end(), a);
        std::vector<std::string> cycle(from, path.end());
        cycle.push_back(a);
        std::reverse(cycle.begin(), cycle.end());  // in run order: a runs before b
        return Status::InvalidArgument(CellWhere(by_name[a]->first_cell) +
                                       ": the after: tags make a cycle: " + Join(cycle, " -> "));
      }
      if (state[a] == 0)
        if (auto cycle = visit(*by_name[a])) return cycle;
    }
    path.pop_back();
    state[s.name] = 2;
    return std::nullopt;
  };
  for (const auto& s : steps)
    if (state[s.name] == 0)
      if (auto cycle = visit(s)) return *cycle;
  return Status::Ok();
}

// Reads the code cells of the parsed notebook `nb`.
Result<Notebook> ReadCells(const Json& nb, const std::string& file) {
  if (!nb.is_object() || !nb.contains("cells") || !nb["cells"].is_array())
    return Error(Status::InvalidArgument(file + ": not a Jupyter notebook (a JSON object with 'cells')"));
  const Json format = nb.contains("nbformat") ? nb["nbformat"] : Json(nullptr);
  if (format != 4)
    return Error(Status::InvalidArgument(file + ": nbformat " +
                                         format.dump(-1, ' ', false, Json::error_handler_t::replace) +
                                         "; sluice reads nbformat 4 (save it with Jupyter 4 or later)"));
  if (nb["cells"].size() > kMaxNotebookCells)
    return Error(Status::InvalidArgument(file + ": more than " + std::to_string(kMaxNotebookCells) + " cells"));
  Notebook out;
  int n = 0;
  for (const auto& cell : nb["cells"]) {
    if (!cell.is_object() || cell.value("cell_type", Json()) != "code") continue;
    ++n;
    auto tags = ReadTags(cell, n);
    if (!tags) return Error(tags.error().WithContext(file));
    if (tags->skip) continue;
    if (Status s = TakeCell(Source(cell), *tags, n, &out); !s.ok()) return Error(s.WithContext(file));
  }
  if (out.steps.empty())
    return Error(Status::InvalidArgument(file + ": no cell is tagged step:NAME; tag the first cell of each step"));
  if (Status s = ResolveAfter(&out.steps); !s.ok()) return Error(s.WithContext(file));
  if (Status s = CheckCycles(out.steps); !s.ok()) return Error(s.WithContext(file));
  // Every script repeats the imports cells: bound what the import writes.
  size_t imports = 0, total = 0;
  for (const auto& c : out.imports) imports += c.size();
  for (const auto& s : out.steps) {
    total += imports;
    for (const auto& c : s.code) total += c.size();
  }
  if (total > kMaxNotebookOutputBytes)
    return Error(Status::InvalidArgument(
        file + ": the step scripts would hold more than " + std::to_string(kMaxNotebookOutputBytes >> 20) +
        " MiB of cells (each of the " + std::to_string(out.steps.size()) + " steps repeats the " +
        std::to_string(imports) + " bytes of imports and functions cells)"));
  return out;
}

}  // namespace

Result<NotebookPipeline> ImportNotebook(const std::string& text, const std::string& file,
                                        const NotebookImportOptions& options) {
  auto json = ParseNotebookJson(text, file);
  if (!json) return Error(json.error());
  auto nb = ReadCells(*json, file);
  if (!nb) return Error(nb.error());
  NotebookPipeline out;
  std::string name = options.name.empty() ? ToDnsLabel(std::filesystem::path(file).stem().string()) : options.name;
  if (!IsDnsLabel(name)) name = "notebook";
  const std::string base = std::filesystem::path(file).filename().string();
  out.files["pipeline.yaml"] = PipelineYaml(nb->steps, nb->params, name, options, base);
  for (const auto& s : nb->steps) {
    out.files["steps/" + s.name + ".py"] = StepScript(s, nb->imports, nb->params, base);
    out.steps.push_back(s.name);
  }
  for (const auto& p : nb->params) out.params.push_back(p.name);
  return out;
}

}  // namespace sluice::dsl
