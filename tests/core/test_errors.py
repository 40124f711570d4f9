"""The error table: what each SageMaker error means for the reconciler."""

from __future__ import annotations

import pytest

from mce_operator.errors import DEFAULT, ErrorKind, classify

ARN = "arn:aws:sagemaker:us-east-1:123456789012"


@pytest.mark.parametrize(
    ("code", "message", "kind", "reason"),
    [
        ("ValidationException", f'Could not find model "{ARN}:model/m".', ErrorKind.NOT_FOUND, "NotFound"),
        (
            "ValidationException",
            f'Could not find endpoint configuration "{ARN}:endpoint-config/c".',
            ErrorKind.NOT_FOUND,
            "NotFound",
        ),
        (
            "ValidationException",
            f'Could not find endpoint "{ARN}:endpoint/e".',
            ErrorKind.NOT_FOUND,
            "NotFound",
        ),
        # Any other "Could not find ..." is SageMaker rejecting the request, not absence.
        (
            "ValidationException",
            "Could not find model data at s3://bucket/key/model.tar.gz.",
            ErrorKind.TERMINAL,
            "SageMakerRejected",
        ),
        (
            "ValidationException",
            f'Cannot create already existing model "{ARN}:model/m".',
            ErrorKind.EXISTS,
            "AlreadyExists",
        ),
        (
            "ValidationException",
            f'Cannot create already existing endpoint configuration "{ARN}:endpoint-config/c".',
            ErrorKind.EXISTS,
            "AlreadyExists",
        ),
        (
            "ValidationException",
            f'Cannot update in-progress endpoint "{ARN}:endpoint/e".',
            ErrorKind.RETRY,
            "EndpointBusy",
        ),
        (
            "ValidationException",
            "1 validation error detected: Value 'x' at 'productionVariants.1.member.modelName' failed to "
            "satisfy constraint: Member must satisfy regular expression pattern",
            ErrorKind.TERMINAL,
            "SageMakerRejected",
        ),
        (
            "ValidationException",
            "More than one container in MultiModel mode is not supported with inference pipeline.",
            ErrorKind.TERMINAL,
            "SageMakerRejected",
        ),
        ("ResourceLimitExceeded", "account-level service limit", ErrorKind.TERMINAL, "QuotaExceeded"),
        ("AccessDeniedException", "not authorized to perform", ErrorKind.TERMINAL, "AccessDenied"),
        ("AccessDenied", "", ErrorKind.TERMINAL, "AccessDenied"),
        ("UnrecognizedClientException", "invalid token", ErrorKind.TERMINAL, "AccessDenied"),
        ("ResourceNotFound", "", ErrorKind.NOT_FOUND, "NotFound"),
        ("ResourceInUse", "", ErrorKind.RETRY, "ResourceInUse"),
        ("ThrottlingException", "Rate exceeded", ErrorKind.RETRY, "Throttled"),
        ("Throttling", "", ErrorKind.RETRY, "Throttled"),
        ("TooManyRequestsException", "", ErrorKind.RETRY, "Throttled"),
        ("RequestLimitExceeded", "", ErrorKind.RETRY, "Throttled"),
        ("InternalFailure", "", ErrorKind.RETRY, "SageMakerUnavailable"),
        ("ServiceUnavailable", "", ErrorKind.RETRY, "SageMakerUnavailable"),
        ("ExpiredTokenException", "", ErrorKind.RETRY, "CredentialsExpired"),
    ],
)
def test_classify(code: str, message: str, kind: ErrorKind, reason: str) -> None:
    rule = classify(code, message)
    assert (rule.kind, rule.reason) == (kind, reason)


@pytest.mark.parametrize(
    ("code", "message"),
    [("SomethingNew", "a code the table does not know"), ("EndpointConnectionError", "connection refused")],
)
def test_unknown_errors_are_transient(code: str, message: str) -> None:
    # A wrong "terminal" would strand the object; every call is safe to repeat.
    assert classify(code, message) is DEFAULT
    assert DEFAULT.kind is ErrorKind.RETRY
