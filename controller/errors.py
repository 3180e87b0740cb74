"""Errors the API returns, each with its Azure error code and HTTP status."""

from __future__ import annotations


class BatchError(Exception):
    """An error with an Azure Batch error code, message and HTTP status."""

    status = 400
    code = "InvalidInput"

    def __init__(self, message: str, code: str | None = None, values: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.values = values or {}


class BadRequest(BatchError):
    """The request is malformed or has an invalid value (400)."""

    status = 400
    code = "InvalidRequestBody"


class AuthenticationFailed(BatchError):
    """The request's signature or credentials are wrong (403)."""

    status = 403
    code = "AuthenticationFailed"


class NotFound(BatchError):
    """The resource does not exist (404)."""

    status = 404
    code = "ResourceNotFound"


class Conflict(BatchError):
    """The resource exists already or is in a state that forbids the operation (409)."""

    status = 409
    code = "OperationInvalidForCurrentState"


class PreconditionFailed(BatchError):
    """An If-Match / If-Unmodified-Since condition did not hold (412)."""

    status = 412
    code = "ConditionNotMet"


class BodyTooLarge(BatchError):
    """The request body is over the limit (413)."""

    status = 413
    code = "RequestBodyTooLarge"


class InvalidRange(BatchError):
    """The requested byte range cannot be served (416)."""

    status = 416
    code = "InvalidRange"


class ServerBusy(BatchError):
    """A dependency (the store, a node) did not answer in time (503)."""

    status = 503
    code = "ServerBusy"


def missing_property(name: str) -> BadRequest:
    """400 MissingRequiredProperty naming the property."""
    return BadRequest(
        f"A required property was not specified in the request body: {name}",
        code="MissingRequiredProperty",
        values={"PropertyName": name},
    )


def invalid_property(name: str, reason: str) -> BadRequest:
    """400 InvalidPropertyValue naming the property and the reason."""
    return BadRequest(
        f"The value provided for one of the properties in the request body is invalid: {name}",
        code="InvalidPropertyValue",
        values={"PropertyName": name, "Reason": reason},
    )


def condition_not_met() -> PreconditionFailed:
    """412 ConditionNotMet: an If-Match or If-Unmodified-Since condition did not hold."""
    return PreconditionFailed("The condition specified using HTTP conditional header(s) is not met.")
