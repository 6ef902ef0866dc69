#include "engine/server/junit.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace sluice::server {
namespace {

std::string Escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // XML 1.0 forbids most control characters, even escaped.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t' && c != '\r')
          out += '?';
        else
          out += c;
    }
  }
  return out;
}

std::string Seconds(const std::optional<TimePoint>& start, const std::optional<TimePoint>& end) {
  double s = 0;
  if (start && end && *end > *start)
    s = std::chrono::duration<double>(*end - *start).count();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", s);
  return buf;
}

}  // namespace

std::string JunitXml(const RunSummary& summary) {
  int failures = 0, errors = 0, skipped = 0;
  std::string cases;
  const std::string suite = summary.run.pipeline.empty() ? "pipeline" : summary.run.pipeline;
  for (const StepRecord& step : summary.steps) {
    cases += "    <testcase classname=\"" + Escape(suite) + "\" name=\"" + Escape(step.instance) +
             "\" time=\"" + Seconds(step.started_at, step.finished_at) + "\"";
    std::string phase = NodePhaseName(step.phase);
    std::string detail = step.message;
    if (step.exit_code >= 0) detail += (detail.empty() ? "" : "; ") + std::string("exit code ") +
                                       std::to_string(step.exit_code);
    if (step.attempts > 1) detail += (detail.empty() ? "" : "; ") + std::to_string(step.attempts) +
                                     " attempts";
    std::string body;
    switch (step.phase) {
      case NodePhase::kFailed:
        ++failures;
        body = "      <failure message=\"" + Escape(detail) + "\" type=\"" + phase + "\">" +
               Escape("log: " + step.log_path) + "</failure>\n";
        break;
      case NodePhase::kError:
      case NodePhase::kCancelled:
      case NodePhase::kOmitted:
      case NodePhase::kPending:
      case NodePhase::kRunning:
        ++errors;
        body = "      <error message=\"" + Escape(phase + (detail.empty() ? "" : ": " + detail)) +
               "\" type=\"" + phase + "\">" + Escape("log: " + step.log_path) + "</error>\n";
        break;
      case NodePhase::kSkipped:
        ++skipped;
        body = "      <skipped message=\"" + Escape(detail.empty() ? "Skipped" : detail) + "\"/>\n";
        break;
      case NodePhase::kCached:
        ++skipped;
        body = "      <skipped message=\"" +
               Escape("Cached" + (step.cached_from.empty() ? "" : " from " + step.cached_from)) +
               "\"/>\n";
        break;
      case NodePhase::kSucceeded:
        break;
    }
    if (!step.log_path.empty() && step.phase == NodePhase::kSucceeded)
      body += "      <system-out>" + Escape("log: " + step.log_path) + "</system-out>\n";
    cases += body.empty() ? "/>\n" : ">\n" + body + "    </testcase>\n";
  }
  std::string counts = "tests=\"" + std::to_string(summary.steps.size()) + "\" failures=\"" +
                       std::to_string(failures) + "\" errors=\"" + std::to_string(errors) +
                       "\" skipped=\"" + std::to_string(skipped) + "\" time=\"" +
                       Seconds(summary.run.started_at, summary.run.finished_at) + "\"";
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += "<testsuites name=\"sluice\" " + counts + ">\n";
  out += "  <testsuite name=\"" + Escape(suite) + "\" id=\"" + Escape(summary.run.id) + "\" " +
         counts + ">\n";
  out += "    <properties>\n";
  out += "      <property name=\"run\" value=\"" + Escape(summary.run.id) + "\"/>\n";
  out += "      <property name=\"phase\" value=\"" + std::string(RunPhaseName(summary.run.phase)) +
         "\"/>\n";
  out += "    </properties>\n";
  out += cases;
  out += "  </testsuite>\n</testsuites>\n";
  return out;
}

Status WriteJunitXml(const RunSummary& summary, const std::string& path) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      return Status::FailedPrecondition("cannot write JUnit report " + tmp + ": " +
                                        std::strerror(errno) + "; check --junit's directory");
    out << JunitXml(summary);
    if (!out.flush())
      return Status::FailedPrecondition("cannot write JUnit report " + tmp + ": " +
                                        std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return Status::FailedPrecondition("cannot rename " + tmp + " to " + path + ": " +
                                      std::strerror(errno));
  return Status::Ok();
}

}  // namespace sluice::server
