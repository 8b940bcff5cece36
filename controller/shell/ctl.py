"""`p4lb-ctl`: look at a running controller and change it, over its admin API.

p4lb-ctl status                       # a table: every VIP, its members, weights and health
p4lb-ctl watch                        # the same, refreshed every second until Ctrl-C
p4lb-ctl --token-file T drain 10.0.1.2:8080 [--remove]
p4lb-ctl --token-file T undrain 10.0.1.2:8080
p4lb-ctl --token-file T policy ratio target_util=0.7
p4lb-ctl --token-file T reload        # apply the controller's TOML file as it is now (as SIGHUP)
p4lb-ctl --make-token /etc/p4lb/admin.token   # a random token, 0600, never overwritten

Exit codes: 0 done; 1 the controller could not be reached or refused the request (the
reason is printed); 2 usage error; 3 the token was missing or wrong (HTTP 401).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3
DEFAULT_ADMIN = "http://127.0.0.1:9180"
TIMEOUT = 5.0
"""Seconds to wait for the controller's answer."""


class CtlError(Exception):
    """A failed call: the one line to print and the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the controller's admin_listen = /PATH)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        """Connect to the socket file instead of a host."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixHandler(urllib.request.HTTPHandler):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        """Open every http:// request on the socket."""
        timeout = req.timeout if req.timeout is not None else TIMEOUT
        return self.do_open(lambda host, **_: _UnixConnection(self._path, timeout), req)


