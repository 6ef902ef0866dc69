// `sluice compile FILE --target argo|manifests`.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>

#include "dsl/dsl.h"
#include "engine/cli/commands.h"
#include "engine/cli/output.h"
#include "engine/compile/argo.h"
#include "engine/compile/manifests.h"
#include "engine/compile/serving_objects.h"
#include "engine/s3_url.h"
#include "engine/store/aws_config.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "0.0.0"
#endif

namespace sluice::cli {
namespace {

// The published images of sluice (with sluice-serving on the PATH) are
// named after the project's repository, github.com/sluice-dev/sluice.
constexpr const char* kDefaultSluiceImage = "ghcr.io/sluice-dev/sluice:";

// Argo's form of the S3 location `url`: the endpoint as host[:port] with
// `insecure` for plain HTTP, from --artifacts-endpoint or the AWS settings
// (no credentials needed: the pods read theirs from a Secret).
Result<compile::ArgoS3> ArgoS3For(const std::string& url, const CompileOptions& options) {
  auto loc = ParseS3Location(url);
  if (!loc) return Error(loc.error());
  auto aws = ResolveAwsSettings([](const std::string& name) {
    const char* v = std::getenv(name.c_str());
    return std::string(v ? v : "");
  });
  if (!aws) return Error(aws.error());
  compile::ArgoS3 s3;
  s3.bucket = loc->bucket;
  s3.prefix = loc->prefix;
  s3.region = aws->region;
  s3.secret = options.artifacts_secret;
  std::string endpoint = !options.artifacts_endpoint.empty() ? options.artifacts_endpoint
                         : !aws->endpoint.empty()            ? aws->endpoint
                                                             : "https://s3." + aws->region + ".amazonaws.com";
  if (endpoint.rfind("http://", 0) == 0) {
    s3.insecure = true;
    endpoint = endpoint.substr(7);
  } else if (endpoint.rfind("https://", 0) == 0) {
    endpoint = endpoint.substr(8);
  } else {
    return Error(Status::InvalidArgument("S3 endpoint '" + endpoint + "' is not an http:// or https:// URL"));
  }
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  if (endpoint.empty() || endpoint.find('/') != std::string::npos) {
    return Error(Status::InvalidArgument("S3 endpoint '" + endpoint +
                                         "': Argo takes an endpoint without a path (host or host:port)"));
  }
  s3.endpoint = endpoint;
  return s3;
}

}  // namespace

int Compile(const CompileOptions& options) {
  auto loaded = dsl::LoadPipelineFile(options.file);
  if (!loaded.ok()) {
    std::cerr << dsl::FormatDiagnosticsText(loaded.diagnostics);
    return kExitUsage;
  }
  const PipelineSpec& spec = *loaded.spec;
  const std::string pipeline_dir =
      std::filesystem::absolute(options.file).parent_path().lexically_normal().string();

  std::vector<Json> objects;
  if (options.target == "argo") {
    compile::ArgoOptions argo;
    argo.namespace_ = options.namespace_;
    argo.workspace_pvc = options.workspace_pvc;
    argo.source_dir = options.source_dir;
    argo.service_account = options.service_account;
    argo.default_image = options.image;
    argo.keep_going = options.keep_going;
    argo.exclude_steps = options.exclude_steps;
    argo.sluice_image = options.sluice_image;
    if (argo.sluice_image.empty()) {
      // The image of this sluice version, published with each release.
      argo.sluice_image = std::string(kDefaultSluiceImage) + SLUICE_VERSION;
      const bool validates = std::any_of(spec.steps.begin(), spec.steps.end(), [&](const StepSpec& s) {
        return s.type == "traffic-validation" &&
               std::find(options.exclude_steps.begin(), options.exclude_steps.end(), s.name) ==
                   options.exclude_steps.end();
      });
      if (validates)
        std::cerr << "sluice: traffic-validation checks run in image " << argo.sluice_image
                  << " (--sluice-image IMAGE to use another)\n";
    }
    argo.serving = compile::OperatorServingObjects();
    if (std::string url = options.artifacts.empty() ? spec.artifacts : options.artifacts; !url.empty()) {
      auto s3 = ArgoS3For(url, options);
      if (!s3) {
        PrintError("--artifacts: " + s3.error().message());
        return kExitUsage;
      }
      argo.s3 = std::move(*s3);
    }
    auto out = compile::CompileToArgo(spec, pipeline_dir, argo);
    if (!out.ok()) {
      for (const auto& e : out.errors) std::cerr << e.ToString() << "\n";
      std::cerr << "sluice: " << out.errors.size() << " feature" << (out.errors.size() == 1 ? "" : "s")
                << " of " << options.file << " cannot be compiled to Argo\n";
      return kExitUsage;
    }
    objects = std::move(out.objects);
  } else {
    auto values = ParseParamFlags(options.params);
    if (!values) {
      PrintError(values.error().message());
      return kExitUsage;
    }
    auto params = dsl::BindParams(spec, *values);
    if (!params) {
      PrintError(params.error().message());
      return kExitUsage;
    }
    compile::ManifestsOptions mo;
    mo.executor.manifests.namespace_ = options.namespace_.empty() ? spec.namespace_ : options.namespace_;
    mo.executor.manifests.workspace_pvc = options.workspace_pvc;
    mo.executor.manifests.service_account = options.service_account;
    mo.executor.manifests.default_image = options.image;
    mo.pipeline_dir = options.source_dir;
    mo.exclude_steps = options.exclude_steps;
    mo.serving = compile::OperatorServingObjects();
    auto out = compile::CompileToManifests(spec, *params, mo);
    if (!out) {
      PrintError(out.error().message());
      return ExitCodeFor(out.error());
    }
    objects = std::move(*out);
    // Named on every object too (sluice.dev/host-steps), and here, where a
    // pipeline of nothing else would otherwise print nothing about them.
    std::string host;
    for (const auto* list : {&spec.steps, &spec.finally_steps})
      for (const auto& step : *list)
        if (step.type == "traffic-validation" &&
            std::find(mo.exclude_steps.begin(), mo.exclude_steps.end(), step.name) == mo.exclude_steps.end())
          host += (host.empty() ? "" : ", ") + step.name;
    if (!host.empty())
      std::cerr << "sluice: traffic-validation steps run on the host and create no Kubernetes objects: " << host
                << "\n";
  }

  std::string text;
  if (options.format == "json") {
    Json list = {{"apiVersion", "v1"}, {"kind", "List"}, {"items", objects}};
    text = list.dump(2) + "\n";
  } else {
    text = compile::ToYaml(objects);
  }
  if (options.output.empty() || options.output == "-") {
    std::cout << text;
    return kExitOk;
  }
  std::ofstream out(options.output);
  out << text;
  if (!out) {
    PrintError("cannot write " + options.output);
    return kExitSystem;
  }
  std::cerr << "sluice: wrote " << objects.size() << " object" << (objects.size() == 1 ? "" : "s") << " to "
            << options.output << "\n";
  return kExitOk;
}

Dispatch RegisterCompileCommand(CLI::App& app) {
  auto compile = std::make_shared<CompileOptions>();
  auto* compile_cmd = app.add_subcommand(
      "compile", "Compile a pipeline to Argo Workflows, or to the Kubernetes objects of a run");
  compile_cmd->add_option("FILE", compile->file, "Pipeline file")->required();
  compile_cmd->add_option("--target", compile->target, "argo (Workflow / WorkflowTemplate + CronWorkflow) "
                          "or manifests (Jobs, TFJobs, PyTorchJobs)")
      ->check(CLI::IsMember({"argo", "manifests"}));
  compile_cmd->add_option("--format", compile->format, "Output format (default yaml)")
      ->check(CLI::IsMember({"yaml", "json"}));
  compile_cmd->add_option("-o,--output", compile->output, "Write to FILE instead of stdout");
  compile_cmd->add_option("-p,--param", compile->params, "manifests: parameter value NAME=VALUE")
      ->allow_extra_args(false);
  compile_cmd->add_option("-n,--namespace", compile->namespace_, "Namespace of the objects");
  compile_cmd->add_option("--workspace-pvc", compile->workspace_pvc,
                          "RWX PersistentVolumeClaim shared by the steps' pods (default sluice-workspace)");
  compile_cmd->add_option("--source-dir", compile->source_dir,
                          "Where pods see the pipeline's directory, {{ pipeline.dir }} (default /sluice/src)");
  compile_cmd->add_option("--service-account", compile->service_account, "Service account of the pods");
  compile_cmd->add_option("--artifacts", compile->artifacts,
                          "argo: pass artifacts as Argo S3 artifacts in s3://BUCKET/PREFIX instead of on the "
                          "workspace volume (default: the pipeline's artifacts:)");
  compile_cmd->add_option("--artifacts-endpoint", compile->artifacts_endpoint, kArtifactsEndpointFlagHelp);
  compile_cmd->add_option("--artifacts-secret", compile->artifacts_secret,
                          "argo: Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the pods "
                          "(default sluice-s3)");
  compile_cmd->add_option("--image", compile->image, "Image for steps that name none");
  compile_cmd->add_flag("--keep-going", compile->keep_going, "argo: run independent branches after a failure");
  compile_cmd->add_option("--exclude-step", compile->exclude_steps,
                          "Leave out step NAME (repeatable; e.g. deploy / traffic-validation steps); "
                          "the output lists it in annotation sluice.dev/excluded-steps")
      ->allow_extra_args(false);
  compile_cmd->add_option("--sluice-image", compile->sluice_image,
                          "argo: image with sluice-serving on its PATH, which runs the checks of "
                          "traffic-validation steps (default ghcr.io/sluice-dev/sluice:" SLUICE_VERSION ")");

  return [compile, compile_cmd]() -> std::optional<int> {
    if (!*compile_cmd) return std::nullopt;
    return Compile(*compile);
  };
}

}  // namespace sluice::cli
