"""The bundled demo MCP server: something real for a fresh gateway to route to.

Built with the official MCP Python SDK and served over Streamable HTTP, so it speaks both
protocol eras (2025 session-based and stateless 2026-07-28). Run it on its own with

    python -m demo.mcp_server --port 9100

``make run`` starts it beside the gateway, which routes ``/mcp/demo`` to it.
"""

from __future__ import annotations

import argparse

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer

demo = MCPServer("gateway-demo", instructions="A demo server bundled with the MCP gateway.")


@demo.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@demo.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@demo.tool()
async def countdown(steps: int = 3, delay_seconds: float = 0.2, ctx: Context | None = None) -> str:
    """Count down, sending a progress notification at every step before the final result."""
    steps = max(1, min(steps, 100))
    for step in range(1, steps + 1):
        if ctx is not None:
            await ctx.report_progress(step, steps, f"step {step} of {steps}")
        await anyio.sleep(delay_seconds)
    return f"counted down {steps} steps"


@demo.tool()
def fail(reason: str = "this tool fails on purpose") -> str:
    """Always fails, so clients can see how a tool error looks."""
    raise RuntimeError(reason)


@demo.resource("demo://readme")
def readme() -> str:
    """A short text resource."""
    return "This is the MCP gateway's demo server."


@demo.prompt()
def greet(name: str) -> str:
    """A prompt that greets someone."""
    return f"Say hello to {name}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--path", default="/mcp")
    args = parser.parse_args()
    app = demo.streamable_http_app(streamable_http_path=args.path, host=args.host)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
