#pragma once
// A YAML document as a flat tree of nodes that keeps every node's position.
//
// Built from yaml-cpp's event parser (YAML::Parser + EventHandler) rather than
// YAML::Load: one pass, no shared_ptr node graph, exact 1-based line/column for
// every scalar, and duplicate mapping keys detected (YAML::Load keeps the last
// one silently). Internal to dsl/.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::dsl {

// One node. Mapping children are stored as key, value, key, value, ...
struct YamlNode {
  enum class Kind : uint8_t { kNull, kScalar, kSequence, kMap };
  Kind kind = Kind::kNull;
  // The scalar was quoted or a block scalar (| or >): it is always a string,
  // never resolved to a number, bool or null.
  bool quoted = false;
  int pos = 0;     // byte offset in the text
  int line = 0;    // 1-based
  int column = 0;  // 1-based; for quoted scalars, the opening quote
  std::string value;               // scalar text (after unquoting)
  std::vector<uint32_t> children;  // indices into YamlDocument::nodes

  bool IsScalar() const { return kind == Kind::kScalar; }
  bool IsMap() const { return kind == Kind::kMap; }
  bool IsSequence() const { return kind == Kind::kSequence; }
  bool IsNull() const { return kind == Kind::kNull; }
};

// A problem found while building the tree (syntax error, duplicate key, ...).
struct YamlProblem {
  int line = 0;
  int column = 0;
  std::string message;
  bool fatal = false;  // a syntax error: the tree is incomplete
};

// A parsed document. `root` is kNoRoot when the input holds no document.
struct YamlDocument {
  static constexpr uint32_t kNoRoot = UINT32_MAX;
  std::vector<YamlNode> nodes;
  uint32_t root = kNoRoot;
  std::vector<YamlProblem> problems;

  const YamlNode& at(uint32_t i) const { return nodes[i]; }
};

// Parses `text`. Never throws: yaml-cpp exceptions become fatal problems.
// Reports duplicate keys, non-scalar keys and extra documents as problems.
// Stops at the first limit of dsl/limits.h that the text exceeds (size,
// UTF-8, nesting depth, nodes with aliases expanded, string length, an alias
// inside the node it names), as one fatal problem at its location; a
// document without problems is therefore finite, acyclic and within them.
YamlDocument ParseYaml(std::string_view text);

// The checks ParseYaml makes before parsing: the text is at most
// kMaxFileBytes and well-formed UTF-8. Returns the fatal problem, located at
// the first bad byte, or nullopt.
std::optional<YamlProblem> CheckYamlText(std::string_view text);

// True when `doc` (e.g. one read back from the parse cache) is what ParseYaml
// can produce within the limits: child indices in range, no cycle, nesting
// and expanded size within kMaxYamlDepth and kMaxYamlNodes, every value at
// most kMaxScalarBytes of UTF-8.
bool WithinLimits(const YamlDocument& doc);

// The number of nodes under `node`, itself included, with aliases expanded.
// `doc` must be WithinLimits.
uint64_t ExpandedSize(const YamlDocument& doc, uint32_t node);

// How a plain (unquoted) scalar resolves under the YAML 1.2 core schema.
enum class PlainType { kString, kNull, kBool, kInt, kFloat };

// Resolves a scalar node's type; quoted scalars are always kString.
PlainType ResolveScalar(const YamlNode& node);

// Helpers for plain scalar spellings.
bool IsYamlNull(std::string_view s);
bool IsYamlBool(std::string_view s, bool* value);
bool IsYamlInt(std::string_view s, int64_t* value);
bool IsYamlFloat(std::string_view s, double* value);

}  // namespace sluice::dsl
