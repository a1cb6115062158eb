#include <gtest/gtest.h>

#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"
#include "test_support.hpp"

namespace optest {
int64_t twice(int64_t x) {
  return 2 * x;
}
double scale(const std::vector<double>& v, double f) {
  double s = 0;
  for (double x : v) s += x * f;
  return s;
}
const std::vector<double>* seen_address = nullptr;
size_t address_probe(const std::vector<double>& v) {
  seen_address = &v;
  return v.size();
}
std::string concat(std::string a, const std::string& b) {
  return a + b;
}
tessera::Value count_args(std::span<const tessera::Value> args) {
  return tessera::Value::of(static_cast<int64_t>(args.size()));
}
void nothing(int64_t) {}
int64_t first(int64_t x) {
  return x;
}
int64_t second(int64_t x) {
  return x + 1;
}
}  // namespace optest

TESSERA_REGISTER(optest::twice);
TESSERA_REGISTER(optest::scale);
TESSERA_REGISTER(optest::address_probe);
TESSERA_REGISTER(optest::concat);
TESSERA_REGISTER(optest::count_args);
TESSERA_REGISTER(optest::nothing);
TESSERA_REGISTER(optest::twice);  // the same function again: harmless
TESSERA_REGISTER_AS("optest::same_name", optest::first);
TESSERA_REGISTER_AS("optest::same_name", optest::second);  // a conflict: the name becomes unusable

namespace tessera {
namespace {

using testing::error_of;

Value call(const Op& op, std::vector<Value> args) {
  return op.invoke(op, args);
}

TEST(OpRegistry, RegistersUnderQualifiedNameWithShortKeyPrefix) {
  const Op& op = get_op("optest::twice");
  EXPECT_EQ(op.name, "optest::twice");
  EXPECT_EQ(op.key_prefix, "twice");
  EXPECT_EQ(op.arity, 1);
  EXPECT_TRUE(op.registered);
  EXPECT_EQ(op.param_types, std::vector<std::string>{"int64"});
  EXPECT_EQ(op.result_type, "int64");
  EXPECT_EQ(find_op_by_fn(reinterpret_cast<void (*)()>(&optest::twice)), &op);
  EXPECT_EQ(call(op, {Value::of(int64_t{21})}).get<int64_t>(), 42);
  const auto names = registered_op_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "optest::scale"), names.end());
}

TEST(OpRegistry, ConvertsArgumentsAndResults) {
  const Op& scale = get_op("optest::scale");
  // int64 converts to the double parameter; the vector is passed by reference.
  EXPECT_DOUBLE_EQ(
      call(scale, {Value::of(std::vector<double>{1, 2}), Value::of(int64_t{3})}).get<double>(),
      9.0);
  // A list of values converts to the vector parameter.
  EXPECT_DOUBLE_EQ(
      call(scale, {Value::list({Value::of(1.0), Value::of(int64_t{2})}), Value::of(2.0)})
          .get<double>(),
      6.0);
  EXPECT_EQ(call(get_op("optest::concat"), {Value::of("ab"), Value::of("cd")}).get<std::string>(),
            "abcd");
  EXPECT_TRUE(call(get_op("optest::nothing"), {Value::of(int64_t{1})}).is_none());
}

TEST(OpRegistry, ConstReferenceParametersSeeTheSharedObject) {
  Value v = Value::of(std::vector<double>(1000, 1.0));
  const Op& op = get_op("optest::address_probe");
  EXPECT_EQ(call(op, {v}).get<size_t>(), 1000u);
  EXPECT_EQ(optest::seen_address, &v.get<std::vector<double>>());
}

TEST(OpRegistry, VariadicOps) {
  const Op& op = get_op("optest::count_args");
  EXPECT_EQ(op.arity, -1);
  EXPECT_EQ(call(op, {}).get<int64_t>(), 0);
  EXPECT_EQ(call(op, {Value::of(1), Value::of("x"), Value()}).get<int64_t>(), 3);
}

TEST(OpRegistry, BadCallsNameOpPositionAndTypes) {
  const Op& op = get_op("optest::scale");
  EXPECT_EQ(error_of<TypeError>([&] { call(op, {Value::of(1.0)}); }),
            "op 'optest::scale' takes 2 arguments (vector<float64>, float64), but 1 were given");
  EXPECT_EQ(error_of<TypeError>([&] {
              call(op, {Value::of(std::vector<double>{}), Value::of("x")});
            }),
            "op 'optest::scale' argument 2 expects 'float64', but the value given has type "
            "'string' (cannot read a "
            "value of type 'string' as 'float64')");
}

TEST(OpRegistry, UnknownAndConflictingNames) {
  EXPECT_EQ(find_op("no_such_op"), nullptr);
  const std::string unknown = error_of<OpError>([] { get_op("no_such_op"); });
  EXPECT_NE(unknown.find("unknown op 'no_such_op'"), std::string::npos);
  EXPECT_NE(unknown.find("TESSERA_REGISTER(no_such_op)"), std::string::npos);
  EXPECT_EQ(find_op("optest::same_name"), nullptr);
  EXPECT_EQ(
      error_of<OpError>([] { get_op("optest::same_name"); }),
      "op 'optest::same_name' is registered twice, by two different functions (int64(int64) and "
      "int64(int64)); register one of them under another name with TESSERA_REGISTER_AS");
}

TEST(OpRegistry, Closures) {
  int64_t offset = 100;
  auto op = make_closure_op("add_offset", [offset](int64_t x) { return x + offset; });
  EXPECT_FALSE(op->registered);
  EXPECT_EQ(op->key_prefix, "add_offset");
  EXPECT_EQ(call(*op, {Value::of(int64_t{1})}).get<int64_t>(), 101);
  auto variadic =
      make_closure_op("n", [](std::span<const Value> a) { return Value::of(a.size()); });
  EXPECT_EQ(variadic->arity, -1);
  EXPECT_EQ(call(*variadic, {Value(), Value()}).get<size_t>(), 2u);
}

TEST(OpRegistry, KeyPrefixes) {
  EXPECT_EQ(detail::key_prefix_of("a::b::inc"), "inc");
  EXPECT_EQ(detail::key_prefix_of("&fn"), "fn");
  EXPECT_EQ(detail::key_prefix_of("f<int>"), "f_int_");
  EXPECT_EQ(detail::key_prefix_of(""), "op");
}

}  // namespace
}  // namespace tessera
