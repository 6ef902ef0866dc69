#include "engine/expr.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <memory>
#include <optional>

#include "engine/json_text.h"
#include "engine/text.h"

namespace sluice::expr {
namespace {

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

enum class Tok {
  kEnd,
  kIdent,
  kNumber,
  kString,
  kLParen,
  kRParen,
  kLBracket,
  kRBracket,
  kDot,
  kComma,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kAnd,
  kOr,
  kNot,
};

struct Token {
  Tok kind = Tok::kEnd;
  std::string text;  // identifier name, string value or number spelling
  size_t offset = 0; // byte offset in the whole text (template or expression)
};

bool IsIdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
// Names may contain '-' (step names are DNS labels such as "train-model").
// The language has no arithmetic, so '-' is never an operator.
// '/' joins the names of a sub-pipeline's steps to the using step's
// ("steps.eval/score"); the language has no division for it to clash with.
bool IsIdentChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '/';
}

Status SyntaxError(size_t offset, const std::string& message) {
  return Status::InvalidArgument("col " + std::to_string(offset + 1) + ": " + message);
}

// Splits `text[begin, end)` into tokens. Offsets are relative to `text`.
Result<std::vector<Token>> Lex(std::string_view text, size_t begin, size_t end) {
  std::vector<Token> out;
  size_t i = begin;
  while (i < end) {
    char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    Token t;
    t.offset = i;
    // After '.', a name may start with a digit: step names are DNS labels
    // such as "8load", reached as steps.8load.
    const bool member = !out.empty() && out.back().kind == Tok::kDot;
    if (IsIdentStart(c) || (member && std::isalnum(static_cast<unsigned char>(c)))) {
      size_t j = i + 1;
      while (j < end && IsIdentChar(text[j])) ++j;
      // A trailing '-' or '/' is never part of a name ("a-" is a typo, not a name).
      while (j > i + 1 && (text[j - 1] == '-' || text[j - 1] == '/')) --j;
      t.text = std::string(text.substr(i, j - i));
      if (t.text == "and") t.kind = Tok::kAnd;
      else if (t.text == "or") t.kind = Tok::kOr;
      else if (t.text == "not") t.kind = Tok::kNot;
      else t.kind = Tok::kIdent;
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c)) ||
               ((c == '-' || c == '+') && i + 1 < end &&
                (std::isdigit(static_cast<unsigned char>(text[i + 1])) || text[i + 1] == '.')) ||
               (c == '.' && i + 1 < end && std::isdigit(static_cast<unsigned char>(text[i + 1])) &&
                (out.empty() || (out.back().kind != Tok::kIdent && out.back().kind != Tok::kRBracket &&
                                 out.back().kind != Tok::kRParen)))) {
      size_t j = i + 1;
      while (j < end && (std::isdigit(static_cast<unsigned char>(text[j])) || text[j] == '.' ||
                         text[j] == 'e' || text[j] == 'E' ||
                         ((text[j] == '-' || text[j] == '+') && (text[j - 1] == 'e' || text[j - 1] == 'E'))))
        ++j;
      t.kind = Tok::kNumber;
      t.text = std::string(text.substr(i, j - i));
      i = j;
    } else if (c == '\'' || c == '"') {
      size_t j = i + 1;
      std::string value;
      bool closed = false;
      while (j < end) {
        char d = text[j];
        if (d == '\\' && j + 1 < end) {
          char e = text[j + 1];
          switch (e) {
            case 'n': value += '\n'; break;
            case 't': value += '\t'; break;
            default: value += e; break;
          }
          j += 2;
          continue;
        }
        if (d == c) {
          closed = true;
          ++j;
          break;
        }
        value += d;
        ++j;
      }
      if (!closed) return Error(SyntaxError(i, "unterminated string; close it with " + std::string(1, c)));
      t.kind = Tok::kString;
      t.text = std::move(value);
      i = j;
    } else {
      auto two = [&](char second) { return i + 1 < end && text[i + 1] == second; };
      size_t len = 1;
      // `c` alone is `alone`; `c=` is `with_eq`.
      auto pick_eq = [&](Tok alone, Tok with_eq) {
        t.kind = two('=') ? with_eq : alone;
        if (two('=')) len = 2;
      };
      switch (c) {
        case '(': t.kind = Tok::kLParen; break;
        case ')': t.kind = Tok::kRParen; break;
        case '[': t.kind = Tok::kLBracket; break;
        case ']': t.kind = Tok::kRBracket; break;
        case '.': t.kind = Tok::kDot; break;
        case ',': t.kind = Tok::kComma; break;
        case '=':
          if (!two('=')) return Error(SyntaxError(i, "unexpected '='; use '==' to compare"));
          t.kind = Tok::kEq;
          len = 2;
          break;
        case '!': pick_eq(Tok::kNot, Tok::kNe); break;
        case '<': pick_eq(Tok::kLt, Tok::kLe); break;
        case '>': pick_eq(Tok::kGt, Tok::kGe); break;
        case '&':
          if (!two('&')) return Error(SyntaxError(i, "unexpected '&'; use '&&' or 'and'"));
          t.kind = Tok::kAnd;
          len = 2;
          break;
        case '|':
          if (!two('|')) return Error(SyntaxError(i, "unexpected '|'; use '||' or 'or'"));
          t.kind = Tok::kOr;
          len = 2;
          break;
        default:
          return Error(SyntaxError(i, "unexpected character '" + std::string(1, c) + "'"));
      }
      t.text = std::string(text.substr(i, len));
      i += len;
    }
    out.push_back(std::move(t));
  }
  Token e;
  e.kind = Tok::kEnd;
  e.offset = end;
  out.push_back(std::move(e));
  return out;
}

