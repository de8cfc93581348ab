// A Jinja2 subset interpreter for chat templates. Three stages:
//   1. split the source into text / {{ expression }} / {% statement %} pieces,
//      applying whitespace control the way transformers configures jinja2
//      (trim_blocks, lstrip_blocks, and the explicit '-' markers);
//   2. parse statements into a tree and expressions with Jinja's precedence:
//      ternary < or < and < not < comparisons < + - < ~ < * / // % < unary
//      < postfix (.attr, [item], (call), |filter, is test);
//   3. evaluate over JSON values; Jinja's Undefined is a "discarded" JSON value.
#include "runtime/chat_template.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace dsv2 {

using Json = nlohmann::ordered_json;

namespace {

Json undefined() { return Json(Json::value_t::discarded); }
bool is_undefined(const Json& v) { return v.is_discarded(); }

[[noreturn]] void fail(const std::string& what, size_t pos) {
  throw Error("chat template: " + what + " (at character " + std::to_string(pos) + ")");
}

// ---------------------------------------------------------------- stage 1

struct Piece {
  enum Kind { kText, kExpression, kStatement } kind;
  std::string body;
  size_t pos;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::vector<Piece> split_pieces(const std::string& src) {
  std::vector<Piece> pieces;
  size_t i = 0;
  bool strip_next = false, trim_newline = false;
  while (i <= src.size()) {
    size_t open = src.find('{', i);
    while (open != std::string::npos && open + 1 < src.size() && src[open + 1] != '{' && src[open + 1] != '%' && src[open + 1] != '#')
      open = src.find('{', open + 1);
    if (open != std::string::npos && open + 1 >= src.size()) open = std::string::npos;
    std::string text = src.substr(i, (open == std::string::npos ? src.size() : open) - i);
    if (strip_next) {
      size_t k = 0;
      while (k < text.size() && is_space(text[k])) ++k;
      text.erase(0, k);
    } else if (trim_newline) {
      if (text.rfind("\r\n", 0) == 0) text.erase(0, 2);
      else if (!text.empty() && text[0] == '\n') text.erase(0, 1);
    }
    if (open == std::string::npos) {
      if (!text.empty()) pieces.push_back({Piece::kText, text, i});
      break;
    }
    const char kind = src[open + 1];
    const char closer = kind == '{' ? '}' : kind;
    size_t inner = open + 2;
    const bool minus_left = inner < src.size() && src[inner] == '-';
    const bool plus_left = inner < src.size() && src[inner] == '+';
    if (minus_left || plus_left) ++inner;
    if (minus_left) {
      while (!text.empty() && is_space(text.back())) text.pop_back();
    } else if (kind != '{' && !plus_left) {
      // lstrip_blocks: the spaces and tabs between a line start and a block tag go.
      size_t k = open;
      while (k > i && (src[k - 1] == ' ' || src[k - 1] == '\t')) --k;
      if (k == 0 || src[k - 1] == '\n') {
        size_t trailing = 0;
        while (trailing < text.size() && trailing < open - k && (text[text.size() - 1 - trailing] == ' ' || text[text.size() - 1 - trailing] == '\t')) ++trailing;
        text.erase(text.size() - trailing);
      }
    }
    if (!text.empty()) pieces.push_back({Piece::kText, text, i});
    // Find the closing delimiter, skipping string literals inside the tag.
    size_t j = inner;
    char quote = 0;
    for (; j + 1 < src.size(); ++j) {
      if (quote) {
        if (src[j] == '\\') ++j;
        else if (src[j] == quote) quote = 0;
        continue;
      }
      if (kind != '#' && (src[j] == '\'' || src[j] == '"')) quote = src[j];
      else if (src[j] == closer && src[j + 1] == '}') break;
    }
    if (j + 1 >= src.size()) fail(std::string("unclosed '{") + kind + "'", open);
    size_t body_end = j;
    const bool minus_right = body_end > inner && src[body_end - 1] == '-';
    if (minus_right || (body_end > inner && src[body_end - 1] == '+')) --body_end;
    const std::string body = src.substr(inner, body_end - inner);
    if (kind == '{') pieces.push_back({Piece::kExpression, body, open});
    else if (kind == '%') pieces.push_back({Piece::kStatement, body, open});
    strip_next = minus_right;
    trim_newline = kind != '{';  // trim_blocks: one newline after a block tag or comment
    i = j + 2;
  }
  return pieces;
}

// ---------------------------------------------------------------- stage 2: expressions

struct Token {
  enum Kind { kName, kString, kNumber, kOp, kEnd } kind;
  std::string text;
  Json number;
  size_t pos;
};

std::vector<Token> lex(const std::string& s, size_t base) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (is_space(c)) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Token::kName, s.substr(i, j - i), {}, base + i});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      bool is_float = false;
      if (j + 1 < s.size() && s[j] == '.' && std::isdigit(static_cast<unsigned char>(s[j + 1]))) {
        is_float = true;
        ++j;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      }
      const std::string t = s.substr(i, j - i);
      Json value;
      if (is_float) {
        value = std::strtod(t.c_str(), nullptr);  // as Python's float(): too large is inf, not an error
      } else {
        int64_t n = 0;
        const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
        if (ec != std::errc()) fail("integer literal " + t.substr(0, 24) + " does not fit in 64 bits", base + i);
        value = n;
      }
      out.push_back({Token::kNumber, t, value, base + i});
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string v;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] != '\\' || j + 1 >= s.size()) {
          v += s[j];
          continue;
        }
        const char e = s[++j];
        switch (e) {
          case 'n': v += '\n'; break;
          case 't': v += '\t'; break;
          case 'r': v += '\r'; break;
          case '\\': v += '\\'; break;
          case '\'': v += '\''; break;
          case '"': v += '"'; break;
          default: v += '\\', v += e;
        }
      }
      if (j >= s.size()) fail("unterminated string", base + i);
      out.push_back({Token::kString, v, {}, base + i});
      i = j + 1;
    } else {
      static const char* kOps[] = {"**", "//", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ".", ",", ":",
                                   "|", "~", "+", "-", "*", "/", "%", "<", ">", "="};
      bool matched = false;
      for (const char* op : kOps) {
        const size_t n = std::strlen(op);
        if (s.compare(i, n, op) == 0) {
          out.push_back({Token::kOp, op, {}, base + i});
          i += n;
          matched = true;
          break;
        }
      }
      if (!matched) fail(std::string("unexpected character '") + c + "'", base + i);
    }
  }
  out.push_back({Token::kEnd, "", {}, base + s.size()});
  return out;
}

