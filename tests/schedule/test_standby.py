"""The operator's schedule pauses exactly when kopf's peering pauses kopf: the rule of
:class:`mce_operator.peering.Standby` is checked against kopf's own ``process_peering_event`` on the same
peering objects."""

from __future__ import annotations

import asyncio
import getpass
import itertools
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.structs import references
from kopf._core.engines import peering as kopf_peering

from mce_operator.kube import Kube
from mce_operator.peering import Standby, own_identity

ME = "me@host/20261202/abc"


def peer(priority: int, *, seen_ago: float = 1.0, lifetime: int = 60) -> Callable[[], dict[str, Any]]:
    """A peer as kopf records it, seen ``seen_ago`` seconds before the test asks for it."""

    def make() -> dict[str, Any]:
        lastseen = datetime.now(UTC) - timedelta(seconds=seen_ago)
        return {"priority": priority, "lifetime": lifetime, "lastseen": lastseen.isoformat()}

    return make


def made(peers: dict[str, Any]) -> dict[str, Any]:
    return {key: value() if callable(value) else value for key, value in peers.items()}


async def kopf_pauses(status: dict[str, Any], priority: int) -> bool:
    settings = kopf.OperatorSettings()
    settings.peering.name = "mce"
    settings.peering.priority = priority
    toggles = aiotoggles.ToggleSet(any)
    conflicts = await toggles.make_toggle(False)
    pressure = asyncio.Event()
    pressure.set()  # no sleeping until a peer's deadline, and so no touch of the object
    await kopf_peering.process_peering_event(
        raw_event={"type": "MODIFIED", "object": {"metadata": {"name": "mce"}, "status": status}},
        namespace=None,
        resource=references.Resource("kopf.dev", "v1", "clusterkopfpeerings"),
        identity=kopf_peering.Identity(ME),
        settings=settings,
        autoclean=False,
        stream_pressure=pressure,
        conflicts_found=conflicts,
    )
    return conflicts.is_on()


OTHERS = [
    {},
    {"a": peer(5)},
    {"a": peer(10)},
    {"a": peer(20)},
    {"a": peer(20, seen_ago=120)},  # dead: not seen for longer than its lifetime
    {"a": peer(20, seen_ago=30, lifetime=20)},
    {"a": peer(5), "b": peer(15)},
    {"a": peer(5), "b": peer(10, seen_ago=600)},
    {"a": {"priority": 30}},  # no lastseen: kopf takes it as seen now
]


@pytest.mark.parametrize(("others", "with_me"), list(itertools.product(OTHERS, [True, False])))
def test_the_schedule_pauses_when_kopf_pauses(others: dict[str, Any], with_me: bool) -> None:
    status = made({**others, **({ME: peer(10)} if with_me else {})})
    standby = Standby(kube=_no_kube(), name="mce", identity=ME, priority=10)
    expected = asyncio.run(kopf_pauses(status, 10))
    assert bool(standby.conflicts(status)) is expected, (status, expected)


def test_a_replica_is_never_its_own_peer() -> None:
    standby = Standby(kube=_no_kube(), name="mce", identity=ME, priority=10)
    assert standby.conflicts(made({ME: peer(10)})) == []
    assert standby.conflicts(made({ME: peer(10), "twin": peer(10)})) == ["twin"]


def test_own_identity_is_the_pod_name_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_ID", "mce-operator-7d9f-x2")
    assert own_identity() == "mce-operator-7d9f-x2"
    monkeypatch.delenv("POD_ID")
    assert own_identity().split("/")[0] == f"{getpass.getuser()}@{socket.gethostname()}"


def _no_kube() -> Kube:
    return object.__new__(Kube)  # the rule reads no object: never called
