"""Real CalDAV servers for tests: Radicale (no auth, htpasswd auth) and Xandikos.

Each runs as a subprocess on a free 127.0.0.1 port with temporary storage, session-scoped.
``dav_calendar`` gives each test a fresh calendar collection (MKCALENDAR), so tests never see
each other's events. Also a pytest plugin: another test package gets the fixtures with
``from tests.calendars.servers import dav_server, dav_calendar, ...  # noqa: F401`` in its
conftest, or ``pytest_plugins = ("tests.calendars.servers",)`` in the root conftest.

Helpers other tests use: ``DavCalendar.put_event`` / ``put_ics`` (a foreign VEVENT straight
over HTTP), ``foreign_event`` / ``weekly_event`` (the iCalendar text), ``DavCalendar.get`` /
``hrefs`` (read the server directly), ``DavServer.stopped()`` (server down for a block),
``DavServer.set_password`` (htpasswd server; Radicale re-reads the file on every request
because its ``htpasswd_cache`` and ``cache_logins`` are off).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import httpx
import pytest

from closerdesk.calendars.provider import CalendarAccount

SERVER_KINDS = ("radicale", "radicale_auth", "xandikos")
"""The ``dav_server`` parameters, also the names of the session fixtures."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DavUser:
    """A user of a server: ``principal_url`` ends in ``/``, ``home_url`` is the calendar home."""

    username: str | None
    password: str | None
    principal_url: str
    home_url: str

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.username is None:
            return None
        return (self.username, self.password or "")


@dataclass
class DavServer:
    """A CalDAV server subprocess. ``kind``: ``radicale``, ``radicale_auth`` or ``xandikos``."""

    kind: str
    storage: Path
    port: int = field(default_factory=free_port)
    htpasswd: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def supports_sync_collection(self) -> bool:
        return True  # Radicale and Xandikos both answer RFC 6578 sync-collection

    def _argv(self) -> list[str]:
        if self.kind == "xandikos":
            # --defaults creates the principal /user/ with the calendar home /user/calendars/
            # (and /user/calendars/calendar, /user/contacts/addressbook); no authentication.
            return [
                sys.executable,
                "-m",
                "xandikos",
                "serve",
                "-d",
                str(self.storage),
                "--defaults",
                "-l",
                "127.0.0.1",
                "-p",
                str(self.port),
                "--no-detect-systemd",
            ]
        argv = [
            sys.executable,
            "-m",
            "radicale",
            "--config",
            "",
            f"--server-hosts=127.0.0.1:{self.port}",
            f"--storage-filesystem-folder={self.storage}",
            "--auth-delay=0",
            "--logging-level=warning",
        ]
        if self.kind == "radicale_auth":
            assert self.htpasswd is not None
            argv += [
                "--auth-type=htpasswd",
                f"--auth-htpasswd-filename={self.htpasswd}",
                "--auth-htpasswd-encryption=plain",
                "--no-auth-htpasswd-cache",
                "--no-auth-cache-logins",
            ]
        else:
            # Any username with any password; each user owns /<username>/.
            argv += ["--auth-type=none"]
        return argv

    def start(self, timeout: float = 15.0) -> None:
        """Start the process and wait until it answers HTTP."""
        assert self.process is None, "already running"
        self.log_path = self.storage.parent / f"{self.kind}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own argv
                self._argv(), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log_path.read_text()[-2000:]}")
            try:
                httpx.request("OPTIONS", self.root_url, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} did not answer within {timeout}s")

    def stop(self) -> None:
        """Stop the process (terminate, then kill); the port and storage are kept."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """The server is down inside the block and back up (same port, same data) after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    # -- users --

    def new_user(self, password: str | None = None) -> DavUser:
        """A fresh user with an empty calendar home (Xandikos has one user, ``/user/``)."""
        if self.kind == "xandikos":
            return DavUser(None, None, self.root_url + "user/", self.root_url + "user/calendars/")
        username = "u" + secrets.token_hex(4)
        if self.kind == "radicale_auth":
            password = password or secrets.token_urlsafe(12)
            self.set_password(username, password)
        else:
            password = password or ""
        principal = f"{self.root_url}{username}/"
        user = DavUser(username, password, principal, principal)
        # Radicale creates a principal collection on the user's first authenticated request.
        response = httpx.request(
            "PROPFIND", principal, auth=user.auth, headers={"Depth": "0"}, timeout=5
        )
        assert response.status_code == 207, response.text
        return user

    def set_password(self, username: str, password: str) -> None:
        """Write (or change) a user's password in the htpasswd file (``radicale_auth`` only)."""
        assert self.htpasswd is not None, f"{self.kind} has no htpasswd file"
        lines = [
            line
            for line in self.htpasswd.read_text().splitlines()
            if line and not line.startswith(f"{username}:")
        ]
        lines.append(f"{username}:{password}")
        self.htpasswd.write_text("\n".join(lines) + "\n")

    # -- calendars --

    def new_calendar(
        self, user: DavUser, components: Sequence[str] = ("VEVENT",), name: str | None = None
    ) -> DavCalendar:
        """MKCALENDAR a fresh collection in the user's home (RFC 4791, 5.3.1)."""
        slug = name or "cal-" + secrets.token_hex(6)
        url = f"{user.home_url}{slug}/"
        comps = "".join(f'<c:comp name="{c}"/>' for c in components)
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop>'
            f"<d:displayname>{slug}</d:displayname>"
            f"<c:supported-calendar-component-set>{comps}</c:supported-calendar-component-set>"
            "</d:prop></d:set></c:mkcalendar>"
        )
        response = httpx.request(
            "MKCALENDAR",
            url,
            content=body,
            auth=user.auth,
            headers={"Content-Type": "application/xml"},
            timeout=5,
        )
        assert response.status_code == 201, (response.status_code, response.text)
        return DavCalendar(self, user, url)


