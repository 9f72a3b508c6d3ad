"""Fixtures for the virtual-server tests: real member servers, virtual servers over them, and MCP
requests through the gateway's whole pipeline (Django's test client, in process)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from federation import catalog, member_lists, watch
from federation.member_sessions import shared_sessions
from federation.models import Member, PinningPolicy, VirtualServer
from performance.pools import close_all_pools
from routing.models import Service, Target
from tests.e2e.mcp_http import LEGACY_VERSION, MODERN_VERSION, STREAMABLE_ACCEPT, modern_headers, sse_data_messages
from tests.federation.members import MemberProcess


@pytest.fixture(autouse=True)
def fresh_federation_state() -> Iterator[None]:
    """Each test starts without this process's member sessions, lists, catalogs and watches."""
    yield
    watch.stop_all()
    shared_sessions.forget()
    member_lists.forget_parsed()
    catalog.forget_built()
    close_all_pools()


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemberProcess, MemberProcess]]:
    """Two member servers shared by a module's tests (which must not change them)."""
    workdir = tmp_path_factory.mktemp("members")
    alpha, beta = MemberProcess("alpha", workdir).start(), MemberProcess("beta", workdir).start()
    yield alpha, beta
    alpha.stop()
    beta.stop()


@pytest.fixture
def own_member(tmp_path: Path) -> Iterator[Callable[[str], MemberProcess]]:
    """Members of this test alone, to change, stop and restart."""
    started: list[MemberProcess] = []

    def start(name: str) -> MemberProcess:
        member = MemberProcess(name, tmp_path).start()
        started.append(member)
        return member

    yield start
    for member in started:
        member.stop()


@dataclass(frozen=True)
class MemberSpec:
    process: MemberProcess
    prefix: str
    fields: dict[str, Any]  # the Member's
    service_fields: dict[str, Any]  # its Service's (timeouts)


def member(process: MemberProcess, prefix: str | None = None, *, service: dict[str, Any] | None = None, **fields: Any) -> MemberSpec:
    return MemberSpec(process, prefix or process.name, fields, {"request_timeout": 5.0, **(service or {})})


@pytest.fixture
def make_virtual_server(db: Any) -> Callable[..., VirtualServer]:
    """A virtual server over member processes; open to anonymous callers unless ``route`` says
    otherwise, and not pinning unless ``pinning_policy`` says so."""

    def make(*specs: MemberSpec, route: dict[str, Any] | None = None, **fields: Any) -> VirtualServer:
        fields.setdefault("name", f"v{uuid.uuid4().hex[:8]}")
        fields.setdefault("pinning_policy", PinningPolicy.OFF)
        server = VirtualServer.objects.create(**fields)
        for position, spec in enumerate(specs):
            service = Service.objects.create(name=f"{spec.process.name}-{uuid.uuid4().hex[:6]}", **spec.service_fields)
            Target.objects.create(service=service, url=spec.process.url)
            Member.objects.create(virtual_server=server, service=service, prefix=spec.prefix, position=position, **spec.fields)
        assert server.route is not None
        for name, value in {"allow_anonymous": True, "tool_permissions": False, **(route or {})}.items():
            setattr(server.route, name, value)
        server.route.save()
        return server

    return make


# --- MCP over the test client ------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    messages: list[Any]

    @property
    def message(self) -> Any:
        """The JSON-RPC response (the last message: notifications come before it)."""
        return self.messages[-1]

    @property
    def result(self) -> Any:
        assert "result" in self.message, self.message
        return self.message["result"]

    @property
    def error(self) -> Any:
        assert "error" in self.message, self.message
        return self.message["error"]


def answer_of(response: Any) -> Answer:
    headers = {name.lower(): value for name, value in response.items()}
    body = b"".join(response.streaming_content) if response.streaming else response.content
    if headers.get("content-type", "").startswith("text/event-stream"):
        messages = sse_data_messages(body.decode())
    else:
        messages = [json.loads(body)] if body else []
    return Answer(response.status_code, headers, messages)


class McpCaller:
    """Raw JSON-RPC to a virtual server through the pipeline, in either era."""

    def __init__(self, path: str, *, modern: bool, credential: str | None = None) -> None:
        self.path = path
        self.modern = modern
        self.client = Client()
        self.credential = credential
        self.session_id: str | None = None
        self._ids = iter(range(1, 10_000))

    def headers(self, method: str, name: str | None = None) -> dict[str, str]:
        headers = {"Accept": STREAMABLE_ACCEPT}
        if self.credential:
            headers["Authorization"] = f"Bearer {self.credential}"
        if self.modern:
            headers.update(modern_headers(method, name))
        elif self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
            headers["MCP-Protocol-Version"] = LEGACY_VERSION
        return headers

    def message(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        params = dict(params or {})
        if self.modern:
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
                "io.modelcontextprotocol/clientCapabilities": {},
                **params.get("_meta", {}),
            }
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}

    def send(self, message: dict[str, Any], headers: dict[str, str]) -> Answer:
        response = self.client.post(self.path, data=json.dumps(message), content_type="application/json", headers=headers)
        return answer_of(response)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Answer:
        params = params or {}
        name = params.get("name") or params.get("uri")
        return self.send(self.message(method, params), self.headers(method, name))

    def connect(self) -> McpCaller:
        """Modern: nothing to do. Legacy: the initialize handshake."""
        if self.modern:
            return self
        answer = self.call("initialize", {"protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
        assert answer.status == 200, answer
        self.session_id = answer.headers["mcp-session-id"]
        notified = self.client.post(
            self.path,
            data=json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            content_type="application/json",
            headers=self.headers("notifications/initialized"),
        )
        assert notified.status_code == 202
        return self

    def tool_names(self) -> list[str]:
        return [tool["name"] for tool in self.call("tools/list").result["tools"]]

    def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> Answer:
        return self.call("tools/call", {"name": name, "arguments": arguments or {}})


@pytest.fixture(params=["legacy", "modern"])
def era(request: pytest.FixtureRequest) -> str:
    return request.param


def connect(server: VirtualServer, era: str, credential: str | None = None) -> McpCaller:
    return McpCaller(server.path, modern=era == "modern", credential=credential).connect()


def text_of(answer: Answer) -> str:
    return answer.result["content"][0]["text"]
