"""The admin API over HTTP: JSON in and out, served by Twisted beside the metrics endpoint.

`AdminResource` reads a request (its body already bounded by `BoundedRequest`), lets
controller.admin_protocol parse it into a command, checks the bearer token for changes, and
carries the command out on the `ControllerService`. `listen_admin` binds it on HOST:PORT or on a
Unix socket created 0600 (whoever can open that socket needs no token), behind the same limits
as the metrics endpoint: body size, idle timeout, deadline and connection cap.
"""

from __future__ import annotations

import json
import logging
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from twisted.web.resource import Resource
from twisted.web.server import Request

from controller.admin_protocol import (
    AdminCommand,
    AdminRequestError,
    JSONValue,
    MemberAction,
    PolicyChange,
    ReloadRequest,
    StatusQuery,
    bearer_matches,
    needs_token,
    parse_request,
    status_document,
)
from controller.config import ConfigError
from controller.core.pools import PoolError
from controller.shell.app import ControllerService
from controller.shell.metrics import (
    BoundedHTTPFactory,
    BoundedRequest,
    HTTPLimits,
    TCPReactor,
    bounded_site,
    parse_listen,
)
from policy import PolicyError

log = logging.getLogger("controller.admin")
JSON_TYPE = b"application/json"
_TOO_LARGE_BODY = b'{"error": "request body over 64 KiB"}\n'


class AdminRequest(BoundedRequest):
    """A bounded request whose refusal of an oversize body is JSON like every other error."""

    refusal = (
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(_TOO_LARGE_BODY)}\r\n".encode()
        + b"connection: close\r\n\r\n"
        + _TOO_LARGE_BODY
    )


@dataclass(frozen=True)
class AdminAccess:
    """Who may change things: the holder of the token in `token_file`, or anyone who can open
    `private_socket` while it is a 0600 Unix socket."""

    token_file: Path | None
    private_socket: Path | None = None

    def refusal(self, authorization: str | None) -> str | None:
        """Why a change with this Authorization header is refused (None: allowed)."""
        if self.private_socket is not None and _is_private(self.private_socket):
            return None
        if self.token_file is None:
            return (
                "changes need a bearer token and no admin_token_file is configured"
                " (set it in [controller]; p4lb-ctl --make-token FILE creates one)"
            )
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return (
                f"token file {str(self.token_file)!r} does not exist, so changes are refused"
                f" (create it with p4lb-ctl --make-token {self.token_file})"
            )
        except (OSError, UnicodeDecodeError) as exc:
            return f"token file {str(self.token_file)!r} is unreadable: {exc}"
        if not token:
            return f"token file {str(self.token_file)!r} is empty, so changes are refused"
        if not bearer_matches(authorization, token):
            return "missing or wrong bearer token (Authorization: Bearer <token>)"
        return None


def _is_private(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


class AdminResource(Resource):
    """Every admin path, on every method (so a wrong method gets a JSON 405, not HTML)."""

    isLeaf = True  # noqa: N815 - twisted.web attribute

    def __init__(self, service: ControllerService, access: AdminAccess) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._service = service
        self._access = access

    def render(self, request: Request) -> bytes:
        """Answer one request with a JSON document."""
        content: Any = request.content
        content.seek(0)
        body: bytes = content.read()
        method = (request.method or b"").decode("latin-1")
        path = (request.path or b"").decode("latin-1")
        try:
            command = parse_request(method, path, body, self._service.core.view())
            if needs_token(command):
                header = request.getHeader(b"authorization")
                refused = self._access.refusal(None if header is None else header.decode("latin-1"))
                if refused is not None:
                    request.setHeader(b"www-authenticate", b"Bearer")
                    raise AdminRequestError(401, refused)
            status, document = 200, self._carry_out(command)
        except AdminRequestError as exc:
            if exc.allow:
                request.setHeader(b"allow", ", ".join(exc.allow).encode())
            status, document = exc.status, {"error": exc.message}
            if exc.problems:
                document["problems"] = list(exc.problems)
        except Exception:  # a bug must cost one request, never the reactor
            log.exception("event=admin_error method=%s path=%s", method, path)
            status, document = 500, {"error": "internal error (see the controller's log)"}
        request.setResponseCode(status)
        request.setHeader(b"content-type", JSON_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(document, indent=1).encode("utf-8") + b"\n"

    def _carry_out(self, command: AdminCommand) -> JSONValue:
        service = self._service
        if isinstance(command, StatusQuery):
            loads = service.book.snapshot(service.clock())
            vips = [pool.vip for pool in service.core.pools]
            return status_document(service.core.view(), loads, vips)
        if isinstance(command, ReloadRequest):
            try:
                plan = service.reload()
            except ConfigError as exc:
                raise AdminRequestError(
                    422, "the configuration was refused; nothing changed", exc.problems
                ) from None
            return {"changes": plan.summary()}
        if isinstance(command, PolicyChange):
            try:
                service.set_policy(command.name, command.params)
            except PolicyError as exc:  # parse_request checked already; kept for safety
                raise AdminRequestError(400, str(exc)) from None
            return {"policy": {"name": command.name, "params": dict(command.params)}}
        return self._member_action(command)

    def _member_action(self, action: MemberAction) -> JSONValue:
        service = self._service
        pool = service.core.pool_named(action.vip)
        try:
            if action.verb == "drain":
                service.drain_member(action.dip, remove=action.remove, pool=pool)
            elif action.verb == "undrain":
                service.undrain_member(action.dip, pool=pool)
            elif action.verb == "standby":
                service.standby_member(action.dip, pool=pool)
            else:
                service.activate_member(action.dip, pool=pool)
        except PoolError as exc:  # the member's state does not allow it
            raise AdminRequestError(409, str(exc)) from None
        member = service.core.pool_by_id(pool).member(action.dip)
        log.info(
            "event=admin_member verb=%s vip=%s dip=%s state=%s",
            action.verb,
            action.vip,
            action.dip,
            member.state.value,
        )
        return {
            "vip": action.vip,
            "dip": action.dip,
            "state": member.state.value,
            "remove_when_drained": member.remove_when_drained,
        }


class AdminReactor(TCPReactor, Protocol):
    """The reactor methods `listen_admin` needs."""

    def listenUNIX(
        self,
        address: str,
        factory: Any,
        backlog: int = 50,
        mode: int = 0o666,
        wantPID: int = 0,  # noqa: N803
    ) -> Any:
        """Listen on a Unix socket; returns an IListeningPort."""
        ...


def admin_site(
    reactor: Any,
    service: ControllerService,
    access: AdminAccess,
    limits: HTTPLimits | None = None,
) -> BoundedHTTPFactory:
    """The bounded HTTP factory serving the admin API."""
    resource = AdminResource(service, access)
    return bounded_site(reactor, resource, limits or HTTPLimits(), AdminRequest)


def listen_admin(
    reactor: AdminReactor, service: ControllerService, address: str, token_file: Path | None
) -> Any:
    """Serve the admin API at HOST:PORT or on the Unix socket /PATH; returns the listening port."""
    if address.startswith("/"):
        access = AdminAccess(token_file, private_socket=Path(address))
        # wantPID: a lock file beside the socket lets a restart remove a stale socket safely.
        return reactor.listenUNIX(
            address, admin_site(reactor, service, access), mode=0o600, wantPID=1
        )
    host, port = parse_listen(address)
    return reactor.listenTCP(
        port, admin_site(reactor, service, AdminAccess(token_file)), interface=host
    )