class AdminClient:
    """Calls to the admin API at `admin` (http://HOST:PORT, or unix:/PATH or /PATH)."""

    def __init__(self, admin: str, token: str | None = None) -> None:
        self.admin = admin
        self._token = token
        path = admin.removeprefix("unix:")
        if path.startswith("/"):
            self._base = "http://localhost"
            self._opener = urllib.request.build_opener(_UnixHandler(path))
        else:
            self._base = admin.rstrip("/") if "://" in admin else f"http://{admin}"
            self._opener = urllib.request.build_opener()

    def call(self, method: str, path: str, body: object | None = None) -> Any:
        """One request; the decoded JSON answer, or CtlError saying what went wrong."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self._base + path, data=data, method=method)
        request.add_header("content-type", "application/json")
        if self._token is not None:
            request.add_header("authorization", f"Bearer {self._token}")
        try:
            with self._opener.open(request, timeout=TIMEOUT) as answer:
                return json.loads(answer.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise CtlError(
                f"{method} {path}: {exc.code} {_error_text(exc)}",
                EXIT_AUTH if exc.code == 401 else EXIT_FAILED,
            ) from None
        except urllib.error.URLError as exc:
            raise CtlError(
                f"cannot reach the controller's admin API at {self.admin} ({exc.reason});"
                " is the controller running, and is this its admin_listen?"
            ) from None
        except (OSError, http.client.HTTPException) as exc:  # reset, timeout mid-answer
            raise CtlError(f"{method} {path}: no valid answer from {self.admin}: {exc}") from None
        except ValueError as exc:
            raise CtlError(f"{method} {path}: the answer is not JSON: {exc}") from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        document = json.loads(exc.read().decode("utf-8"))
        problems = document.get("problems", [])
        return "\n  ".join([str(document["error"]), *(str(p) for p in problems)])
    except (OSError, ValueError, KeyError, TypeError):
        return str(exc.reason)


# -- what people read


def _percent(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.0%}"


def _age(value: object) -> str:
    return "never" if not isinstance(value, int | float) else f"{value:.1f}s"


def format_status(document: dict[str, Any]) -> str:
    """The status document as a table a person reads at a glance."""
    policy = document.get("policy", {})
    params = " ".join(f"{k}={v:g}" for k, v in sorted(policy.get("params", {}).items()))
    held = document.get("backpressure") or "none"
    lines = [
        f"policy {policy.get('name')}{f' ({params})' if params else ''}"
        f"   active slot {document.get('active_slot')}   rollouts {document.get('rollouts')}"
        f"   conn entries {document.get('conn_entries')}"
        f"{' (FULL)' if document.get('conn_table_full') else ''}   rollouts held: {held}",
    ]
    header = ("DIP", "STATE", "HEALTH", "CPU", "CONNS", "WEIGHT", "ACTIVE", "SHARE", "REPORT")
    for vip in document.get("vips", []):
        lines += ["", f"VIP {vip.get('name')}  {vip.get('address')}/{vip.get('protocol')}"]
        rows = [header]
        for m in vip.get("members", []):
            conns = m.get("connections")
            rows.append(
                (
                    str(m.get("dip")),
                    str(m.get("state")),
                    str(m.get("health")),
                    _percent(m.get("cpu")),
                    "-" if conns is None else str(conns),
                    str(m.get("weight")),
                    str(m.get("active_weight")),
                    f"{100 * float(m.get('share', 0.0)):.1f}%",
                    _age(m.get("report_age")),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines += [
            "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            for row in rows
        ]
    return "\n".join(line.rstrip() for line in lines)


def parse_params(pairs: Sequence[str]) -> dict[str, float]:
    """key=value arguments as numbers; CtlError (usage) for anything else."""
    params: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            params[key] = float(value)
        except ValueError:
            raise CtlError(f"policy parameter {pair!r} is not key=NUMBER", EXIT_USAGE) from None
    return params


def make_token(path: Path) -> str:
    """Create `path` holding a random token, mode 0600; an existing file is left alone."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return f"{path} exists; left as it is"
    except OSError as exc:
        raise CtlError(f"cannot create {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    return f"{path}: new token written (mode 0600)"


# -- commands


def _member_vips(client: AdminClient, dip: str, vip: str | None) -> list[str]:
    """The VIPs a DIP serves (all of them unless --vip chose one)."""
    if vip is not None:
        return [vip]
    status = client.call("GET", "/v1/status")
    found = [
        v["name"] for v in status.get("vips", []) if any(m["dip"] == dip for m in v["members"])
    ]
    if not found:
        raise CtlError(f"{dip} is a member of no VIP (DIPs are IP:PORT; see p4lb-ctl status)")
    return found


def _member(client: AdminClient, args: argparse.Namespace, verb: str) -> str:
    body = {"remove": True} if verb == "drain" and args.remove else None
    lines = []
    for vip in _member_vips(client, args.dip, args.vip):
        path = f"/v1/vips/{urllib.parse.quote(vip, safe='')}/members/{args.dip}/{verb}"
        answer = client.call("POST", path, body)
        leaving = " (leaves when drained)" if answer.get("remove_when_drained") else ""
        lines.append(f"{vip} {args.dip}: {answer.get('state')}{leaving}")
    return "\n".join(lines)


def _watch(client: AdminClient, as_json: bool) -> None:
    while True:
        try:
            status = client.call("GET", "/v1/status")
            shown = json.dumps(status) if as_json else format_status(status)
        except CtlError as exc:  # keep watching: the controller may be restarting
            shown = f"p4lb-ctl: {exc}"
        if as_json:
            print(shown, flush=True)
        else:
            stamp = time.strftime("%H:%M:%S")
            sys.stdout.write(f"\x1b[H\x1b[2J{client.admin}  {stamp}  (Ctrl-C stops)\n{shown}\n")
            sys.stdout.flush()
        time.sleep(1.0)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="p4lb-ctl",
        description=__doc__.splitlines()[0],
        epilog="Exit codes: 0 done, 1 failed or unreachable, 2 usage, 3 token missing or wrong.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--admin",
        default=os.environ.get("P4LB_ADMIN", DEFAULT_ADMIN),
        help="the controller's admin API: http://HOST:PORT or unix:/PATH (env P4LB_ADMIN)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=os.environ.get("P4LB_ADMIN_TOKEN_FILE"),
        help="file holding the bearer token for changes (env P4LB_ADMIN_TOKEN_FILE)",
    )
    parser.add_argument("--json", action="store_true", help="print reads as JSON")
    parser.add_argument(
        "--make-token", type=Path, metavar="FILE", help="create FILE with a random token (0600)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for read, text in (
        ("status", "every VIP and member at a glance"),
        ("watch", "status, refreshed every second until Ctrl-C"),
    ):
        sub = commands.add_parser(read, help=text)
        # Also after the command (`p4lb-ctl status --json`); SUPPRESS keeps the global one.
        sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON")
    for verb, text in (
        ("drain", "stop new connections to DIP (existing ones carry on)"),
        ("undrain", "return a draining or standby DIP to service"),
        ("standby", "take DIP out of service but keep it (drains first)"),
        ("activate", "put DIP in service whatever its state"),
    ):
        sub = commands.add_parser(verb, help=text)
        sub.add_argument("dip", metavar="DIP", help="IP:PORT")
        sub.add_argument("--vip", help="only in this VIP (default: every VIP DIP serves)")
        if verb == "drain":
            sub.add_argument("--remove", action="store_true", help="leave the pool once drained")
    commands.add_parser("reload", help="apply the controller's configuration file live")
    sub = commands.add_parser("policy", help="switch every pool's policy live")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("params", nargs="*", metavar="key=value")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of p4lb-ctl."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _main(parser, args)
    except CtlError as exc:
        print(f"p4lb-ctl: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_OK


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.make_token is not None:
        print(make_token(args.make_token))
        if args.command is None:
            return EXIT_OK
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("p4lb-ctl: a COMMAND is required", file=sys.stderr)
        return EXIT_USAGE
    token = None
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CtlError(f"--token-file {args.token_file}: {exc.strerror or exc}") from None
    client = AdminClient(args.admin, token)
    if args.command == "status":
        status = client.call("GET", "/v1/status")
        print(json.dumps(status, indent=1) if args.json else format_status(status))
    elif args.command == "watch":
        _watch(client, args.json)
    elif args.command == "policy":
        body = {"name": args.name, "params": parse_params(args.params)}
        answer = client.call("PUT", "/v1/policy", body)
        print(f"policy {answer['policy']['name']} in place; weights follow at the next rollouts")
    elif args.command == "reload":
        changes = client.call("POST", "/v1/reload")["changes"]
        print("\n".join(["reloaded:", *(f"  {c}" for c in changes)]) if changes else "no change")
    else:
        print(_member(client, args, args.command))
    return EXIT_OK