// ---------------------------------------------------------------------------
// Parser: tokens -> AST
// ---------------------------------------------------------------------------

enum class NodeKind { kLiteral, kName, kIndex, kField, kList, kNot, kAnd, kOr, kCompare, kIn, kCall };

struct Node;
using NodePtr = std::unique_ptr<Node>;

struct Node {
  NodeKind kind = NodeKind::kLiteral;
  size_t offset = 0;
  Json literal;                    // kLiteral
  std::vector<std::string> path;   // kName: dotted path; kField: path[0] is the field; kCall: path[0] is the function
  Tok op = Tok::kEnd;              // kCompare
  bool negate = false;             // kIn: "not in"
  size_t height = 1;               // nodes on the longest path down from here, this one included
  std::vector<NodePtr> kids;       // kAnd, kOr: two or more operands, evaluated in order
};

std::string TooDeep(size_t offset) {
  return "col " + std::to_string(offset + 1) + ": the expression nests more than " +
         std::to_string(kMaxExpressionDepth) + " levels deep; simplify it";
}

constexpr const char* kFunctions[] = {"len", "int", "float", "str", "join", "min", "max", "lower", "upper"};

std::string TokName(const Token& t) {
  if (t.kind == Tok::kEnd) return "end of expression";
  if (t.kind == Tok::kString) return "string '" + t.text + "'";
  return "'" + t.text + "'";
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  // Both the parser's recursion and the tree's height (which bounds the
  // recursion of everything that walks it, the destructor included) stay
  // within kMaxExpressionDepth: parentheses, lists, calls, indexes and `not`
  // nest; a chain of && or || is one node.
  Result<NodePtr> ParseAll() {
    if (Peek().kind == Tok::kEnd) return Error(SyntaxError(Peek().offset, "empty expression"));
    auto n = ParseOr();
    if (!n) return n;
    if (Peek().kind != Tok::kEnd)
      return Error(SyntaxError(Peek().offset, "unexpected " + TokName(Peek()) + " after expression"));
    return n;
  }

 private:
  const Token& Peek(size_t k = 0) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  const Token& Next() { return toks_[std::min(pos_++, toks_.size() - 1)]; }

  // Builds a node of `kind` at `offset` that owns `kids`, in order.
  static NodePtr MakeNode(NodeKind kind, size_t offset, std::vector<NodePtr> kids) {
    auto n = std::make_unique<Node>();
    n->kind = kind;
    n->offset = offset;
    for (auto& k : kids) Adopt(*n, std::move(k));
    return n;
  }

  // Appends `kid` to `parent`'s kids, keeping `parent.height`.
  static void Adopt(Node& parent, NodePtr kid) {
    parent.height = std::max(parent.height, kid->height + 1);
    parent.kids.push_back(std::move(kid));
  }

  // An error when `n` is higher than the limit.
  static Status CheckHeight(const Node& n) {
    if (n.height > kMaxExpressionDepth) return Status::InvalidArgument(TooDeep(n.offset));
    return Status::Ok();
  }

  // Counts one level of the parser's recursion while alive.
  class Nest {
   public:
    explicit Nest(Parser* p) : p_(p) { ++p_->depth_; }
    ~Nest() { --p_->depth_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;
    bool too_deep() const { return p_->depth_ > kMaxExpressionDepth; }

   private:
    Parser* p_;
  };

  static std::vector<NodePtr> Kids(NodePtr a, NodePtr b = nullptr) {
    std::vector<NodePtr> kids;
    kids.push_back(std::move(a));
    if (b) kids.push_back(std::move(b));
    return kids;
  }

  // One left-associative level: operand (op operand)*, all operands the
  // kids of one `kind` node (at the first op), so a long chain stays flat.
  Result<NodePtr> ParseLeftAssoc(Tok op, NodeKind kind, Result<NodePtr> (Parser::*operand)()) {
    auto lhs = (this->*operand)();
    if (!lhs) return lhs;
    if (Peek().kind != op) return lhs;
    NodePtr chain = MakeNode(kind, Peek().offset, Kids(std::move(*lhs)));
    while (Peek().kind == op) {
      Next();
      auto rhs = (this->*operand)();
      if (!rhs) return rhs;
      Adopt(*chain, std::move(*rhs));
    }
    SLUICE_RETURN_IF_ERROR_RESULT(CheckHeight(*chain));
    return chain;
  }

  Result<NodePtr> ParseOr() {
    Nest nest(this);
    if (nest.too_deep()) return Error(Status::InvalidArgument(TooDeep(Peek().offset)));
    return ParseLeftAssoc(Tok::kOr, NodeKind::kOr, &Parser::ParseAnd);
  }
  Result<NodePtr> ParseAnd() { return ParseLeftAssoc(Tok::kAnd, NodeKind::kAnd, &Parser::ParseNot); }

  Result<NodePtr> ParseNot() {
    if (Peek().kind == Tok::kNot) {
      Nest nest(this);
      if (nest.too_deep()) return Error(Status::InvalidArgument(TooDeep(Peek().offset)));
      size_t off = Next().offset;
      auto operand = ParseNot();
      if (!operand) return operand;
      NodePtr n = MakeNode(NodeKind::kNot, off, Kids(std::move(*operand)));
      SLUICE_RETURN_IF_ERROR_RESULT(CheckHeight(*n));
      return n;
    }
    return ParseCompare();
  }

  Result<NodePtr> ParseCompare() {
    auto lhs = ParsePostfix();
    if (!lhs) return lhs;
    Tok k = Peek().kind;
    bool is_in = k == Tok::kIdent && Peek().text == "in";
    bool is_not_in = k == Tok::kNot && Peek(1).kind == Tok::kIdent && Peek(1).text == "in";
    if (k == Tok::kEq || k == Tok::kNe || k == Tok::kLt || k == Tok::kLe || k == Tok::kGt || k == Tok::kGe ||
        is_in || is_not_in) {
      size_t off = Next().offset;
      if (is_not_in) Next();
      auto rhs = ParsePostfix();
      if (!rhs) return rhs;
      NodePtr n = MakeNode((is_in || is_not_in) ? NodeKind::kIn : NodeKind::kCompare, off,
                           Kids(std::move(*lhs), std::move(*rhs)));
      SLUICE_RETURN_IF_ERROR_RESULT(CheckHeight(*n));
      n->negate = is_not_in;
      n->op = k;
      Tok after = Peek().kind;
      if (after == Tok::kEq || after == Tok::kNe || after == Tok::kLt || after == Tok::kLe || after == Tok::kGt ||
          after == Tok::kGe)
        return Error(SyntaxError(Peek().offset, "comparisons cannot be chained; combine them with '&&'"));
      return NodePtr(std::move(n));
    }
    return lhs;
  }

  Result<NodePtr> ParsePostfix() {
    auto base = ParsePrimary();
    if (!base) return base;
    NodePtr cur = std::move(*base);
    for (;;) {
      if (Peek().kind == Tok::kDot) {
        Next();
        const Token& f = Peek();
        if (f.kind != Tok::kIdent && f.kind != Tok::kNumber && f.kind != Tok::kAnd && f.kind != Tok::kOr &&
            f.kind != Tok::kNot)
          return Error(SyntaxError(f.offset, "expected a name after '.', got " + TokName(f)));
        Next();
        if (cur->kind == NodeKind::kName && f.kind != Tok::kNumber) {
          cur->path.push_back(f.text);
        } else {
          NodePtr n = MakeNode(NodeKind::kField, f.offset, Kids(std::move(cur)));
          n->path.push_back(f.text);
          cur = std::move(n);
          SLUICE_RETURN_IF_ERROR_RESULT(CheckHeight(*cur));
        }
      } else if (Peek().kind == Tok::kLBracket) {
        size_t off = Next().offset;
        auto idx = ParseOr();
        if (!idx) return idx;
        if (Peek().kind != Tok::kRBracket)
          return Error(SyntaxError(Peek().offset, "expected ']', got " + TokName(Peek())));
        Next();
        cur = MakeNode(NodeKind::kIndex, off, Kids(std::move(cur), std::move(*idx)));
        SLUICE_RETURN_IF_ERROR_RESULT(CheckHeight(*cur));
      } else {
        break;
      }
    }
    return cur;
  }

  // The comma-separated items of a list or a call, up to `close` (the
  // opening token is already read), as the children of `n`. `expected` names
  // what may follow an item, for the error.
  Result<NodePtr> ParseItems(NodePtr n, Tok close, const char* expected) {
    if (Peek().kind == close) {
      Next();
      return n;
    }
    for (;;) {
      auto e = ParseOr();
      if (!e) return e;
      Adopt(*n, std::move(*e));
      if (Peek().kind == Tok::kComma) {
        Next();
        continue;
      }
      if (Peek().kind == close) {
        Next();
        SLUICE_RETURN_IF_ERROR_RESULT(CheckHeight(*n));
        return n;
      }
      return Error(SyntaxError(Peek().offset, std::string("expected ") + expected + ", got " + TokName(Peek())));
    }
  }

  Result<NodePtr> ParsePrimary() {
    const Token& t = Peek();
    auto n = std::make_unique<Node>();
    n->offset = t.offset;
    switch (t.kind) {
      case Tok::kNumber: {
        Next();
        n->kind = NodeKind::kLiteral;
        Json v = Json::parse(t.text[0] == '+' ? t.text.substr(1) : t.text, nullptr, false);
        if (v.is_discarded() || !v.is_number()) {
          // Accept ".5" and "-.5", which JSON does not.
          char* endp = nullptr;
          double d = std::strtod(t.text.c_str(), &endp);
          if (endp != t.text.c_str() + t.text.size())
            return Error(SyntaxError(t.offset, "invalid number '" + t.text + "'"));
          if (!std::isfinite(d))
            return Error(SyntaxError(t.offset, "number '" + t.text + "' is out of range"));
          v = d;
        }
        n->literal = std::move(v);
        return n;
      }
      case Tok::kString:
        Next();
        n->kind = NodeKind::kLiteral;
        n->literal = t.text;
        return n;
      case Tok::kLParen: {
        Next();
        auto inner = ParseOr();
        if (!inner) return inner;
        if (Peek().kind != Tok::kRParen)
          return Error(SyntaxError(Peek().offset, "expected ')', got " + TokName(Peek())));
        Next();
        return inner;
      }
      case Tok::kLBracket: {
        Next();
        n->kind = NodeKind::kList;
        return ParseItems(std::move(n), Tok::kRBracket, "',' or ']' in list");
      }
      case Tok::kIdent: {
        Next();
        if (t.text == "true" || t.text == "false") {
          n->kind = NodeKind::kLiteral;
          n->literal = (t.text == "true");
          return n;
        }
        if (t.text == "null") {
          n->kind = NodeKind::kLiteral;
          return n;
        }
        if (Peek().kind == Tok::kLParen) {
          bool known = false;
          for (const char* f : kFunctions) known = known || t.text == f;
          if (!known) {
            std::string list;
            for (const char* f : kFunctions) list += std::string(list.empty() ? "" : ", ") + f;
            return Error(SyntaxError(t.offset, "unknown function '" + t.text + "'; functions are: " + list));
          }
          Next();
          n->kind = NodeKind::kCall;
          n->path.push_back(t.text);
          return ParseItems(std::move(n), Tok::kRParen, "',' or ')' in call");
        }
        n->kind = NodeKind::kName;
        n->path.push_back(t.text);
        return n;
      }
      default:
        return Error(SyntaxError(t.offset, "expected a value or a name, got " + TokName(t)));
    }
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  size_t depth_ = 0;  // ParseOr and `not` calls in progress
};

Result<NodePtr> ParseRange(std::string_view text, size_t begin, size_t end) {
  auto toks = Lex(text, begin, end);
  if (!toks) return Error(toks.error());
  Parser p(std::move(*toks));
  return p.ParseAll();
}

void CollectReferences(const Node& n, std::vector<Reference>& out) {
  if (n.kind == NodeKind::kName) {
    Reference r;
    r.path = n.path;
    r.offset = n.offset;
    out.push_back(std::move(r));
  }
  for (const auto& k : n.kids) CollectReferences(*k, out);
}

// ---------------------------------------------------------------------------
// Templates: locating {{ ... }} segments
// ---------------------------------------------------------------------------

struct Segment {
  size_t open = 0;   // offset of "{{"
  size_t begin = 0;  // first byte of the expression
  size_t end = 0;    // one past the last byte of the expression
  size_t close = 0;  // one past "}}"
};

Result<std::vector<Segment>> FindSegments(std::string_view text) {
  std::vector<Segment> out;
  size_t i = 0;
  while (true) {
    size_t open = text.find("{{", i);
    if (open == std::string_view::npos) break;
    size_t j = open + 2;
    char quote = 0;
    bool closed = false;
    while (j < text.size()) {
      char c = text[j];
      if (quote) {
        if (c == '\\') {
          j += 2;
          continue;
        }
        if (c == quote) quote = 0;
      } else if (c == '\'' || c == '"') {
        quote = c;
      } else if (c == '}' && j + 1 < text.size() && text[j + 1] == '}') {
        closed = true;
        break;
      }
      ++j;
    }
    if (!closed) return Error(SyntaxError(open, "'{{' is not closed by '}}'"));
    Segment s{open, open + 2, j, j + 2};
    out.push_back(s);
    i = j + 2;
  }
  return out;
}

// True when `text` is exactly one {{ }} segment, surrounding blanks allowed.
bool IsSingleSegment(std::string_view text, const std::vector<Segment>& segs) {
  if (segs.size() != 1) return false;
  return Trim(text.substr(0, segs[0].open)).empty() && Trim(text.substr(segs[0].close)).empty();
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

std::string JoinPath(const std::vector<std::string>& path, size_t n) {
  std::string out;
  for (size_t i = 0; i < n && i < path.size(); ++i) {
    if (i) out += '.';
    out += path[i];
  }
  return out;
}

std::string KeysOf(const Json& obj) {
  std::string out;
  int count = 0;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (count == 10) {
      out += ", ...";
      break;
    }
    if (count++) out += ", ";
    out += it.key();
  }
  return out;
}

std::string TypeName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "bool";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "int";
    case Json::value_t::number_float: return "number";
    case Json::value_t::string: return "string";
    case Json::value_t::array: return "list";
    case Json::value_t::object: return "object";
    default: return "value";
  }
}