@dataclass
class DavCalendar:
    """A calendar collection on a test server, with direct HTTP access to it."""

    server: DavServer
    user: DavUser
    url: str

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.url).path)

    def credentials(self, url: str | None = None, **extra: str) -> dict[str, str]:
        """``CalendarAccount.credentials`` for this user; ``url`` defaults to this calendar."""
        creds = {"url": url or self.url}
        if self.user.username is not None:
            creds["username"] = self.user.username
            creds["password"] = self.user.password or ""
        creds.update(extra)
        return creds

    def account(self, **credentials: str) -> CalendarAccount:
        """A connected account on this calendar (``calendar_id`` set); overrides via kwargs."""
        return CalendarAccount(
            connection_id="con_test",
            organization_id="org_test",
            member_id="mem_test",
            provider="caldav",
            calendar_id=self.url,
            credentials={**self.credentials(), **credentials},
        )

    def _request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        return httpx.request(method, url, auth=self.user.auth, timeout=5, **kwargs)  # type: ignore[arg-type]

    def put_ics(self, ics: str, name: str | None = None) -> str:
        """PUT raw iCalendar text as a new object; returns its path (the sync key)."""
        name = name or f"foreign-{secrets.token_hex(6)}.ics"
        url = urljoin(self.url, name)
        response = self._request(
            "PUT", url, content=ics.encode(), headers={"Content-Type": "text/calendar"}
        )
        assert response.status_code in (201, 204), (response.status_code, response.text)
        return unquote(urlsplit(url).path)

    def put_event(self, start: datetime, end: datetime, **kwargs: object) -> str:
        """A foreign single event (see ``foreign_event``); returns its path."""
        return self.put_ics(foreign_event(start, end, **kwargs))  # type: ignore[arg-type]

    def get(self, path_or_url: str) -> str | None:
        """The object's iCalendar text, ``None`` when the server has no such object."""
        response = self._request("GET", urljoin(self.url, path_or_url))
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.status_code
        return response.text

    def delete(self, path_or_url: str) -> None:
        response = self._request("DELETE", urljoin(self.url, path_or_url))
        assert response.status_code in (200, 204), response.status_code

    def hrefs(self) -> list[str]:
        """Paths of the objects in the collection (PROPFIND depth 1)."""
        response = self._request(
            "PROPFIND",
            self.url,
            headers={"Depth": "1", "Content-Type": "application/xml"},
            content='<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>',
        )
        assert response.status_code == 207, response.status_code
        paths = [
            unquote(urlsplit(href.strip()).path)
            for href in re.findall(r"<(?:[\w-]+:)?href>([^<]*)</", response.text)
        ]
        return [path for path in paths if path.rstrip("/") != self.path.rstrip("/")]


def _stamp(value: datetime | date) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return value.strftime("%Y%m%d")


