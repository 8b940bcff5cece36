"""The admin API served by a real controller process (in-process model switch) on loopback:
authentication, every refusal, body limits, and a drain seen in the status."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.shell.ctl import EXIT_AUTH, EXIT_FAILED, AdminClient, CtlError, make_token
from controller.shell.ctl import main as ctl_main

REPO = Path(__file__).resolve().parents[2]
DRAINED = "10.1.4.2:8080"
CONFIG = """
[controller]
policy = "equal"
metrics_listen = ""
load_listen = "tcp://127.0.0.1:{load}"
admin_listen = "{admin}"
admin_token_file = "{token}"

[[vip]]
name = "web"
ip = "10.0.0.100"
port = 80
  [[vip.dip]]
  ip = "10.1.3.2"
  port = 8080
  [[vip.dip]]
  ip = "10.1.4.2"
  port = 8080
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Controller:
    """A controller process and where to reach its admin API."""

    def __init__(self, tmp: Path, admin: str, token: Path) -> None:
        self.admin, self.token = admin, token
        config = tmp / "lb.toml"
        config.write_text(CONFIG.format(load=free_port(), admin=admin, token=token))
        self.log = (tmp / "controller.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controller", "--config", str(config)],
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        url = admin if admin.startswith("/") else f"http://{admin}"
        self.url = url
        deadline = time.monotonic() + 60.0
        while True:
            assert self.process.poll() is None, (tmp / "controller.log").read_text()
            try:
                AdminClient(url).call("GET", "/v1/status")
                return
            except CtlError:
                assert time.monotonic() < deadline, "the admin API never answered"
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    tmp = tmp_path_factory.mktemp("admin")
    token = tmp / "admin.token"
    make_token(token)
    running = Controller(tmp, f"127.0.0.1:{free_port()}", token)
    yield running
    running.stop()


def raw(
    controller: Controller, method: str, path: str, body: bytes = b"", token: str | None = None
) -> tuple[int, dict[str, Any], http.client.HTTPResponse]:
    host, port = controller.admin.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    connection.request(method, path, body=body, headers=headers)
    answer = connection.getresponse()
    document = json.loads(answer.read())
    connection.close()
    return answer.status, document, answer


def token_of(controller: Controller) -> str:
    return controller.token.read_text().strip()


DRAIN = f"/v1/vips/web/members/{DRAINED}/drain"


@pytest.mark.parametrize(
    ("token", "status"), [(None, 401), ("wrong", 401), ("right", 200)], ids=str
)
def test_changes_need_the_right_token(
    controller: Controller, token: str | None, status: int
) -> None:
    sent = token_of(controller) if token == "right" else token
    code, document, answer = raw(
        controller, "POST", "/v1/vips/web/members/10.1.3.2:8080/activate", token=sent
    )
    assert code == status
    if status == 401:
        assert "bearer token" in document["error"]
        assert answer.getheader("www-authenticate") == "Bearer"


def test_reads_need_no_token(controller: Controller) -> None:
    code, document, _ = raw(controller, "GET", "/v1/status")
    assert code == 200 and document["vips"][0]["name"] == "web"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("GET", "/nothing", b"", 404, "under /v1/"),
        ("DELETE", "/v1/status", b"", 405, "use GET"),
        ("POST", "/v1/vips/nope/members/10.1.3.2:8080/drain", b"", 404, "unknown VIP 'nope'"),
        ("POST", "/v1/vips/web/members/10.9.9.9:1/drain", b"", 404, "not a member"),
        ("POST", DRAIN, b"{oops", 400, "not valid JSON"),
        ("PUT", "/v1/policy", b'{"name": "magic"}', 400, "unknown policy 'magic'"),
        ("PUT", "/v1/policy", b'{"name": "ratio", "params": {"gain": -3}}', 400, "gain"),
        ("POST", "/v1/vips/web/members/10.1.3.2:8080/undrain", b'{"x": 1}', 400, "unknown field"),
    ],
)
def test_every_bad_request_gets_a_4xx_saying_why(  # noqa: PLR0917 - parametrized cases
    controller: Controller, method: str, path: str, body: bytes, status: int, says: str
) -> None:
    code, document, answer = raw(controller, method, path, body, token_of(controller))
    assert code == status and says in document["error"]
    assert answer.getheader("content-type") == "application/json"


def test_a_refused_policy_changes_nothing(controller: Controller) -> None:
    raw(
        controller,
        "PUT",
        "/v1/policy",
        b'{"name": "ratio", "params": {"bogus": 1}}',
        token_of(controller),
    )
    assert raw(controller, "GET", "/v1/status")[1]["policy"]["name"] == "equal"


def test_an_oversize_body_gets_413_and_the_endpoint_keeps_serving(controller: Controller) -> None:
    code, document, _ = raw(
        controller, "PUT", "/v1/policy", b" " * (65 * 1024), token_of(controller)
    )
    assert code == 413 and "64 KiB" in document["error"]
    assert raw(controller, "GET", "/v1/status")[0] == 200


def test_a_stalled_client_does_not_stall_others(controller: Controller) -> None:
    host, port = controller.admin.split(":")
    with socket.create_connection((host, int(port))) as slow:
        slow.sendall(b"PUT /v1/policy HTTP/1.1\r\ncontent-length: 100\r\n\r\n{")
        assert raw(controller, "GET", "/v1/status")[0] == 200