Status TypeError(size_t offset, const std::string& message) {
  return Status::InvalidArgument("col " + std::to_string(offset + 1) + ": " + message);
}

// Reads `key` of `v`. A list of objects maps the field over its elements (fan-in).
std::optional<Json> GetField(const Json& v, const std::string& key) {
  if (v.is_object()) {
    auto it = v.find(key);
    if (it == v.end()) return std::nullopt;
    return *it;
  }
  if (v.is_array() && !v.empty() && v.front().is_object()) {
    Json out = Json::array();
    for (const auto& e : v) {
      if (!e.is_object()) return std::nullopt;
      auto it = e.find(key);
      if (it == e.end()) return std::nullopt;
      out.push_back(*it);
    }
    return out;
  }
  return std::nullopt;
}

std::optional<double> AsNumber(const Json& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    std::string_view s = Trim(v.get_ref<const std::string&>());
    if (s.empty()) return std::nullopt;
    std::string str(s);
    char* endp = nullptr;
    double d = std::strtod(str.c_str(), &endp);
    if (endp == str.c_str() + str.size() && std::isfinite(d)) return d;
  }
  return std::nullopt;
}

std::optional<bool> AsBoolText(const Json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    if (s == "true") return true;
    if (s == "false") return false;
  }
  return std::nullopt;
}

