"""How a refused value is said: the field, the value (quoted short) and what is allowed, on one line."""

from __future__ import annotations

MAX_SHOWN = 80  # characters of a refused value quoted back in a message (a pasted megabyte stays out of logs)


class ConfigError(ValueError):
    """A bad value, said in words a user understands: the field, the value and what is allowed."""

    def __init__(self, field_name: str, value, allowed: str):
        self.field, self.value, self.allowed = field_name, value, allowed
        self.shown = shown(value)
        super().__init__(f"{field_name}: {self.shown} is not allowed; {allowed}")


def shown(value) -> str:
    """repr(value) on one short line; never raises (repr of a 5,000-digit int does)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."
