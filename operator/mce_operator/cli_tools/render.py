"""``kubectl mce render``: the SageMaker requests the operator makes for an object, offline.

Nothing is restated here: the names and request bodies come from core.desired_state, and the calls from
core.reconcile itself — asked what it does when there is no endpoint yet (CreateModel,
CreateEndpointConfig, CreateEndpoint), when the endpoint serves another config (UpdateEndpoint) and, for
an autoscaled spec, when it is InService with no scalable target yet (RegisterScalableTarget,
PutScalingPolicy to Application Auto Scaling). Each request is an action's ``params``, which the adapters
pass to boto3 unchanged: the JSON body the service receives.

The uid in the ownership tags is the apiserver's to assign: it is the manifest's ``metadata.uid`` if it
has one, ``--uid`` if given, else the placeholder ``<uid>``. Names do not depend on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mce_operator import api, core

UID_PLACEHOLDER = "<uid>"
# What the endpoint is taken to serve when rendering an update: any config but the desired one.
_OTHER_CONFIG = "the-config-the-endpoint-serves"


def identity(obj: Mapping[str, Any], default_namespace: str, uid: str | None = None) -> core.Identity:
    meta = dict(obj.get("metadata") or {})
    meta.setdefault("namespace", default_namespace)
    if uid is not None:
        meta["uid"] = uid
    meta.setdefault("uid", UID_PLACEHOLDER)
    return core.identity_of(meta)


def render(obj: Mapping[str, Any], default_namespace: str, uid: str | None = None) -> dict[str, Any]:
    """The requests for one valid object (api.parse_spec raises SpecError for an invalid one)."""
    spec = api.parse_spec(dict(obj.get("spec") or {}))
    who = identity(obj, default_namespace, uid)
    desired = core.desired_state(spec, who)
    created = core.reconcile(desired, core.Observed(endpoint=None), core.Memory())
    requests = {action.operation: dict(action.params) for action in created.actions}
    serving_other = core.ObservedEndpoint(
        name=desired.endpoint_name,
        arn="",
        status="InService",
        config_name=_OTHER_CONFIG,
        failure_reason="",
        tags=desired.tags,
    )
    # As if the model and config existed already: only the endpoint's own call is left.
    made = [core.Tagged(name, "", desired.tags) for name in (desired.model_name, desired.config_name)]
    observed = core.Observed(endpoint=serving_other, models=made[:1], configs=made[1:])
    updated = core.reconcile(desired, observed, core.Memory())
    update = next(a for a in updated.actions if a.operation == "UpdateEndpoint")
    requests[update.operation] = dict(update.params)
    if desired.autoscaling is not None:
        serving = dataclasses.replace(serving_other, config_name=desired.config_name)
        observed = core.Observed(endpoint=serving, models=made[:1], configs=made[1:], scaling=())
        scaled = core.reconcile(desired, observed, core.Memory())
        requests.update(
            {a.operation: dict(a.params) for a in scaled.actions if a.service == core.AUTOSCALING}
        )
    return {
        "apiVersion": api.GROUP + "/" + api.VERSION,
        "kind": api.KIND,
        "namespace": who.namespace,
        "name": who.name,
        "uid": who.uid,
        "region": desired.region,
        "endpointName": desired.endpoint_name,
        "modelName": desired.model_name,
        "endpointConfigName": desired.config_name,
        "tags": dict(desired.tags),
        "requests": requests,
    }
