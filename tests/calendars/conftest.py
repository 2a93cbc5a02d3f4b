"""The real CalDAV servers of ``tests.calendars.servers`` for this package's tests."""

from tests.calendars.servers import (  # noqa: F401 - fixtures
    dav_calendar,
    dav_server,
    dav_user,
    radicale,
    radicale_auth,
    xandikos,
)