struct Expr {
  enum Kind { kLiteral, kName, kAttr, kItem, kSlice, kCall, kFilter, kTest, kNot, kNeg, kBinary, kTernary, kList, kDict, kAnd, kOr };
  Kind kind;
  Json value;        // literal
  std::string name;  // variable, attribute, filter/test/function name, binary operator
  std::vector<std::unique_ptr<Expr>> args;  // operands; for calls/filters/tests: target first (if any), then positional args
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs;
  bool negated = false;  // "is not"
  size_t pos = 0;
};
using ExprPtr = std::unique_ptr<Expr>;

ExprPtr make(Expr::Kind kind, size_t pos) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->pos = pos;
  return e;
}

class ExprParser {
 public:
  ExprParser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  ExprPtr parse_expression() {
    // Nesting is bounded so that a hostile template cannot exhaust the stack.
    if (++depth_ > 64) fail("expression nested too deeply", peek().pos);
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth_};
    ExprPtr e = parse_or();
    if (is_name("if")) {
      const size_t pos = next().pos;
      auto t = make(Expr::kTernary, pos);
      ExprPtr cond = parse_or();
      ExprPtr otherwise;
      if (is_name("else")) {
        next();
        otherwise = parse_expression();
      } else {
        otherwise = make(Expr::kLiteral, pos);
        otherwise->value = undefined();
      }
      t->args.push_back(std::move(cond));
      t->args.push_back(std::move(e));
      t->args.push_back(std::move(otherwise));
      return t;
    }
    return e;
  }

  const Token& peek() const { return t_[i_]; }
  const Token& next() { return t_[i_ < t_.size() - 1 ? i_++ : i_]; }
  bool is_op(const char* op) const { return peek().kind == Token::kOp && peek().text == op; }
  bool is_name(const char* n) const { return peek().kind == Token::kName && peek().text == n; }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(std::string("expected '") + op + "'", peek().pos);
    next();
  }
  std::string expect_name() {
    if (peek().kind != Token::kName) fail("expected a name", peek().pos);
    return next().text;
  }
  bool at_end() const { return peek().kind == Token::kEnd; }
  void expect_end() {
    if (!at_end()) fail("unexpected '" + peek().text + "'", peek().pos);
  }

 private:
  ExprPtr binary(Expr::Kind kind, const std::string& op, ExprPtr a, ExprPtr b, size_t pos) {
    auto e = make(kind, pos);
    e->name = op;
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }
  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      const size_t pos = next().pos;
      e = binary(Expr::kOr, "or", std::move(e), parse_and(), pos);
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      const size_t pos = next().pos;
      e = binary(Expr::kAnd, "and", std::move(e), parse_not(), pos);
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      if (++depth_ > 64) fail("expression nested too deeply", peek().pos);
      auto e = make(Expr::kNot, next().pos);
      e->args.push_back(parse_not());
      --depth_;
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr e = parse_add();
    while (true) {
      const size_t pos = peek().pos;
      std::string op;
      if (peek().kind == Token::kOp && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                        peek().text == ">" || peek().text == "<=" || peek().text == ">=")) {
        op = next().text;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && i_ + 1 < t_.size() && t_[i_ + 1].kind == Token::kName && t_[i_ + 1].text == "in") {
        next(), next();
        op = "not in";
      } else {
        return e;
      }
      e = binary(Expr::kBinary, op, std::move(e), parse_add(), pos);
    }
  }
  ExprPtr parse_add() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      e = binary(Expr::kBinary, t.text, std::move(e), parse_concat(), t.pos);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_mul();
    while (is_op("~")) {
      const size_t pos = next().pos;
      e = binary(Expr::kBinary, "~", std::move(e), parse_mul(), pos);
    }
    return e;
  }
  ExprPtr parse_mul() {
    ExprPtr e = parse_unary();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      e = binary(Expr::kBinary, t.text, std::move(e), parse_unary(), t.pos);
    }
    return e;
  }
  ExprPtr parse_unary() {
    if (is_op("-")) {
      if (++depth_ > 64) fail("expression nested too deeply", peek().pos);
      auto e = make(Expr::kNeg, next().pos);
      e->args.push_back(parse_unary());
      --depth_;
      return e;
    }
    if (is_op("+")) next();
    return parse_postfix(parse_primary());
  }
  void parse_call_args(Expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().kind == Token::kName && t_[i_ + 1].kind == Token::kOp && t_[i_ + 1].text == "=") {
        std::string key = next().text;
        next();
        call.kwargs.emplace_back(std::move(key), parse_expression());
      } else {
        call.args.push_back(parse_expression());
      }
      if (!is_op(")")) expect_op(",");
    }
    next();
  }
  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        const size_t pos = next().pos;
        auto a = make(Expr::kAttr, pos);
        a->name = expect_name();
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (is_op("[")) {
        const size_t pos = next().pos;
        ExprPtr lo, hi;
        if (!is_op(":")) lo = parse_expression();
        if (is_op(":")) {
          next();
          if (!is_op("]")) hi = parse_expression();
          auto s = make(Expr::kSlice, pos);
          s->args.push_back(std::move(e));
          s->args.push_back(std::move(lo));
          s->args.push_back(std::move(hi));
          e = std::move(s);
        } else {
          auto item = make(Expr::kItem, pos);
          item->args.push_back(std::move(e));
          item->args.push_back(std::move(lo));
          e = std::move(item);
        }
        expect_op("]");
      } else if (is_op("(")) {
        auto call = make(Expr::kCall, peek().pos);
        call->args.push_back(std::move(e));
        parse_call_args(*call);
        e = std::move(call);
      } else if (is_op("|")) {
        auto f = make(Expr::kFilter, next().pos);
        f->name = expect_name();
        f->args.push_back(std::move(e));
        if (is_op("(")) parse_call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        auto t = make(Expr::kTest, next().pos);
        if (is_name("not")) {
          next();
          t->negated = true;
        }
        t->name = expect_name();
        t->args.push_back(std::move(e));
        if (is_op("(")) parse_call_args(*t);
        else if (peek().kind == Token::kString || peek().kind == Token::kNumber) t->args.push_back(parse_primary());
        e = std::move(t);
      } else {
        return e;
      }
    }
  }
  ExprPtr parse_primary() {
    const Token& t = next();
    if (t.kind == Token::kString) {
      auto e = make(Expr::kLiteral, t.pos);
      std::string s = t.text;
      while (peek().kind == Token::kString) s += next().text;  // "a" "b" is "ab"
      e->value = s;
      return e;
    }
    if (t.kind == Token::kNumber) {
      auto e = make(Expr::kLiteral, t.pos);
      e->value = t.number;
      return e;
    }
    if (t.kind == Token::kName) {
      auto e = make(Expr::kLiteral, t.pos);
      if (t.text == "true" || t.text == "True") e->value = true;
      else if (t.text == "false" || t.text == "False") e->value = false;
      else if (t.text == "none" || t.text == "None") e->value = nullptr;
      else {
        e->kind = Expr::kName;
        e->name = t.text;
      }
      return e;
    }
    if (t.kind == Token::kOp && t.text == "(") {
      ExprPtr e = parse_expression();
      if (is_op(",")) {  // a tuple: treated as a list
        auto list = make(Expr::kList, t.pos);
        list->args.push_back(std::move(e));
        while (is_op(",")) {
          next();
          if (is_op(")")) break;
          list->args.push_back(parse_expression());
        }
        e = std::move(list);
      }
      expect_op(")");
      return e;
    }
    if (t.kind == Token::kOp && t.text == "[") {
      auto list = make(Expr::kList, t.pos);
      while (!is_op("]")) {
        list->args.push_back(parse_expression());
        if (!is_op("]")) expect_op(",");
      }
      next();
      return list;
    }
    if (t.kind == Token::kOp && t.text == "{") {
      auto dict = make(Expr::kDict, t.pos);
      while (!is_op("}")) {
        dict->args.push_back(parse_expression());
        expect_op(":");
        dict->args.push_back(parse_expression());
        if (!is_op("}")) expect_op(",");
      }
      next();
      return dict;
    }
    fail(t.kind == Token::kEnd ? "unexpected end of expression" : "unexpected '" + t.text + "'", t.pos);
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

// ---------------------------------------------------------------- stage 2: statements

struct ChatTemplate::Node {
  enum Kind { kText, kOutput, kIf, kFor, kSet } kind;
  std::string text;                          // text
  ExprPtr expr;                              // output, for's iterable, set's value
  std::vector<std::pair<ExprPtr, std::vector<std::unique_ptr<Node>>>> branches;  // if / elif
  std::vector<std::unique_ptr<Node>> body, otherwise;                          // for body, else bodies
  std::vector<std::string> names;            // for: loop variables; set: target [, attribute]
  ExprPtr filter;                            // for x in xs if filter
};

namespace {

using NodePtr = std::unique_ptr<ChatTemplate::Node>;
using Node = ChatTemplate::Node;

class StatementParser {
 public:
  explicit StatementParser(const std::vector<Piece>& pieces) : p_(pieces) {}

  // Parses until one of `ends` (returned, with its parser positioned after the
  // keyword) or the end of the template ("" returned).
  std::string parse_block(std::vector<NodePtr>& out, const std::vector<std::string>& ends, ExprParser** tail) {
    if (++depth_ > 64) fail("blocks nested too deeply", i_ < p_.size() ? p_[i_].pos : 0);
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth_};
    while (i_ < p_.size()) {
      const Piece& piece = p_[i_++];
      if (piece.kind == Piece::kText) {
        auto n = std::make_unique<Node>();
        n->kind = Node::kText;
        n->text = piece.body;
        out.push_back(std::move(n));
        continue;
      }
      parsers_.push_back(std::make_unique<ExprParser>(lex(piece.body, piece.pos)));
      ExprParser& ep = *parsers_.back();
      if (piece.kind == Piece::kExpression) {
        auto n = std::make_unique<Node>();
        n->kind = Node::kOutput;
        n->expr = ep.parse_expression();
        ep.expect_end();
        out.push_back(std::move(n));
        continue;
      }
      const std::string keyword = ep.expect_name();
      for (const auto& end : ends)
        if (keyword == end) {
          *tail = &ep;
          return keyword;
        }
      if (keyword == "if") out.push_back(parse_if(ep));
      else if (keyword == "for") out.push_back(parse_for(ep));
      else if (keyword == "set") out.push_back(parse_set(ep));
      else fail("unsupported or unexpected statement '" + keyword + "'", piece.pos);
    }
    if (!ends.empty()) fail("missing {% " + ends.back() + " %}", p_.empty() ? 0 : p_.back().pos);
    return "";
  }

 private:
  NodePtr parse_if(ExprParser& ep) {
    auto n = std::make_unique<Node>();
    n->kind = Node::kIf;
    ExprPtr cond = ep.parse_expression();
    ep.expect_end();
    while (true) {
      std::vector<NodePtr> body;
      ExprParser* tail = nullptr;
      const std::string end = parse_block(body, {"elif", "else", "endif"}, &tail);
      n->branches.emplace_back(std::move(cond), std::move(body));
      if (end == "endif") {
        tail->expect_end();
        return n;
      }
      if (end == "else") {
        tail->expect_end();
        tail = nullptr;
        parse_block(n->otherwise, {"endif"}, &tail);
        tail->expect_end();
        return n;
      }
      cond = tail->parse_expression();  // elif
      tail->expect_end();
    }
  }
  NodePtr parse_for(ExprParser& ep) {
    auto n = std::make_unique<Node>();
    n->kind = Node::kFor;
    n->names.push_back(ep.expect_name());
    while (ep.is_op(",")) {
      ep.next();
      n->names.push_back(ep.expect_name());
    }
    if (!ep.is_name("in")) fail("expected 'in' in for", ep.peek().pos);
    ep.next();
    n->expr = ep.parse_expression();
    // "for x in xs if cond": parse_expression took "if" as a ternary; undo that.
    if (n->expr->kind == Expr::kTernary && n->expr->args[2]->kind == Expr::kLiteral && is_undefined(n->expr->args[2]->value)) {
      n->filter = std::move(n->expr->args[0]);
      n->expr = std::move(n->expr->args[1]);
    }
    ep.expect_end();
    ExprParser* tail = nullptr;
    if (parse_block(n->body, {"else", "endfor"}, &tail) == "else") {
      tail->expect_end();
      parse_block(n->otherwise, {"endfor"}, &tail);
    }
    tail->expect_end();
    return n;
  }
  NodePtr parse_set(ExprParser& ep) {
    auto n = std::make_unique<Node>();
    n->kind = Node::kSet;
    n->names.push_back(ep.expect_name());
    if (ep.is_op(".")) {
      ep.next();
      n->names.push_back(ep.expect_name());
    }
    ep.expect_op("=");
    n->expr = ep.parse_expression();
    ep.expect_end();
    return n;
  }

  const std::vector<Piece>& p_;
  size_t i_ = 0;
  int depth_ = 0;
  std::vector<std::unique_ptr<ExprParser>> parsers_;
};

// ---------------------------------------------------------------- stage 3: evaluation

bool truthy(const Json& v) {
  if (is_undefined(v) || v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_integer()) return v.get<int64_t>() != 0;
  if (v.is_number()) return v.get<double>() != 0.0;
  if (v.is_string() || v.is_array() || v.is_object()) return !v.empty();
  return true;
}

// Python's str() of a value, as {{ }} prints it.
std::string to_text(const Json& v) {
  if (is_undefined(v)) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "None";
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) {
    const double d = v.get<double>();
    if (d == std::floor(d) && std::fabs(d) < 1e16) return std::to_string(static_cast<int64_t>(d)) + ".0";
    std::ostringstream s;
    s.precision(17);
    s << d;
    return s.str();
  }
  if (v.is_array()) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + (v[i].is_string() ? "'" + v[i].get<std::string>() + "'" : to_text(v[i]));
    return s + "]";
  }
  std::string s = "{";
  bool first = true;
  for (auto it = v.begin(); it != v.end(); ++it, first = false)
    s += (first ? "'" : ", '") + it.key() + "': " + (it->is_string() ? "'" + it->get<std::string>() + "'" : to_text(*it));
  return s + "}";
}

