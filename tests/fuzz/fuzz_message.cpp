// libFuzzer target: the transport's message decoder and every typed message of the
// distributed protocol (fuzz_decode.hpp says how an input is read). Malformed input must end
// in ProtocolError, never anything else.
#include <cstddef>
#include <cstdint>

#include "fuzz_decode.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)tessera::fuzz::decode_input(data, size);
  } catch (const tessera::comm::ProtocolError&) {
  }
  return 0;
}
