"""The route tester: which route and target a typed-in request would reach, and why.

Operators type a method, a path with query, headers and a body; the tester runs the same
matching the hot path runs, over a snapshot freshly read from the database, and explains each
route it passed over. It sends nothing anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from django import forms

from gateway_project.state import StateStoreUnavailable
from routing.circuit import circuit_states
from routing.matching import RequestFacts, explain_match, match_route
from routing.models import HTTP_METHODS
from routing.snapshot import RouteConfig, TargetConfig, build_snapshot
from routing.target_status import unavailable_target_ids
from security.jsonrpc import parse_rpc_message


class RouteTesterForm(forms.Form):
    method = forms.ChoiceField(choices=[(m, m) for m in HTTP_METHODS], initial="POST")
    path = forms.CharField(max_length=2000, initial="/mcp/demo", help_text="Path and query, e.g. /api/users?v=2")
    headers = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), help_text="One 'Name: value' per line."
    )
    body = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text='JSON-RPC body for content matching, e.g. {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add"}}',
    )

    def clean_path(self) -> str:
        path: str = self.cleaned_data["path"]
        if not path.startswith("/"):
            raise forms.ValidationError("Start the path with /.")
        return path

    def clean_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["headers"].splitlines(), start=1):
            if not line.strip():
                continue
            name, separator, value = line.partition(":")
            if not separator or not name.strip():
                raise forms.ValidationError(f"Line {number}: write headers as 'Name: value'.")
            headers[name.strip().lower()] = value.strip()
        return headers


# A target's live verdicts when the state store cannot be reached.
UNKNOWN = "unknown"


@dataclass
class TargetVerdict:
    url: str
    available: bool | None  # None: unknown, the state store cannot be reached
    circuit: str


@dataclass
class TesterResult:
    verdicts: list[tuple[RouteConfig, str | None]]
    route: RouteConfig | None = None
    upstream_path: str = ""
    error: str = ""
    content: dict[str, str] = field(default_factory=dict)
    targets: list[TargetVerdict] = field(default_factory=list)


def explain_request(method: str, path: str, headers: dict[str, str], body: str) -> TesterResult:
    """Match the described request against current configuration; never raises for bad input."""
    parts = urlsplit(path)
    rpc = parse_rpc_message(body.encode()) if body.strip() else None
    content = rpc.content_fields() if rpc else {}
    facts = RequestFacts(method=method, path=parts.path, headers=headers, query=dict(parse_qsl(parts.query)), content=content)
    snapshot = build_snapshot()
    result = TesterResult(verdicts=explain_match(snapshot, facts), content=content)
    try:
        matched = match_route(snapshot, facts)
    except Exception as refusal:  # the refusal's message is the explanation
        result.error = str(refusal)
        return result
    result.route, result.upstream_path = matched.route, matched.upstream_path
    result.targets = _target_verdicts(matched.route.service.targets)
    return result


def _target_verdicts(targets: tuple[TargetConfig, ...]) -> list[TargetVerdict]:
    """Whether each target takes traffic now; unknown without the state store (the route the
    request would reach does not depend on it)."""
    target_ids = [t.id for t in targets]
    try:
        unavailable = unavailable_target_ids(target_ids)
        states = {target_id: state.value for target_id, state in circuit_states(target_ids).items()}
    except StateStoreUnavailable:
        return [TargetVerdict(url=t.url, available=None, circuit=UNKNOWN) for t in targets]
    return [TargetVerdict(url=t.url, available=t.id not in unavailable, circuit=states[t.id]) for t in targets]
