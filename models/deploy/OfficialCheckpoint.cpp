#include "models/deploy/OfficialCheckpoint.h"

#include "codegen/EnumNames.h"

#include "models/checkpoint/ConfigJson.h"

#include "models/deploy/ZipChecksums.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

namespace slak::models {

// ------------------------------------------------------------ pickle values

namespace {

enum class Kind {
  None,
  Bool,
  Int,
  Float,
  Str,
  Bytes,
  Tuple,
  List,
  Dict,
  Global,
  Object,
  Storage,
  Tensor
};

struct PyValue;
using PyRef = std::shared_ptr<PyValue>;

/// One unpickled Python object. Lists and dicts are shared through the memo
/// (APPEND and SETITEM mutate them), hence shared_ptr.
struct PyValue {
  Kind kind = Kind::None;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  /// Str and Bytes: the text; Global and Object: "module.name".
  std::string s;
  /// Tuple, List (and sets): the items; Object: the constructor arguments.
  std::vector<PyRef> items;
  /// Dict entries in insertion order.
  std::vector<std::pair<PyRef, PyRef>> entries;
  /// Object: the BUILD state (an argparse.Namespace's attribute dict).
  PyRef state;
  // Storage: the record "data/<key>" holding `numel` elements of `dtype`.
  std::string storageKey;
  c10::ScalarType dtype = c10::ScalarType::Undefined;
  std::string storageType;
  int64_t numel = 0;
  // Tensor: a view of `storage`.
  PyRef storage;
  int64_t offset = 0;
  std::vector<int64_t> sizes, strides;

  static PyRef make(Kind kind) {
    auto v = std::make_shared<PyValue>();
    v->kind = kind;
    return v;
  }
  static PyRef str(Kind kind, std::string text) {
    auto v = make(kind);
    v->s = std::move(text);
    return v;
  }
  /// The entry of a Dict with string key `key`, or nullptr.
  PyRef get(const std::string &key) const {
    for (const auto &[k, v] : entries)
      if (k->kind == Kind::Str && k->s == key)
        return v;
    return nullptr;
  }
};

constexpr codegen::Named<Kind> kKindNames[] = {
    {"None", Kind::None},     {"bool", Kind::Bool},
    {"int", Kind::Int},       {"float", Kind::Float},
    {"str", Kind::Str},       {"bytes", Kind::Bytes},
    {"tuple", Kind::Tuple},   {"list", Kind::List},
    {"dict", Kind::Dict},     {"class or function", Kind::Global},
    {"object", Kind::Object}, {"storage", Kind::Storage},
    {"tensor", Kind::Tensor}};

const char *kindName(Kind k) { return codegen::nameOf(kKindNames, k); }

struct PickleError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

c10::ScalarType storageDtype(const std::string &type) {
  static const std::map<std::string, c10::ScalarType> types = {
      {"torch.FloatStorage", c10::kFloat},
      {"torch.DoubleStorage", c10::kDouble},
      {"torch.HalfStorage", c10::kHalf},
      {"torch.BFloat16Storage", c10::kBFloat16},
      {"torch.LongStorage", c10::kLong},
      {"torch.IntStorage", c10::kInt},
      {"torch.ShortStorage", c10::kShort},
      {"torch.CharStorage", c10::kChar},
      {"torch.ByteStorage", c10::kByte},
      {"torch.BoolStorage", c10::kBool},
      {"torch.ComplexFloatStorage", c10::kComplexFloat},
      {"torch.ComplexDoubleStorage", c10::kComplexDouble},
      {"torch.UntypedStorage", c10::kByte},
  };
  auto it = types.find(type);
  return it == types.end() ? c10::ScalarType::Undefined : it->second;
}

/// Reads the pickle subset torch.save writes (protocol 2; the opcodes of
/// protocols 0-4 that carry plain data are accepted too). Classes and
/// functions other than the few that build dicts, sets, bytes and tensors
/// become opaque Objects.
class Unpickler {
public:
  Unpickler(const char *data, size_t size) : begin_(data), p_(data), end_(data + size) {}

