"""`p4lb-controller`: run the controller against a switch, or check a configuration file.

p4lb-controller --config lb.toml --switch thrift://127.0.0.1:9090 --topology topology.json
p4lb-controller --check-config lb.toml      # exit 0, or print every problem and exit 2
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from controller.config import Config, ConfigError, load_config

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
log = logging.getLogger("controller")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="p4lb-controller", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="controller TOML file")
    parser.add_argument("--check-config", type=Path, metavar="FILE", help="validate FILE and exit")
    parser.add_argument("--policy", help="policy name (overrides [controller] policy)")
    parser.add_argument(
        "--switch",
        default="model",
        help="model | thrift://HOST:PORT | tcp://HOST:PORT (p4lb-switch)",
    )
    parser.add_argument("--topology", type=Path, help="p4-utils topology.json for ipv4_lpm routes")
    parser.add_argument("--switch-name", default="s1", help="the switch's node in the topology")
    parser.add_argument(
        "--record", type=Path, metavar="FILE.jsonl", help="write the time series here"
    )
    parser.add_argument(
        "--state", type=Path, metavar="FILE.json", help="state journal for restarts"
    )
    parser.add_argument("--min-rollout-interval", type=float, metavar="S")
    parser.add_argument("--quiet-period", type=float, metavar="S")
    parser.add_argument("--metrics", metavar="HOST:PORT", help="Prometheus endpoint ('' disables)")
    parser.add_argument(
        "--load-listen", metavar="ENDPOINT", help="ZeroMQ endpoint for load reports"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of p4lb-controller."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT, stream=sys.stderr)
    if args.check_config is not None:
        return check_config(args.check_config)
    if args.config is None:
        print(
            "p4lb-controller: --config FILE is required (or --check-config FILE)", file=sys.stderr
        )
        return EXIT_CONFIG
    try:
        config = apply_overrides(load_config(args.config), args)
    except ConfigError as exc:
        _print_problems(args.config, exc)
        return EXIT_CONFIG
    return run(config, args)


def check_config(path: Path) -> int:
    """Validate a file without touching a switch."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        _print_problems(path, exc)
        return EXIT_CONFIG
    dips = sum(len(v.dips) for v in config.vips)
    print(f"{path}: OK ({len(config.vips)} VIPs, {dips} DIPs, policy {config.controller.policy})")
    return EXIT_OK


def _print_problems(path: Path, error: ConfigError) -> None:
    print(f"{path}: {len(error.problems)} problem(s)", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)


def apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    """Command-line options over the file's [controller] values (validated like the file)."""
    import policy  # noqa: PLC0415

    changes: dict[str, Any] = {}
    problems: list[str] = []
    if args.policy is not None:
        if args.policy not in policy.POLICIES:
            names = ", ".join(sorted(policy.POLICIES))
            problems.append(f"--policy: {args.policy!r} is not one of {names}")
        changes["policy"] = args.policy
    for option, key in (
        ("min_rollout_interval", "min_rollout_interval"),
        ("quiet_period", "quiet_period"),
    ):
        value = getattr(args, option)
        if value is not None:
            if not value >= 0:
                problems.append(f"--{option.replace('_', '-')}: {value!r} is not >= 0")
            changes[key] = value
    if args.metrics is not None:
        changes["metrics_listen"] = args.metrics
    if args.load_listen is not None:
        changes["load_listen"] = args.load_listen
    if problems:
        raise ConfigError(problems)
    settings = dataclasses.replace(config.controller, **changes)
    return dataclasses.replace(config, controller=settings)


def run(config: Config, args: argparse.Namespace) -> int:
    """Start everything on the global reactor and run until stopped."""
    from twisted.internet import defer, reactor  # noqa: PLC0415

    from controller.app import ControllerService, DataPlaneLimits  # noqa: PLC0415
    from controller.core import RouteEntry  # noqa: PLC0415
    from controller.feed import LoadFeed  # noqa: PLC0415
    from controller.metrics import Metrics, listen_metrics  # noqa: PLC0415
    from controller.record import Recorder  # noqa: PLC0415
    from controller.routing import TopologyError, load_topology, routes_for_switch  # noqa: PLC0415
    from controller.switch.connect import connect_switch  # noqa: PLC0415

    routes: list[RouteEntry] = []
    if args.topology is not None:
        try:
            topology = load_topology(args.topology)
            routes = [
                RouteEntry(r.keys(), r.params())
                for r in routes_for_switch(topology, args.switch_name)
            ]
        except (OSError, TopologyError) as exc:
            print(f"p4lb-controller: topology {args.topology}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    rx: Any = reactor
    switch = connect_switch(args.switch, rx)
    metrics = Metrics()
    service = ControllerService(
        rx,
        config,
        switch,
        recorder=Recorder(args.record),
        metrics=metrics,
        routes=routes,
        limits=DataPlaneLimits.from_settings(),
        state_path=args.state,
    )
    feed = LoadFeed(rx, config.controller.load_listen, service.book, rx.seconds)
    status = {"code": EXIT_OK}

    async def start() -> None:
        await service.start()
        feed.start()
        if config.controller.metrics_listen:
            listen_metrics(rx, metrics, config.controller.metrics_listen)
            log.info("event=metrics_listening address=%s", config.controller.metrics_listen)

    def failed(failure: Any) -> None:
        log.error("event=start_failed error=%s", failure.getErrorMessage())
        status["code"] = EXIT_FAILED
        rx.stop()

    async def shutdown() -> None:
        feed.stop()
        await service.stop()

    defer.ensureDeferred(start()).addErrback(failed)
    rx.addSystemEventTrigger("before", "shutdown", lambda: defer.ensureDeferred(shutdown()))
    rx.run()
    return status["code"]
