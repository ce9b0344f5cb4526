"""List tools (and call whoami) through the gateway with the PyPI `mcp` client.

usage: list_tools.py URL [TOKEN]
Prints the tool names and whoami's answer; on refusal prints the HTTP status
seen on the wire and exits 1.
"""

import asyncio
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # The SDK turns HTTP refusals into protocol errors; record what the wire said.
    refusals: list[str] = []

    async def record(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            challenge = response.headers.get("www-authenticate", "")
            refusals.append(f"HTTP {response.status_code} {challenge}".strip())

    try:
        async with httpx2.AsyncClient(
            headers=headers, timeout=30, event_hooks={"response": [record]}
        ) as http:
            async with streamable_http_client(url, http_client=http) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await asyncio.wait_for(session.initialize(), 20)
                    tools = await asyncio.wait_for(session.list_tools(), 20)
                    print("tools:", ", ".join(t.name for t in tools.tools))
                    who = await asyncio.wait_for(session.call_tool("whoami", {}), 20)
                    texts = [c.text for c in who.content if hasattr(c, "text")]
                    print("whoami:", " ".join(texts))
    except BaseException as e:  # noqa: BLE001 - report whatever the SDK raised
        print(f"refused: {'; '.join(refusals) or 'no HTTP error'} ({type(e).__name__}: {e})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)))