  PyRef parse() {
    for (;;) {
      const size_t at = static_cast<size_t>(p_ - begin_);
      const uint8_t op = byte();
      switch (op) {
      case 0x80: // PROTO
        byte();
        break;
      case 0x95: // FRAME
        bytes(8);
        break;
      case '.': // STOP
        if (stack_.size() != 1 || !marks_.empty())
          throw PickleError("the pickle ends with " + std::to_string(stack_.size()) +
                            " values on its stack");
        return stack_.back();
      case '(': // MARK
        marks_.push_back(stack_.size());
        break;
      case '0': // POP
        pop();
        break;
      case '1': // POP_MARK
        popMark();
        break;
      case '2': // DUP
        push(top());
        break;
      case 'N':
        push(PyValue::make(Kind::None));
        break;
      case 0x88: // NEWTRUE
      case 0x89: // NEWFALSE
        push(boolean(op == 0x88));
        break;
      case 'I': { // INT (text; "01"/"00" are bools)
        std::string line = readLine();
        if (line == "01" || line == "00")
          push(boolean(line == "01"));
        else
          push(integer(parseInt(line)));
        break;
      }
      case 'L': { // LONG (text)
        std::string line = readLine();
        if (!line.empty() && line.back() == 'L')
          line.pop_back();
        push(integer(parseInt(line)));
        break;
      }
      case 'J': // BININT
        push(integer(static_cast<int32_t>(little(4))));
        break;
      case 'K': // BININT1
        push(integer(static_cast<int64_t>(little(1))));
        break;
      case 'M': // BININT2
        push(integer(static_cast<int64_t>(little(2))));
        break;
      case 0x8a: // LONG1
        push(longInt(little(1)));
        break;
      case 0x8b: // LONG4
        push(longInt(little(4)));
        break;
      case 'F': { // FLOAT (text)
        auto v = PyValue::make(Kind::Float);
        v->f = std::strtod(readLine().c_str(), nullptr);
        push(v);
        break;
      }
      case 'G': { // BINFLOAT (big-endian)
        const char *b = bytes(8);
        uint64_t bits = 0;
        for (int k = 0; k < 8; ++k)
          bits = (bits << 8) | static_cast<uint8_t>(b[k]);
        auto v = PyValue::make(Kind::Float);
        std::memcpy(&v->f, &bits, 8);
        push(v);
        break;
      }
      case 'S':   // STRING (text, quoted)
      case 'V': { // UNICODE (text)
        std::string line = readLine();
        if (op == 'S' && line.size() >= 2 && (line[0] == '\'' || line[0] == '"'))
          line = line.substr(1, line.size() - 2);
        push(PyValue::str(Kind::Str, line));
        break;
      }
      case 'T': // BINSTRING
      case 'X': // BINUNICODE
        push(PyValue::str(Kind::Str, text(little(4))));
        break;
      case 'U':  // SHORT_BINSTRING
      case 0x8c: // SHORT_BINUNICODE
        push(PyValue::str(Kind::Str, text(little(1))));
        break;
      case 0x8d: // BINUNICODE8
        push(PyValue::str(Kind::Str, text(little(8))));
        break;
      case 'B': // BINBYTES
        push(PyValue::str(Kind::Bytes, text(little(4))));
        break;
      case 'C': // SHORT_BINBYTES
        push(PyValue::str(Kind::Bytes, text(little(1))));
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        push(PyValue::str(Kind::Bytes, text(little(8))));
        break;
      case ')': // EMPTY_TUPLE
        push(PyValue::make(Kind::Tuple));
        break;
      case 't': { // TUPLE
        auto v = PyValue::make(Kind::Tuple);
        v->items = popMark();
        push(v);
        break;
      }
      case 0x85:   // TUPLE1
      case 0x86:   // TUPLE2
      case 0x87: { // TUPLE3
        const size_t n = op - 0x84;
        auto v = PyValue::make(Kind::Tuple);
        v->items.resize(n);
        for (size_t k = n; k-- > 0;)
          v->items[k] = pop();
        push(v);
        break;
      }
      case ']':  // EMPTY_LIST
      case 0x8f: // EMPTY_SET
        push(PyValue::make(Kind::List));
        break;
      case 'l':    // LIST
      case 0x91: { // FROZENSET
        auto v = PyValue::make(Kind::List);
        v->items = popMark();
        push(v);
        break;
      }
      case 'a': { // APPEND
        PyRef item = pop();
        appendTo(top(), {item});
        break;
      }
      case 'e':    // APPENDS
      case 0x90: { // ADDITEMS
        auto items = popMark();
        appendTo(top(), items);
        break;
      }
      case '}': // EMPTY_DICT
        push(PyValue::make(Kind::Dict));
        break;
      case 'd': { // DICT
        auto items = popMark();
        auto v = PyValue::make(Kind::Dict);
        setItems(*v, items);
        push(v);
        break;
      }
      case 's': { // SETITEM
        PyRef value = pop();
        PyRef key = pop();
        setItems(*top(), {key, value});
        break;
      }
      case 'u': { // SETITEMS
        auto items = popMark();
        setItems(*top(), items);
        break;
      }
      case 'c': { // GLOBAL
        std::string module = readLine();
        std::string name = readLine();
        push(PyValue::str(Kind::Global, module + "." + name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        PyRef name = pop();
        PyRef module = pop();
        if (module->kind != Kind::Str || name->kind != Kind::Str)
          throw PickleError("STACK_GLOBAL without module and name strings");
        push(PyValue::str(Kind::Global, module->s + "." + name->s));
        break;
      }
      case 'R': { // REDUCE
        PyRef args = pop();
        PyRef callable = pop();
        push(call(callable, args));
        break;
      }
      case 0x81: { // NEWOBJ
        PyRef args = pop();
        PyRef cls = pop();
        push(call(cls, args));
        break;
      }
      case 0x92: { // NEWOBJ_EX
        pop();     // kwargs
        PyRef args = pop();
        PyRef cls = pop();
        push(call(cls, args));
        break;
      }
      case 'b': { // BUILD
        PyRef state = pop();
        PyRef obj = top();
        if (obj->kind == Kind::Object)
          obj->state = state;
        // A state dict's BUILD carries its _metadata (versions): not needed.
        break;
      }
      case 'Q': // BINPERSID
        push(persistent(pop()));
        break;
      case 'p': // PUT (text)
        memo_[static_cast<uint64_t>(parseInt(readLine()))] = top();
        break;
      case 'q': // BINPUT
        memo_[little(1)] = top();
        break;
      case 'r': // LONG_BINPUT
        memo_[little(4)] = top();
        break;
      case 0x94: // MEMOIZE
        memo_[memo_.size()] = top();
        break;
      case 'g': // GET (text)
        push(memoGet(static_cast<uint64_t>(parseInt(readLine()))));
        break;
      case 'h': // BINGET
        push(memoGet(little(1)));
        break;
      case 'j': // LONG_BINGET
        push(memoGet(little(4)));
        break;
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        throw PickleError(std::string("unsupported pickle opcode ") + hex + " at byte " +
                          std::to_string(at) +
                          " (this reader knows what torch.save writes: protocols 2-4)");
      }
      }
    }
  }

private:
  void need(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n)
      throw PickleError("the pickle is truncated");
  }
  uint8_t byte() {
    need(1);
    return static_cast<uint8_t>(*p_++);
  }
  const char *bytes(size_t n) {
    need(n);
    const char *b = p_;
    p_ += n;
    return b;
  }
  uint64_t little(size_t n) {
    const char *b = bytes(n);
    uint64_t v = 0;
    for (size_t k = n; k-- > 0;)
      v = (v << 8) | static_cast<uint8_t>(b[k]);
    return v;
  }
  std::string text(uint64_t n) {
    if (n > static_cast<uint64_t>(end_ - p_))
      throw PickleError("the pickle is truncated");
    const char *b = bytes(static_cast<size_t>(n));
    return std::string(b, static_cast<size_t>(n));
  }
  std::string readLine() {
    const char *nl = static_cast<const char *>(std::memchr(p_, '\n', end_ - p_));
    if (!nl)
      throw PickleError("the pickle is truncated");
    std::string line(p_, nl);
    p_ = nl + 1;
    return line;
  }
  static int64_t parseInt(const std::string &s) {
    try {
      size_t used = 0;
      int64_t v = std::stoll(s, &used);
      if (used == s.size())
        return v;
    } catch (const std::exception &) {
    }
    throw PickleError("bad integer '" + s + "' in the pickle");
  }

