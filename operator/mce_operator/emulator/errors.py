"""The errors the emulator answers with, shaped as SageMaker's own."""

from __future__ import annotations


class ServiceError(Exception):
    """An error answered to the caller: an AWS error code, a message and an HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"ServiceError({self.code!r}, {self.message!r}, {self.status})"


def validation(message: str) -> ServiceError:
    """The control plane's ValidationException: bad input, unknown or duplicate resources, wrong state."""
    return ServiceError("ValidationException", message)


def runtime_validation(message: str) -> ServiceError:
    """The runtime's ValidationError (sagemaker-runtime spells it differently from the control plane)."""
    return ServiceError("ValidationError", message)


def throttling() -> ServiceError:
    return ServiceError("ThrottlingException", "Rate exceeded")


def access_denied(account: str, operation: str, service: str = "sagemaker") -> ServiceError:
    """IAM's refusal of an action, as SageMaker (or Application Auto Scaling) answers it (HTTP 400)."""
    action = f"{service}:{operation}"
    return ServiceError(
        "AccessDeniedException",
        f"User: arn:aws:sts::{account}:assumed-role/mce-emulator/session is not authorized to perform: "
        f"{action} because no identity-based policy allows the {action} action",
    )


SERVER_ERRORS: dict[int, tuple[str, str]] = {
    500: ("InternalFailure", "An internal error occurred. Try again."),
    503: ("ServiceUnavailable", "The service is unavailable. Try again later."),
}


def server_error(status: int) -> ServiceError:
    code, message = SERVER_ERRORS.get(status, ("InternalFailure", "An internal error occurred. Try again."))
    return ServiceError(code, message, status)
