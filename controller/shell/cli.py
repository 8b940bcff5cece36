"""`p4lb-controller`: run the controller against a switch, or check a configuration file.

p4lb-controller --config lb.toml --switch p4rt://127.0.0.1:9559 --topology topology.json
p4lb-controller --config lb.toml --switch thrift://127.0.0.1:9090 --topology topology.json
p4lb-controller --config lb.toml --switch 'p4rt://127.0.0.1:9559?device_id=0' --election-id 2 \
    --p4info build/loadbalancer.p4info.txt --device-config build/loadbalancer.json
p4lb-controller --check-config lb.toml      # exit 0, or print every problem and exit 2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from controller.config import (
    Config,
    ConfigError,
    ControllerSettings,
    load_config,
    policy_params_problem,
)
from controller.validation import Problems, load_exposure_problem
from policy import POLICIES

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
log = logging.getLogger("controller")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="p4lb-controller", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="controller TOML file")
    parser.add_argument("--check-config", type=Path, metavar="FILE", help="validate FILE and exit")
    parser.add_argument(
        "--policy",
        help=f"one of {', '.join(sorted(POLICIES))} (overrides [controller] policy, default "
        "ratio); with --check-config, the configuration is checked against it",
    )
    parser.add_argument(
        "--switch",
        default="model",
        help="model | thrift://HOST:PORT (BMv2 simple_switch) | "
        "p4rt://HOST:PORT[?device_id=N][&election_id=M] (P4Runtime: p4lb-switch, "
        "simple_switch_grpc) (default: %(default)s)",
    )
    parser.add_argument(
        "--election-id",
        type=int,
        metavar="N",
        help="P4Runtime election ID; the highest of the connected controllers is primary, the "
        "others are backups that may only read (default: the spec's election_id, or 1)",
    )
    parser.add_argument(
        "--p4info",
        type=Path,
        metavar="FILE",
        help="P4Runtime: load this P4Info (p4c's .txt, .bin or .json) with --device-config "
        "when the switch runs no pipeline or another one (default: use the switch's)",
    )
    parser.add_argument(
        "--device-config",
        type=Path,
        metavar="FILE",
        help="P4Runtime: the target's program for --p4info (BMv2: the JSON p4c writes)",
    )
    parser.add_argument("--topology", type=Path, help="p4-utils topology.json for ipv4_lpm routes")
    parser.add_argument(
        "--switch-name", default="s1", help="the switch's node in the topology (default: s1)"
    )
    parser.add_argument(
        "--record", type=Path, metavar="FILE.jsonl", help="write the time series here"
    )
    parser.add_argument(
        "--state", type=Path, metavar="FILE.json", help="state journal for restarts"
    )
    parser.add_argument(
        "--switch-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="keep trying an unreachable switch at start this long (default: %(default)s)",
    )
    parser.add_argument("--min-rollout-interval", type=float, metavar="S")
    parser.add_argument("--quiet-period", type=float, metavar="S")
    parser.add_argument("--metrics", metavar="HOST:PORT", help="Prometheus endpoint ('' disables)")
    parser.add_argument(
        "--admin",
        metavar="HOST:PORT|/PATH",
        help="admin API address or Unix socket (overrides admin_listen; '' disables)",
    )
    parser.add_argument(
        "--load-listen", metavar="ENDPOINT", help="ZeroMQ endpoint for load reports"
    )
    parser.add_argument(
        "--curve-secret",
        type=Path,
        metavar="FILE",
        help="encrypt the load feed with CURVE: this controller's .key_secret (p4lb-agent "
        "--make-keys writes one)",
    )
    parser.add_argument(
        "--curve-allow",
        type=Path,
        metavar="FILE",
        help="with --curve-secret: TOML allow-list binding each agent key to the DIPs it may "
        "report (see README); other keys are refused",
    )
    parser.add_argument(
        "--insecure-load-listen",
        action="store_true",
        help="allow a load_listen beyond loopback without CURVE and an allow-list",
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
        return check_config(args.check_config, args)
    if args.config is None:
        print(
            "p4lb-controller: --config FILE is required (or --check-config FILE)", file=sys.stderr
        )
        return EXIT_CONFIG
    from controller.switch.connect import SwitchSpecError, parse_switch_spec  # noqa: PLC0415

    try:
        spec = parse_switch_spec(args.switch)
    except SwitchSpecError as exc:
        print(f"p4lb-controller: --switch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    problem = p4runtime_options_problem(args, spec.kind, spec.election_id)
    if problem is not None:
        print(f"p4lb-controller: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = checked_config(args.config, args)
    except ConfigError as exc:
        _print_problems(args.config, exc)
        return EXIT_CONFIG
    return run(config, args)


def p4runtime_options_problem(
    args: argparse.Namespace, kind: str, spec_election_id: int | None = None
) -> str | None:
    """What is wrong with --election-id, --p4info and --device-config for this switch spec."""
    if args.election_id is not None:
        if not 0 < args.election_id < 1 << 128:
            return f"--election-id: {args.election_id!r} is not in 1..2^128-1"
        if kind != "p4rt":
            return "--election-id needs a p4rt:// switch"
        if spec_election_id not in (None, args.election_id):
            return f"--election-id {args.election_id} and the spec's {spec_election_id} differ"
    if (args.p4info is None) != (args.device_config is None):
        return "--p4info and --device-config go together"
    if args.p4info is not None and kind != "p4rt":
        return "--p4info and --device-config need a p4rt:// switch"
    for option, path in (("--p4info", args.p4info), ("--device-config", args.device_config)):
        if path is not None and not path.is_file():
            return f"{option} {str(path)!r}: no such file"
    return None


def p4runtime_options(args: argparse.Namespace) -> dict[str, Any]:
    """The P4Runtime client's options from the command line."""
    options: dict[str, Any] = {}
    if args.election_id is not None:
        options["election_id"] = args.election_id
    if args.p4info is not None:
        from controller.switch.p4runtime_pipeline import PipelineFiles  # noqa: PLC0415

        options["pipeline"] = PipelineFiles(args.p4info, args.device_config)
    return options