// Equality with the coercions that output parameters (read from files as
// text) need: "0.93" == 0.93 and "true" == true.
bool LooseEqual(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
  if (a.type() == b.type()) return a == b;
  if (a.is_number() || b.is_number()) {
    auto x = AsNumber(a), y = AsNumber(b);
    return x && y && *x == *y;
  }
  if (a.is_boolean() || b.is_boolean()) {
    auto x = AsBoolText(a), y = AsBoolText(b);
    return x && y && *x == *y;
  }
  return false;
}

class Evaluator {
 public:
  explicit Evaluator(const Json& scope) : scope_(scope) {}

  Result<Json> Eval(const Node& n) {
    switch (n.kind) {
      case NodeKind::kLiteral: return n.literal;
      case NodeKind::kName: return Lookup(n);
      case NodeKind::kList: {
        Json out = Json::array();
        for (const auto& k : n.kids) {
          auto v = Eval(*k);
          if (!v) return v;
          out.push_back(std::move(*v));
        }
        return out;
      }
      case NodeKind::kField: {
        auto base = Eval(*n.kids[0]);
        if (!base) return base;
        auto f = GetField(*base, n.path[0]);
        if (!f) {
          if (base->is_object())
            return Error(Status::NotFound("col " + std::to_string(n.offset + 1) + ": no field '" + n.path[0] +
                                          "' (fields: " + KeysOf(*base) + ")"));
          return Error(TypeError(n.offset, "cannot read field '" + n.path[0] + "' of a " + TypeName(*base)));
        }
        return *f;
      }
      case NodeKind::kIndex: {
        auto base = Eval(*n.kids[0]);
        if (!base) return base;
        auto idx = Eval(*n.kids[1]);
        if (!idx) return idx;
        if (base->is_array()) {
          if (!idx->is_number_integer())
            return Error(TypeError(n.offset, "a list index must be an integer, got " + TypeName(*idx)));
          int64_t size = static_cast<int64_t>(base->size());
          // An unsigned index above INT64_MAX has no int64_t value; any
          // int64_t plus a list's size cannot overflow.
          bool in_range = !(idx->is_number_unsigned() && idx->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX));
          int64_t i = in_range ? idx->get<int64_t>() : 0;
          if (i < 0) i += size;
          if (!in_range || i < 0 || i >= size)
            return Error(TypeError(n.offset, "index " + JsonText(*idx) + " is out of range (the list has " +
                                                 std::to_string(size) + " items)"));
          return (*base)[static_cast<size_t>(i)];
        }
        if (base->is_object()) {
          if (!idx->is_string())
            return Error(TypeError(n.offset, "an object key must be a string, got " + TypeName(*idx)));
          auto it = base->find(idx->get<std::string>());
          if (it == base->end())
            return Error(Status::NotFound("col " + std::to_string(n.offset + 1) + ": no key '" +
                                          idx->get<std::string>() + "' (keys: " + KeysOf(*base) + ")"));
          return *it;
        }
        return Error(TypeError(n.offset, "cannot index a " + TypeName(*base)));
      }
      case NodeKind::kNot: {
        auto v = Eval(*n.kids[0]);
        if (!v) return v;
        return Json(!IsTruthy(*v));
      }
      case NodeKind::kAnd:
      case NodeKind::kOr: {
        // Short-circuit: && stops at the first false operand, || at the first true one.
        const bool stop_at = n.kind == NodeKind::kOr;
        for (const auto& k : n.kids) {
          auto v = Eval(*k);
          if (!v) return v;
          if (IsTruthy(*v) == stop_at) return Json(stop_at);
        }
        return Json(!stop_at);
      }
      case NodeKind::kIn: {
        auto l = Eval(*n.kids[0]);
        if (!l) return l;
        auto r = Eval(*n.kids[1]);
        if (!r) return r;
        bool found = false;
        if (r->is_array()) {
          for (const auto& e : *r) found = found || LooseEqual(*l, e);
        } else if (r->is_object()) {
          if (!l->is_string()) return Error(TypeError(n.offset, "'in' an object needs a string key"));
          found = r->contains(l->get<std::string>());
        } else if (r->is_string()) {
          if (!l->is_string()) return Error(TypeError(n.offset, "'in' a string needs a string"));
          found = r->get_ref<const std::string&>().find(l->get_ref<const std::string&>()) != std::string::npos;
        } else {
          return Error(TypeError(n.offset, "'in' needs a list, object or string on its right, got " + TypeName(*r)));
        }
        return Json(n.negate ? !found : found);
      }
      case NodeKind::kCompare: {
        auto l = Eval(*n.kids[0]);
        if (!l) return l;
        auto r = Eval(*n.kids[1]);
        if (!r) return r;
        if (n.op == Tok::kEq) return Json(LooseEqual(*l, *r));
        if (n.op == Tok::kNe) return Json(!LooseEqual(*l, *r));
        int cmp = 0;
        if (l->is_string() && r->is_string()) {
          cmp = l->get_ref<const std::string&>().compare(r->get_ref<const std::string&>());
        } else {
          auto x = AsNumber(*l), y = AsNumber(*r);
          if (!x || !y || (!l->is_number() && !r->is_number()))
            return Error(TypeError(n.offset, "cannot order " + TypeName(*l) + " " + JsonText(*l) + " and " +
                                                 TypeName(*r) + " " + JsonText(*r)));
          cmp = *x < *y ? -1 : (*x > *y ? 1 : 0);
        }
        switch (n.op) {
          case Tok::kLt: return Json(cmp < 0);
          case Tok::kLe: return Json(cmp <= 0);
          case Tok::kGt: return Json(cmp > 0);
          case Tok::kGe: return Json(cmp >= 0);
          default: return Error(Status::Internal("bad comparison operator"));
        }
      }
      case NodeKind::kCall: return Call(n);
    }
    return Error(Status::Internal("bad expression node"));
  }

 private:
  Result<Json> Lookup(const Node& n) {
    const Json* cur = &scope_;
    Json holder;  // owns mapped fan-in values
    for (size_t i = 0; i < n.path.size(); ++i) {
      const std::string& key = n.path[i];
      if (cur->is_object()) {
        auto it = cur->find(key);
        if (it != cur->end()) {
          cur = &*it;
          continue;
        }
      } else if (auto f = GetField(*cur, key)) {
        holder = std::move(*f);
        cur = &holder;
        continue;
      }
      std::string msg = "unknown name '" + JoinPath(n.path, n.path.size()) + "'";
      if (i > 0 && cur->is_object())
        msg += " (" + JoinPath(n.path, i) + " has: " + (cur->empty() ? std::string("nothing") : KeysOf(*cur)) + ")";
      else if (i > 0)
        msg += " (" + JoinPath(n.path, i) + " is a " + TypeName(*cur) + ")";
      return Error(Status::NotFound(std::move(msg)));
    }
    if (cur == &holder) return holder;
    return *cur;
  }

  Result<Json> Call(const Node& n) {
    std::vector<Json> args;
    for (const auto& k : n.kids) {
      auto v = Eval(*k);
      if (!v) return v;
      args.push_back(std::move(*v));
    }
    const std::string& fn = n.path[0];
    auto arity = [&](size_t lo, size_t hi) -> Status {
      if (args.size() < lo || args.size() > hi)
        return TypeError(n.offset, fn + "() takes " + std::to_string(lo) +
                                       (hi != lo ? " to " + std::to_string(hi) : "") + " argument(s), got " +
                                       std::to_string(args.size()));
      return Status::Ok();
    };
    if (fn == "len") {
      SLUICE_RETURN_IF_ERROR_RESULT(arity(1, 1));
      if (args[0].is_string()) return Json(args[0].get_ref<const std::string&>().size());
      if (args[0].is_array() || args[0].is_object()) return Json(args[0].size());
      return Error(TypeError(n.offset, "len() needs a list, object or string, got " + TypeName(args[0])));
    }
    if (fn == "int" || fn == "float") {
      SLUICE_RETURN_IF_ERROR_RESULT(arity(1, 1));
      if (fn == "int" && args[0].is_number_integer()) return args[0];
      auto d = AsNumber(args[0]);
      if (!d) return Error(TypeError(n.offset, fn + "() cannot convert " + JsonText(args[0])));
      if (!std::isfinite(*d))
        return Error(TypeError(n.offset, fn + "() cannot convert " + JsonText(args[0]) + ": not a finite number"));
      if (fn == "float") return Json(*d);
      // Casting a double outside int64_t's range is undefined: -2^63 is the
      // least value, 2^63 the first one past the greatest.
      if (!(*d >= -9223372036854775808.0 && *d < 9223372036854775808.0))
        return Error(TypeError(n.offset, "int() cannot convert " + JsonText(args[0]) +
                                             ": out of the 64-bit integer range"));
      return Json(static_cast<int64_t>(*d));
    }
    if (fn == "str") {
      SLUICE_RETURN_IF_ERROR_RESULT(arity(1, 1));
      if (args[0].is_string()) return args[0];
      return Json(JsonText(args[0]));
    }
    if (fn == "lower" || fn == "upper") {
      SLUICE_RETURN_IF_ERROR_RESULT(arity(1, 1));
      if (!args[0].is_string()) return Error(TypeError(n.offset, fn + "() needs a string"));
      std::string s = args[0].get<std::string>();
      for (auto& c : s) c = fn == "lower" ? std::tolower(static_cast<unsigned char>(c))
                                          : std::toupper(static_cast<unsigned char>(c));
      return Json(s);
    }
    if (fn == "join") {
      SLUICE_RETURN_IF_ERROR_RESULT(arity(1, 2));
      if (!args[0].is_array()) return Error(TypeError(n.offset, "join() needs a list"));
      std::string sep = ",";
      if (args.size() == 2) {
        if (!args[1].is_string()) return Error(TypeError(n.offset, "join() separator must be a string"));
        sep = args[1].get<std::string>();
      }
      std::string out;
      bool first = true;
      for (const auto& e : args[0]) {
        if (!first) out += sep;
        first = false;
        out += e.is_string() ? e.get<std::string>() : JsonText(e);
      }
      return Json(out);
    }
    if (fn == "min" || fn == "max") {
      const Json* list = nullptr;
      Json packed = Json::array();
      if (args.size() == 1 && args[0].is_array()) {
        list = &args[0];
      } else {
        for (auto& a : args) packed.push_back(a);
        list = &packed;
      }
      if (list->empty()) return Error(TypeError(n.offset, fn + "() of an empty list"));
      const Json* best = nullptr;
      double best_v = 0;
      for (const auto& e : *list) {
        auto d = AsNumber(e);
        if (!d) return Error(TypeError(n.offset, fn + "() needs numbers, got " + JsonText(e)));
        if (!best || (fn == "min" ? *d < best_v : *d > best_v)) {
          best = &e;
          best_v = *d;
        }
      }
      return best->is_number() ? *best : Json(best_v);
    }
    return Error(TypeError(n.offset, "unknown function '" + fn + "'"));
  }

  const Json& scope_;
};

}  // namespace