std::string strip(const std::string& s, const std::string& chars, bool left, bool right) {
  size_t a = 0, b = s.size();
  if (left) while (a < b && chars.find(s[a]) != std::string::npos) ++a;
  if (right) while (b > a && chars.find(s[b - 1]) != std::string::npos) --b;
  return s.substr(a, b - a);
}

// json.dumps(x, ensure_ascii=False) with Python's default separators ", " and ": ".
std::string python_json(const Json& v) {
  if (v.is_array()) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + python_json(v[i]);
    return s + "]";
  }
  if (v.is_object()) {
    std::string s = "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it, first = false) s += (first ? "" : ", ") + Json(it.key()).dump(-1, ' ', false, Json::error_handler_t::replace) + ": " + python_json(*it);
    return s + "}";
  }
  return v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Python indexes strings by code point, not byte.
std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + n > s.size()) n = 1;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

const std::string kWhitespace = " \t\n\r\f\v";

class Evaluator {
 public:
  explicit Evaluator(const Json& globals) { scopes_.push_back({}); for (auto it = globals.begin(); it != globals.end(); ++it) scopes_[0][it.key()] = *it; }

  void run(const std::vector<NodePtr>& nodes) {
    for (const auto& n : nodes) exec(*n);
  }
  std::string& out() { return out_; }