  static PyRef boolean(bool b) {
    auto v = PyValue::make(Kind::Bool);
    v->b = b;
    return v;
  }
  static PyRef integer(int64_t i) {
    auto v = PyValue::make(Kind::Int);
    v->i = i;
    return v;
  }
  /// LONG1/LONG4: little-endian two's complement of `n` bytes. Integers that
  /// do not fit 64 bits become opaque objects (no tensor needs them).
  PyRef longInt(uint64_t n) {
    if (n > static_cast<uint64_t>(end_ - p_))
      throw PickleError("the pickle is truncated");
    const char *b = bytes(static_cast<size_t>(n));
    if (n == 0)
      return integer(0);
    const bool negative = static_cast<uint8_t>(b[n - 1]) & 0x80;
    for (uint64_t k = 8; k < n; ++k)
      if (static_cast<uint8_t>(b[k]) != (negative ? 0xff : 0x00))
        return PyValue::str(Kind::Object, "builtins.int");
    uint64_t v = negative ? ~uint64_t(0) : 0;
    for (uint64_t k = std::min<uint64_t>(n, 8); k-- > 0;)
      v = (v << 8) | static_cast<uint8_t>(b[k]);
    if (n < 8 && !negative)
      v &= (uint64_t(1) << (8 * n)) - 1;
    return integer(static_cast<int64_t>(v));
  }

  void push(PyRef v) { stack_.push_back(std::move(v)); }
  PyRef pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()))
      throw PickleError("the pickle pops from an empty stack");
    PyRef v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  PyRef &top() {
    if (stack_.empty())
      throw PickleError("the pickle reads an empty stack");
    return stack_.back();
  }
  std::vector<PyRef> popMark() {
    if (marks_.empty())
      throw PickleError("the pickle has no MARK to pop to");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<PyRef> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  PyRef memoGet(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end())
      throw PickleError("the pickle reads memo entry " + std::to_string(index) +
                        ", which it never stored");
    return it->second;
  }
  static void appendTo(const PyRef &list, const std::vector<PyRef> &items) {
    if (list->kind == Kind::List)
      list->items.insert(list->items.end(), items.begin(), items.end());
    else if (list->kind == Kind::Object) // a list subclass: keep the items as arguments
      list->items.insert(list->items.end(), items.begin(), items.end());
    else
      throw PickleError(std::string("the pickle appends to a ") + kindName(list->kind));
  }
  static void setItems(PyValue &dict, const std::vector<PyRef> &items) {
    if (items.size() % 2)
      throw PickleError("the pickle sets a dict item without a value");
    if (dict.kind != Kind::Dict && dict.kind != Kind::Object)
      throw PickleError(std::string("the pickle sets items of a ") + kindName(dict.kind));
    for (size_t k = 0; k < items.size(); k += 2)
      dict.entries.emplace_back(items[k], items[k + 1]);
  }

