#include "blocks/nas/einspace.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <optional>
#include <stdexcept>

#include "blocks/common/options.h"
#include "registry/config_error.h"
#include "registry/suggest.h"

namespace blocklab {

namespace {

// ---- terminals: names, places, shapes ----------------------------------------------------------

enum class EinOp {
  identity,
  linear,
  norm,
  leakyrelu,
  softmax,
  pos_enc,
  clone,
  group,
  add,
  concat,
  dot,
  scaled_dot,
  permute,
  im2col,
  col2im
};
enum class EinSlot { computation, branching, aggregation, prerouting, postrouting };

// A terminal read from its name.
struct EinFn {
  std::string name;
  EinOp op = EinOp::identity;
  // linear<N>: a = N; clone<b>: a = b; group<b>_dim<d>, concat<b>_dim<d>: a = b, b = d;
  // im2col_k<k>s<s>p<p>: a = k, b = s, c = p.
  std::int64_t a = 0, b = 0, c = 0;
  std::vector<std::int64_t> order;  // permute: the new order of the non-batch dims (1-based)
};

// `text` against `pattern`, where '#' is a decimal number of 1 to 9 digits (appended to numbers).
bool ein_match(const std::string& text, const std::string& pattern, std::vector<std::int64_t>& numbers) {
  numbers.clear();
  std::size_t i = 0;
  for (const char p : pattern) {
    if (p != '#') {
      if (i >= text.size() || text[i] != p) return false;
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < text.size() && j - i < 9 && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
    if (j == i) return false;
    numbers.push_back(std::stoll(text.substr(i, j - i)));
    i = j;
  }
  return i == text.size();
}

bool ein_is_factor(std::int64_t b) { return b == 2 || b == 4 || b == 8; }  // the paper's branching factors

std::optional<EinFn> ein_parse(const std::string& name) {
  static const std::map<std::string, EinOp> plain{
      {"identity", EinOp::identity},   {"norm", EinOp::norm},
      {"leakyrelu", EinOp::leakyrelu}, {"softmax", EinOp::softmax},
      {"pos_enc", EinOp::pos_enc},     {"add", EinOp::add},
      {"dot_product", EinOp::dot},     {"scaled_dot_product", EinOp::scaled_dot},
      {"col2im", EinOp::col2im}};
  static const std::map<std::string, std::vector<std::int64_t>> orders{
      {"permute21", {2, 1}},     {"permute132", {1, 3, 2}}, {"permute213", {2, 1, 3}},
      {"permute231", {2, 3, 1}}, {"permute312", {3, 1, 2}}, {"permute321", {3, 2, 1}}};
  EinFn f;
  f.name = name;
  std::vector<std::int64_t> n;
  if (const auto it = plain.find(name); it != plain.end()) {
    f.op = it->second;
  } else if (const auto o = orders.find(name); o != orders.end()) {
    f.op = EinOp::permute, f.order = o->second;
  } else if (ein_match(name, "linear#", n) && n[0] >= 1) {
    f.op = EinOp::linear, f.a = n[0];
  } else if (ein_match(name, "clone#", n) && ein_is_factor(n[0])) {
    f.op = EinOp::clone, f.a = n[0];
  } else if ((ein_match(name, "group#_dim#", n) || ein_match(name, "concat#_dim#", n)) && ein_is_factor(n[0]) &&
             n[1] >= 1 && n[1] <= 3) {
    f.op = name[0] == 'g' ? EinOp::group : EinOp::concat, f.a = n[0], f.b = n[1];
  } else if (ein_match(name, "im2col_k#s#p#", n) && n[0] >= 1 && n[1] >= 1 && 2 * n[2] <= n[0]) {
    f.op = EinOp::im2col, f.a = n[0], f.b = n[1], f.c = n[2];
  } else {
    return std::nullopt;
  }
  return f;
}

bool ein_fits(EinOp op, EinSlot slot) {
  switch (slot) {
    case EinSlot::computation:
      return op == EinOp::identity || op == EinOp::linear || op == EinOp::norm || op == EinOp::leakyrelu ||
             op == EinOp::softmax || op == EinOp::pos_enc;
    case EinSlot::branching:
      return op == EinOp::clone || op == EinOp::group;
    case EinSlot::aggregation:
      return op == EinOp::add || op == EinOp::concat || op == EinOp::dot || op == EinOp::scaled_dot;
    case EinSlot::prerouting:
      return op == EinOp::identity || op == EinOp::permute || op == EinOp::im2col;
    case EinSlot::postrouting:
      return op == EinOp::identity || op == EinOp::permute || op == EinOp::col2im;
  }
  return false;
}

const char* ein_slot_name(EinSlot slot) {
  switch (slot) {
    case EinSlot::computation:
      return "computation function";
    case EinSlot::branching:
      return "branching function";
    case EinSlot::aggregation:
      return "aggregation function";
    case EinSlot::prerouting:
      return "prerouting function";
    case EinSlot::postrouting:
      return "postrouting function";
  }
  return "function";
}

// The names a slot takes, for hints (linear<N> and im2col_k<k>s<s>p<p> take other numbers too).
std::vector<std::string> ein_slot_names(EinSlot slot) {
  const std::vector<std::string> permutes{"permute21",  "permute132", "permute213",
                                          "permute231", "permute312", "permute321"};
  std::vector<std::string> names;
  const auto grouped = [&](const std::string& stem) {
    for (const char* b : {"2", "4", "8"})
      for (const char* d : {"1", "2", "3"}) names.push_back(stem + b + "_dim" + d);
  };
  switch (slot) {
    case EinSlot::computation:
      return {"identity", "linear16", "linear32", "linear64", "linear128", "norm", "leakyrelu", "softmax", "pos_enc"};
    case EinSlot::branching:
      names = {"clone2", "clone4", "clone8"};
      grouped("group");
      return names;
    case EinSlot::aggregation:
      names = {"add", "dot_product", "scaled_dot_product"};
      grouped("concat");
      return names;
    case EinSlot::prerouting:
      names = {"identity"};
      names.insert(names.end(), permutes.begin(), permutes.end());
      for (const char* k : {"k1s1p0", "k1s2p0", "k3s1p1", "k3s2p1", "k4s4p0", "k7s7p0", "k8s8p0", "k16s16p0"})
        names.push_back(std::string("im2col_") + k);
      return names;
    case EinSlot::postrouting:
      names = {"identity"};
      names.insert(names.end(), permutes.begin(), permutes.end());
      names.push_back("col2im");
      return names;
  }
  return names;
}

// A problem of a tree: where (a path relative to some node), what, and hints.
struct EinProblem {
  std::string where, message;
  std::vector<std::string> hints;
  bool any() const { return !message.empty(); }
};

std::string ein_join(const std::string& path, const std::string& part) {
  return path.empty() ? part : part.empty() ? path : path + "." + part;
}

EinProblem ein_slot_problem(const std::string& name, EinSlot slot, const std::string& where) {
  const auto f = ein_parse(name);
  if (f && ein_fits(f->op, slot)) return {};
  EinProblem p;
  p.where = where;
  p.message = f ? "'" + name + "' is not a " + ein_slot_name(slot)
                : "unknown function '" + name + "' where a " + ein_slot_name(slot) + " is expected";
  if (f)
    for (EinSlot other :
         {EinSlot::computation, EinSlot::branching, EinSlot::aggregation, EinSlot::prerouting, EinSlot::postrouting})
      if (ein_fits(f->op, other)) {
        p.message += std::string(" (it is a ") + ein_slot_name(other) + ")";
        break;
      }
  const auto names = ein_slot_names(slot);
  if (const auto dym = did_you_mean(name, names); !dym.empty()) p.hints.push_back(dym);
  p.hints.push_back(std::string(ein_slot_name(slot)) + "s: " + join_names(names));
  return p;
}

std::int64_t ein_numel(const EinShape& s) {
  std::int64_t n = 1;
  for (const auto d : s.dims) n *= d;
  return n;
}

// im2col's output map H' x W' on an im shape [C, H, W].
std::vector<std::int64_t> ein_fold(const EinFn& f, const EinShape& in) {
  if (f.op != EinOp::im2col || !in.im()) return {};
  return {(in.dims[1] + 2 * f.c - f.a) / f.b + 1, (in.dims[2] + 2 * f.c - f.a) / f.b + 1};
}

// y = f(x) for a one-input terminal (computation, prerouting, postrouting): the output shape, or
// why f does not apply. fold: the H' x W' of the routing module's im2col (empty when none).
std::string ein_unary_shape(const EinFn& f, const EinShape& in, const std::vector<std::int64_t>& fold, EinShape& out) {
  out = in;
  switch (f.op) {
    case EinOp::identity:
    case EinOp::norm:
    case EinOp::leakyrelu:
    case EinOp::softmax:
    case EinOp::pos_enc:
      return {};
    case EinOp::linear:
      out.dims.back() = f.a;
      return {};
    case EinOp::permute:
      if (f.order.size() != in.dims.size())
        return f.name + " needs " + (f.order.size() == 3 ? "im mode [B, C, H, W]" : "col mode [B, S, D]") + ", got " +
               in.text();
      for (std::size_t i = 0; i < f.order.size(); ++i) out.dims[i] = in.dims[static_cast<std::size_t>(f.order[i] - 1)];
      return {};
    case EinOp::im2col: {
      if (!in.im()) return f.name + " needs im mode [B, C, H, W], got " + in.text();
      if (in.dims[1] < f.a || in.dims[2] < f.a)
        return f.name + ": the " + std::to_string(f.a) + "x" + std::to_string(f.a) + " kernel is larger than the map " +
               in.text();
      const auto map = ein_fold(f, in);
      out.dims = {map[0] * map[1], in.dims[0] * f.a * f.a};
      return {};
    }
    case EinOp::col2im: {
      if (in.im()) return "col2im needs col mode [B, S, D], got " + in.text();
      if (fold.size() != 2) return "col2im undoes its routing module's im2col, but there is none";
      const auto map = fold[0] * fold[1], n = in.dims[0] * in.dims[1];
      if (n % map != 0)
        return "col2im cannot fold " + in.text() + " into " + std::to_string(fold[0]) + "x" + std::to_string(fold[1]) +
               " maps";
      out.dims = {n / map, fold[0], fold[1]};
      return {};
    }
    default:
      return f.name + " is not a one-input function";
  }
}

// The branches' shapes of a branching function.
std::string ein_branch_shapes(const EinFn& f, const EinShape& in, std::vector<EinShape>& parts) {
  const auto b = static_cast<std::size_t>(f.a);
  if (f.op == EinOp::clone) {
    parts.assign(b, in);
    return {};
  }
  const auto d = static_cast<std::size_t>(f.b);
  if (d > in.dims.size())
    return f.name + " splits dim " + std::to_string(d) + ", but " + in.text() + " has " +
           std::to_string(in.dims.size());
  if (in.dims[d - 1] % f.a != 0)
    return f.name + ": dim " + std::to_string(d) + " of " + in.text() + " does not split into " + std::to_string(f.a) +
           " equal parts";
  EinShape part = in;
  part.dims[d - 1] /= f.a;
  parts.assign(b, part);
  return {};
}

// An aggregation's output shape from the branches' outputs.
std::string ein_aggregate_shape(const EinFn& f, const std::vector<EinShape>& ins, EinShape& out) {
  const EinShape& x = ins.front();
  for (const auto& s : ins)
    if (s.dims.size() != x.dims.size())
      return f.name + ": the branches end in different modes (" + x.text() + ", " + s.text() + ")";
  const std::string count = std::to_string(ins.size());
  out = x;
  switch (f.op) {
    case EinOp::add:
      for (const auto& s : ins)
        if (s != x) return "add needs equal shapes, got " + x.text() + " and " + s.text();
      return {};
    case EinOp::concat: {
      if (static_cast<std::size_t>(f.a) != ins.size())
        return f.name + " joins " + std::to_string(f.a) + " tensors, but there are " + count + " branches";
      const auto d = static_cast<std::size_t>(f.b);
      if (d > x.dims.size())
        return f.name + " joins along dim " + std::to_string(d) + ", but " + x.text() + " has " +
               std::to_string(x.dims.size());
      out.dims[d - 1] = 0;
      for (const auto& s : ins) {
        for (std::size_t j = 0; j < x.dims.size(); ++j)
          if (j != d - 1 && s.dims[j] != x.dims[j])
            return f.name + " needs the other dims equal, got " + x.text() + " and " + s.text();
        out.dims[d - 1] += s.dims[d - 1];
      }
      return {};
    }
    case EinOp::dot:
    case EinOp::scaled_dot: {
      if (ins.size() != 2) return f.name + " multiplies 2 tensors, but there are " + count + " branches";
      const EinShape& y = ins[1];
      if (x.im() ? (x.dims[0] != y.dims[0] || x.dims[2] != y.dims[1]) : x.dims[1] != y.dims[0])
        return f.name + " cannot multiply " + x.text() + " by " + y.text() +
               (x.im() ? " ([C, H, W] @ [C, W, W'])" : " ([S, D] @ [D, T])");
      out.dims.back() = y.dims.back();
      return {};
    }
    default:
      return f.name + " is not an aggregation function";
  }
}

std::int64_t ein_terminal_parameters(const EinFn& f, const EinShape& in) {
  switch (f.op) {
    case EinOp::linear:
      return (in.dims.back() + 1) * f.a;
    case EinOp::norm:
      return 2 * in.dims.back();
    case EinOp::pos_enc:
      return ein_numel(in);
    default:
      return 0;
  }
}

// ---- the grammar's rules on one node, and walks over a tree ------------------------------------

// What is wrong with `n` itself (not with its children), `where` relative to its path.
EinProblem ein_own_problem(const EinNode& n) {
  const auto size = [](std::size_t v) { return std::to_string(v); };
  if (n.kind == "computation") {
    if (!n.children.empty() || !n.post.empty()) return {"", "a computation module is one function", {}};
    return ein_slot_problem(n.fn, EinSlot::computation, "");
  }
  if (n.kind == "sequential") {
    if (n.children.size() != 2)
      return {"sequential", "a sequential module has 2 modules, got " + size(n.children.size()), {}};
    return {};
  }
  if (n.kind == "branching") {
    if (auto p = ein_slot_problem(n.fn, EinSlot::branching, "branching.fn"); p.any()) return p;
    if (auto p = ein_slot_problem(n.post, EinSlot::aggregation, "branching.aggregate"); p.any()) return p;
    const EinFn branch = *ein_parse(n.fn), agg = *ein_parse(n.post);
    const auto b = static_cast<std::size_t>(branch.a);
    if (n.children.size() != b)
      return {"branching.inner",
              n.fn + " makes " + size(b) + " branches, but there are " + size(n.children.size()) + " inner modules",
              {}};
    for (std::size_t i = 1; b > 2 && i < b; ++i)
      if (n.children[i] != n.children[0])
        return {"branching.inner." + size(i),
                "with " + size(b) + " branches the grammar repeats one module, but inner module " + size(i) +
                    " differs from inner module 0",
                {}};
    if (agg.op == EinOp::concat && static_cast<std::size_t>(agg.a) != b)
      return {"branching.aggregate",
              n.post + " joins " + size(static_cast<std::size_t>(agg.a)) + " tensors, but " + n.fn + " makes " +
                  size(b) + " branches",
              {}};
    if ((agg.op == EinOp::dot || agg.op == EinOp::scaled_dot) && b != 2)
      return {
          "branching.aggregate", n.post + " multiplies 2 tensors, but " + n.fn + " makes " + size(b) + " branches", {}};
    return {};
  }
  if (n.kind == "routing") {
    if (n.children.size() != 1)
      return {"routing", "a routing module has 1 inner module, got " + size(n.children.size()), {}};
    if (auto p = ein_slot_problem(n.fn, EinSlot::prerouting, "routing.pre"); p.any()) return p;
    if (auto p = ein_slot_problem(n.post, EinSlot::postrouting, "routing.post"); p.any()) return p;
    if (ein_parse(n.post)->op == EinOp::col2im && ein_parse(n.fn)->op != EinOp::im2col)
      return {"routing.post",
              "col2im undoes its routing module's im2col, but the prerouting function is " + n.fn,
              {"pre: im2col_k3s1p1 (or another im2col) with post: col2im"}};
    return {};
  }
  return {"", "unknown module kind '" + n.kind + "'", {"kinds: sequential, branching, routing, computation"}};
}

// The first grammar problem in a tree (path relative to `n`'s, which is `path`).
EinProblem ein_grammar_problem(const EinNode& n, const std::string& path) {
  if (EinProblem p = ein_own_problem(n); p.any()) {
    p.where = ein_join(path, p.where);
    return p;
  }
  for (std::size_t i = 0; i < n.children.size(); ++i) {
    const std::string part = n.kind == "sequential"  ? "sequential." + std::to_string(i)
                             : n.kind == "branching" ? "branching.inner." + std::to_string(i)
                                                     : "routing.inner";
    if (EinProblem p = ein_grammar_problem(n.children[i], ein_join(path, part)); p.any()) return p;
  }
  return {};
}

// A module of a tree with its shapes, for mutation.
struct EinSite {
  std::vector<std::size_t> at;  // child indices from the root
  const EinNode* node = nullptr;
  EinShape input, output;
  int depth = 0;
};

struct EinWalk {
  std::int64_t parameters = 0;
  std::vector<EinSite>* sites = nullptr;  // when given: every module once (a repeated branch once)
  std::string problem, where;

  bool fail(const std::string& path, const std::string& message) {
    where = path, problem = message;
    return false;
  }
};

bool ein_walk_unary(const std::string& name, const EinShape& in, const std::vector<std::int64_t>& fold,
                    const std::string& path, EinWalk& w, EinShape& out) {
  const EinFn f = *ein_parse(name);  // its place was checked
  if (const auto problem = ein_unary_shape(f, in, fold, out); !problem.empty()) return w.fail(path, problem);
  w.parameters += ein_terminal_parameters(f, in);
  return true;
}

// The shapes through `n` from `in`; false with w.problem at w.where when it does not apply.
bool ein_walk(const EinNode& n, const EinShape& in, const std::string& path, int depth, std::vector<std::size_t>& at,
              bool record, EinWalk& w, EinShape& out) {
  if (const EinProblem p = ein_own_problem(n); p.any()) return w.fail(ein_join(path, p.where), p.message);
  const bool recording = record && w.sites;
  const std::size_t site = recording ? w.sites->size() : 0;
  if (recording) w.sites->push_back(EinSite{at, &n, in, {}, depth});
  bool ok = true;
  if (n.kind == "computation") {
    ok = ein_walk_unary(n.fn, in, {}, path, w, out);
  } else if (n.kind == "sequential") {
    EinShape mid;
    at.push_back(0);
    ok = ein_walk(n.children[0], in, ein_join(path, "sequential.0"), depth + 1, at, record, w, mid);
    at.back() = 1;
    ok = ok && ein_walk(n.children[1], mid, ein_join(path, "sequential.1"), depth + 1, at, record, w, out);
    at.pop_back();
  } else if (n.kind == "branching") {
    std::vector<EinShape> parts, outs(n.children.size());
    if (const auto problem = ein_branch_shapes(*ein_parse(n.fn), in, parts); !problem.empty())
      return w.fail(ein_join(path, "branching.fn"), problem);
    for (std::size_t i = 0; ok && i < n.children.size(); ++i) {
      at.push_back(i);
      const bool copy = n.children.size() > 2 && i > 0;  // the grammar's repeated module counts once
      ok = ein_walk(n.children[i], parts[i], ein_join(path, "branching.inner." + std::to_string(i)), depth + 1, at,
                    record && !copy, w, outs[i]);
      at.pop_back();
    }
    if (ok)
      if (const auto problem = ein_aggregate_shape(*ein_parse(n.post), outs, out); !problem.empty())
        return w.fail(ein_join(path, "branching.aggregate"), problem);
  } else {  // routing
    EinShape mid, inner;
    ok = ein_walk_unary(n.fn, in, {}, ein_join(path, "routing.pre"), w, mid);
    at.push_back(0);
    ok = ok && ein_walk(n.children[0], mid, ein_join(path, "routing.inner"), depth + 1, at, record, w, inner);
    at.pop_back();
    ok = ok && ein_walk_unary(n.post, inner, ein_fold(*ein_parse(n.fn), in), ein_join(path, "routing.post"), w, out);
  }
  if (ok && recording) (*w.sites)[site].output = out;
  return ok;
}

// Replaces the module at `at` (from index i on) by `fresh`; inside a repeated branch, in every copy.
void ein_replace(EinNode& n, const std::vector<std::size_t>& at, std::size_t i, const EinNode& fresh) {
  if (i == at.size()) {
    n = fresh;
    return;
  }
  if (n.kind == "branching" && n.children.size() > 2) {
    for (auto& child : n.children) ein_replace(child, at, i + 1, fresh);
    return;
  }
  ein_replace(n.children[at[i]], at, i + 1, fresh);
}

// ---- sampling ----------------------------------------------------------------------------------

struct EinBudgetSpent {};  // one attempt spent its draws: start again

class EinSampler {
 public:
  EinSampler(const EinspaceLimits& limits, std::mt19937_64& rng) : limits_(limits), rng_(rng) {}

  // A module for `in` at module depth `depth` (the network rule at the root: no computation
  // module), with its output shape; nullopt when none can be completed.
  std::optional<EinNode> module(const EinShape& in, int depth, bool root, EinShape& out) {
    std::vector<std::string> kinds;
    if (depth >= limits_.max_depth) {
      kinds = {"computation"};
    } else {
      kinds = {"sequential", "branching", "routing"};
      if (!root && depth >= limits_.min_depth) kinds.push_back("computation");
    }
    while (!kinds.empty()) {
      step();
      const std::size_t i = draw_kind(kinds);
      const std::string& kind = kinds[i];
      std::optional<EinNode> node = kind == "sequential"  ? sequential(in, depth, out)
                                    : kind == "branching" ? branching(in, depth, out)
                                    : kind == "routing"   ? routing(in, depth, out)
                                                          : computation(in, out);
      if (node) return node;
      kinds.erase(kinds.begin() + static_cast<std::ptrdiff_t>(i));  // back-track: another kind
    }
    return std::nullopt;
  }

 private:
  void step() {
    if (++steps_ > limits_.max_steps) throw EinBudgetSpent{};
  }

  std::size_t uniform(std::size_t n) { return static_cast<std::size_t>(rng_() % n); }

  // P(computation) = computation_prob when it is an option, the other kinds sharing the rest.
  std::size_t draw_kind(const std::vector<std::string>& kinds) {
    const auto it = std::find(kinds.begin(), kinds.end(), "computation");
    if (it == kinds.end() || kinds.size() == 1) return uniform(kinds.size());
    const auto c = static_cast<std::size_t>(it - kinds.begin());
    if (static_cast<double>(rng_() % 1000000) / 1e6 < limits_.computation_prob) return c;
    const std::size_t j = uniform(kinds.size() - 1);
    return j >= c ? j + 1 : j;
  }

  bool within(const EinShape& s) const { return ein_numel(s) <= limits_.max_elements; }

  // One of `names` drawn uniformly among those of `slot` that apply to `in` within the limits;
  // empty when none does.
  std::string pick_unary(const std::vector<std::string>& names, EinSlot slot, const EinShape& in,
                         const std::vector<std::int64_t>& fold, EinShape& out) {
    std::vector<std::string> fit;
    std::vector<EinShape> outs;
    for (const auto& name : names) {
      const auto f = ein_parse(name);
      EinShape o;
      if (!f || !ein_fits(f->op, slot) || !ein_unary_shape(*f, in, fold, o).empty() || !within(o) ||
          ein_terminal_parameters(*f, in) > limits_.max_parameters)
        continue;
      fit.push_back(name);
      outs.push_back(o);
    }
    if (fit.empty()) return {};
    step();
    const std::size_t i = uniform(fit.size());
    out = outs[i];
    return fit[i];
  }

  std::optional<EinNode> computation(const EinShape& in, EinShape& out) {
    std::vector<std::string> names{"identity"};
    for (const auto w : limits_.linear_widths) names.push_back("linear" + std::to_string(w));
    for (const char* name : {"norm", "leakyrelu", "softmax", "pos_enc"}) names.push_back(name);
    std::string fn = pick_unary(names, EinSlot::computation, in, {}, out);
    if (fn.empty()) return std::nullopt;
    return EinNode{"computation", fn, "", {}};
  }

  std::optional<EinNode> sequential(const EinShape& in, int depth, EinShape& out) {
    EinShape mid;
    auto first = module(in, depth + 1, false, mid);
    if (!first) return std::nullopt;
    auto second = module(mid, depth + 1, false, out);
    if (!second) return std::nullopt;
    return EinNode{"sequential", "", "", {std::move(*first), std::move(*second)}};
  }

  std::optional<EinNode> branching(const EinShape& in, int depth, EinShape& out) {
    const auto rank = static_cast<std::int64_t>(in.dims.size());
    std::vector<std::string> fit;
    std::vector<std::vector<EinShape>> splits;
    for (const auto b : limits_.branching_factors) {
      std::vector<std::string> names{"clone" + std::to_string(b)};
      for (std::int64_t d = 1; d <= rank; ++d)
        names.push_back("group" + std::to_string(b) + "_dim" + std::to_string(d));
      for (const auto& name : names) {
        const auto f = ein_parse(name);
        std::vector<EinShape> parts;
        if (!f || !ein_branch_shapes(*f, in, parts).empty()) continue;
        fit.push_back(name);
        splits.push_back(parts);
      }
    }
    if (fit.empty()) return std::nullopt;
    step();
    const std::size_t pick = uniform(fit.size());
    const std::vector<EinShape>& parts = splits[pick];
    EinNode node{"branching", fit[pick], "", {}};
    std::vector<EinShape> outs(parts.size());
    if (parts.size() == 2) {  // two modules drawn independently
      for (std::size_t i = 0; i < 2; ++i) {
        auto inner = module(parts[i], depth + 1, false, outs[i]);
        if (!inner) return std::nullopt;
        node.children.push_back(std::move(*inner));
      }
    } else {  // more branches: one module drawn, repeated (the official code's deepcopy)
      auto inner = module(parts[0], depth + 1, false, outs[0]);
      if (!inner) return std::nullopt;
      node.children.assign(parts.size(), *inner);
      const EinShape repeated = outs[0];
      outs.assign(parts.size(), repeated);
    }
    const std::string b = std::to_string(parts.size());
    std::vector<std::string> names{"add", "dot_product", "scaled_dot_product"};
    for (std::size_t d = 1; d <= outs[0].dims.size(); ++d) names.push_back("concat" + b + "_dim" + std::to_string(d));
    std::vector<std::string> aggregations;
    std::vector<EinShape> results;
    for (const auto& name : names) {
      const auto f = ein_parse(name);
      EinShape o;
      if (!f || !ein_aggregate_shape(*f, outs, o).empty() || !within(o)) continue;
      aggregations.push_back(name);
      results.push_back(o);
    }
    if (aggregations.empty()) return std::nullopt;  // no aggregation fits: the module cannot be completed
    step();
    const std::size_t a = uniform(aggregations.size());
    node.post = aggregations[a];
    out = results[a];
    return node;
  }

  std::optional<EinNode> routing(const EinShape& in, int depth, EinShape& out) {
    const std::vector<std::string> permutes{"permute21",  "permute132", "permute213",
                                            "permute231", "permute312", "permute321"};
    std::vector<std::string> pres{"identity"}, posts{"identity"};
    pres.insert(pres.end(), permutes.begin(), permutes.end());
    pres.insert(pres.end(), limits_.im2col.begin(), limits_.im2col.end());
    posts.insert(posts.end(), permutes.begin(), permutes.end());
    posts.push_back("col2im");
    EinShape mid, inner_out;
    const std::string pre = pick_unary(pres, EinSlot::prerouting, in, {}, mid);
    if (pre.empty()) return std::nullopt;
    auto inner = module(mid, depth + 1, false, inner_out);
    if (!inner) return std::nullopt;
    const std::string post = pick_unary(posts, EinSlot::postrouting, inner_out, ein_fold(*ein_parse(pre), in), out);
    if (post.empty()) return std::nullopt;
    return EinNode{"routing", pre, post, {std::move(*inner)}};
  }

  const EinspaceLimits& limits_;
  std::mt19937_64& rng_;
  std::int64_t steps_ = 0;
};

EinNode ein_computation(const std::string& fn) { return EinNode{"computation", fn, "", {}}; }

// ---- the module's terminal operations ----------------------------------------------------------

using EinUnaryOp = std::function<torch::Tensor(const torch::Tensor&)>;

EinUnaryOp ein_unary_op(const EinFn& f, const std::vector<std::int64_t>& fold) {
  switch (f.op) {
    case EinOp::leakyrelu:
      return [](const torch::Tensor& x) { return torch::leaky_relu(x, 0.01); };
    case EinOp::softmax:
      return [](const torch::Tensor& x) { return torch::softmax(x, -1); };
    case EinOp::permute: {
      std::vector<std::int64_t> dims{0};
      dims.insert(dims.end(), f.order.begin(), f.order.end());
      return [dims](const torch::Tensor& x) { return x.permute(dims); };
    }
    case EinOp::im2col: {  // [B, C, H, W] -> [B, C k k, H' W'] -> [B, H' W', C k k]
      const std::int64_t k = f.a, s = f.b, p = f.c;
      return [k, s, p](const torch::Tensor& x) {
        return torch::nn::functional::unfold(x, torch::nn::functional::UnfoldFuncOptions(k).stride(s).padding(p))
            .transpose(1, 2);
      };
    }
    case EinOp::col2im: {  // [B, S, D] -> [B, D, S] -> [B, S D / (H' W'), H', W']
      const std::int64_t h = fold.at(0), w = fold.at(1);
      return [h, w](const torch::Tensor& x) { return x.transpose(1, 2).reshape({x.size(0), -1, h, w}); };
    }
    default:
      return [](const torch::Tensor& x) { return x; };  // identity
  }
}

std::function<std::vector<torch::Tensor>(const torch::Tensor&)> ein_branch_op(const EinFn& f, const EinShape& in) {
  const std::int64_t b = f.a;
  if (f.op == EinOp::clone)
    return [b](const torch::Tensor& x) { return std::vector<torch::Tensor>(static_cast<std::size_t>(b), x); };
  const std::int64_t d = f.b, part = in.dims[static_cast<std::size_t>(d - 1)] / b;
  return [d, part](const torch::Tensor& x) { return x.split(part, d); };
}

std::function<torch::Tensor(const std::vector<torch::Tensor>&)> ein_aggregate_op(const EinFn& f) {
  switch (f.op) {
    case EinOp::concat: {
      const std::int64_t d = f.b;
      return [d](const std::vector<torch::Tensor>& xs) { return torch::cat(xs, d); };
    }
    case EinOp::dot:
      return [](const std::vector<torch::Tensor>& xs) { return xs[0].matmul(xs[1]); };
    case EinOp::scaled_dot:
      return [](const std::vector<torch::Tensor>& xs) {
        return xs[0].matmul(xs[1]) / std::sqrt(static_cast<double>(xs[0].size(-1)));
      };
    default:  // add
      return [](const std::vector<torch::Tensor>& xs) {
        torch::Tensor y = xs[0];
        for (std::size_t i = 1; i < xs.size(); ++i) y = y + xs[i];
        return y;
      };
  }
}

}  // namespace

// ---- shapes, counts, keys ----------------------------------------------------------------------

std::string EinShape::text() const {
  std::string s = mode() + " [";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

EinShape ein_input_shape(const ModelInputs& inputs) { return EinShape{{inputs.channels, inputs.height, inputs.width}}; }

EinShapeResult ein_output_shape(const EinNode& tree, const EinShape& input) {
  EinWalk w;
  std::vector<std::size_t> at;
  EinShapeResult r;
  if (input.dims.size() != 2 && input.dims.size() != 3) {
    r.problem = "the input is neither im [C, H, W] nor col [S, D]";
    return r;
  }
  if (!ein_walk(tree, input, "", 0, at, false, w, r.shape)) r.problem = w.problem, r.path = w.where;
  return r;
}

std::int64_t ein_parameter_count(const EinNode& tree, const EinShape& input) {
  EinWalk w;
  std::vector<std::size_t> at;
  EinShape out;
  if (input.dims.size() != 2 && input.dims.size() != 3)
    throw std::invalid_argument("einspace: the input is neither im [C, H, W] nor col [S, D]");
  if (!ein_walk(tree, input, "", 0, at, false, w, out))
    throw std::invalid_argument("einspace: " + (w.where.empty() ? std::string("the tree") : w.where) + ": " +
                                w.problem);
  return w.parameters;
}

std::int64_t ein_node_count(const EinNode& tree) {
  std::int64_t n = 1;
  for (const auto& child : tree.children) n += ein_node_count(child);
  return n;
}

std::string ein_key(const EinNode& tree) {
  if (tree.kind == "computation") return tree.fn;
  std::string inner;
  for (const auto& child : tree.children) inner += (inner.empty() ? "" : ",") + ein_key(child);
  if (tree.kind == "sequential") return "seq(" + inner + ")";
  if (tree.kind == "branching") return "branch(" + tree.fn + "," + inner + "," + tree.post + ")";
  return "route(" + tree.fn + "," + inner + "," + tree.post + ")";
}

// ---- YAML --------------------------------------------------------------------------------------

ConfigNode ein_node(const EinNode& tree) {
  if (tree.kind == "computation") return ConfigNode::string(tree.fn);
  ConfigNode children = ConfigNode::sequence();
  for (const auto& child : tree.children) children.push_back(ein_node(child));
  ConfigNode body = ConfigNode::map();
  if (tree.kind == "sequential") {
    body = children;
  } else if (tree.kind == "branching") {
    body.set("fn", ConfigNode::string(tree.fn));
    body.set("inner", children);
    body.set("aggregate", ConfigNode::string(tree.post));
  } else if (tree.kind == "routing") {
    body.set("pre", ConfigNode::string(tree.fn));
    body.set("inner", tree.children.empty() ? ConfigNode() : children.items().front());
    body.set("post", ConfigNode::string(tree.post));
  } else {
    throw std::invalid_argument("einspace: unknown module kind '" + tree.kind + "'");
  }
  ConfigNode node = ConfigNode::map();
  node.set(tree.kind, body);
  return node;
}

namespace {

const std::vector<std::string>& ein_forms() {
  static const std::vector<std::string> forms{
      "a module is a computation function (identity, linear<N>, norm, leakyrelu, softmax, pos_enc) or one of",
      "{sequential: [m, m]}, {branching: {fn: clone2, inner: [m, m], aggregate: add}}, "
      "{routing: {pre: identity, inner: m, post: identity}}"};
  return forms;
}

[[noreturn]] void ein_fail(const ConfigNode& at, const std::string& path, const std::string& message,
                           std::vector<std::string> hints = ein_forms()) {
  throw ConfigError(message, at.source(), path, std::move(hints));
}

std::string ein_function_name(const ConfigNode& node, const std::string& path) {
  if (!node.is_scalar()) ein_fail(node, path, "expected a function name, got a " + std::string(node.kind_name()));
  return node.as_string();
}

// The tree as written (the form only; ein_grammar_problem checks the rest).
EinNode ein_from_yaml(const ConfigNode& node, const std::string& path) {
  if (node.is_scalar()) return ein_computation(node.as_string());
  if (!node.is_map() || node.entries().size() != 1)
    ein_fail(node, path,
             "a module must be a function name or a mapping with one key: sequential, branching or routing");
  const std::string& key = node.entries().front().first;
  const ConfigNode& value = node.entries().front().second;
  const std::string at = ein_join(path, key);
  if (key == "sequential") {
    if (!value.is_sequence()) ein_fail(value, at, "sequential takes a list of 2 modules");
    EinNode n{"sequential", "", "", {}};
    for (std::size_t i = 0; i < value.items().size(); ++i)
      n.children.push_back(ein_from_yaml(value.items()[i], at + "." + std::to_string(i)));
    return n;
  }
  if (key != "branching" && key != "routing") {
    std::vector<std::string> hints = ein_forms();
    if (const auto dym = did_you_mean(key, {"sequential", "branching", "routing"}); !dym.empty())
      hints.insert(hints.begin(), dym);
    ein_fail(node, path, "unknown module '" + key + "'", hints);
  }
  const bool branching = key == "branching";
  const std::vector<std::string> keys = branching ? std::vector<std::string>{"fn", "inner", "aggregate"}
                                                  : std::vector<std::string>{"pre", "inner", "post"};
  const std::string form = key + " takes {" + keys[0] + ", " + keys[1] + ", " + keys[2] + "}";
  if (!value.is_map()) ein_fail(value, at, form);
  for (const auto& k : value.keys())
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
      std::vector<std::string> hints{form};
      if (const auto dym = did_you_mean(k, keys); !dym.empty()) hints.insert(hints.begin(), dym);
      ein_fail(*value.find(k), at + "." + k, "unknown key '" + k + "' in a " + key + " module", hints);
    }
  for (const auto& k : keys)
    if (!value.has(k)) ein_fail(value, at, key + " needs '" + k + "'", {form});
  EinNode n{key,
            ein_function_name(value.at(keys[0]), at + "." + keys[0]),
            ein_function_name(value.at(keys[2]), at + "." + keys[2]),
            {}};
  const ConfigNode& inner = value.at("inner");
  if (!branching) {
    n.children.push_back(ein_from_yaml(inner, at + ".inner"));
    return n;
  }
  if (!inner.is_sequence()) ein_fail(inner, at + ".inner", "inner takes a list of modules, one per branch");
  for (std::size_t i = 0; i < inner.items().size(); ++i)
    n.children.push_back(ein_from_yaml(inner.items()[i], at + ".inner." + std::to_string(i)));
  return n;
}

}  // namespace

EinNode ein_from_node(const ConfigNode& node, const std::string& path) {
  EinNode tree = ein_from_yaml(node, path);
  if (const EinProblem p = ein_grammar_problem(tree, ""); p.any()) {
    const ConfigNode* at = node.find_path(p.where);
    throw ConfigError(p.message, (at ? *at : node).source(), ein_join(path, p.where), p.hints);
  }
  return tree;
}

EinNode ein_default_architecture() {
  const auto seq = [](EinNode a, EinNode b) { return EinNode{"sequential", "", "", {std::move(a), std::move(b)}}; };
  const auto c = ein_computation;
  // q k^T / sqrt(32): keys through permute21 to [32, S].
  const EinNode scores{"branching",
                       "clone2",
                       "scaled_dot_product",
                       {c("linear32"), EinNode{"routing", "identity", "permute21", {c("linear32")}}}};
  const EinNode attention{"branching", "clone2", "dot_product", {seq(scores, c("softmax")), c("linear64")}};
  const EinNode residual{"branching", "clone2", "add", {attention, c("identity")}};
  const EinNode patches{"routing", "im2col_k4s4p0", "identity", {c("linear64")}};
  return seq(patches, seq(residual, c("norm")));
}

// ---- sampling and mutation ---------------------------------------------------------------------

EinNode random_architecture(const ModelInputs& inputs, std::mt19937_64& rng, const EinspaceLimits& limits) {
  const EinShape in = ein_input_shape(inputs);
  for (int attempt = 0; attempt < limits.attempts; ++attempt) {
    EinSampler sampler(limits, rng);
    try {
      EinShape out;
      std::optional<EinNode> tree = sampler.module(in, 0, true, out);
      if (tree && ein_parameter_count(*tree, in) <= limits.max_parameters) return *tree;
    } catch (const EinBudgetSpent&) {
    }
  }
  throw std::runtime_error("einspace: no architecture for " + in.text() + " within the limits in " +
                           std::to_string(limits.attempts) + " attempts");
}

EinNode mutate_architecture(const EinNode& parent, const ModelInputs& inputs, std::mt19937_64& rng,
                            const EinspaceLimits& limits) {
  const EinShape in = ein_input_shape(inputs);
  std::vector<EinSite> sites;
  EinWalk w;
  w.sites = &sites;
  std::vector<std::size_t> at;
  EinShape out;
  if (!ein_walk(parent, in, "", 0, at, true, w, out)) return parent;  // the parent does not apply: nothing to keep
  for (int t = 0; t < limits.mutation_tries; ++t) {
    const EinSite& site = sites[static_cast<std::size_t>(rng() % sites.size())];
    EinSampler sampler(limits, rng);
    try {
      EinShape fresh_out;
      std::optional<EinNode> fresh = sampler.module(site.input, site.depth, site.at.empty(), fresh_out);
      if (!fresh || fresh_out != site.output || *fresh == *site.node) continue;
      EinNode child = parent;
      ein_replace(child, site.at, 0, *fresh);
      if (ein_parameter_count(child, in) <= limits.max_parameters) return child;
    } catch (const EinBudgetSpent&) {
    }
  }
  return parent;
}

// ---- the modules -------------------------------------------------------------------------------

EinModuleImpl::EinModuleImpl(const EinNode& node, const EinShape& input) : kind_(node.kind) {
  const EinShapeResult r = ein_output_shape(node, input);
  if (!r.ok())
    throw std::invalid_argument("einspace: " + (r.path.empty() ? std::string("the tree") : r.path) + ": " + r.problem);
  output_ = r.shape;
  const auto add_child = [&](const std::string& name, const EinNode& n, const EinShape& in) {
    children_.push_back(register_module(name, std::make_shared<EinModuleImpl>(n, in)));
    return children_.back()->output_shape();
  };
  if (kind_ == "computation") {
    const EinFn f = *ein_parse(node.fn);
    const std::int64_t last = input.dims.back();
    if (f.op == EinOp::linear) {
      linear_ = register_module("linear", torch::nn::Linear(last, f.a));
    } else if (f.op == EinOp::norm) {
      norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({last})));
    } else if (f.op == EinOp::pos_enc) {
      std::vector<std::int64_t> shape{1};
      shape.insert(shape.end(), input.dims.begin(), input.dims.end());
      pos_ = register_parameter("pos", torch::randn(shape));
    } else {
      fn_ = ein_unary_op(f, {});
    }
  } else if (kind_ == "sequential") {
    const EinShape mid = add_child("first", node.children[0], input);
    add_child("second", node.children[1], mid);
  } else if (kind_ == "branching") {
    const EinFn f = *ein_parse(node.fn);
    std::vector<EinShape> parts;
    ein_branch_shapes(f, input, parts);
    branch_ = ein_branch_op(f, input);
    for (std::size_t i = 0; i < node.children.size(); ++i)
      add_child("inner" + std::to_string(i), node.children[i], parts[i]);
    aggregate_ = ein_aggregate_op(*ein_parse(node.post));
  } else {  // routing
    const EinFn pre = *ein_parse(node.fn);
    EinShape mid;
    ein_unary_shape(pre, input, {}, mid);
    pre_ = ein_unary_op(pre, {});
    add_child("inner", node.children[0], mid);
    post_ = ein_unary_op(*ein_parse(node.post), ein_fold(pre, input));
  }
}

