"""A small MCP server for the runtime's MCP tests (tests/mcp.rs), on the Python SDK (`mcp` 2.x).

    python server.py [--name NAME] [--only t1,t2] [--paged] [--http PORT] [--exit] [--silent]

--name   what `whoami` answers (default "py")
--only   offer only these tools
--paged  tools/list answers one tool per page (nextCursor)
--http   streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio
--exit   write to stderr and exit with status 3 before speaking MCP
--silent never answer (sleep, reading nothing)
"""

import argparse
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--name", default="py")
parser.add_argument("--only", default="")
parser.add_argument("--paged", action="store_true")
parser.add_argument("--http", type=int, default=0)
parser.add_argument("--exit", action="store_true")
parser.add_argument("--silent", action="store_true")
opts = parser.parse_args()

if opts.exit:
    print("mcp_server.py: refusing to start (--exit)", file=sys.stderr, flush=True)
    sys.exit(3)
if opts.silent:
    while True:
        time.sleep(60)

from mcp.server.mcpserver import Image, MCPServer  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402
from mcp_types import ListToolsResult  # noqa: E402

only = {t for t in opts.only.split(",") if t}


class PagedServer(MCPServer):
    """Lists its tools one per page."""

    async def _handle_list_tools(self, ctx, params):
        tools = await self.list_tools()
        start = int(params.cursor) if params is not None and params.cursor else 0
        page = tools[start : start + 1]
        more = start + 1 < len(tools)
        return ListToolsResult(tools=page, next_cursor=str(start + 1) if more else None)


server = (PagedServer if opts.paged else MCPServer)(opts.name)


def tool(fn):
    if not only or fn.__name__ in only:
        server.tool()(fn)
    return fn


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


@tool
def fail(reason: str) -> str:
    """Always fails with the reason."""
    raise ToolError(f"failed on purpose: {reason}")


@tool
def whoami() -> str:
    """The server's name, working directory and FM_TEST_VAR."""
    return f"{opts.name} {os.getcwd()} {os.environ.get('FM_TEST_VAR', '-')}"


@tool
def picture() -> list:
    """A text part and an image part."""
    return ["two parts", Image(data=b"\x89PNG", format="png")]


if opts.http:
    server.run("streamable-http", host="127.0.0.1", port=opts.http)
else:
    server.run()
