#include "dsl/yaml_tree.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include "dsl/limits.h"

namespace sluice::dsl {
namespace {

// Thrown by the tree builder from inside yaml-cpp's parser to stop it at the
// first exceeded limit; ParseYaml turns it into a fatal problem.
struct LimitExceeded {
  YAML::Mark mark;
  std::string message;
};

// The offset of the first byte of `s` that is not part of well-formed UTF-8
// (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or
// npos. nlohmann::json rejects exactly these.
size_t FirstInvalidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // Runs of ASCII are the common case.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (i + 1 >= n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if (i + k >= n || (p[i + k] & 0xC0) != 0x80) return i;
    i += len;
  }
  return std::string_view::npos;
}

std::string HexByte(char c) {
  static const char* kHex = "0123456789abcdef";
  unsigned char u = static_cast<unsigned char>(c);
  return {kHex[u >> 4], kHex[u & 15]};
}

std::string TooDeepMessage() {
  return "maps and lists nest more than " + std::to_string(kMaxYamlDepth) +
         " levels deep (aliases count as the node they repeat); flatten the structure";
}

std::string TooManyNodesMessage() {
  return "the document holds more than " + WithThousands(kMaxYamlNodes) +
         " YAML nodes once its aliases are expanded (each *alias counts the whole node it repeats)";
}

std::string TooLongMessage(size_t bytes) {
  return "a string of " + WithThousands(bytes) + " bytes; a string may be at most " + WithThousands(kMaxScalarBytes) +
         " bytes (128 KiB)";
}