torch::Tensor EinModuleImpl::forward(const torch::Tensor& x) {
  if (kind_ == "computation") {
    if (!linear_.is_empty()) return linear_->forward(x);
    if (!norm_.is_empty()) return norm_->forward(x);
    if (pos_.defined()) return x + pos_;
    return fn_(x);
  }
  if (kind_ == "sequential") return children_[1]->forward(children_[0]->forward(x));
  if (kind_ == "routing") return post_(children_[0]->forward(pre_(x)));
  const std::vector<torch::Tensor> parts = branch_(x);
  std::vector<torch::Tensor> outs;
  for (std::size_t i = 0; i < children_.size(); ++i) outs.push_back(children_[i]->forward(parts[i]));
  return aggregate_(outs);
}

EinNetworkImpl::EinNetworkImpl(EinNode tree, const ModelInputs& inputs, std::int64_t outputs,
                               const ConfigNode& head_config)
    : tree_(std::move(tree)) {
  body = register_module("body", EinModule(tree_, ein_input_shape(inputs)));
  const EinShape& out = body->output_shape();
  const std::int64_t features = out.im() ? out.dims[0] : out.dims[1];  // C of im, D of col
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({features}).eps(1e-6)));
  head = register_module("head", head_registry().create(head_config, HeadArgs{features, outputs, 0, inputs.horizon}));
}