def checked_config(path: Path, args: argparse.Namespace) -> Config:
    """The file with the command line applied, refused for everything start-up would refuse."""
    config = apply_overrides(load_config(path), args)
    problem = load_exposure_problem(
        config.controller.load_listen,
        curve=args.curve_secret is not None,
        allow_list=args.curve_allow is not None,
        insecure=args.insecure_load_listen,
    )
    if args.curve_allow is not None and args.curve_secret is None:
        problem = "--curve-allow needs --curve-secret"
    if problem is not None:
        raise ConfigError([problem])
    return config


def check_config(path: Path, args: argparse.Namespace | None = None) -> int:
    """Validate a file (with the other options given) without touching a switch."""
    try:
        config = checked_config(path, args or build_parser().parse_args([]))
    except ConfigError as exc:
        _print_problems(path, exc)
        return EXIT_CONFIG
    dips = sum(len(v.dips) for v in config.vips)
    vips = len(config.vips)
    print(
        f"{path}: OK ({vips} VIP{'s' * (vips != 1)}, {dips} DIP{'s' * (dips != 1)}, "
        f"policy {config.controller.policy})"
    )
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
        else:
            # [policy_params] were checked against the file's policy, not this one.
            known = policy.policy_params(args.policy)
            foreign = [name for name in config.policy_params if name not in known]
            if foreign:
                problems.append(
                    f"--policy: {args.policy!r} takes no parameter {', '.join(foreign)}"
                    " (set in [policy_params])"
                )
            else:
                problem = policy_params_problem(args.policy, config.policy_params)
                if problem is not None:
                    problems.append(f"--policy: [policy_params] for {args.policy!r}: {problem}")
        changes["policy"] = args.policy
    checks = Problems()
    for key in ("min_rollout_interval", "quiet_period"):
        value = getattr(args, key)
        if value is not None:
            checks.number(f"--{key.replace('_', '-')}", value, minimum=0.0)  # finite, like the file
            changes[key] = value
    if args.metrics is not None:
        checks.host_port("--metrics", args.metrics, allow_empty=True)
        changes["metrics_listen"] = args.metrics
    if args.admin is not None:
        checks.admin_address("--admin", args.admin)
        changes["admin_listen"] = args.admin
    if args.load_listen is not None:
        checks.zmq_endpoint("--load-listen", args.load_listen)
        changes["load_listen"] = args.load_listen
    problems.extend(checks.problems)
    if problems:
        raise ConfigError(problems)
    settings = dataclasses.replace(config.controller, **changes)
    return dataclasses.replace(config, controller=settings)