 private:
  Json* lookup(const std::string& name) {
    for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s) {
      auto it = s->find(name);
      if (it != s->end()) return &it->second;
    }
    return nullptr;
  }

  void exec(const Node& n) {
    switch (n.kind) {
      case Node::kText: out_ += n.text; break;
      case Node::kOutput: out_ += to_text(eval(*n.expr)); break;
      case Node::kIf:
        for (const auto& [cond, body] : n.branches)
          if (truthy(eval(*cond))) return run(body);
        run(n.otherwise);
        break;
      case Node::kSet: {
        Json value = eval(*n.expr);
        if (n.names.size() == 1) {
          scopes_.back()[n.names[0]] = std::move(value);
        } else {
          Json* target = lookup(n.names[0]);
          if (!target || !target->is_object()) fail("cannot set attribute of '" + n.names[0] + "' (not a namespace)", n.expr->pos);
          (*target)[n.names[1]] = std::move(value);
        }
        break;
      }
      case Node::kFor: {
        const Json seq = eval(*n.expr);
        std::vector<Json> items;
        if (seq.is_array()) {
          for (const auto& x : seq) items.push_back(x);
        } else if (seq.is_object()) {
          for (auto it = seq.begin(); it != seq.end(); ++it) items.push_back(it.key());
        } else if (seq.is_string()) {
          for (char c : seq.get<std::string>()) items.push_back(std::string(1, c));
        } else if (!is_undefined(seq) && !seq.is_null()) {
          fail("cannot iterate over " + to_text(seq), n.expr->pos);
        }
        std::vector<Json> kept;
        for (auto& item : items) {
          if (n.filter) {
            scopes_.push_back({});
            bind(n, item);
            const bool keep = truthy(eval(*n.filter));
            scopes_.pop_back();
            if (!keep) continue;
          }
          kept.push_back(std::move(item));
        }
        if (kept.empty()) return run(n.otherwise);
        for (size_t i = 0; i < kept.size(); ++i) {
          scopes_.push_back({});
          bind(n, kept[i]);
          const int64_t len = static_cast<int64_t>(kept.size()), k = static_cast<int64_t>(i);
          scopes_.back()["loop"] = Json{{"index0", k}, {"index", k + 1}, {"revindex", len - k}, {"revindex0", len - k - 1},
                                        {"first", i == 0}, {"last", i + 1 == kept.size()}, {"length", len},
                                        {"previtem", i > 0 ? kept[i - 1] : undefined()},
                                        {"nextitem", i + 1 < kept.size() ? kept[i + 1] : undefined()}};
          run(n.body);
          scopes_.pop_back();
        }
        break;
      }
    }
  }

  void bind(const Node& n, const Json& item) {
    if (n.names.size() == 1) {
      scopes_.back()[n.names[0]] = item;
      return;
    }
    if (!item.is_array() || item.size() != n.names.size()) fail("cannot unpack a loop item into " + std::to_string(n.names.size()) + " names", n.expr->pos);
    for (size_t i = 0; i < n.names.size(); ++i) scopes_.back()[n.names[i]] = item[i];
  }

  Json item_of(const Json& target, const Json& key) {
    if (target.is_object() && key.is_string()) {
      auto it = target.find(key.get<std::string>());
      return it == target.end() ? undefined() : *it;
    }
    if ((target.is_array() || target.is_string()) && key.is_number_integer()) {
      const std::vector<std::string> chars = target.is_string() ? code_points(target.get<std::string>()) : std::vector<std::string>();
      const int64_t n = target.is_array() ? static_cast<int64_t>(target.size()) : static_cast<int64_t>(chars.size());
      int64_t i = key.get<int64_t>();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return undefined();
      return target.is_array() ? target[static_cast<size_t>(i)] : Json(chars[static_cast<size_t>(i)]);
    }
    return undefined();
  }

  Json call_method(const Json& self, const std::string& name, const std::vector<Json>& a, size_t pos) {
    auto arg_text = [&](size_t i, const std::string& fallback) { return i < a.size() && a[i].is_string() ? a[i].get<std::string>() : fallback; };
    if (self.is_string()) {
      const std::string s = self.get<std::string>();
      if (name == "strip") return strip(s, arg_text(0, kWhitespace), true, true);
      if (name == "lstrip") return strip(s, arg_text(0, kWhitespace), true, false);
      if (name == "rstrip") return strip(s, arg_text(0, kWhitespace), false, true);
      if (name == "lower" || name == "upper") {
        std::string r = s;
        for (char& c : r) c = static_cast<char>(name == "lower" ? std::tolower(static_cast<unsigned char>(c)) : std::toupper(static_cast<unsigned char>(c)));
        return r;
      }
      if (name == "startswith") return s.rfind(arg_text(0, ""), 0) == 0;
      if (name == "endswith") {
        const std::string x = arg_text(0, "");
        return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
      }
      if (name == "replace") {
        const std::string from = arg_text(0, ""), to = arg_text(1, "");
        if (from.empty()) return s;
        std::string r;
        size_t i = 0, j;
        while ((j = s.find(from, i)) != std::string::npos) r += s.substr(i, j - i) + to, i = j + from.size();
        return r + s.substr(i);
      }
      if (name == "split") {
        Json parts = Json::array();
        if (a.empty() || a[0].is_null()) {
          std::istringstream in(s);
          std::string w;
          while (in >> w) parts.push_back(w);
          return parts;
        }
        const std::string sep = arg_text(0, " ");
        if (sep.empty()) fail("split: empty separator", pos);
        size_t i = 0, j;
        while ((j = s.find(sep, i)) != std::string::npos) parts.push_back(s.substr(i, j - i)), i = j + sep.size();
        parts.push_back(s.substr(i));
        return parts;
      }
    }
    if (self.is_object()) {
      if (name == "items") {
        Json r = Json::array();
        for (auto it = self.begin(); it != self.end(); ++it) r.push_back(Json::array({it.key(), *it}));
        return r;
      }
      if (name == "keys" || name == "values") {
        Json r = Json::array();
        for (auto it = self.begin(); it != self.end(); ++it) r.push_back(name == "keys" ? Json(it.key()) : *it);
        return r;
      }
      if (name == "get") {
        const Json v = a.empty() ? undefined() : item_of(self, a[0]);
        return is_undefined(v) ? (a.size() > 1 ? a[1] : Json(nullptr)) : v;
      }
    }
    fail("unsupported method '" + name + "' on " + (self.is_string() ? "a string" : self.is_object() ? "a mapping" : "this value"), pos);
  }

  Json filter(const std::string& name, const Json& v, const std::vector<Json>& a, size_t pos) {
    if (name == "trim") return strip(to_text(v), kWhitespace, true, true);
    if (name == "length" || name == "count") {
      if (v.is_string()) return static_cast<int64_t>(code_points(v.get<std::string>()).size());
      if (v.is_array() || v.is_object()) return static_cast<int64_t>(v.size());
      fail("length of a value without one", pos);
    }
    if (name == "string") return to_text(v);
    if (name == "tojson") {
      if (is_undefined(v)) fail("tojson of an undefined value", pos);
      return python_json(v);  // transformers' tojson: json.dumps(x, ensure_ascii=False)
    }
    if (name == "upper" || name == "lower") return call_method(to_text(v), name, {}, pos);
    if (name == "default" || name == "d") return is_undefined(v) ? (a.empty() ? Json("") : a[0]) : v;
    if (name == "first") return v.is_array() && !v.empty() ? v.front() : undefined();
    if (name == "last") return v.is_array() && !v.empty() ? v.back() : undefined();
    if (name == "list") return v.is_array() ? v : Json::array();
    if (name == "int") return v.is_number() ? Json(static_cast<int64_t>(v.get<double>())) : Json(0);
    if (name == "join") {
      std::string sep = a.empty() ? "" : to_text(a[0]), r;
      if (v.is_array())
        for (size_t i = 0; i < v.size(); ++i) r += (i ? sep : "") + to_text(v[i]);
      return r;
    }
    fail("unsupported filter '" + name + "'", pos);
  }

  bool test(const std::string& name, const Json& v, const std::vector<Json>& a, size_t pos) {
    if (name == "defined") return !is_undefined(v);
    if (name == "undefined") return is_undefined(v);
    if (name == "none") return v.is_null();
    if (name == "string") return v.is_string();
    if (name == "number") return v.is_number();
    if (name == "integer") return v.is_number_integer();
    if (name == "boolean") return v.is_boolean();
    if (name == "mapping") return v.is_object();
    if (name == "sequence" || name == "iterable") return v.is_array() || v.is_string() || v.is_object();
    if (name == "true") return v.is_boolean() && v.get<bool>();
    if (name == "false") return v.is_boolean() && !v.get<bool>();
    if (name == "even" || name == "odd") return v.is_number_integer() && (v.get<int64_t>() % 2 == 0) == (name == "even");
    if (name == "equalto" || name == "eq") return !a.empty() && v == a[0];
    fail("unsupported test '" + name + "'", pos);
  }

  Json binary(const std::string& op, const Json& x, const Json& y, size_t pos) {
    if (op == "==") return x == y;
    if (op == "!=") return x != y;
    if (op == "in" || op == "not in") {
      bool found = false;
      if (y.is_string() && x.is_string()) found = y.get<std::string>().find(x.get<std::string>()) != std::string::npos;
      else if (y.is_array()) for (const auto& e : y) found = found || e == x;
      else if (y.is_object() && x.is_string()) found = y.contains(x.get<std::string>());
      else if (!is_undefined(y) && !y.is_null()) fail("'in' needs a string, list or mapping on the right", pos);
      else fail("'in' on an undefined value", pos);
      return op == "in" ? found : !found;
    }
    if (op == "~") return to_text(x) + to_text(y);
    if (is_undefined(x) || is_undefined(y)) fail("'" + op + "' with an undefined operand", pos);
    if (op == "+") {
      if (x.is_string() && y.is_string()) return x.get<std::string>() + y.get<std::string>();
      if (x.is_array() && y.is_array()) {
        Json r = x;
        for (const auto& e : y) r.push_back(e);
        return r;
      }
    }
    if (x.is_number() && y.is_number()) {
      const bool ints = x.is_number_integer() && y.is_number_integer();
      const double a = x.get<double>(), b = y.get<double>();
      if (op == "<") return a < b;
      if (op == ">") return a > b;
      if (op == "<=") return a <= b;
      if (op == ">=") return a >= b;
      if (op == "+") return ints ? Json(x.get<int64_t>() + y.get<int64_t>()) : Json(a + b);
      if (op == "-") return ints ? Json(x.get<int64_t>() - y.get<int64_t>()) : Json(a - b);
      if (op == "*") return ints ? Json(x.get<int64_t>() * y.get<int64_t>()) : Json(a * b);
      if (b == 0.0 && (op == "/" || op == "//" || op == "%")) fail("division by zero", pos);
      if (op == "/") return a / b;
      if (op == "//") return ints ? Json(static_cast<int64_t>(std::floor(a / b))) : Json(std::floor(a / b));
      if (op == "%") {
        if (ints) {
          const int64_t m = x.get<int64_t>() % y.get<int64_t>();
          return (m != 0 && ((m < 0) != (y.get<int64_t>() < 0))) ? m + y.get<int64_t>() : m;
        }
        return a - b * std::floor(a / b);
      }
    }
    if (x.is_string() && y.is_string() && (op == "<" || op == ">" || op == "<=" || op == ">=")) {
      const int c = x.get<std::string>().compare(y.get<std::string>());
      return op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
    }
    if (op == "*" && x.is_string() && y.is_number_integer()) {
      std::string r;
      for (int64_t i = 0; i < y.get<int64_t>(); ++i) r += x.get<std::string>();
      return r;
    }
    fail("unsupported operands for '" + op + "'", pos);
  }

  std::vector<Json> eval_args(const Expr& e, size_t first) {
    std::vector<Json> out;
    for (size_t i = first; i < e.args.size(); ++i) out.push_back(eval(*e.args[i]));
    return out;
  }

  Json eval(const Expr& e) {
    switch (e.kind) {
      case Expr::kLiteral: return e.value;
      case Expr::kName: {
        const Json* v = lookup(e.name);
        return v ? *v : undefined();
      }
      case Expr::kAttr: {
        const Json target = eval(*e.args[0]);
        return item_of(target, e.name);
      }
      case Expr::kItem: return item_of(eval(*e.args[0]), eval(*e.args[1]));
      case Expr::kSlice: {
        const Json target = eval(*e.args[0]);
        if (!target.is_array() && !target.is_string()) fail("slice of a value that is not a list or string", e.pos);
        const std::vector<std::string> chars = target.is_string() ? code_points(target.get<std::string>()) : std::vector<std::string>();
        const int64_t n = target.is_array() ? static_cast<int64_t>(target.size()) : static_cast<int64_t>(chars.size());
        auto bound = [&](const ExprPtr& x, int64_t fallback) {
          if (!x) return fallback;
          const Json v = eval(*x);
          if (!v.is_number_integer()) fail("slice bounds must be integers", e.pos);
          int64_t i = v.get<int64_t>();
          if (i < 0) i += n;
          return std::clamp<int64_t>(i, 0, n);
        };
        const int64_t lo = bound(e.args[1], 0), hi = std::max(lo, bound(e.args[2], n));
        if (target.is_string()) {
          std::string r;
          for (int64_t i = lo; i < hi; ++i) r += chars[static_cast<size_t>(i)];
          return r;
        }
        Json r = Json::array();
        for (int64_t i = lo; i < hi; ++i) r.push_back(target[static_cast<size_t>(i)]);
        return r;
      }
      case Expr::kCall: {
        const Expr& callee = *e.args[0];
        const std::vector<Json> a = eval_args(e, 1);
        if (callee.kind == Expr::kAttr) return call_method(eval(*callee.args[0]), callee.name, a, e.pos);
        if (callee.kind == Expr::kName && callee.name == "namespace") {
          Json ns = Json::object();
          for (const auto& [k, v] : e.kwargs) ns[k] = eval(*v);
          return ns;
        }
        if (callee.kind == Expr::kName && callee.name == "raise_exception")
          throw Error("chat template: " + (a.empty() ? std::string("raise_exception") : to_text(a[0])));
        if (callee.kind == Expr::kName && callee.name == "range") {
          Json r = Json::array();
          int64_t lo = 0, hi = 0;
          if (a.size() == 1 && a[0].is_number_integer()) hi = a[0].get<int64_t>();
          else if (a.size() == 2 && a[0].is_number_integer() && a[1].is_number_integer()) lo = a[0].get<int64_t>(), hi = a[1].get<int64_t>();
          else fail("range() takes one or two integers", e.pos);
          for (int64_t i = lo; i < hi; ++i) r.push_back(i);
          return r;
        }
        fail("unsupported function call", e.pos);
      }
      case Expr::kFilter: return filter(e.name, eval(*e.args[0]), eval_args(e, 1), e.pos);
      case Expr::kTest: return test(e.name, eval(*e.args[0]), eval_args(e, 1), e.pos) != e.negated;
      case Expr::kNot: return !truthy(eval(*e.args[0]));
      case Expr::kNeg: {
        const Json v = eval(*e.args[0]);
        if (v.is_number_integer()) return -v.get<int64_t>();
        if (v.is_number()) return -v.get<double>();
        fail("unary '-' on a value that is not a number", e.pos);
      }
      case Expr::kAnd: {
        Json x = eval(*e.args[0]);
        return truthy(x) ? eval(*e.args[1]) : x;
      }
      case Expr::kOr: {
        Json x = eval(*e.args[0]);
        return truthy(x) ? x : eval(*e.args[1]);
      }
      case Expr::kBinary: return binary(e.name, eval(*e.args[0]), eval(*e.args[1]), e.pos);
      case Expr::kTernary: return truthy(eval(*e.args[0])) ? eval(*e.args[1]) : eval(*e.args[2]);
      case Expr::kList: {
        Json r = Json::array();
        for (const auto& x : e.args) r.push_back(eval(*x));
        return r;
      }
      case Expr::kDict: {
        Json r = Json::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) r[to_text(eval(*e.args[i]))] = eval(*e.args[i + 1]);
        return r;
      }
    }
    return undefined();
  }

  std::vector<std::map<std::string, Json>> scopes_;
  std::string out_;
};

}  // namespace