torch::Tensor EinNetworkImpl::features(const torch::Tensor& images) {
  const torch::Tensor y = body->forward(images);
  return y.dim() == 4 ? y.mean({2, 3}) : y.mean(1);  // im: over H, W; col: over S
}

torch::Tensor EinNetworkImpl::forward(const torch::Tensor& images, AttentionProbe*, const torch::Tensor&) {
  return head->forward(norm->forward(features(images)));
}

// ---- the registry entry ------------------------------------------------------------------------

namespace {

const Schema& ein_schema() {
  static const Schema schema = [] {
    Schema s;
    ParamSpec spec;
    spec.name = "architecture";
    spec.type = ParamType::Any;
    spec.default_value = ein_node(ein_default_architecture());
    spec.doc =
        "the derivation tree (blocks/nas/einspace.h): a computation function, {sequential: [m, m]}, "
        "{branching: {fn, inner: [m, ...], aggregate}} or {routing: {pre, inner: m, post}} (default: 4x4 patches, "
        "linear64, a residual single-head attention, norm)";
    s.add(spec);
    return s;
  }();
  return schema;
}

Network ein_make_model(const ConfigNode& params, const ModelArgs& args) {
  check_params(params, ein_schema());
  const ParamReader r(params, ein_schema(), "");
  const ConfigNode arch = r.get_node("architecture");
  const std::string path = args.path + ".architecture";
  const EinNode tree = ein_from_node(arch, path);
  const auto& in = args.inputs;
  if (in.channels < 1 || in.height < 1 || in.width < 1)
    config_fail(params, "architecture", "model/einspace maps images [B, C, H, W], but the data have no image size",
                {"use an image dataset (e.g. fashion_mnist)"});
  const EinShape input = ein_input_shape(in);
  if (const EinShapeResult shape = ein_output_shape(tree, input); !shape.ok()) {
    const ConfigNode* at = arch.find_path(shape.path);
    throw ConfigError("the architecture does not apply to images " + input.text() + ": " + shape.problem,
                      (at ? *at : arch).source(), ein_join(path, shape.path),
                      {"shapes are [B, C, H, W] (im) or [B, S, D] (col); im2col goes from im to col, col2im back"});
  }
  return std::make_shared<EinNetworkImpl>(tree, in, args.outputs, args.head);
}

BLOCKLAB_REGISTER(model_registry(),
                  BLOCKLAB_ENTRY("model/einspace")
                      .summary("one architecture of einspace, a grammar of fundamental operations (sequential, "
                               "branching, routing and computation modules), trained from scratch")
                      .paper("einspace: Searching for Neural Architectures from Fundamental Operations (Ericsson et "
                             "al., 2024), arXiv:2405.20838")
                      .equation("y = head(LN(mean(tree(x)))); tree: m_2(m_1(x)) | agg(m_i(branch_i(x))) | "
                                "post(m(pre(x))) | fn(x)")
                      .schema(ein_schema())
                      .example("{architecture: {sequential: [{routing: {pre: im2col_k4s4p0, inner: linear16, "
                               "post: identity}}, norm]}}"),
                  ein_make_model);

}  // namespace
}  // namespace blocklab