  /// REDUCE / NEWOBJ: what the few callables torch.save uses build; anything
  /// else becomes an opaque Object that keeps its arguments.
  PyRef call(const PyRef &callable, const PyRef &args) {
    if (args->kind != Kind::Tuple)
      throw PickleError("the pickle calls with arguments that are not a tuple");
    const auto &a = args->items;
    const std::string name = callable->kind == Kind::Global ? callable->s : "";
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor")
      return rebuildTensor(a);
    if ((name == "torch._utils._rebuild_parameter" ||
         name == "torch._utils._rebuild_parameter_with_state") &&
        !a.empty())
      return a[0];
    if (name == "torch._utils._rebuild_from_type_v2" && a.size() >= 3 && a[2]->kind == Kind::Tuple)
      return call(a[0], a[2]);
    // LibTorch's pickler (torch::pickle_save) tags containers with their
    // element types and writes lists of numbers through helpers.
    if ((name == "torch.jit._pickle.restore_type_tag" ||
         name == "torch.jit._pickle.build_intlist" ||
         name == "torch.jit._pickle.build_doublelist" ||
         name == "torch.jit._pickle.build_boollist" ||
         name == "torch.jit._pickle.build_tensorlist") &&
        !a.empty())
      return a[0];
    if (name == "collections.OrderedDict" || name == "builtins.dict") {
      auto d = PyValue::make(Kind::Dict);
      if (!a.empty() && a[0]->kind == Kind::List)
        for (const auto &pair : a[0]->items)
          if (pair->kind == Kind::Tuple && pair->items.size() == 2)
            d->entries.emplace_back(pair->items[0], pair->items[1]);
      return d;
    }
    if (name == "builtins.set" || name == "builtins.frozenset" || name == "builtins.list") {
      auto l = PyValue::make(Kind::List);
      if (!a.empty() && a[0]->kind == Kind::List)
        l->items = a[0]->items;
      return l;
    }
    if (name == "_codecs.encode" && !a.empty() && a[0]->kind == Kind::Str)
      return PyValue::str(Kind::Bytes, a[0]->s);
    auto obj = PyValue::str(Kind::Object, name.empty() ? "?" : name);
    obj->items = a;
    return obj;
  }

  /// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]).
  static PyRef rebuildTensor(const std::vector<PyRef> &a) {
    if (a.size() < 4 || a[0]->kind != Kind::Storage || a[1]->kind != Kind::Int ||
        a[2]->kind != Kind::Tuple || a[3]->kind != Kind::Tuple)
      throw PickleError("a tensor in the pickle is not (storage, offset, size, stride, ...)");
    auto t = PyValue::make(Kind::Tensor);
    t->storage = a[0];
    t->offset = a[1]->i;
    for (const auto &s : a[2]->items) {
      if (s->kind != Kind::Int || s->i < 0)
        throw PickleError("a tensor in the pickle has a size that is not a count");
      t->sizes.push_back(s->i);
    }
    for (const auto &s : a[3]->items) {
      if (s->kind != Kind::Int || s->i < 0)
        throw PickleError("a tensor in the pickle has a stride that is not a count");
      t->strides.push_back(s->i);
    }
    if (t->sizes.size() != t->strides.size() || t->offset < 0)
      throw PickleError("a tensor in the pickle has " + std::to_string(t->sizes.size()) +
                        " sizes and " + std::to_string(t->strides.size()) + " strides");
    return t;
  }

  /// ('storage', torch.FloatStorage, key, location, numel): one record of the zip.
  PyRef persistent(const PyRef &pid) {
    if (pid->kind != Kind::Tuple || pid->items.size() < 5 || pid->items[0]->kind != Kind::Str ||
        pid->items[0]->s != "storage" || pid->items[1]->kind != Kind::Global ||
        pid->items[2]->kind != Kind::Str || pid->items[4]->kind != Kind::Int)
      throw PickleError("a persistent id in the pickle is not ('storage', type, key, location, "
                        "numel)");
    const std::string &key = pid->items[2]->s;
    auto it = storages_.find(key);
    if (it != storages_.end())
      return it->second;
    auto s = PyValue::make(Kind::Storage);
    s->storageKey = key;
    s->storageType = pid->items[1]->s;
    s->dtype = storageDtype(s->storageType);
    s->numel = pid->items[4]->i;
    storages_[key] = s;
    return s;
  }

  const char *begin_;
  const char *p_;
  const char *end_;
  std::vector<PyRef> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PyRef> memo_;
  std::map<std::string, PyRef> storages_;
};

/// A dict of tensors (a state dict): name -> tensor value; empty when `v` is
/// not one.
std::vector<std::pair<std::string, PyRef>> stateDict(const PyRef &v) {
  std::vector<std::pair<std::string, PyRef>> out;
  if (!v || v->kind != Kind::Dict || v->entries.empty())
    return {};
  for (const auto &[k, t] : v->entries) {
    if (k->kind != Kind::Str || t->kind != Kind::Tensor)
      return {};
    out.emplace_back(k->s, t);
  }
  // DataParallel's "module." prefix on every name.
  const std::string prefix = "module.";
  bool prefixed = std::all_of(out.begin(), out.end(), [&](const auto &e) {
    return e.first.compare(0, prefix.size(), prefix) == 0;
  });
  if (prefixed)
    for (auto &e : out)
      e.first = e.first.substr(prefix.size());
  return out;
}

} // namespace

