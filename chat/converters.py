"""URL converters for the HTTP routes."""

from django.urls import register_converter


class IdConverter:
    """A database id: 1 to 18 ASCII digits, so it always fits a 64-bit column (SQLite raises on a
    larger one). A longer number matches no route: 404 like any unknown id, before any work."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")
