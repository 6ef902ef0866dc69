#include "operators/resource/condition.h"

#include <cctype>
#include <charconv>
#include <optional>

namespace sluice::operators::resource {
namespace {

using Json = nlohmann::json;

bool IsSpecial(char c) { return c == ',' || c == '(' || c == ')' || c == '=' || c == '!' || c == '<' || c == '>'; }
bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// What a path or a value may hold: a label value's characters, plus '/'
// (a key's prefix) and '#' (an array's length).
bool WordChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' || c == '/' || c == '#';
}

std::optional<int64_t> Integer(const std::string& s) {
  int64_t v = 0;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end || s.empty()) return std::nullopt;
  return v;
}

class Parser {
 public:
  explicit Parser(const std::string& text) : text_(text) {}

  Result<Condition> Parse() {
    Condition out;
    SkipSpace();
    if (pos_ == text_.size()) return out;
    for (;;) {
      auto req = ParseRequirement();
      if (!req) return Error(req.error());
      out.push_back(std::move(*req));
      SkipSpace();
      if (pos_ == text_.size()) return out;
      if (text_[pos_] != ',') return Fail("expected ',' or the end, got '" + Rest() + "'");
      ++pos_;
      SkipSpace();
      if (pos_ == text_.size()) return Fail("expected a requirement after ','");
    }
  }

 private:
  Result<Requirement> ParseRequirement() {
    Requirement r;
    if (text_[pos_] == '!') {
      ++pos_;
      SkipSpace();
      auto path = Word("a path after '!'");
      if (!path) return Error(path.error());
      r.path = *path;
      r.op = Requirement::Op::kNotExists;
      return r;
    }
    auto path = Word("a path, e.g. status.phase");
    if (!path) return Error(path.error());
    r.path = *path;
    SkipSpace();
    if (pos_ == text_.size() || text_[pos_] == ',') return r;  // exists
    const size_t op_at = pos_;
    std::string op;
    if (text_.compare(pos_, 2, "==") == 0 || text_.compare(pos_, 2, "!=") == 0) {
      op = text_.substr(pos_, 2);
      pos_ += 2;
    } else if (text_[pos_] == '=' || text_[pos_] == '>' || text_[pos_] == '<') {
      op = text_.substr(pos_, 1);
      pos_ += 1;
    } else if (auto w = PeekWord(); w == "in" || w == "notin") {
      pos_ += w.size();
      r.op = w == "in" ? Requirement::Op::kIn : Requirement::Op::kNotIn;
      auto set = ValueSet(w);
      if (!set) return Error(set.error());
      r.values = std::move(*set);
      return r;
    } else {
      return Fail("expected an operator (==, !=, >, <, in, notin), ',' or the end after '" + r.path + "', got '" +
                  Rest() + "'");
    }
    SkipSpace();
    auto value = Word("a value after '" + op + "'");
    if (!value) return Error(value.error());
    if ((op == ">" || op == "<") && !Integer(*value)) {
      pos_ = op_at;
      return Fail("'" + op + "' needs an integer, got '" + *value + "'");
    }
    r.op = op == "!=" ? Requirement::Op::kNotEquals
           : op == ">" ? Requirement::Op::kGreater
           : op == "<" ? Requirement::Op::kLess
                       : Requirement::Op::kEquals;
    r.values.push_back(std::move(*value));
    return r;
  }

  Result<std::vector<std::string>> ValueSet(const std::string& op) {
    SkipSpace();
    if (pos_ == text_.size() || text_[pos_] != '(') return Fail("expected '(' after '" + op + "'");
    ++pos_;
    std::vector<std::string> values;
    for (;;) {
      SkipSpace();
      auto v = Word("a value in the '" + op + "' list");
      if (!v) return Error(v.error());
      values.push_back(std::move(*v));
      SkipSpace();
      if (pos_ < text_.size() && text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < text_.size() && text_[pos_] == ')') {
        ++pos_;
        return values;
      }
      return Fail("expected ',' or ')' in the '" + op + "' list");
    }
  }

