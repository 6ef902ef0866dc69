#pragma once
// Status and Result<T>: how every expected failure in sluice is returned.
//
// The codes follow Abseil's vocabulary; each one tells the caller whether a
// retry can help:
//   kInvalidArgument     the input is wrong; fix it, do not retry.
//   kNotFound            the named thing does not exist.
//   kAlreadyExists       the thing to create exists already.
//   kFailedPrecondition  the system is not in a state for this; fix state first.
//   kUnavailable         transient; retry the call, with backoff.
//   kDeadlineExceeded    the operation ran out of time.
//   kCancelled           the caller (or a signal) cancelled it.
//   kPermissionDenied    authenticated, but not allowed.
//   kUnauthenticated     no valid credentials.
//   kInternal            a bug or broken invariant inside sluice.

#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace sluice {

enum class StatusCode {
  kOk = 0,
  kCancelled,
  kInvalidArgument,
  kDeadlineExceeded,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kFailedPrecondition,
  kUnavailable,
  kInternal,
  kUnauthenticated,
};

// Returns the canonical upper-case name of `code`, e.g. "INVALID_ARGUMENT".
std::string_view StatusCodeName(StatusCode code);

// A success, or an error code with a human-readable message. Cheap to copy.
class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message)
      : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {StatusCode::kPermissionDenied, std::move(m)}; }
  static Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status Unauthenticated(std::string m) { return {StatusCode::kUnauthenticated, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "OK" or "NOT_FOUND: message".
  std::string ToString() const;

  // Returns a copy whose message is "`prefix`: message". Keeps the code.
  Status WithContext(std::string_view prefix) const;

  bool operator==(const Status& other) const = default;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or the Status explaining why there is none. Never holds an OK status.
template <typename T>
using Result = tl::expected<T, Status>;

// Builds the error side of a Result: `return Error(Status::NotFound("..."));`
inline tl::unexpected<Status> Error(Status s) { return tl::unexpected<Status>(std::move(s)); }

}  // namespace sluice

// Propagates a non-OK Status from an expression returning Status.
#define SLUICE_RETURN_IF_ERROR(expr)            \
  do {                                          \
    ::sluice::Status _sluice_st = (expr);       \
    if (!_sluice_st.ok()) return _sluice_st;    \
  } while (0)

// Propagates a non-OK Status out of a function returning Result<T>: the
// Status becomes the Result's error side.
#define SLUICE_RETURN_IF_ERROR_RESULT(expr)     \
  do {                                          \
    ::sluice::Status _sluice_st = (expr);       \
    if (!_sluice_st.ok()) return ::sluice::Error(std::move(_sluice_st));  \
  } while (0)
