"""The state-store contract that both backends honour."""

from __future__ import annotations

from typing import Protocol


class StateStoreUnavailable(Exception):
    """Raised when the backing store (Redis) cannot be reached."""


class StateStore(Protocol):
    """Keys are strings, values are strings; ``ttl`` is in seconds (fractions allowed).

    Every method is atomic on its own: two processes calling ``incr`` on one key never lose an
    increment, and only one of them wins ``set_if_absent``.
    """

    backend_name: str

    def get(self, key: str) -> str | None:
        """The value, or None when missing or expired."""

    def get_many(self, keys: list[str]) -> list[str | None]:
        """The values of several keys in one round trip, in order (None where missing)."""

    def ttl(self, key: str) -> float | None:
        """Seconds the key has left; None when it is missing or never expires."""

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store a value, replacing any previous one; ``ttl`` None keeps it forever."""

    def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store only if the key is missing; True when this call stored it (locks, leases)."""

    def delete(self, key: str) -> None:
        """Remove the key if present."""

    def delete_if_equals(self, key: str, value: str) -> bool:
        """Remove the key only if it holds ``value`` (release a lock only its owner holds)."""

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` and return the new value; a new key starts at 0 and gets ``ttl``."""

    def expire(self, key: str, ttl: float) -> bool:
        """Reset the key's time to live (sliding timeouts); False when the key is missing."""

    def ping(self) -> None:
        """Raise StateStoreUnavailable when the store cannot serve requests."""
