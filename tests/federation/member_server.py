"""A member MCP server for the virtual-server tests: the official SDK's low-level server, run as a
process of its own (Streamable HTTP, both eras, real sessions):

    python -m tests.federation.member_server --name alpha --port 9301 --log /tmp/alpha.log

Tools (each answer names the server, so a test sees which member ran a call):
  echo(text)                -> "<name>:<text>"
  search(query, region)     -> "<name>:<query>@<region>"    (region is what virtual servers pin)
  bump(call_id, sleep_seconds) -> appends call_id to the --log file, sleeps; answers "<name>:<count in this process>"
  countdown(steps)          -> a progress notification and a log message per step, then "<name>:done"
A prompt ``greet(who)`` and a resource ``<name>://readme``.

Test controls (plain HTTP beside /mcp):
  POST /control {"describe": {"echo": "new text"}, "add": ["extra"]} changes the tools and sends
       notifications/tools/list_changed on every session's standing stream;
  GET /calls    {"initialized": n, "sessions": [those that listed or called], "executions": {"bump": n, ...},
                 "cancelled": countdowns cancelled}
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import uvicorn
from mcp.server.lowlevel.server import NotificationOptions, Server
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BASE_TOOLS: dict[str, tuple[str, dict[str, Any]]] = {
    "echo": ("Echo the text back.", {"text": {"type": "string"}}),
    "search": ("Search in one region.", {"query": {"type": "string"}, "region": {"type": "string"}}),
    "bump": ("Count a call, once per execution.", {"call_id": {"type": "string"}, "sleep_seconds": {"type": "number"}}),
    "countdown": ("Count down with progress.", {"steps": {"type": "integer"}}),
}
REQUIRED = {"echo": ["text"], "search": ["query", "region"], "bump": ["call_id"], "countdown": []}


class Member:
    def __init__(self, name: str, log: Path | None, descriptions: dict[str, str], extra: list[str]) -> None:
        self.name = name
        self.log = log
        self.descriptions = {tool: text for tool, (text, _) in BASE_TOOLS.items()} | descriptions
        self.extra = list(extra)
        self.executions: dict[str, int] = {}
        self.initialized = 0
        self.cancelled = 0  # countdowns stopped by the client's cancellation
        self.connections: dict[str, Any] = {}  # Mcp-Session-Id -> its session, for list_changed
        self.active: set[str] = set()  # sessions that listed or called something

    def tools(self) -> list[types.Tool]:
        tools = [
            types.Tool(
                name=tool,
                description=self.descriptions[tool],
                input_schema={"type": "object", "properties": properties, "required": REQUIRED[tool]},
            )
            for tool, (_, properties) in BASE_TOOLS.items()
        ]
        tools += [
            types.Tool(name=tool, description=f"Extra tool {tool}.", input_schema={"type": "object", "properties": {}})
            for tool in self.extra
        ]
        return tools

    @staticmethod
    def session_id_of(ctx: Any) -> str | None:
        request = getattr(ctx, "request", None)
        return request.headers.get("mcp-session-id") if request is not None else None

    async def on_initialized(self, ctx: Any, params: Any) -> None:
        if (session_id := self.session_id_of(ctx)) is not None:
            self.connections[session_id] = ctx.session

    def remember(self, ctx: Any) -> None:
        if (session_id := self.session_id_of(ctx)) is not None:
            self.active.add(session_id)

    async def list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        self.remember(ctx)
        return types.ListToolsResult(tools=self.tools())

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        self.remember(ctx)
        arguments = params.arguments or {}
        self.executions[params.name] = self.executions.get(params.name, 0) + 1
        if params.name == "echo":
            text = f"{self.name}:{arguments.get('text')}"
        elif params.name == "search":
            text = f"{self.name}:{arguments.get('query')}@{arguments.get('region')}"
        elif params.name == "bump":
            if self.log is not None:
                with self.log.open("a") as log:
                    log.write(f"{arguments.get('call_id')}\n")
            await anyio.sleep(float(arguments.get("sleep_seconds", 0)))
            text = f"{self.name}:{self.executions['bump']}"
        elif params.name == "countdown":
            steps = int(arguments.get("steps", 3))
            try:
                for step in range(1, steps + 1):
                    await ctx.session.report_progress(step, steps, f"step {step} of {steps}")
                    await ctx.session.send_log_message("info", f"{self.name} step {step}", related_request_id=ctx.request_id)
                    await anyio.sleep(0.05)
            except anyio.get_cancelled_exc_class():
                self.cancelled += 1
                raise
            text = f"{self.name}:done"
        elif params.name in self.extra:
            text = f"{self.name}:{params.name}"
        else:
            return types.CallToolResult(content=[types.TextContent(text=f"unknown tool {params.name}")], is_error=True)
        return types.CallToolResult(content=[types.TextContent(text=text)])

    async def list_prompts(self, ctx: Any, params: Any) -> types.ListPromptsResult:
        self.remember(ctx)
        argument = types.PromptArgument(name="who", required=True)
        return types.ListPromptsResult(prompts=[types.Prompt(name="greet", description="Greet someone.", arguments=[argument])])

    async def get_prompt(self, ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        who = (params.arguments or {}).get("who", "nobody")
        message = types.PromptMessage(role="user", content=types.TextContent(text=f"{self.name} greets {who}"))
        return types.GetPromptResult(messages=[message])

    async def list_resources(self, ctx: Any, params: Any) -> types.ListResourcesResult:
        self.remember(ctx)
        return types.ListResourcesResult(resources=[types.Resource(uri=f"{self.name}://readme", name="readme")])

    async def read_resource(self, ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        text = f"readme of {self.name}"
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=str(params.uri), text=text)])

    async def control(self, request: Request) -> JSONResponse:
        change = await request.json()
        self.descriptions.update(change.get("describe", {}))
        self.extra.extend(change.get("add", []))
        for session in list(self.connections.values()):
            try:
                await session.send_tool_list_changed()
            except Exception:  # a session that ended meanwhile
                pass
        return JSONResponse({"ok": True})

    async def calls(self, request: Request) -> JSONResponse:
        return JSONResponse({
                "initialized": self.initialized,
                "sessions": sorted(self.active),
                "executions": self.executions,
                "cancelled": self.cancelled,
            })


class MemberServer(Server[Any]):
    """Announces listChanged for its lists in the 2025 handshake, and counts handshakes."""

    member: Member

    def create_initialization_options(self, notification_options: Any = None, *args: Any, **kwargs: Any) -> Any:
        self.member.initialized += 1
        options = NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
        return super().create_initialization_options(options, *args, **kwargs)


def build_app(member: Member) -> Any:
    server = MemberServer(
        member.name,
        on_list_tools=member.list_tools,
        on_call_tool=member.call_tool,
        on_list_prompts=member.list_prompts,
        on_get_prompt=member.get_prompt,
        on_list_resources=member.list_resources,
        on_read_resource=member.read_resource,
    )
    server.member = member
    server.add_notification_handler("notifications/initialized", types.NotificationParams, member.on_initialized)
    routes = [Route("/control", member.control, methods=["POST"]), Route("/calls", member.calls, methods=["GET"])]
    return server.streamable_http_app(streamable_http_path="/mcp", custom_starlette_routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--describe", action="append", default=[], help="tool=description")
    parser.add_argument("--extra-tool", action="append", default=[])
    args = parser.parse_args()
    descriptions = dict(item.split("=", 1) for item in args.describe)
    member = Member(args.name, args.log, descriptions, args.extra_tool)
    uvicorn.run(build_app(member), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

