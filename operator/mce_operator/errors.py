"""The one table that says what a SageMaker (or Application Auto Scaling) error means for the reconciler.

- TERMINAL: retrying at once cannot help (SageMaker rejected the request, or the operator may not do
  it). The object goes Degraded. A rejected spec is not retried until the spec changes; access and
  quota errors, fixed outside the spec, are retried at the steady pace.
- RETRY: transient (throttling, 5xx, an endpoint busy with another change, a network failure): look
  again after a delay.
- NOT_FOUND: the resource is not there; for a delete that is success, for a describe it is absence.
- EXISTS: a create found the name taken — by our own earlier call that crashed before it was recorded,
  or by someone else; the next observation tells which (ownership tags).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorKind(StrEnum):
    TERMINAL = "terminal"
    RETRY = "retry"
    NOT_FOUND = "not-found"
    EXISTS = "exists"


@dataclass(frozen=True)
class Rule:
    code: str
    # A substring of the message that must be present; "" matches any message.
    message: str
    kind: ErrorKind
    reason: str


# First match wins. Codes are botocore's ``Error.Code``; messages are SageMaker's own texts.
TABLE: tuple[Rule, ...] = (
    # Only SageMaker's "this resource does not exist" texts: other "Could not find ..." messages (say,
    # of model data in S3) are rejections of the request, not absence.
    Rule("ValidationException", 'Could not find model "arn:', ErrorKind.NOT_FOUND, "NotFound"),
    Rule(
        "ValidationException", 'Could not find endpoint configuration "arn:', ErrorKind.NOT_FOUND, "NotFound"
    ),
    Rule("ValidationException", 'Could not find endpoint "arn:', ErrorKind.NOT_FOUND, "NotFound"),
    Rule("ValidationException", "Cannot create already existing", ErrorKind.EXISTS, "AlreadyExists"),
    Rule("ValidationException", "Cannot update in-progress", ErrorKind.RETRY, "EndpointBusy"),
    Rule("ValidationException", "", ErrorKind.TERMINAL, "SageMakerRejected"),
    Rule("ResourceNotFound", "", ErrorKind.NOT_FOUND, "NotFound"),
    Rule("ResourceInUse", "", ErrorKind.RETRY, "ResourceInUse"),
    Rule("ResourceLimitExceeded", "", ErrorKind.TERMINAL, "QuotaExceeded"),
    Rule("AccessDeniedException", "", ErrorKind.TERMINAL, "AccessDenied"),
    Rule("AccessDenied", "", ErrorKind.TERMINAL, "AccessDenied"),
    Rule("UnrecognizedClientException", "", ErrorKind.TERMINAL, "AccessDenied"),
    Rule("InvalidClientTokenId", "", ErrorKind.TERMINAL, "AccessDenied"),
    Rule("ThrottlingException", "", ErrorKind.RETRY, "Throttled"),
    Rule("Throttling", "", ErrorKind.RETRY, "Throttled"),
    Rule("TooManyRequestsException", "", ErrorKind.RETRY, "Throttled"),
    Rule("RequestLimitExceeded", "", ErrorKind.RETRY, "Throttled"),
    Rule("InternalFailure", "", ErrorKind.RETRY, "SageMakerUnavailable"),
    Rule("ServiceUnavailable", "", ErrorKind.RETRY, "SageMakerUnavailable"),
    Rule("ExpiredTokenException", "", ErrorKind.RETRY, "CredentialsExpired"),
    # Application Auto Scaling's own codes (its ValidationException and AccessDeniedException are above).
    Rule("ObjectNotFoundException", "", ErrorKind.NOT_FOUND, "NotFound"),
    Rule("ConcurrentUpdateException", "", ErrorKind.RETRY, "ConcurrentUpdate"),
    Rule("InternalServiceException", "", ErrorKind.RETRY, "AutoScalingUnavailable"),
    Rule("LimitExceededException", "", ErrorKind.TERMINAL, "QuotaExceeded"),
    # It cannot read the resource or the alarms it needs: a permission outside the spec.
    Rule("FailedResourceAccessException", "", ErrorKind.TERMINAL, "AccessDenied"),
    # botocore's own errors, raised before any request is sent (the code is the exception's name).
    Rule("NoCredentialsError", "", ErrorKind.TERMINAL, "AccessDenied"),
    Rule("NoRegionError", "", ErrorKind.TERMINAL, "Misconfigured"),
    Rule("InvalidRegionError", "", ErrorKind.TERMINAL, "Misconfigured"),
)

# Anything not in the table (a new code, a network error) is assumed transient: retrying is cheap and
# every call is safe to repeat, while a wrong "terminal" would strand the object.
DEFAULT = Rule("", "", ErrorKind.RETRY, "SageMakerError")


def classify(code: str, message: str) -> Rule:
    for rule in TABLE:
        if rule.code == code and rule.message in message:
            return rule
    return DEFAULT