// Builds YamlDocument nodes from parser events with an explicit stack.
// Enforces the limits of dsl/limits.h as the events arrive, so that yaml-cpp
// never recurses or allocates past them: every node's expanded size (nodes,
// aliases expanded) and height (nested maps and lists) is known once the node
// ends, and an alias adds its target's.
class TreeBuilder : public YAML::EventHandler {
 public:
  TreeBuilder(YamlDocument* doc, std::string_view text) : doc_(doc), text_(text) {}

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
    const uint32_t target = it->second;
    // A collection's size is set when it ends: 0 means it is still open, so
    // the alias sits inside the node it names.
    if (size_[target] == 0)
      throw LimitExceeded{mark, "alias '" + AliasName(mark) +
                                    "' refers to a map or list that contains it, which would repeat "
                                    "forever; an alias may only repeat a node that has ended"};
    if (stack_.size() + height_[target] > kMaxYamlDepth) throw LimitExceeded{mark, TooDeepMessage()};
    Count(mark, size_[target]);
    Attach(target);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    if (value.size() > kMaxScalarBytes) throw LimitExceeded{mark, TooLongMessage(value.size())};
    if (size_t bad = FirstInvalidUtf8(value); bad != std::string::npos)
      throw LimitExceeded{mark, "a string holds invalid UTF-8 (byte 0x" + HexByte(value[bad]) +
                                    "); write text as UTF-8"};
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
    Open(YamlNode::Kind::kSequence, mark, anchor);
  }
  void OnSequenceEnd() override { Close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(YamlNode::Kind::kMap, mark, anchor);
  }
  void OnMapEnd() override {
    CheckKeys(stack_.back());
    Close();
  }

 private:
  void Open(YamlNode::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (stack_.size() + 1 > kMaxYamlDepth) throw LimitExceeded{mark, TooDeepMessage()};
    uint32_t i = Add(kind, mark);
    size_[i] = 0;  // open
    Remember(anchor, i);
    Attach(i);
    stack_.push_back(i);
  }

  // Ends the innermost collection: its size and height follow from its
  // children, all of which have ended.
  void Close() {
    const uint32_t i = stack_.back();
    stack_.pop_back();
    uint64_t size = 1;
    uint32_t height = 0;
    for (uint32_t c : doc_->nodes[i].children) {
      size += size_[c];
      height = std::max(height, height_[c]);
    }
    size_[i] = size;
    height_[i] = height + 1;
  }

  // Adds `n` nodes to the expanded document.
  void Count(const YAML::Mark& mark, uint64_t n) {
    total_ += n;
    if (total_ > kMaxYamlNodes) throw LimitExceeded{mark, TooManyNodesMessage()};
  }

  // The alias's name as written ("*base"), read from the text at its mark.
  std::string AliasName(const YAML::Mark& mark) const {
    size_t b = static_cast<size_t>(std::max(mark.pos, 0));
    if (b >= text_.size() || text_[b] != '*') return "*";
    size_t e = b + 1;
    while (e < text_.size() && e - b < 64 && !std::isspace(static_cast<unsigned char>(text_[e])) &&
           std::string_view(",[]{}").find(text_[e]) == std::string_view::npos)
      ++e;
    return std::string(text_.substr(b, e - b));
  }

  uint32_t Add(YamlNode::Kind kind, const YAML::Mark& mark) {
    Count(mark, 1);
    size_.push_back(1);
    height_.push_back(0);
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
  std::string_view text_;
  std::vector<uint32_t> stack_;
  std::unordered_map<YAML::anchor_t, uint32_t> anchors_;
  std::vector<uint64_t> size_;    // per node: expanded size; 0 while a collection is open
  std::vector<uint32_t> height_;  // per node: nested collections, 0 for a scalar
  uint64_t total_ = 0;            // nodes in the expanded document so far
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

std::optional<YamlProblem> CheckYamlText(std::string_view text) {
  if (text.size() > kMaxFileBytes)
    return YamlProblem{1, 1,
                       "the file is larger than " + WithThousands(kMaxFileBytes) +
                           " bytes (16 MiB), the most a pipeline file may hold",
                       true};
  size_t bad = FirstInvalidUtf8(text);
  if (bad == std::string_view::npos) return std::nullopt;
  std::string_view before = text.substr(0, bad);
  size_t line_start = before.rfind('\n');
  line_start = line_start == std::string_view::npos ? 0 : line_start + 1;
  int line = 1 + static_cast<int>(std::count(before.begin(), before.end(), '\n'));
  int column = 1 + static_cast<int>(bad - line_start);
  return YamlProblem{line, column,
                     "invalid UTF-8 (byte 0x" + HexByte(text[bad]) + "); a pipeline file must be UTF-8 text", true};
}

bool WithinLimits(const YamlDocument& doc) {
  const size_t n = doc.nodes.size();
  if (doc.root == YamlDocument::kNoRoot) return true;
  if (doc.root >= n) return false;
  for (const auto& node : doc.nodes)
    if (node.value.size() > kMaxScalarBytes || FirstInvalidUtf8(node.value) != std::string_view::npos) return false;
  // Post-order over the graph from the root: 0 unseen, 1 open (on the path:
  // reaching it again is a cycle), 2 done.
  std::vector<uint8_t> state(n, 0);
  std::vector<uint64_t> size(n, 0);
  std::vector<uint32_t> height(n, 0);
  std::vector<std::pair<uint32_t, size_t>> path;  // node, next child
  path.emplace_back(doc.root, 0);
  state[doc.root] = 1;
  while (!path.empty()) {
    auto& [i, next] = path.back();
    const auto& kids = doc.nodes[i].children;
    if (next < kids.size()) {
      uint32_t c = kids[next++];
      if (c >= n || state[c] == 1) return false;
      if (state[c] == 0) {
        if (path.size() + 1 > kMaxYamlDepth + 1) return false;
        state[c] = 1;
        path.emplace_back(c, 0);
      }
      continue;
    }
    uint64_t s = 1;
    uint32_t h = 0;
    for (uint32_t c : kids) {
      s += size[c];
      h = std::max(h, height[c]);
      if (s > kMaxYamlNodes) return false;
    }
    const YamlNode& node = doc.nodes[i];
    size[i] = s;
    height[i] = node.IsMap() || node.IsSequence() ? h + 1 : 0;
    if (height[i] > kMaxYamlDepth) return false;
    state[i] = 2;
    path.pop_back();
  }
  return true;
}

uint64_t ExpandedSize(const YamlDocument& doc, uint32_t node) {
  uint64_t count = 0;
  std::vector<uint32_t> todo = {node};
  while (!todo.empty()) {
    uint32_t i = todo.back();
    todo.pop_back();
    ++count;
    const auto& kids = doc.nodes[i].children;
    todo.insert(todo.end(), kids.begin(), kids.end());
  }
  return count;
}

YamlDocument ParseYaml(std::string_view text) {
  YamlDocument doc;
  if (auto problem = CheckYamlText(text)) {
    doc.problems.push_back(std::move(*problem));
    return doc;
  }
  doc.nodes.reserve(std::min<size_t>(text.size() / 12 + 16, kMaxYamlNodes));
  ViewBuf buf(text);
  std::istream in(&buf);
  try {
    YAML::Parser parser(in);
    TreeBuilder builder(&doc, text);
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
      // Nesting is bounded here too, so that yaml-cpp's recursion is.
      size_t depth = 0;
      void Open(const YAML::Mark& m) {
        if (++depth > kMaxYamlDepth) throw LimitExceeded{m, TooDeepMessage()};
      }
      void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                           YAML::EmitterStyle::value) override {
        Open(m);
      }
      void OnSequenceEnd() override { --depth; }
      void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
        Open(m);
      }
      void OnMapEnd() override { --depth; }
    } sink;
    if (parser.HandleNextDocument(sink) && sink.seen) {
      doc.problems.push_back({sink.first.line + 1, sink.first.column + 1,
                              "a pipeline file holds one YAML document; remove the extra '---' and what follows",
                              false});
    }
  } catch (const LimitExceeded& e) {
    doc.problems.push_back({e.mark.line + 1, e.mark.column + 1, e.message, true});
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