// ----------------------------------------------------------------- the file

std::string OfficialArgs::describe() const {
  std::ostringstream os;
  const char *sep = "";
  if (model) {
    os << sep << "model " << *model;
    sep = ", ";
  }
  if (kernelSize) {
    os << sep << "kernel_size";
    for (int64_t k : *kernelSize)
      os << ' ' << k;
    sep = ", ";
  }
  if (widthFactor) {
    os << sep << "width_factor " << *widthFactor;
    sep = ", ";
  }
  if (decom) {
    os << sep << "Decom " << (*decom ? "True" : "False");
    sep = ", ";
  }
  if (bn) {
    os << sep << "bn " << (*bn ? "True" : "False");
    sep = ", ";
  }
  if (numClasses)
    os << sep << "nb_classes " << *numClasses;
  return os.str();
}

struct OfficialCheckpoint::Impl {
  std::string path;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip;
  std::unique_ptr<ZipChecksums> checksums;
  PyRef root;
  struct Weights {
    std::vector<std::string> names;
    std::map<std::string, PyRef> tensors;
  };
  Weights model, ema;
  std::string epoch;
  OfficialArgs args;
  mutable std::map<std::string, c10::Storage> storages;

  const Weights &weights(bool useEma) const { return useEma ? ema : model; }

  [[noreturn]] void fail(const std::string &what) const {
    throw std::runtime_error("checkpoint " + path + ": " + what);
  }

  /// Refuses a record whose bytes do not match its CRC-32.
  void checkRecord(const std::string &record, const at::DataPtr &data, size_t size) const {
    if (std::string error = checksums->check(record, data.get(), size); !error.empty())
      throw std::runtime_error("checkpoint " + path + " is corrupt: " + error + "; copy it again");
  }

  c10::Storage storage(const PyValue &s) const {
    auto it = storages.find(s.storageKey);
    if (it != storages.end())
      return it->second;
    if (s.dtype == c10::ScalarType::Undefined)
      fail("storage data/" + s.storageKey + " has type " + s.storageType +
           ", which this reader does not support");
    const std::string record = "data/" + s.storageKey;
    at::DataPtr data;
    size_t size = 0;
    try {
      std::tie(data, size) = zip->getRecord(record);
    } catch (const c10::Error &e) {
      fail("storage " + record +
           " cannot be read (truncated or corrupt file?): " + e.what_without_backtrace());
    }
    checkRecord(record, data, size);
    const __int128 need = static_cast<__int128>(s.numel) * c10::elementSize(s.dtype);
    if (s.numel < 0 || static_cast<__int128>(size) < need)
      fail("storage " + record + " has " + std::to_string(size) + " bytes, fewer than its " +
           std::to_string(s.numel) + " elements need (truncated or corrupt file?)");
    c10::Storage storage(c10::Storage::use_byte_size_t(), size, std::move(data),
                         /*allocator=*/nullptr, /*resizable=*/false);
    storages.emplace(s.storageKey, storage);
    return storage;
  }

  torch::Tensor tensor(const std::string &name, const PyValue &t) const {
    const PyValue &s = *t.storage;
    __int128 last = t.offset; // (no overflow on sizes and strides of a corrupt file)
    bool empty = false;
    for (size_t d = 0; d < t.sizes.size(); ++d) {
      empty = empty || t.sizes[d] == 0;
      last += static_cast<__int128>(t.sizes[d] - 1) * t.strides[d];
    }
    if (!empty && last >= s.numel)
      fail("tensor " + name + " reads past the end of its storage data/" + s.storageKey +
           " (corrupt file?)");
    c10::Storage storage = this->storage(s);
    return torch::empty({0}, torch::TensorOptions().dtype(s.dtype))
        .set_(storage, t.offset, t.sizes, t.strides);
  }
};

OfficialCheckpoint::OfficialCheckpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OfficialCheckpoint::~OfficialCheckpoint() = default;

