// Fixed-width and varint integer coding for the on-disk formats (record_batch.h, keys.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <boost/endian/conversion.hpp>

namespace cairn::storage {

inline void PutFixed64BE(std::string* out, uint64_t v) {
  v = boost::endian::native_to_big(v);
  out->append(reinterpret_cast<const char*>(&v), sizeof v);
}
inline uint64_t GetFixed64BE(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return boost::endian::big_to_native(v);
}

template <class T>
inline void StoreLE(char* p, T v) {
  v = boost::endian::native_to_little(v);
  std::memcpy(p, &v, sizeof v);
}
template <class T>
inline T LoadLE(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return boost::endian::little_to_native(v);
}

inline void PutVarint64(std::string* out, uint64_t v) {
  char buf[10];
  size_t n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out->append(buf, n);
}

// Reads a varint from the front of `in` and advances it; false if `in` ends first or the value
// overflows 64 bits.
inline bool GetVarint64(std::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (unsigned shift = 0; shift < 64 && !in->empty(); shift += 7) {
    const auto byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

}  // namespace cairn::storage
