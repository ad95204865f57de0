"""A browser-like HTTP client for the console: a cookie jar, the sign-in form, and Admin
API calls carrying the session's CSRF token."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from yarl import URL

from tests.gateway import ADMIN_KEY


class ConsoleClient:
    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.url = base_url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers)
        self.csrf = ""

    async def close(self) -> None:
        await self.http.close()

    async def signin_response(self, **fields: str) -> aiohttp.ClientResponse:
        async with self.http.get(self.url + "/console/signin") as r:
            html = await r.text()
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        return await self.http.post(
            self.url + "/console/signin", data={"csrf_token": token, **fields}, allow_redirects=False
        )

    async def signin(self, admin_key: str = ADMIN_KEY, username: str = "", password: str = "") -> None:
        fields = {"username": username, "password": password} if username else {"admin_key": admin_key}
        r = await self.signin_response(**fields)
        assert r.status == 303, (r.status, await r.text())
        await self.load_csrf()

    def set_session(self, sid: str) -> None:
        self.http.cookie_jar.update_cookies({"aigate_session": sid}, response_url=URL(self.url))

    def session_id(self) -> str:
        for cookie in self.http.cookie_jar:
            if cookie.key == "aigate_session":
                return cookie.value
        return ""

    async def load_csrf(self) -> None:
        async with self.http.get(self.url + "/console/audit") as r:
            html = await r.text()
        found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
        self.csrf = found.group(1) if found else ""

    async def page(self, path: str) -> tuple[int, str, aiohttp.typedefs.LooseHeaders]:
        async with self.http.get(self.url + path, allow_redirects=False) as r:
            return r.status, await r.text(), r.headers

    async def api(
        self, method: str, path: str, body: Any = None, *, csrf: bool = True, **kwargs: Any
    ) -> tuple[int, dict]:
        headers = {"X-CSRF-Token": self.csrf} if csrf and self.csrf else {}
        async with self.http.request(method, self.url + "/api" + path, json=body, headers=headers, **kwargs) as r:
            try:
                return r.status, await r.json(content_type=None)
            except ValueError:
                return r.status, {"text": await r.text()}
