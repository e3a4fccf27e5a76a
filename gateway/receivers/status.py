"""The one place gateway errors become gRPC codes and HTTP statuses.

Per the OTLP specification: gRPC retryable codes are UNAVAILABLE (with
RetryInfo when throttling) among others; RESOURCE_EXHAUSTED without RetryInfo
is permanent. HTTP retryable statuses are 429, 502, 503 and 504, with
Retry-After when throttling; every other 4xx/5xx is permanent.
"""

from __future__ import annotations

import grpc

from telemetry_gateway.gateway import errors
from telemetry_gateway.gateway.quotas import TenantThrottled

GRPC_CODES: dict[type[errors.GatewayError], grpc.StatusCode] = {
    TenantThrottled: grpc.StatusCode.RESOURCE_EXHAUSTED,  # Retryable: always with RetryInfo
    errors.Throttled: grpc.StatusCode.UNAVAILABLE,  # Retryable, with RetryInfo
    errors.StoreUnavailable: grpc.StatusCode.UNAVAILABLE,  # Retryable, with RetryInfo
    errors.BadRequest: grpc.StatusCode.INVALID_ARGUMENT,  # Not retryable
    errors.RequestTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,  # Retryable
    errors.PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,  # Not retryable (no RetryInfo)
    errors.UnsupportedMediaType: grpc.StatusCode.INVALID_ARGUMENT,  # Not retryable
    errors.StoreRejected: grpc.StatusCode.INTERNAL,  # Not retryable
    errors.QueryRefused: grpc.StatusCode.PERMISSION_DENIED,  # Not retryable
    errors.QueryFailed: grpc.StatusCode.INVALID_ARGUMENT,  # Not retryable
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,  # Not retryable
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,  # Not retryable
}

HTTP_STATUSES: dict[type[errors.GatewayError], int] = {
    errors.Throttled: 429,  # Retryable, with Retry-After
    errors.StoreUnavailable: 503,  # Retryable, with Retry-After
    errors.BadRequest: 400,  # Not retryable
    errors.RequestTimeout: 408,  # Not retryable (the client sent too slowly)
    errors.PayloadTooLarge: 413,  # Not retryable
    errors.UnsupportedMediaType: 415,  # Not retryable
    errors.StoreRejected: 500,  # Not retryable
    errors.QueryRefused: 403,  # Not retryable
    errors.QueryFailed: 400,  # Not retryable
    errors.Unauthenticated: 401,  # Not retryable
    errors.PermissionDenied: 403,  # Not retryable
}

RETRY_AFTER_S = 1.0


def _lookup(table: dict, exc: errors.GatewayError):
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return None


def grpc_code(exc: errors.GatewayError) -> grpc.StatusCode:
    return _lookup(GRPC_CODES, exc) or grpc.StatusCode.INTERNAL


def http_status(exc: errors.GatewayError) -> int:
    return _lookup(HTTP_STATUSES, exc) or 500


def retry_after(exc: errors.GatewayError) -> float | None:
    """Seconds a client should wait, for retryable errors only."""
    if not exc.retryable:
        return None
    return getattr(exc, "retry_after_s", RETRY_AFTER_S)
