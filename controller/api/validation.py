"""Request bodies: JSON parsing and pydantic errors turned into Azure error codes."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from controller.errors import BadRequest, BatchError, invalid_property, missing_property

ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_json(body: bytes, required: bool = True) -> Any:
    """Decode a JSON body; 400 InvalidRequestBody when it is not JSON."""
    if not body.strip():
        if required:
            raise BadRequest("The request body is empty", code="InvalidRequestBody")
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"The request body is not valid JSON: {error}", code="InvalidRequestBody") from None


def parse_model(body: bytes, model: type[ModelT]) -> ModelT:
    """Decode and validate a JSON body into `model`."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object", code="InvalidRequestBody")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise error_from_validation(error) from None


def error_from_validation(error: ValidationError) -> BatchError:
    """The Azure error for the first problem pydantic found."""
    first = error.errors()[0]
    name = ".".join(str(part) for part in first["loc"]) or "body"
    if first["type"] == "missing":
        return missing_property(name)
    if first["type"] == "azure_code":
        code = str((first.get("ctx") or {}).get("code", "InvalidPropertyValue"))
        return BatchError(first["msg"], code=code, values={"PropertyName": name} if first["loc"] else None)
    return invalid_property(name, first["msg"])