std::unique_ptr<OfficialCheckpoint> OfficialCheckpoint::open(const std::string &path) {
  if (!std::filesystem::is_regular_file(path))
    return nullptr;
  char head[16] = {};
  {
    std::ifstream in(path, std::ios::binary);
    in.read(head, sizeof head);
    if (in.gcount() < 4)
      return nullptr;
  }
  // Legacy torch.save (PyTorch < 1.6): a pickle starting with the magic
  // number 0x1950a86a20f9469cfc6c (PROTO 2, LONG1 10 bytes).
  static const unsigned char legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                         0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  if (std::memcmp(head, legacy, sizeof legacy) == 0)
    throw std::runtime_error(
        "checkpoint " + path +
        " is in the legacy torch.save format of PyTorch < 1.6, which this reader does not "
        "read: re-save it in Python with torch.save(torch.load(OLD, weights_only=False), NEW)");
  if (std::memcmp(head, "PK\x03\x04", 4) != 0)
    return nullptr; // not a zip archive: not ours to judge

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  try {
    impl->zip = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
    impl->checksums = std::make_unique<ZipChecksums>(path);
  } catch (const std::exception &e) {
    std::string why = e.what();
    if (const auto *c10 = dynamic_cast<const c10::Error *>(&e))
      why = c10->what_without_backtrace();
    why = why.substr(0, why.find('\n'));
    // miniz appends a paragraph of advice to its one-line reason.
    if (size_t advice = why.find(". This is an internal miniz error"); advice != std::string::npos)
      why.erase(advice);
    throw std::runtime_error("checkpoint " + path +
                             " is not a readable PyTorch zip archive (truncated or corrupt?): " +
                             why + "; write or copy it again");
  }
  // slak-train checkpoints are TorchScript archives (code/, constants.pkl).
  if (impl->zip->hasRecord("constants.pkl") || !impl->zip->hasRecord("data.pkl"))
    return nullptr;
  if (impl->zip->hasRecord("byteorder")) {
    auto [order, n] = impl->zip->getRecord("byteorder");
    if (std::string(static_cast<const char *>(order.get()), n) != "little")
      impl->fail("its tensors are stored big-endian, which this reader does not support");
  }
  at::DataPtr pickle;
  size_t size = 0;
  try {
    std::tie(pickle, size) = impl->zip->getRecord("data.pkl");
  } catch (const c10::Error &e) {
    impl->fail(std::string("data.pkl cannot be read (truncated or corrupt file?): ") +
               e.what_without_backtrace());
  }
  impl->checkRecord("data.pkl", pickle, size);
  try {
    impl->root = Unpickler(static_cast<const char *>(pickle.get()), size).parse();
  } catch (const PickleError &e) {
    impl->fail(std::string("its data.pkl cannot be read: ") + e.what());
  }

  const PyRef &root = impl->root;
  auto fill = [](Impl::Weights &w, const std::vector<std::pair<std::string, PyRef>> &sd) {
    for (const auto &[name, t] : sd) {
      w.names.push_back(name);
      w.tensors[name] = t;
    }
  };
  if (root->kind == Kind::Dict) {
    fill(impl->model, stateDict(root->get("model")));
    fill(impl->ema, stateDict(root->get("model_ema")));
    if (impl->model.names.empty() && impl->ema.names.empty())
      fill(impl->model, stateDict(root)); // a bare state dict
  }
  if (impl->model.names.empty() && impl->ema.names.empty())
    impl->fail(std::string("a torch.save file whose top-level object is a ") +
               kindName(root->kind) +
               ", not an official SLaK checkpoint (a dict with a 'model' or 'model_ema' state "
               "dict) nor a slak-train checkpoint");

  if (root->kind == Kind::Dict) {
    if (PyRef epoch = root->get("epoch")) {
      if (epoch->kind == Kind::Int)
        impl->epoch = std::to_string(epoch->i);
      else if (epoch->kind == Kind::Str)
        impl->epoch = epoch->s;
    }
    PyRef args = root->get("args");
    if (args && args->kind == Kind::Object && args->state && args->state->kind == Kind::Dict) {
      const PyValue &a = *args->state;
      OfficialArgs &out = impl->args;
      if (PyRef v = a.get("model"); v && v->kind == Kind::Str)
        out.model = v->s;
      if (PyRef v = a.get("kernel_size"); v && (v->kind == Kind::List || v->kind == Kind::Tuple)) {
        std::vector<int64_t> ks;
        for (const auto &k : v->items)
          if (k->kind == Kind::Int)
            ks.push_back(k->i);
        if (ks.size() == v->items.size())
          out.kernelSize = ks;
      }
      if (PyRef v = a.get("width_factor"); v && (v->kind == Kind::Float || v->kind == Kind::Int))
        out.widthFactor = v->kind == Kind::Float ? v->f : static_cast<double>(v->i);
      if (PyRef v = a.get("Decom"); v && v->kind == Kind::Bool)
        out.decom = v->b;
      if (PyRef v = a.get("bn"); v && v->kind == Kind::Bool)
        out.bn = v->b;
      if (PyRef v = a.get("nb_classes"); v && v->kind == Kind::Int)
        out.numClasses = v->i;
    }
  }
  return std::unique_ptr<OfficialCheckpoint>(new OfficialCheckpoint(std::move(impl)));
}

const std::string &OfficialCheckpoint::path() const { return impl_->path; }
bool OfficialCheckpoint::hasWeights(bool ema) const { return !impl_->weights(ema).names.empty(); }
const std::vector<std::string> &OfficialCheckpoint::names(bool ema) const {
  return impl_->weights(ema).names;
}

std::map<std::string, std::vector<int64_t>> OfficialCheckpoint::shapes(bool ema) const {
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto &[name, t] : impl_->weights(ema).tensors)
    out[name] = t->sizes;
  return out;
}

torch::Tensor OfficialCheckpoint::tensor(const std::string &name, bool ema) const {
  const auto &tensors = impl_->weights(ema).tensors;
  auto it = tensors.find(name);
  if (it == tensors.end())
    throw std::out_of_range("checkpoint " + impl_->path + " has no tensor " + name);
  return impl_->tensor(name, *it->second);
}

