#include "dsl/yaml_tree.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

namespace sluice::dsl {
namespace {

// Builds YamlDocument nodes from parser events with an explicit stack.
class TreeBuilder : public YAML::EventHandler {
 public:
  explicit TreeBuilder(YamlDocument* doc) : doc_(doc) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    uint32_t i = Add(YamlNode::Kind::kNull, mark);
    Remember(anchor, i);
    Attach(i);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {
      uint32_t i = Add(YamlNode::Kind::kNull, mark);
      Attach(i);
      return;
    }
    Attach(it->second);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    uint32_t i = Add(YamlNode::Kind::kScalar, mark);
    YamlNode& n = doc_->nodes[i];
    // yaml-cpp tags plain scalars "?" and quoted/block scalars "!".
    n.quoted = (tag != "?");
    n.value = value;
    Remember(anchor, i);
    Attach(i);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    uint32_t i = Add(YamlNode::Kind::kSequence, mark);
    Remember(anchor, i);
    Attach(i);
    stack_.push_back(i);
  }
  void OnSequenceEnd() override { stack_.pop_back(); }

  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    uint32_t i = Add(YamlNode::Kind::kMap, mark);
    Remember(anchor, i);
    Attach(i);
    stack_.push_back(i);
  }
  void OnMapEnd() override {
    CheckKeys(stack_.back());
    stack_.pop_back();
  }

 private:
  uint32_t Add(YamlNode::Kind kind, const YAML::Mark& mark) {
    YamlNode n;
    n.kind = kind;
    n.pos = mark.pos;
    n.line = mark.line + 1;
    n.column = mark.column + 1;
    doc_->nodes.push_back(std::move(n));
    return static_cast<uint32_t>(doc_->nodes.size() - 1);
  }

  void Remember(YAML::anchor_t anchor, uint32_t i) {
    if (anchor != YAML::NullAnchor) anchors_[anchor] = i;
  }

  void Attach(uint32_t i) {
    if (stack_.empty()) {
      if (doc_->root == YamlDocument::kNoRoot) doc_->root = i;
      return;
    }
    YamlNode& parent = doc_->nodes[stack_.back()];
    // An empty mapping value has no text of its own; yaml-cpp marks it at
    // the next token. Point it at its key instead.
    if (parent.IsMap() && parent.children.size() % 2 == 1 && doc_->nodes[i].IsNull()) {
      const YamlNode& key = doc_->nodes[parent.children.back()];
      YamlNode& value = doc_->nodes[i];
      value.line = key.line;
      value.column = key.column;
      value.pos = key.pos;
    }
    parent.children.push_back(i);
  }

  // Duplicate and non-scalar keys. Small maps compare pairwise; large ones
  // use a hash set so a 10,000-entry map stays linear.
  void CheckKeys(uint32_t map_index) {
    const auto& kids = doc_->nodes[map_index].children;
    size_t n = kids.size() / 2;
    for (size_t k = 0; k < n; ++k) {
      const YamlNode& key = doc_->nodes[kids[2 * k]];
      if (!key.IsScalar() && !key.IsNull()) {
        doc_->problems.push_back({key.line, key.column, "mapping keys must be plain strings", false});
      }
    }
    auto report = [&](const YamlNode& dup, const YamlNode& first) {
      doc_->problems.push_back({dup.line, dup.column,
                                "duplicate key '" + dup.value + "' (first defined at line " +
                                    std::to_string(first.line) + "); remove one of them",
                                false});
    };
    if (n <= 16) {
      for (size_t a = 1; a < n; ++a) {
        const YamlNode& ka = doc_->nodes[kids[2 * a]];
        if (!ka.IsScalar()) continue;
        for (size_t b = 0; b < a; ++b) {
          const YamlNode& kb = doc_->nodes[kids[2 * b]];
          if (kb.IsScalar() && kb.value == ka.value) {
            report(ka, kb);
            break;
          }
        }
      }
      return;
    }
    std::unordered_map<std::string_view, uint32_t> seen;
    seen.reserve(n);
    for (size_t a = 0; a < n; ++a) {
      const YamlNode& ka = doc_->nodes[kids[2 * a]];
      if (!ka.IsScalar()) continue;
      auto [it, inserted] = seen.emplace(ka.value, kids[2 * a]);
      if (!inserted) report(ka, doc_->nodes[it->second]);
    }
  }

  YamlDocument* doc_;
  std::vector<uint32_t> stack_;
  std::unordered_map<YAML::anchor_t, uint32_t> anchors_;
};

// A stream over a string_view without copying it.
class ViewBuf : public std::streambuf {
 public:
  explicit ViewBuf(std::string_view s) {
    char* p = const_cast<char*>(s.data());
    setg(p, p, p + s.size());
  }
};