def _prop(name: str, value: datetime | date) -> str:
    if isinstance(value, datetime):
        return f"{name}:{_stamp(value)}"
    return f"{name};VALUE=DATE:{_stamp(value)}"


def foreign_event(
    start: datetime | date,
    end: datetime | date,
    *,
    uid: str | None = None,
    summary: str = "Dentist",
    transparent: bool = False,
    status: str | None = None,
    extra: Sequence[str] = (),
) -> str:
    """A VCALENDAR with one foreign VEVENT (UTC times, or ``date`` for all-day)."""
    lines = [
        f"UID:{uid or 'foreign-' + secrets.token_hex(8) + '@example.org'}",
        "DTSTAMP:20260101T000000Z",
        _prop("DTSTART", start),
        _prop("DTEND", end),
        f"SUMMARY:{summary}",
    ]
    if transparent:
        lines.append("TRANSP:TRANSPARENT")
    if status:
        lines.append(f"STATUS:{status}")
    lines.extend(extra)
    return _vcalendar([lines])


def weekly_event(
    start: datetime,
    end: datetime,
    *,
    count: int,
    exdates: Sequence[datetime] = (),
    overrides: Sequence[tuple[datetime, datetime, datetime]] = (),
    uid: str | None = None,
    summary: str = "Weekly sync",
) -> str:
    """A weekly recurring foreign VEVENT (``COUNT=count``) with EXDATEs, and overridden
    instances ``(recurrence_id, new_start, new_end)`` as extra VEVENTs with RECURRENCE-ID."""
    uid = uid or "weekly-" + secrets.token_hex(8) + "@example.org"
    master = [
        f"UID:{uid}",
        "DTSTAMP:20260101T000000Z",
        _prop("DTSTART", start),
        _prop("DTEND", end),
        f"SUMMARY:{summary}",
        f"RRULE:FREQ=WEEKLY;COUNT={count}",
    ]
    master.extend(f"EXDATE:{_stamp(exdate)}" for exdate in exdates)
    components = [master]
    for recurrence_id, new_start, new_end in overrides:
        components.append(
            [
                f"UID:{uid}",
                "DTSTAMP:20260101T000000Z",
                f"RECURRENCE-ID:{_stamp(recurrence_id)}",
                _prop("DTSTART", new_start),
                _prop("DTEND", new_end),
                f"SUMMARY:{summary} (moved)",
            ]
        )
    return _vcalendar(components)


def _vcalendar(components: Sequence[Sequence[str]]) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//example.org//test//EN"]
    for component in components:
        lines += ["BEGIN:VEVENT", *component, "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


# --- fixtures ---------------------------------------------------------------------------------


@contextlib.contextmanager
def running_server(kind: str) -> Iterator[DavServer]:
    """A started server of ``kind`` with temporary storage, stopped and removed after."""
    tmp = Path(tempfile.mkdtemp(prefix=f"closerdesk-{kind}-"))
    htpasswd = None
    if kind == "radicale_auth":
        htpasswd = tmp / "htpasswd"
        htpasswd.write_text("")
    server = DavServer(kind=kind, storage=tmp / "storage", htpasswd=htpasswd)
    server.storage.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def radicale() -> Iterator[DavServer]:
    """Radicale without authentication (any username, any password)."""
    with running_server("radicale") as server:
        yield server


@pytest.fixture(scope="session")
def radicale_auth() -> Iterator[DavServer]:
    """Radicale with htpasswd (plain) authentication; users come from ``new_user``."""
    with running_server("radicale_auth") as server:
        yield server


@pytest.fixture(scope="session")
def xandikos() -> Iterator[DavServer]:
    """Xandikos, no authentication, one principal ``/user/``."""
    with running_server("xandikos") as server:
        yield server


@pytest.fixture(params=SERVER_KINDS)
def dav_server(request: pytest.FixtureRequest) -> DavServer:
    """Each of the three servers in turn."""
    server: DavServer = request.getfixturevalue(request.param)
    if server.process is None:  # a test that stopped it failed before restarting it
        server.start()
    return server


@pytest.fixture
def dav_user(dav_server: DavServer) -> DavUser:
    return dav_server.new_user()


@pytest.fixture
def dav_calendar(dav_server: DavServer, dav_user: DavUser) -> DavCalendar:
    """A fresh, empty VEVENT calendar on each of the three servers in turn."""
    return dav_server.new_calendar(dav_user)
