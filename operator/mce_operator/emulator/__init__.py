"""An offline SageMaker for tests, demos and CI: the control plane and runtime over real HTTP.

See docs/emulator.md. The public surface is :class:`Emulator` (a :class:`Service` with an HTTP server).
"""

from .errors import ServiceError
from .faults import Fault
from .runtime import transform
from .server import Emulator
from .service import DEFAULT_ACCOUNT, DEFAULT_REGION, Call, Service

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_REGION",
    "Call",
    "Emulator",
    "Fault",
    "Service",
    "ServiceError",
    "transform",
]
