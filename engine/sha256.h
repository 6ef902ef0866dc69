#pragma once
// SHA-256 digests (OpenSSL EVP) of bytes and files, as lower-case hex.

#include <memory>
#include <string>
#include <string_view>

#include "engine/status.h"

namespace sluice {

// Incremental SHA-256. Not thread-safe; one instance per stream of bytes.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  // Adds `data` to the digest.
  void Update(std::string_view data);
  void Update(const void* data, size_t size);

  // Finishes and returns 64 lower-case hex characters. The object must not
  // be updated afterwards.
  std::string HexDigest();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// Hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

// Hex SHA-256 of the regular file at `path`, streamed. kNotFound when it does
// not exist; kPermissionDenied / kInternal for other read errors.
Result<std::string> Sha256File(const std::string& path);

}  // namespace sluice