def run(config: Config, args: argparse.Namespace) -> int:
    """Start everything on the global reactor and run until stopped."""
    from twisted.internet import defer, error, reactor  # noqa: PLC0415

    from controller.routing import (  # noqa: PLC0415
        Route,
        TopologyError,
        load_topology,
        routes_for_switch,
    )
    from controller.shell.app import ControllerService  # noqa: PLC0415
    from controller.shell.feed import CurveServerKeys, FeedLimits, LoadFeed  # noqa: PLC0415
    from controller.shell.metrics import Metrics  # noqa: PLC0415
    from controller.shell.record import Recorder  # noqa: PLC0415
    from controller.switch.api import SwitchError  # noqa: PLC0415
    from controller.switch.connect import connect_switch  # noqa: PLC0415

    routes: list[Route] = []
    if args.topology is not None:
        try:
            routes = routes_for_switch(load_topology(args.topology), args.switch_name)
        except (OSError, TopologyError) as exc:
            print(f"p4lb-controller: topology {args.topology}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    curve = None
    if args.curve_secret is not None:
        try:
            curve = CurveServerKeys.from_files(args.curve_secret, args.curve_allow)
        except ValueError as exc:
            print(f"p4lb-controller: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if args.state is not None and not args.state.parent.is_dir():
        print(f"p4lb-controller: --state {args.state}: no such directory", file=sys.stderr)
        return EXIT_CONFIG
    try:
        recorder = Recorder(args.record)
    except OSError as exc:
        print(f"p4lb-controller: --record {args.record}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    rx: Any = reactor
    try:
        switch = connect_switch(args.switch, rx, p4rt_options=p4runtime_options(args))
    except SwitchError as exc:
        recorder.close()
        print(f"p4lb-controller: switch {args.switch}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    metrics = Metrics()
    service = ControllerService(
        rx,
        config,
        switch,
        recorder=recorder,
        metrics=metrics,
        routes=routes,
        state_path=args.state,
        switch_timeout=args.switch_timeout,
        config_source=lambda: checked_config(args.config, args),
    )
    settings = config.controller
    feed = LoadFeed(
        rx,
        settings.load_listen,
        service.book,
        rx.seconds,
        curve,
        on_report=service.note_report,
        limits=FeedLimits(
            max_connections=_descriptor_budget(settings.load_max_connections),
            peer_timeout=settings.load_peer_timeout,
        ),
        metrics=metrics,
    )
    status = {"code": EXIT_OK}

    async def start() -> None:
        # Listen first: a bad address must fail before anything is written to the switch.
        _listen(rx, feed, metrics, config.controller)
        _listen_admin(rx, service, config.controller)
        await service.start()

    def failed(failure: Any) -> None:
        log.error("event=start_failed error=%s", failure.getErrorMessage())
        status["code"] = EXIT_FAILED
        with contextlib.suppress(error.ReactorNotRunning):  # a signal may have come first
            rx.stop()

    async def shutdown() -> None:
        feed.stop()
        await service.stop()

    def reload_on_signal() -> None:
        try:
            plan = service.reload()
        except ConfigError as exc:
            log.error("event=reload_refused path=%s problems=%d", args.config, len(exc.problems))
            for problem in exc.problems:
                log.error("event=reload_problem %s", problem)
        except Exception:  # a bug must cost this reload, never the reactor
            log.exception("event=reload_error")
        else:
            if plan.empty:
                log.info("event=reload_unchanged path=%s", args.config)

    # SIGHUP re-reads the file (the handler runs between bytecodes: hand the work to the reactor).
    signal.signal(signal.SIGHUP, lambda _signo, _frame: rx.callFromThread(reload_on_signal))
    # Start inside the running reactor: a failure before run() could not stop it (and would hang).
    rx.callWhenRunning(lambda: defer.ensureDeferred(start()).addErrback(failed))
    rx.addSystemEventTrigger("before", "shutdown", lambda: defer.ensureDeferred(shutdown()))
    rx.run()
    return status["code"]


FD_RESERVE = 256
"""Descriptors kept for the controller's own files, switch and HTTP connections."""


def _descriptor_budget(wanted: int) -> int:
    """Raise the soft descriptor limit as far as allowed; return how many agent connections fit
    beside FD_RESERVE own descriptors (at most `wanted`), so peers cannot starve our files."""
    import resource  # noqa: PLC0415

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < target:
        new_soft = target if hard == resource.RLIM_INFINITY else min(target, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
            soft = new_soft
    if soft == resource.RLIM_INFINITY:
        return wanted
    budget = max(1, min(wanted, soft - FD_RESERVE))
    if budget < wanted:
        log.warning(
            "event=load_connections_capped wanted=%d allowed=%d nofile=%d", wanted, budget, soft
        )
    return budget


def _listen_admin(rx: Any, service: Any, settings: ControllerSettings) -> None:
    """Serve the admin API (if enabled), turning bind errors into one clear line."""
    from twisted.internet.error import CannotListenError  # noqa: PLC0415

    from controller.shell.admin import listen_admin  # noqa: PLC0415
    from controller.shell.app import ControllerError  # noqa: PLC0415

    where = settings.admin_listen
    if not where:
        return
    token = Path(settings.admin_token_file) if settings.admin_token_file else None
    try:
        listen_admin(rx, service, where, token)
    except (CannotListenError, ValueError) as exc:
        raise ControllerError(f"cannot serve the admin API on {where!r}: {exc}") from exc
    log.info("event=admin_listening address=%s token_file=%s", where, token or "-")


def _listen(rx: Any, feed: Any, metrics: Any, settings: ControllerSettings) -> None:
    """Bind the load feed and the metrics endpoint, turning bind errors into one clear line."""
    import zmq  # noqa: PLC0415
    from twisted.internet.error import CannotListenError  # noqa: PLC0415

    from controller.shell.app import ControllerError  # noqa: PLC0415
    from controller.shell.metrics import listen_metrics  # noqa: PLC0415

    try:
        feed.start()
    except zmq.ZMQError as exc:
        where = settings.load_listen
        raise ControllerError(f"cannot listen for load reports on {where!r}: {exc}") from exc
    if settings.metrics_listen:
        try:
            listen_metrics(rx, metrics, settings.metrics_listen)
        except (CannotListenError, ValueError) as exc:
            where = settings.metrics_listen
            raise ControllerError(f"cannot serve metrics on {where!r}: {exc}") from exc
        log.info("event=metrics_listening address=%s", settings.metrics_listen)
