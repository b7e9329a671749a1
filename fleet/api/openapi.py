"""The OpenAPI document, completed once for every route: security schemes, the error body, and
the error answers each kind of operation can give.

FastAPI documents each route's parameters, body and success reply; `documented_openapi` adds
what every route of a kind shares, so no route has to repeat it:

- security: a bearer API token on /api/v1 (the roles the route admits listed in its security
  requirement, OpenAPI 3.1 style), the four device signature headers on /device/v1 (as apiKey
  schemes, so /docs' Authorize button takes them), nothing on enrollment (its code is its proof);
- the standard error answers: 422 everywhere (a request that fails validation, an unknown query
  parameter), 401 and 403 where a token or signature is checked, 404 where the path names
  something, and 400 (a body that cannot be read) and 413 (a body over the limit) where there
  is a body. A route declares its own (409, 410, 416, 429 …) in `responses=`;
- every error answer's content: the one error body, `ErrorBody` (fleet.errors).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from fleet.errors import ErrorBody

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
API_PREFIX = "/api/v1/"
DEVICE_PREFIX = "/device/v1/"
UNSIGNED_DEVICE_PATHS = frozenset({"/device/v1/enroll"})  # the enrollment code is the proof
DEVICE_SCHEMES = ("deviceId", "deviceTimestamp", "deviceNonce", "deviceSignature")

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "apiToken": {
        "type": "http", "scheme": "bearer",
        "description": "An API token (`lamplighter server token create NAME --role ROLE`). Roles: "
                       "operator (everything), technician (register nodes, read), reader "
                       "(read; telemetry needs operator or reader). Each operation's security "
                       "requirement lists the roles it admits.",
    },
    "deviceId": {"type": "apiKey", "in": "header", "name": "X-Device-Id",
                 "description": "The node's id (device endpoints are HMAC-signed by the node)"},
    "deviceTimestamp": {"type": "apiKey", "in": "header", "name": "X-Timestamp",
                        "description": "Unix seconds, within the allowed clock skew"},
    "deviceNonce": {"type": "apiKey", "in": "header", "name": "X-Nonce",
                    "description": "16-64 characters of [A-Za-z0-9_-], never reused"},
    "deviceSignature": {
        "type": "apiKey", "in": "header", "name": "X-Signature",
        "description": "Hex HMAC-SHA256 under the node's key over the method, path?query, "
                       "X-Timestamp, X-Nonce and the body's SHA-256 (see fleet.auth)",
    },
}

STANDARD_ERRORS: dict[int, str] = {
    400: "the body cannot be read (e.g. a JSON body that is not UTF-8)",
    401: "missing, unknown or bad credentials",
    403: "the credentials may not do this (the token's role, a decommissioned node)",
    404: "nothing by that name or id",
    413: "the body is larger than the endpoint's limit",
    422: "the request fails validation, or names an unknown query parameter; detail says where",
}


def route_roles(dependant: Dependant) -> tuple[str, ...] | None:
    """The roles the route's token check admits (fleet.api.deps marks its dependencies)."""
    for dep in dependant.dependencies:
        roles = getattr(dep.call, "roles", None)
        if roles is not None:
            return tuple(roles)
        found = route_roles(dep)
        if found is not None:
            return found
    return None


def standard_errors(path: str, operation: dict[str, Any]) -> list[int]:
    """The error codes an operation of this kind can answer, whatever the route."""
    codes = [422]
    if operation.get("requestBody"):
        codes += [400, 413]
    if path.startswith(API_PREFIX) or (path.startswith(DEVICE_PREFIX)
                                       and path not in UNSIGNED_DEVICE_PATHS):
        codes += [401, 403]
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        codes.append(404)
    return sorted(codes)


def document_operation(path: str, operation: dict[str, Any], route: Any) -> None:
    """Add the security requirement, the standard errors and the error body to one operation."""
    if path.startswith(API_PREFIX):
        roles = route_roles(route.dependant) if route is not None else None
        operation["security"] = [{"apiToken": list(roles or ())}]
    elif path in UNSIGNED_DEVICE_PATHS:
        operation["security"] = []
    elif path.startswith(DEVICE_PREFIX):
        operation["security"] = [dict.fromkeys(DEVICE_SCHEMES, [])]
    responses = operation.setdefault("responses", {})
    for code in standard_errors(path, operation):
        responses.setdefault(str(code), {"description": STANDARD_ERRORS[code]})
    for code, response in responses.items():
        if code[0] in "45":
            response["content"] = {"application/json": {"schema": ERROR_REF}}
            if response.get("description") in ("Validation Error", "", None):
                response["description"] = STANDARD_ERRORS.get(int(code), "refused")
    operation["responses"] = dict(sorted(responses.items()))


def documented_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (built once): FastAPI's, completed by `document_operation`."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    routes = {(route.path_format, method.lower()): route
              for route in iter_route_contexts(app.routes)
              if isinstance(route.original_route, APIRoute) and route.include_in_schema
              for method in route.methods or ()}
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            document_operation(path, operation, routes.get((path, method)))
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body, replaced
        schemas.pop(unused, None)
    schemas["ErrorBody"] = ErrorBody.model_json_schema(
        ref_template="#/components/schemas/{model}")
    components["securitySchemes"] = SECURITY_SCHEMES
    app.openapi_schema = schema
    return schema
