#pragma once
// The REST API's description: an OpenAPI 3.0 document, served at
// GET /api/v1/openapi.json and used by the tests to check every route.

#include "engine/spec.h"

namespace sluice::server {

// The OpenAPI 3.0.3 document of the server's API. Every operation requires
// a bearer token (components.securitySchemes.bearer) except those with an
// explicit `security` of their own: the webhooks (signature/token headers,
// scheme github/gitlab) and /healthz (open). /metrics is open unless the
// config sets metrics.requireAuth.
Json OpenApiDocument();

}  // namespace sluice::server