const std::string &OfficialCheckpoint::epoch() const { return impl_->epoch; }
const OfficialArgs &OfficialCheckpoint::args() const { return impl_->args; }

// ------------------------------------------------------------- name mapping

std::vector<std::pair<std::string, std::string>> officialTensorNames(Classifier &model) {
  std::map<std::string, std::string> exact;    // our full name -> official
  std::map<std::string, std::string> prefixes; // our BN prefix -> official BN prefix
  for (auto &[path, layer] : largeKernelLayers(model)) {
    const auto &branches = layer->options().branches;
    const bool decomposed = branches.size() >= 2 && branches[0].kernelH != branches[0].kernelW;
    static const char *const lora[] = {"LoRA1", "LoRA2", "small_conv"};
    static const char *const origin[] = {"lkb_origin", "small_conv"};
    for (size_t b = 0; b < layer->numBranches() && b < (decomposed ? 3u : 2u); ++b) {
      const std::string official = path + "." + (decomposed ? lora[b] : origin[b]) + ".";
      exact[path + "." + layer->branchWeightName(b)] = official + "conv.weight";
      if (auto bn = layer->branchNorm(b))
        for (const auto &m : layer->named_modules("", /*include_self=*/false))
          if (m.value().get() == bn.ptr().get())
            prefixes[path + "." + m.key() + "."] = official + "bn.";
    }
  }
  auto rename = [&](const std::string &name) {
    if (auto it = exact.find(name); it != exact.end())
      return it->second;
    for (const auto &[ours, official] : prefixes)
      if (name.compare(0, ours.size(), ours) == 0)
        return official + name.substr(ours.size());
    return name;
  };
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto &p : model.named_parameters())
    out.emplace_back(p.key(), rename(p.key()));
  for (const auto &b : model.named_buffers())
    out.emplace_back(b.key(), rename(b.key()));
  return out;
}

std::vector<std::string> legacyOfficialNames(const std::string &officialName) {
  std::vector<std::string> out;
  for (const auto &[now, before] :
       {std::pair<std::string, std::string>{".LoRA1.", ".Decom1."}, {".LoRA2.", ".Decom2."}}) {
    const size_t at = officialName.find(now);
    if (at != std::string::npos)
      out.push_back(officialName.substr(0, at) + before + officialName.substr(at + now.size()));
  }
  return out;
}

// ---------------------------------------------------------------- deduction

namespace {

/// "stages.I.J.rest" -> (I, J, rest); false for other names.
bool splitStageName(const std::string &name, int64_t &stage, int64_t &block, std::string &rest) {
  const std::string prefix = "stages.";
  if (name.compare(0, prefix.size(), prefix) != 0)
    return false;
  size_t pos = prefix.size();
  auto number = [&](int64_t &out) {
    size_t end = pos;
    while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end])))
      ++end;
    if (end == pos || end >= name.size() || name[end] != '.')
      return false;
    out = std::stoll(name.substr(pos, end - pos));
    pos = end + 1;
    return true;
  };
  if (!number(stage) || !number(block))
    return false;
  rest = name.substr(pos);
  return true;
}

std::string joined(const std::vector<int> &v) {
  std::string s;
  for (size_t k = 0; k < v.size(); ++k)
    s += (k ? "," : "") + std::to_string(v[k]);
  return s;
}

std::string number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

} // namespace

OfficialModelShape
describeOfficialModel(const std::map<std::string, std::vector<int64_t>> &shapes) {
  OfficialModelShape out;
  auto shape = [&](const std::string &name) -> const std::vector<int64_t> * {
    auto it = shapes.find(name);
    return it == shapes.end() ? nullptr : &it->second;
  };
  for (const auto &[name, s] : shapes) {
    int64_t stage = 0, block = 0;
    std::string rest;
    if (!splitStageName(name, stage, block, rest) || stage > 64)
      continue;
    if (static_cast<int64_t>(out.depths.size()) <= stage)
      out.depths.resize(stage + 1, 0);
    out.depths[stage] = std::max(out.depths[stage], block + 1);
  }
  const size_t numStages = out.depths.size();
  out.dims.assign(numStages, 0);
  out.kernelSizes.assign(numStages, 0);
  if (auto *stem = shape("downsample_layers.0.0.weight"); stem && stem->size() == 4) {
    out.inChannels = (*stem)[1];
    out.stemKernel = static_cast<int>((*stem)[2]);
  }
  if (auto *head = shape("head.weight"); head && head->size() == 2)
    out.numClasses = (*head)[0];
  bool sawBn = false, sawBranch = false;
  for (size_t i = 0; i < numStages; ++i) {
    const std::string stage = "stages." + std::to_string(i) + ".";
    const std::string down = i == 0 ? "downsample_layers.0.0.weight"
                                    : "downsample_layers." + std::to_string(i) + ".1.weight";
    if (auto *d = shape(down); d && !d->empty())
      out.dims[i] = (*d)[0];
    else if (auto *n = shape(stage + "0.norm.weight"); n && !n->empty())
      out.dims[i] = (*n)[0];
    const std::string lk = stage + "0.large_kernel.";
    for (const char *branch : {"LoRA1", "Decom1", "lkb_origin"}) {
      if (auto *w = shape(lk + branch + ".conv.weight"); w && w->size() == 4) {
        out.kernelSizes[i] = static_cast<int>((*w)[2]);
        if (std::string(branch) == "lkb_origin")
          out.decomposed = false;
        else if (!out.smallKernel)
          out.smallKernel = static_cast<int>((*w)[3]);
        sawBranch = true;
        sawBn = sawBn || shape(lk + branch + ".bn.weight");
        break;
      }
    }
    if (auto *w = shape(lk + "lkb_reparam.weight"); w && w->size() == 4) {
      out.merged = true;
      if (!out.kernelSizes[i])
        out.kernelSizes[i] = static_cast<int>((*w)[2]);
    }
    if (auto *w = shape(lk + "small_conv.conv.weight"); w && w->size() == 4 && !out.smallKernel)
      out.smallKernel = static_cast<int>((*w)[2]);
  }
  out.branchBatchNorm = !sawBranch || sawBn;

  // The registry model with these depths whose widths come from its base dims
  // and its own width factor, else from a factor on a 0.01 grid.
  for (int pass = 0; pass < 2 && out.registryName.empty(); ++pass)
    for (const auto &name : modelNames()) {
      ModelConfig c = modelConfig(name);
      if (c.family != Family::Slak || c.depths != out.depths)
        continue;
      if (pass == 0) {
        if (c.dims() == out.dims) {
          out.registryName = name;
          out.widthFactor = c.widthFactor;
          break;
        }
        continue;
      }
      for (int k = 1; k <= 1000 && out.registryName.empty(); ++k) {
        c.widthFactor = k / 100.0;
        if (c.dims() == out.dims) {
          out.registryName = name;
          out.widthFactor = c.widthFactor;
        }
      }
      if (!out.registryName.empty())
        break;
    }
  return out;
}

