"""ProcessWide: built once, replaced (and the old one closed) when asked or when its settings move."""

from __future__ import annotations

from django.test import override_settings

from gateway_project.state.process_wide import ProcessWide


class Thing:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_built_once_then_the_same_object() -> None:
    built: list[Thing] = []
    holder = ProcessWide(lambda: built.append(Thing()) or built[-1], {"GATEWAY_STATE_PREFIX"})
    assert holder.get() is holder.get() and len(built) == 1


def test_a_watched_setting_change_closes_it_and_builds_anew() -> None:
    holder = ProcessWide(Thing, {"GATEWAY_STATE_PREFIX"})
    first = holder.get()
    with override_settings(GATEWAY_STATE_PREFIX="other:"):
        second = holder.get()
    assert first.closed and second is not first


def test_other_settings_leave_it_alone() -> None:
    holder = ProcessWide(Thing, {"GATEWAY_STATE_PREFIX"})
    first = holder.get()
    with override_settings(GATEWAY_CACHE_MAX_ENTRIES=5):
        assert holder.get() is first and not first.closed


def test_replace_injects_a_value_and_closes_the_previous_one() -> None:
    holder = ProcessWide(Thing, set())
    first, injected = holder.get(), Thing()
    holder.replace(injected)
    assert holder.get() is injected and first.closed and not injected.closed
