"""``mce-emulator``: run the SageMaker emulator until interrupted.

The first line on stdout is ``listening on http://HOST:PORT``; with ``--port 0`` it tells which port.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from .server import Emulator
from .service import DEFAULT_ACCOUNT, DEFAULT_DELAY, DEFAULT_REGION


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mce-emulator",
        description="An offline SageMaker (control plane and runtime, with the Application Auto Scaling of "
        "its endpoints) for tests, demos and CI.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on; 0 picks a free one (default: 0)"
    )
    parser.add_argument(
        "--account", default=DEFAULT_ACCOUNT, help="account id in ARNs (default: %(default)s)"
    )
    parser.add_argument("--region", default=DEFAULT_REGION, help="region in ARNs (default: %(default)s)")
    parser.add_argument(
        "--delay",
        type=float,
        default=DEFAULT_DELAY,
        help="seconds an endpoint stays Creating, Updating or Deleting (default: %(default)s)",
    )
    parser.add_argument("--create-delay", type=float, help="seconds Creating lasts (default: --delay)")
    parser.add_argument("--update-delay", type=float, help="seconds Updating lasts (default: --delay)")
    parser.add_argument("--delete-delay", type=float, help="seconds Deleting lasts (default: --delay)")
    parser.add_argument(
        "--deployment-time-scale",
        type=float,
        default=1.0,
        help="factor applied to a DeploymentConfig's wait intervals, e.g. 0.01 to bake 300 s in 3 s "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, help="seed for rated faults and variant choice (reproducible runs)"
    )
    return parser.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    emulator = Emulator(
        host=args.host,
        port=args.port,
        account=args.account,
        region=args.region,
        delay=args.delay,
        create_delay=args.create_delay,
        update_delay=args.update_delay,
        delete_delay=args.delete_delay,
        deployment_time_scale=args.deployment_time_scale,
        seed=args.seed,
    )
    emulator.bind()
    print(f"listening on http://{args.host}:{emulator.port}", flush=True)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
