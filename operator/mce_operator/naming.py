"""Deterministic SageMaker names and ownership tags.

A model's name is derived from the CreateModel request it was made with, and a config's name from its
CreateEndpointConfig request (which holds the model's name). So the same spec always yields the same
names — a reconcile repeated after a crash finds what it created instead of making a second copy — and
any change that SageMaker cannot apply in place yields new names, which is what an update needs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from mce_operator.api import GROUP

MAX_NAME = 63
HASH_LENGTH = 10
# "<prefix>-<10 hex>" stays within SageMaker's 63 characters.
PREFIX_LENGTH = MAX_NAME - HASH_LENGTH - 1

TAG_NAMESPACE = f"{GROUP}/namespace"
TAG_NAME = f"{GROUP}/name"
TAG_UID = f"{GROUP}/uid"
SYSTEM_TAG_KEYS = (TAG_NAMESPACE, TAG_NAME, TAG_UID)


def _digest(payload: Any, length: int) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def _trim(name: str, length: int) -> str:
    # SageMaker names must end with a letter or digit.
    return name[:length].rstrip("-")


def default_endpoint_name(namespace: str, name: str) -> str:
    """``<namespace>-<name>`` made SageMaker-safe; too long a result keeps a hash of the whole."""
    full = f"{namespace}-{name}"
    safe = re.sub(r"[^a-zA-Z0-9-]", "-", full).strip("-") or "mce"
    if len(safe) <= MAX_NAME:
        return safe
    return f"{_trim(safe, MAX_NAME - 9)}-{_digest(full, 8)}"


def name_prefix(endpoint_name: str) -> str:
    """What every model and config of this endpoint is named with, before the hash."""
    return _trim(endpoint_name, PREFIX_LENGTH)


def child_name(endpoint_name: str, request_without_name: Mapping[str, Any]) -> str:
    payload: Any = request_without_name
    if len(endpoint_name) > PREFIX_LENGTH:
        # The prefix lost part of the endpoint name: hash the whole name too, or two endpoints whose
        # names share their first characters would get the same model and config names. (Names that
        # fit keep the hash of the request alone, so they do not change.)
        payload = {"endpoint": endpoint_name, "request": request_without_name}
    return f"{name_prefix(endpoint_name)}-{_digest(payload, HASH_LENGTH)}"


def is_child_name(endpoint_name: str, candidate: str) -> bool:
    """Whether a model/config name has this endpoint's shape (ownership is still decided by tags)."""
    prefix = re.escape(name_prefix(endpoint_name))
    return re.fullmatch(f"{prefix}-[0-9a-f]{{{HASH_LENGTH}}}", candidate, flags=re.IGNORECASE) is not None


def ownership_tags(namespace: str, name: str, uid: str) -> dict[str, str]:
    return {TAG_NAMESPACE: namespace, TAG_NAME: name, TAG_UID: uid}


ADOPT_ANNOTATION = f"{GROUP}/adopt"


def names_owner(tags: Mapping[str, str], namespace: str, name: str, uid: str, *, adopt: bool = False) -> bool:
    """A SageMaker resource belongs to this object if its tags carry the object's uid.

    With ``adopt`` (the object's annotation ``sagemaker.mce.dev/adopt: "true"``), resources whose tags
    name the same namespace and name under another uid belong to it too: what an object deleted with
    ``deletionPolicy: Retain`` left behind, taken over by its re-creation; the uid tag is then updated.
    Adoption is opt-in because the same namespace/name can exist in two clusters sharing an account.
    """
    if tags.get(TAG_UID) == uid:
        return True
    return adopt and tags.get(TAG_NAMESPACE) == namespace and tags.get(TAG_NAME) == name