std::string fittingFlags(const OfficialModelShape &file, const ModelConfig &current) {
  std::vector<std::string> flags;
  ModelConfig base = current;
  if (file.depths != current.depths || file.dims != current.dims()) {
    if (file.registryName.empty()) {
      std::ostringstream os;
      os << "(depths " << c10::IntArrayRef(file.depths) << " and widths "
         << c10::IntArrayRef(file.dims) << ", which no registry model has)";
      flags.push_back(os.str());
    } else {
      if (file.registryName != current.name) {
        flags.push_back("--model " + file.registryName);
        base = modelConfig(file.registryName);
      }
      if (file.widthFactor != base.widthFactor)
        flags.push_back("--width-factor " + number(file.widthFactor));
    }
  }
  const bool allKernels =
      !file.kernelSizes.empty() &&
      std::all_of(file.kernelSizes.begin(), file.kernelSizes.end(), [](int k) { return k > 0; });
  if (allKernels && file.kernelSizes != base.kernelSizes)
    flags.push_back("--kernel-sizes " + joined(file.kernelSizes));
  if (file.smallKernel > 0 && file.smallKernel != base.smallKernel)
    flags.push_back("--small-kernel " + std::to_string(file.smallKernel));
  if (file.decomposed != base.decomposed)
    flags.push_back(std::string("--decomposed ") + (file.decomposed ? "true" : "false"));
  if (file.branchBatchNorm != base.branchBatchNorm)
    flags.push_back(std::string("--branch-bn ") + (file.branchBatchNorm ? "true" : "false"));
  if (file.stemKernel > 0 && file.stemKernel != base.stemKernel)
    flags.push_back("--stem-kernel " + std::to_string(file.stemKernel) + " --stem-stride " +
                    std::to_string(file.stemKernel));
  if (file.inChannels > 0 && file.inChannels != current.inChannels)
    flags.push_back("--in-channels " + std::to_string(file.inChannels));
  if (file.numClasses > 0 && file.numClasses != current.numClasses)
    flags.push_back("--classes " + std::to_string(file.numClasses));
  std::string out;
  for (const auto &f : flags)
    out += (out.empty() ? "" : " ") + f;
  return out;
}

std::string officialModelConfigJson(const OfficialModelShape &file) {
  ModelConfig c;
  c.name = file.registryName;
  c.depths = file.depths;
  c.baseDims = file.dims;
  c.widthFactor = 1.0;
  c.kernelSizes = file.kernelSizes;
  c.smallKernel = file.smallKernel;
  c.decomposed = file.decomposed;
  c.branchBatchNorm = file.branchBatchNorm;
  c.inChannels = file.inChannels;
  c.numClasses = file.numClasses;
  c.stemKernel = c.stemStride = file.stemKernel; // official stems are patchify
  // Only what the shapes show.
  unsigned fields = 0;
  if (std::all_of(file.kernelSizes.begin(), file.kernelSizes.end(), [](int k) { return k > 0; }))
    fields |= checkpoint::kKernelSizes;
  if (file.smallKernel > 0)
    fields |= checkpoint::kSmallKernel;
  if (file.inChannels > 0)
    fields |= checkpoint::kInChannels;
  if (file.numClasses > 0)
    fields |= checkpoint::kNumClasses;
  if (file.stemKernel > 0)
    fields |= checkpoint::kStem;
  return checkpoint::configJson(c, fields);
}

} // namespace slak::models
