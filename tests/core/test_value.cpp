#include <gtest/gtest.h>

#include "tessera/core/error.hpp"
#include "tessera/core/serialize.hpp"
#include "tessera/core/value.hpp"
#include "test_support.hpp"

namespace {

struct Point {
  double x = 0, y = 0;
  bool operator==(const Point&) const = default;
};

struct Opaque {  // no codec: usable locally, not shippable
  std::vector<int> data;
};

}  // namespace

template <>
struct tessera::Codec<Point> {
  static constexpr std::string_view name() { return "test.Point"; }
  static void encode(const Point& p, Encoder& e) {
    e.write_double(p.x);
    e.write_double(p.y);
  }
  static Point decode(Decoder& d) {
    Point p;
    p.x = d.read_double();
    p.y = d.read_double();
    return p;
  }
};
TESSERA_REGISTER_TYPE(Point);

namespace tessera {
namespace {

using testing::error_of;

TEST(Value, NoneAndInlineNumbers) {
  Value none;
  EXPECT_TRUE(none.is_none());
  EXPECT_EQ(none.type().name, "none");
  EXPECT_EQ(none.nbytes(), 0u);
  Value i = Value::of(int64_t{42});
  EXPECT_FALSE(i.type().boxed);
  EXPECT_EQ(i.type().name, "int64");
  EXPECT_EQ(i.get<int64_t>(), 42);
  EXPECT_EQ(i.nbytes(), 8u);
  EXPECT_EQ(Value::of(2.5).type().name, "float64");
  EXPECT_EQ(Value::of(2.5f).type().name, "float32");
  EXPECT_EQ(Value::of(true).type().name, "bool");
  EXPECT_EQ(Value::of(int32_t{-3}).get<int32_t>(), -3);
  EXPECT_EQ(Value::of(uint8_t{200}).type().name, "uint8");
}

TEST(Value, HeapValuesAreSharedNotCopied) {
  Value v = Value::of(std::vector<double>{1, 2, 3});
  EXPECT_TRUE(v.type().boxed);
  EXPECT_EQ(v.type().name, "vector<float64>");
  Value w = v;
  EXPECT_TRUE(w.shares_with(v));
  EXPECT_EQ(&w.get<std::vector<double>>(), &v.get<std::vector<double>>());
  EXPECT_EQ(v.nbytes(), sizeof(std::vector<double>) + 3 * sizeof(double));
  Value s = Value::of("hello");  // string literals become std::string
  EXPECT_EQ(s.type().name, "string");
  EXPECT_EQ(s.get<std::string>(), "hello");
}

TEST(Value, WrongTypeNamesBothTypes) {
  Value s = Value::of(std::string("x"));
  EXPECT_EQ(error_of<TypeError>([&] { s.get<int64_t>(); }),
            "cannot read a value of type 'string' as 'int64'");
  EXPECT_EQ(error_of<TypeError>([&] { s.as<double>(); }),
            "cannot read a value of type 'string' as 'float64'");
  EXPECT_EQ(error_of<TypeError>([&] { Value::of(1.0).get<int64_t>(); }),
            "cannot read a value of type 'float64' as 'int64'");
  EXPECT_EQ(error_of<TypeError>([&] { Value().as<int64_t>(); }),
            "cannot read a value of type 'none' as 'int64'");
}

TEST(Value, ArithmeticConversions) {
  EXPECT_EQ(Value::of(2.9).as<int64_t>(), 2);  // as static_cast does
  EXPECT_DOUBLE_EQ(Value::of(int64_t{-7}).as<double>(), -7.0);
  EXPECT_EQ(Value::of(true).as<int32_t>(), 1);
  EXPECT_EQ(Value::of(uint64_t{1} << 40).as<int64_t>(), int64_t{1} << 40);
  EXPECT_FLOAT_EQ(Value::of(0.5).as<float>(), 0.5f);
  EXPECT_EQ(Value::of(int8_t{-5}).as<int64_t>(), -5);
  EXPECT_EQ(Value::of(uint16_t{65535}).as<int64_t>(), 65535);
}

TEST(Value, SequenceConversions) {
  Value list = Value::list({Value::of(int64_t{1}), Value::of(2.0), Value::of(true)});
  EXPECT_EQ(list.type().name, "list");
  EXPECT_EQ(list.as<std::vector<double>>(), (std::vector<double>{1, 2, 1}));
  EXPECT_EQ(Value::of(std::vector<int32_t>{1, 2}).as<std::vector<int64_t>>(),
            (std::vector<int64_t>{1, 2}));
  Value nested = Value::list({Value::list({Value::of(int64_t{1})}), Value::list({})});
  EXPECT_EQ(nested.as<std::vector<std::vector<int64_t>>>(),
            (std::vector<std::vector<int64_t>>{{1}, {}}));
  EXPECT_EQ(error_of<TypeError>([&] { Value::list({Value::of("a")}).as<std::vector<int64_t>>(); }),
            "cannot read a value of type 'string' as 'int64'");
}

TEST(Value, Repr) {
  EXPECT_EQ(Value::of(int64_t{5}).repr(), "5");
  EXPECT_EQ(Value::of(0.25).repr(), "0.25");
  EXPECT_EQ(Value::of("hi").repr(), "\"hi\"");
  EXPECT_EQ(Value::of(std::vector<int64_t>{1, 2}).repr(), "[1, 2]");
  EXPECT_EQ(Value().repr(), "none");
  EXPECT_EQ(Value::of(Point{1, 2}).repr(), "<test.Point>");
  EXPECT_EQ(Value::of(std::string(100, 'a')).repr(10), "\"aaaaaa...");
}

TEST(Value, UserTypesWithAndWithoutCodec) {
  Value p = Value::of(Point{1.5, -2});
  EXPECT_EQ(p.type().name, "test.Point");
  EXPECT_NE(p.type().encode, nullptr);
  EXPECT_EQ(find_type("test.Point"), &p.type());
  Value q = decode_value(encode_value(p));
  EXPECT_EQ(q.get<Point>(), (Point{1.5, -2}));

  Value o = Value::of(Opaque{{1, 2, 3}});
  EXPECT_EQ(o.type().encode, nullptr);
  EXPECT_EQ(o.get<Opaque>().data.size(), 3u);
  EXPECT_NE(error_of<SerializationError>([&] { encode_value(o); }).find("have no codec"),
            std::string::npos);
}

TEST(Value, ReleasesHeapObjectWithLastReference) {
  auto tracker = std::make_shared<int>(1);
  std::weak_ptr<int> weak = tracker;
  {
    Value v = Value::of(std::move(tracker));
    Value w = v;
    v.reset();
    EXPECT_FALSE(weak.expired());
  }
  EXPECT_TRUE(weak.expired());
}

}  // namespace
}  // namespace tessera