  std::string PeekWord() const {
    size_t end = pos_;
    while (end < text_.size() && !IsSpace(text_[end]) && !IsSpecial(text_[end])) ++end;
    return text_.substr(pos_, end - pos_);
  }

  Result<std::string> Word(const std::string& what) {
    if (pos_ == text_.size()) return Fail("expected " + what);
    std::string w = PeekWord();
    if (w.empty()) return Fail("expected " + what + ", got '" + Rest() + "'");
    for (char c : w)
      if (!WordChar(c)) return Fail("'" + w + "' holds '" + std::string(1, c) + "'; paths and values are letters, "
                                    "digits and . _ - / #");
    pos_ += w.size();
    return w;
  }

  void SkipSpace() {
    while (pos_ < text_.size() && IsSpace(text_[pos_])) ++pos_;
  }

  std::string Rest() const { return text_.substr(pos_, 20); }

  tl::unexpected<Status> Fail(const std::string& why) const {
    return Error(Status::InvalidArgument("column " + std::to_string(pos_ + 1) + ": " + why));
  }

  const std::string& text_;
  size_t pos_ = 0;
};

// The value at `path` in `object`; nullopt when there is none.
std::optional<Json> Lookup(const Json& object, const std::string& path) {
  const Json* at = &object;
  size_t start = 0;
  for (;;) {
    size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (at->is_object()) {
      auto it = at->find(part);
      if (it == at->end()) return std::nullopt;
      at = &*it;
    } else if (at->is_array() && part == "#") {
      if (dot != std::string::npos) return std::nullopt;
      return Json(at->size());
    } else if (at->is_array()) {
      auto index = Integer(part);
      if (!index || *index < 0 || static_cast<size_t>(*index) >= at->size()) return std::nullopt;
      at = &(*at)[static_cast<size_t>(*index)];
    } else {
      return std::nullopt;
    }
    if (dot == std::string::npos) return *at;
    start = dot + 1;
  }
}

std::string Text(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "";
  return v.dump();
}

}  // namespace

std::string Requirement::ToString() const {
  auto list = [&] {
    std::string s;
    for (size_t i = 0; i < values.size(); ++i) s += (i ? ", " : "") + values[i];
    return s;
  };
  switch (op) {
    case Op::kEquals: return path + " == " + values.at(0);
    case Op::kNotEquals: return path + " != " + values.at(0);
    case Op::kIn: return path + " in (" + list() + ")";
    case Op::kNotIn: return path + " notin (" + list() + ")";
    case Op::kExists: return path;
    case Op::kNotExists: return "!" + path;
    case Op::kGreater: return path + " > " + values.at(0);
    case Op::kLess: return path + " < " + values.at(0);
  }
  return path;
}

Result<Condition> ParseCondition(const std::string& text) { return Parser(text).Parse(); }

bool Matches(const Requirement& req, const Json& object) {
  const std::optional<Json> v = Lookup(object, req.path);
  auto in = [&](const std::string& s) {
    for (const auto& x : req.values)
      if (x == s) return true;
    return false;
  };
  switch (req.op) {
    case Requirement::Op::kExists: return v.has_value();
    case Requirement::Op::kNotExists: return !v.has_value();
    case Requirement::Op::kEquals:
    case Requirement::Op::kIn: return v && in(Text(*v));
    case Requirement::Op::kNotEquals:
    case Requirement::Op::kNotIn: return !v || !in(Text(*v));
    case Requirement::Op::kGreater:
    case Requirement::Op::kLess: {
      if (!v) return false;
      auto have = Integer(Text(*v));
      auto want = Integer(req.values.at(0));
      if (!have || !want) return false;
      return req.op == Requirement::Op::kGreater ? *have > *want : *have < *want;
    }
  }
  return false;
}

bool MatchesAll(const Condition& condition, const Json& object) {
  for (const auto& r : condition)
    if (!Matches(r, object)) return false;
  return true;
}

const Requirement* FirstMatch(const Condition& condition, const Json& object) {
  for (const auto& r : condition)
    if (Matches(r, object)) return &r;
  return nullptr;
}

}  // namespace sluice::operators::resource
