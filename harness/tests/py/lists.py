"""Every list through the gateway with the PyPI `mcp` client, following cursors.

usage: lists.py URL TOKEN
Prints one JSON object: the names (tools, prompts), URIs (resources) and URI
templates (templates) the client was shown, and how many pages each took.
"""

import asyncio
import json
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import PaginatedRequestParams


async def every_page(fetch, items, key):
    names, pages, cursor = [], 0, None
    while True:
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        result = await asyncio.wait_for(fetch(params=params), 20)
        pages += 1
        names += [getattr(i, key) for i in items(result)]
        cursor = result.next_cursor
        if not cursor:
            return [str(n) for n in names], pages


async def main(url: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await asyncio.wait_for(session.initialize(), 20)
                out = {}
                for name, fetch, items, key in [
                    ("tools", session.list_tools, lambda r: r.tools, "name"),
                    ("prompts", session.list_prompts, lambda r: r.prompts, "name"),
                    ("resources", session.list_resources, lambda r: r.resources, "uri"),
                    ("templates", session.list_resource_templates,
                     lambda r: r.resource_templates, "uri_template"),
                ]:
                    out[name], out[name + "_pages"] = await every_page(fetch, items, key)
                print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