// What to do about yaml-cpp's terse syntax messages.
std::string SyntaxHint(const std::string& msg) {
  static const struct {
    const char* msg;
    const char* hint;
  } kHints[] = {
      {"illegal block entry", "a '- ' list item where it is not allowed; check the indentation, and for an "
                              "unclosed '[' or '{' on the lines above"},
      {"illegal map value", "a ':' where it is not allowed; quote values that contain ': '"},
      {"end of map not found", "check the indentation of the keys"},
      {"end of sequence not found", "check the indentation of the '- ' items"},
      {"end of sequence flow not found", "a '[' is not closed by ']'"},
      {"end of map flow not found", "a '{' is not closed by '}'"},
      {"end of string not found", "a quoted string is not closed"},
      {"unknown escape character", "in double quotes write '\\\\' for a backslash, or use single quotes"},
      {"tab", "indent with spaces, not tabs"},
  };
  for (const auto& h : kHints)
    if (msg.find(h.msg) != std::string::npos) return std::string("; ") + h.hint;
  return "";
}

}  // namespace

YamlDocument ParseYaml(std::string_view text) {
  YamlDocument doc;
  doc.nodes.reserve(text.size() / 12 + 16);
  ViewBuf buf(text);
  std::istream in(&buf);
  try {
    YAML::Parser parser(in);
    TreeBuilder builder(&doc);
    parser.HandleNextDocument(builder);
    // A second document is almost always a stray "---"; its events go nowhere.
    struct Sink : YAML::EventHandler {
      YAML::Mark first;
      bool seen = false;
      void OnDocumentStart(const YAML::Mark& m) override {
        if (!seen) first = m;
        seen = true;
      }
      void OnDocumentEnd() override {}
      void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
      void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
      void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
      void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
      void OnSequenceEnd() override {}
      void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
      void OnMapEnd() override {}
    } sink;
    if (parser.HandleNextDocument(sink) && sink.seen) {
      doc.problems.push_back({sink.first.line + 1, sink.first.column + 1,
                              "a pipeline file holds one YAML document; remove the extra '---' and what follows",
                              false});
    }
  } catch (const YAML::Exception& e) {
    std::string msg = e.msg;
    doc.problems.push_back({e.mark.line + 1, e.mark.column + 1, "YAML syntax error: " + msg + SyntaxHint(msg), true});
  } catch (const std::exception& e) {
    doc.problems.push_back({1, 1, std::string("YAML syntax error: ") + e.what(), true});
  }
  return doc;
}

bool IsYamlNull(std::string_view s) { return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL"; }

bool IsYamlBool(std::string_view s, bool* value) {
  if (s == "true" || s == "True" || s == "TRUE") {
    *value = true;
    return true;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    *value = false;
    return true;
  }
  return false;
}

bool IsYamlInt(std::string_view s, int64_t* value) {
  if (s.empty()) return false;
  size_t i = 0;
  bool neg = false;
  if (s[0] == '+' || s[0] == '-') {
    neg = s[0] == '-';
    i = 1;
  }
  int base = 10;
  if (s.size() > i + 2 && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'o')) {
    base = s[i + 1] == 'x' ? 16 : 8;
    i += 2;
  }
  if (i >= s.size()) return false;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data() + i, s.data() + s.size(), v, base);
  if (ec != std::errc() || p != s.data() + s.size()) return false;
  if (v > static_cast<uint64_t>(INT64_MAX)) return false;
  *value = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  return true;
}

bool IsYamlFloat(std::string_view s, double* value) {
  if (s == ".inf" || s == ".Inf" || s == ".INF" || s == "+.inf") {
    *value = INFINITY;
    return true;
  }
  if (s == "-.inf" || s == "-.Inf" || s == "-.INF") {
    *value = -INFINITY;
    return true;
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    *value = NAN;
    return true;
  }
  // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
  size_t i = 0, n = s.size();
  if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
  size_t digits = 0;
  while (i < n && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  if (i < n && s[i] == '.') {
    ++i;
    while (i < n && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    size_t exp = 0;
    while (i < n && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++exp;
    if (exp == 0) return false;
  }
  if (i != n) return false;
  *value = std::strtod(std::string(s).c_str(), nullptr);
  return true;
}

PlainType ResolveScalar(const YamlNode& node) {
  if (node.IsNull()) return PlainType::kNull;
  if (node.quoted || !node.IsScalar()) return PlainType::kString;
  const std::string& s = node.value;
  if (IsYamlNull(s)) return PlainType::kNull;
  if (s.empty()) return PlainType::kString;
  char c = s[0];
  bool b;
  if ((c == 't' || c == 'T' || c == 'f' || c == 'F') && IsYamlBool(s, &b)) return PlainType::kBool;
  if (std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '+' || c == '.') {
    int64_t i;
    if (IsYamlInt(s, &i)) return PlainType::kInt;
    double d;
    if (IsYamlFloat(s, &d)) return PlainType::kFloat;
  }
  return PlainType::kString;
}

}  // namespace sluice::dsl