ChatTemplate::ChatTemplate(const std::string& source) {
  // jinja2 drops one trailing newline of the source (keep_trailing_newline=False).
  std::string text = source;
  if (text.size() >= 2 && text.compare(text.size() - 2, 2, "\r\n") == 0) text.resize(text.size() - 2);
  else if (!text.empty() && text.back() == '\n') text.pop_back();
  const std::vector<Piece> pieces = split_pieces(text);
  StatementParser parser(pieces);
  ExprParser* tail = nullptr;
  parser.parse_block(nodes_, {}, &tail);
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::ordered_json& variables) const {
  Evaluator ev(variables);
  ev.run(nodes_);
  return std::move(ev.out());
}

std::string ChatTemplate::render_chat(const std::vector<ChatMessage>& messages, const std::string& bos_token,
                                      const std::string& eos_token, bool add_generation_prompt) const {
  Json vars = {{"messages", Json::array()}, {"add_generation_prompt", add_generation_prompt},
               {"bos_token", bos_token}, {"eos_token", eos_token}};
  for (const auto& m : messages) vars["messages"].push_back({{"role", m.role}, {"content", m.content}});
  return render(vars);
}

ChatRenderer make_chat_renderer(const Tokenizer& tokenizer, const std::string& where) {
  const std::string bos = tokenizer.bos_id() >= 0 ? tokenizer.id_to_token(tokenizer.bos_id()) : "";
  const std::string eos = tokenizer.eos_id() >= 0 ? tokenizer.id_to_token(tokenizer.eos_id()) : "";
  if (tokenizer.chat_template().empty())
    return [bos, eos](const std::vector<ChatMessage>& m, bool prompt) { return render_deepseek_chat(m, bos, eos, prompt); };
  std::shared_ptr<ChatTemplate> t;
  try {
    t = std::make_shared<ChatTemplate>(tokenizer.chat_template());
  } catch (const Error& e) {
    throw Error(where + ": chat_template: " + e.what());
  }
  return [t, bos, eos](const std::vector<ChatMessage>& m, bool prompt) { return t->render_chat(m, bos, eos, prompt); };
}

}  // namespace dsv2
