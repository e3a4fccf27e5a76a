"""The gateway's errors, each either retryable or permanent.

    GatewayError
    ├── RetryableError            the same request may succeed later
    │   ├── Throttled             buffers full: client should back off (RetryInfo / Retry-After)
    │   └── StoreUnavailable      the store did not answer or failed transiently
    └── PermanentError            retrying the same request cannot help
        ├── BadRequest            malformed, wrong type, undecodable
        ├── RequestTimeout        the request did not arrive in time
        ├── PayloadTooLarge       over the size limit, after decompression
        ├── UnsupportedMediaType  Content-Type or Content-Encoding we do not read
        ├── StoreRejected         the store refused the data itself
        ├── QueryRefused          a SQL text the read path will not run
        ├── Unauthenticated       no credentials, or ones the policy does not know (or expired)
        ├── PermissionDenied      known credentials that may not do this (tenant, role, region)
        └── QueryFailed           a read the store ran and stopped (a limit, a syntax error, an unknown table)

`gateway.receivers.status` is the one place these map to gRPC codes and HTTP
statuses.
"""

from __future__ import annotations


class GatewayError(Exception):
    retryable = False


class RetryableError(GatewayError):
    retryable = True


class Throttled(RetryableError):
    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreUnavailable(RetryableError):
    pass


class PermanentError(GatewayError):
    pass


class BadRequest(PermanentError):
    pass


class PayloadTooLarge(PermanentError):
    pass


class UnsupportedMediaType(PermanentError):
    pass


class StoreRejected(PermanentError):
    pass


class PartlyStored(StoreRejected):
    """A group of points refused after some of its tables had taken their share (`stored`, by table
    name): whatever replaces the group must skip those, or their rows would be stored twice."""

    def __init__(self, message: str, stored: frozenset[str]) -> None:
        super().__init__(message)
        self.stored = stored


class QueryRefused(PermanentError):
    pass


class Unauthenticated(PermanentError):
    pass


class PermissionDenied(PermanentError):
    pass


class QueryFailed(PermanentError):
    pass


class RequestTimeout(PermanentError):
    pass