std::string Reference::ToString() const {
  std::string out;
  for (size_t i = 0; i < path.size(); ++i) {
    if (i) out += '.';
    out += path[i];
  }
  return out;
}

Result<Json> Evaluate(std::string_view expression, const Json& scope) {
  auto ast = ParseRange(expression, 0, expression.size());
  if (!ast) return Error(ast.error());
  Evaluator ev(scope);
  return ev.Eval(**ast);
}

namespace {

std::string ToText(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  return JsonText(v);
}

}  // namespace

Result<std::string> Render(std::string_view text, const Json& scope) {
  if (text.find("{{") == std::string_view::npos) return std::string(text);
  auto segs = FindSegments(text);
  if (!segs) return Error(segs.error());
  std::string out;
  size_t last = 0;
  Evaluator ev(scope);
  for (const auto& s : *segs) {
    out.append(text.substr(last, s.open - last));
    auto ast = ParseRange(text, s.begin, s.end);
    if (!ast) return Error(ast.error());
    auto v = ev.Eval(**ast);
    if (!v) return Error(v.error());
    out += ToText(*v);
    last = s.close;
  }
  out.append(text.substr(last));
  return out;
}

Result<Json> RenderValue(std::string_view text, const Json& scope) {
  if (text.find("{{") == std::string_view::npos) return Json(std::string(text));
  auto segs = FindSegments(text);
  if (!segs) return Error(segs.error());
  if (IsSingleSegment(text, *segs)) {
    auto ast = ParseRange(text, (*segs)[0].begin, (*segs)[0].end);
    if (!ast) return Error(ast.error());
    Evaluator ev(scope);
    return ev.Eval(**ast);
  }
  auto s = Render(text, scope);
  if (!s) return Error(s.error());
  return Json(std::move(*s));
}