def test_drain_through_the_api_shows_in_the_status(controller: Controller) -> None:
    code, document, _ = raw(controller, "POST", DRAIN, b'{"remove": false}', token_of(controller))
    assert code == 200 and document["state"] == "draining"
    status = raw(controller, "GET", "/v1/status")[1]
    states = {m["dip"]: m["state"] for m in status["vips"][0]["members"]}
    assert states[DRAINED] == "draining"
    # Draining twice is no conflict; standby a draining member is fine; undrain brings it back.
    assert raw(controller, "POST", DRAIN, b"", token_of(controller))[0] == 200
    undrain = DRAIN.replace("/drain", "/undrain")
    assert raw(controller, "POST", undrain, b"", token_of(controller))[1]["state"] == "active"


def test_ctl_drains_and_reports_status(
    controller: Controller, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--admin", controller.url, "--token-file", str(controller.token)]
    assert ctl_main([*base, "drain", DRAINED]) == 0
    assert f"web {DRAINED}: draining" in capsys.readouterr().out
    assert ctl_main([*base, "status"]) == 0
    assert "draining" in capsys.readouterr().out
    assert ctl_main([*base, "undrain", DRAINED]) == 0
    assert ctl_main([*base, "policy", "ratio", "gain=0.5"]) == 0
    assert ctl_main([*base, "status", "--json"]) == 0
    shown = capsys.readouterr().out
    assert json.loads(shown[shown.index("{") :])["policy"] == {
        "name": "ratio",
        "params": {"gain": 0.5},
    }
    assert ctl_main([*base, "policy", "equal"]) == 0


def test_ctl_says_when_the_token_is_wrong(
    controller: Controller, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong.token"
    wrong.write_text("nope\n")
    assert (
        ctl_main(["--admin", controller.url, "--token-file", str(wrong), "drain", DRAINED])
        == EXIT_AUTH
    )
    assert "401 missing or wrong bearer token" in capsys.readouterr().err


def test_ctl_says_when_no_controller_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl_main(["--admin", f"http://127.0.0.1:{free_port()}", "status"]) == EXIT_FAILED
    assert "is the controller running" in capsys.readouterr().err


def test_a_private_unix_socket_needs_no_token(tmp_path: Path) -> None:
    # AF_UNIX paths are short (108 bytes): pytest's tmp_path can be longer.
    socket_path = Path(f"/tmp/p4lb-admin-{os.getpid()}.sock")
    running = Controller(tmp_path, str(socket_path), tmp_path / "absent.token")
    try:
        assert (socket_path.stat().st_mode & 0o777) == 0o600
        client = AdminClient(f"unix:{socket_path}")
        answer = client.call("POST", f"/v1/vips/web/members/{DRAINED}/drain")
        assert answer["state"] == "draining"
        # Looser permissions: the socket is no longer private, so the (absent) token counts.
        socket_path.chmod(0o666)
        with pytest.raises(CtlError, match="does not exist, so changes are refused") as caught:
            client.call("POST", f"/v1/vips/web/members/{DRAINED}/undrain")
        assert caught.value.code == EXIT_AUTH
    finally:
        running.stop()


ADDED = '  [[vip.dip]]\n  ip = "10.1.5.2"\n  port = 8080\n'


def members(client: AdminClient) -> list[str]:
    return [m["dip"] for m in client.call("GET", "/v1/status")["vips"][0]["members"]]


def test_sighup_and_ctl_reload_apply_the_file_and_refuse_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "admin.token"
    make_token(token)
    running = Controller(tmp_path, f"127.0.0.1:{free_port()}", token)
    config = tmp_path / "lb.toml"
    original = config.read_text()
    client = AdminClient(running.url)
    base = ["--admin", running.url, "--token-file", str(token)]
    try:
        config.write_text(original + ADDED)
        running.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30.0
        while "10.1.5.2:8080" not in members(client):
            assert time.monotonic() < deadline, "SIGHUP did not add the member"
            time.sleep(0.1)
        # A file changing what needs a restart, and an invalid one: refused whole.
        config.write_text(original.replace("[controller]", "[controller]\nweight_bits = 9") + ADDED)
        assert ctl_main([*base, "reload"]) == EXIT_FAILED
        said = capsys.readouterr().err
        assert "422 the configuration was refused; nothing changed" in said
        assert "controller.weight_bits: cannot change while the controller runs" in said
        config.write_text(original + ADDED.replace("8080", "99999"))
        assert ctl_main([*base, "reload"]) == EXIT_FAILED
        assert "vip[0].dip[2].port" in capsys.readouterr().err
        running.process.send_signal(signal.SIGHUP)  # refused too: logged, the process lives on
        log = tmp_path / "controller.log"
        deadline = time.monotonic() + 30.0
        while "event=reload_refused" not in log.read_text():
            assert time.monotonic() < deadline, "a refused SIGHUP reload was not logged"
            time.sleep(0.1)
        assert "event=reload_problem vip[0].dip[2].port" in log.read_text()
        assert "10.1.5.2:8080" in members(client)
        # Back to the original file: the added member drains out (it has no connection).
        config.write_text(original)
        assert ctl_main([*base, "reload"]) == 0
        assert "vip web: 10.1.5.2:8080 removed (drains first)" in capsys.readouterr().out
        assert ctl_main([*base, "reload"]) == 0
        assert capsys.readouterr().out == "no change\n"
        deadline = time.monotonic() + 30.0
        while "10.1.5.2:8080" in members(client):
            assert time.monotonic() < deadline, "the removed member never left"
            time.sleep(0.1)
        assert running.process.poll() is None
    finally:
        running.stop()