Result<bool> EvaluateCondition(std::string_view text, const Json& scope) {
  if (text.find("{{") == std::string_view::npos) {
    auto v = Evaluate(text, scope);
    if (!v) return Error(v.error());
    return IsTruthy(*v);
  }
  auto segs = FindSegments(text);
  if (!segs) return Error(segs.error());
  if (!IsSingleSegment(text, *segs))
    return Error(SyntaxError((*segs).size() > 1 ? (*segs)[1].open : 0,
                             "a condition must be one expression; combine the parts inside a single {{ }} "
                             "with && or ||"));
  auto ast = ParseRange(text, (*segs)[0].begin, (*segs)[0].end);
  if (!ast) return Error(ast.error());
  Evaluator ev(scope);
  auto v = ev.Eval(**ast);
  if (!v) return Error(v.error());
  return IsTruthy(*v);
}

Result<std::vector<Reference>> References(std::string_view text, bool is_template) {
  std::vector<Reference> out;
  if (!is_template) {
    auto ast = ParseRange(text, 0, text.size());
    if (!ast) return Error(ast.error());
    CollectReferences(**ast, out);
    return out;
  }
  if (text.find("{{") == std::string_view::npos) return out;
  auto segs = FindSegments(text);
  if (!segs) return Error(segs.error());
  for (const auto& s : *segs) {
    auto ast = ParseRange(text, s.begin, s.end);
    if (!ast) return Error(ast.error());
    CollectReferences(**ast, out);
  }
  return out;
}

bool IsTruthy(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: return false;
    case Json::value_t::boolean: return value.get<bool>();
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float: return value.get<double>() != 0.0;
    case Json::value_t::string: {
      const std::string& s = value.get_ref<const std::string&>();
      if (s.empty()) return false;
      if (s.size() == 5) {
        std::string lower = s;
        std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
        if (lower == "false") return false;
      }
      return true;
    }
    case Json::value_t::array:
    case Json::value_t::object: return !value.empty();
    default: return true;
  }
}

}  // namespace sluice::expr
