"""Fan-out routes: one request, several services asked at once, one answer.

A route with a fan-out strategy (``Route.fanout``) asks its own service and each of its fan-out
services concurrently, each through that service's normal forwarding (balancer, circuit
breaker, retries), and answers once:

- first: the first successful answer (2xx, not a JSON-RPC error) wins; the others are read and
  dropped when they arrive (hedging: the quickest healthy service answers);
- last: every service is waited for; of the successful answers, the one that arrived last wins;
- merge (MCP): ``tools/list``, ``prompts/list``, ``resources/list`` and
  ``resources/templates/list`` are answered with the union of every service's list.

Merged names. Tool and prompt names are always prefixed with their service,
``<service>__<name>``: always rather than only on a collision, so a name never changes because
another service added a tool, and a call finds its service from its name alone, with no memory
of earlier lists. ``tools/call`` and ``prompts/get`` of ``search__lookup`` go to the service
``search`` alone, as ``lookup``; a name without a service prefix is refused (-32602). Resources
keep their uri (a prefix would make it an invalid URI): a uri listed by two services is kept
once, from the service first in the route's order, and ``resources/read`` is asked of every
service, the first successful answer winning. Any other request (``initialize``, ``ping``,
notifications, the GET event stream) goes to the route's own service alone. Permissions on a
merge route name what the client sees: ``tool:<route's service>:search__lookup``.

When no answer is successful, the route's own service's outcome is the answer (its error
answer, or the gateway's refusal), so a failing fan-out reads like the route without it.

Answers from several services are read whole (``performance/gathering.py``), since choosing and
merging need complete answers, so they do not stream. Merged lists are each service's first
page: ``nextCursor`` is dropped, as one cursor cannot continue several lists. Fan-out suits
stateless upstreams: a legacy session lives on one service's target only.

On first and last routes every request is sent to every service, so they are for calls that are
harmless to repeat (reads, idempotent tools).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse

from gateway_project.errors import JSONRPC_CONTENT_TYPE, JSONRPC_INVALID_PARAMS, GatewayError
from gateway_project.exchange import Exchange
from performance.conf import performance_settings
from performance.gathering import GatheredAnswer, gather_answer
from routing.models import MERGED_NAME_SEPARATOR, FanoutStrategy, ServiceKind
from routing.snapshot import RouteConfig, ServiceConfig
from security.jsonrpc import parse_rpc_message
from security.sanitization import safe_excerpt

logger = logging.getLogger(__name__)

Forward = Callable[[Exchange], HttpResponse | StreamingHttpResponse]

UNKNOWN_MERGED_NAME = (
    "{name} names no service of this route: its tools and prompts are named <service>"
    + MERGED_NAME_SEPARATOR
    + "<name>"
)


class UnknownMergedName(GatewayError):
    """Raised when a tool or prompt call on a merge route names no service of the route."""

    status = 400
    code = "unknown_merged_name"
    title = "The name does not say which service to call"
    jsonrpc_code = JSONRPC_INVALID_PARAMS


@dataclass(frozen=True, slots=True)
class MergedList:
    """One list method, and how its items are told apart across services."""

    items_key: str  # the result's list: "tools"
    identity_key: str  # what names one item: "name", or "uri" for resources
    prefixed: bool  # names get "<service>__"; uris stay, and the first service's one is kept


MERGED_LISTS = {
    "tools/list": MergedList("tools", "name", prefixed=True),
    "prompts/list": MergedList("prompts", "name", prefixed=True),
    "resources/list": MergedList("resources", "uri", prefixed=False),
    "resources/templates/list": MergedList("resourceTemplates", "uriTemplate", prefixed=False),
}
# On a merge route: sent to the one service their prefixed name names.
CALLS_BY_NAME = frozenset({"tools/call", "prompts/get"})
# On a merge route: asked of every service (side-effect free), the first success wins.
READS_OF_ANY = frozenset({"resources/read"})


@dataclass(frozen=True, slots=True)
class Plan:
    """Which services are asked (the route's own first), and how their answers become one."""

    strategy: str  # first | last | merge
    branches: tuple[Exchange, ...]  # one exchange per service asked


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one service answered (read whole), or the gateway's refusal on its behalf."""

    branch: Exchange
    answer: GatheredAnswer | None = None
    error: GatewayError | None = None

    @property
    def is_success(self) -> bool:
        return self.answer is not None and self.answer.is_success

    @property
    def service_name(self) -> str:
        assert self.branch.route is not None
        return self.branch.route.service.name


def forward_to_all(exchange: Exchange, forward: Forward) -> HttpResponse | StreamingHttpResponse:
    """The terminal stage of a fan-out route: ask, choose or merge, answer once."""
    plan = plan_for(exchange)
    if len(plan.branches) == 1:
        return _forward_alone(exchange, plan.branches[0], forward)
    futures = [_branch_executor().submit(run_branch, branch, forward) for branch in plan.branches]
    try:
        if plan.strategy == FanoutStrategy.MERGE:
            merged = merged_answer(exchange, [future.result() for future in futures])
            if merged is not None:
                return merged
        elif plan.strategy == FanoutStrategy.FIRST:
            winner = first_success(futures)
            if winner is not None:
                return response_of(exchange, winner)
        else:
            successes = [outcome for outcome in _in_arrival_order(futures) if outcome.is_success]
            if successes:
                return response_of(exchange, successes[-1])
        return response_of(exchange, futures[0].result())  # no success: the route's own outcome
    finally:
        exchange.attempts += sum(branch.attempts for branch in plan.branches)


def plan_for(exchange: Exchange) -> Plan:
    route = exchange.route
    assert route is not None
    services = (route.service, *route.fanout_services)
    rpc = exchange.rpc
    if route.service.kind == ServiceKind.MCP and rpc is None:  # the GET stream, DELETE of a session
        return Plan(FanoutStrategy.FIRST, (branch_exchange(exchange, route.service),))
    if route.fanout != FanoutStrategy.MERGE:
        return Plan(route.fanout, tuple(branch_exchange(exchange, service) for service in services))
    method = rpc.method if rpc is not None else ""
    if method in MERGED_LISTS:
        return Plan(FanoutStrategy.MERGE, tuple(branch_exchange(exchange, service) for service in services))
    if method in READS_OF_ANY:
        return Plan(FanoutStrategy.FIRST, tuple(branch_exchange(exchange, service) for service in services))
    if method in CALLS_BY_NAME and rpc is not None:
        service, upstream_name = split_merged_name(rpc.name, services)
        return Plan(FanoutStrategy.FIRST, (branch_exchange(exchange, service, renamed_to=upstream_name),))
    return Plan(FanoutStrategy.FIRST, (branch_exchange(exchange, route.service),))


def split_merged_name(name: str, services: Iterable[ServiceConfig]) -> tuple[ServiceConfig, str]:
    """``search__lookup`` -> (the service search, "lookup"); the longest service name that
    prefixes it wins, since a slug may hold "__" itself."""
    candidates = [
        service
        for service in services
        if name.startswith(service.name + MERGED_NAME_SEPARATOR) and len(name) > len(service.name) + len(MERGED_NAME_SEPARATOR)
    ]
    if not candidates:
        raise UnknownMergedName(UNKNOWN_MERGED_NAME.format(name=repr(safe_excerpt(name, 100))))
    service = max(candidates, key=lambda candidate: len(candidate.name))
    return service, name[len(service.name) + len(MERGED_NAME_SEPARATOR) :]


def branch_exchange(exchange: Exchange, service: ServiceConfig, *, renamed_to: str | None = None) -> Exchange:
    """The request as sent to one service: the route aimed at that service, without fan-out."""
    route = exchange.route
    assert route is not None
    aimed: RouteConfig = dataclasses.replace(route, service=service, fanout="", fanout_services=())
    changes: dict[str, Any] = {"route": aimed, "target": None, "attempts": 0, "on_finish": [], "response_headers": {}}
    if renamed_to is not None:
        message = json.loads(exchange.body)
        message["params"] = {**message["params"], "name": renamed_to}
        body = json.dumps(message).encode()
        changes.update(body=body, rpc=parse_rpc_message(body))
    return dataclasses.replace(exchange, **changes)


def _forward_alone(exchange: Exchange, branch: Exchange, forward: Forward) -> HttpResponse | StreamingHttpResponse:
    """One service asked: forwarded on the exchange itself, so a stream stays a stream and its
    end-of-exchange work (in-flight slots, bytes sent) lands where the pipeline looks for it.
    The route and body are the branch's while forwarding, and the client's again for the
    response stages (permissions and learned schemas name what the client sees)."""
    as_received = (exchange.route, exchange.body, exchange.rpc)
    exchange.route, exchange.body, exchange.rpc = branch.route, branch.body, branch.rpc
    try:
        return forward(exchange)
    finally:
        exchange.route, exchange.body, exchange.rpc = as_received


# --- asking and choosing -----------------------------------------------------------------------


def run_branch(branch: Exchange, forward: Forward) -> Outcome:
    """Ask one service and read its answer whole (on a worker thread)."""
    try:
        return Outcome(branch, answer=gather_answer(forward(branch)))
    except GatewayError as error:
        return Outcome(branch, error=error)
    finally:
        for callback in branch.on_finish:  # in-flight slots taken by forwarding
            try:
                callback()
            except Exception:
                logger.exception("an end-of-branch callback failed")


def first_success(futures: list[Future[Outcome]]) -> Outcome | None:
    for outcome in _in_arrival_order(futures):
        if outcome.is_success:
            for future in futures:
                future.cancel()  # a branch not started yet is not sent at all
            return outcome
    return None


def _in_arrival_order(futures: list[Future[Outcome]]) -> Iterable[Outcome]:
    return (future.result() for future in as_completed(futures))


def response_of(exchange: Exchange, outcome: Outcome) -> HttpResponse:
    """One service's outcome as the client's answer: its answer as read, or its refusal."""
    exchange.target = outcome.branch.target
    if outcome.answer is None:
        assert outcome.error is not None
        raise outcome.error
    answer = outcome.answer
    response = HttpResponse(answer.body, status=answer.status)
    del response["Content-Type"]  # the upstream's own, if it sent one
    for name, value in answer.headers:
        response[name] = value
    response["Content-Length"] = str(len(answer.body))
    return response


def merged_answer(exchange: Exchange, outcomes: list[Outcome]) -> HttpResponse | None:
    """The union of the successful list answers, in the route's order; None when there is none."""
    assert exchange.rpc is not None
    listed = MERGED_LISTS[exchange.rpc.method]
    lists = [(outcome.service_name, items) for outcome in outcomes if (items := _listed_items(outcome, listed)) is not None]
    if not lists:
        return None
    merged: list[Any] = []
    seen: set[str] = set()
    for service_name, items in lists:
        for item in items:
            identity = item.get(listed.identity_key) if isinstance(item, dict) else None
            if not isinstance(identity, str):
                continue  # nothing to name it by (nor to check a permission against)
            if listed.prefixed:
                merged.append({**item, listed.identity_key: service_name + MERGED_NAME_SEPARATOR + identity})
            elif identity not in seen:
                seen.add(identity)
                merged.append(item)
    message = {"jsonrpc": "2.0", "id": exchange.rpc.id, "result": {listed.items_key: merged}}
    return HttpResponse(json.dumps(message), content_type=JSONRPC_CONTENT_TYPE)


def _listed_items(outcome: Outcome, listed: MergedList) -> list[Any] | None:
    if not outcome.is_success or outcome.answer is None or outcome.answer.message is None:
        return None
    result = outcome.answer.message.get("result")
    items = result.get(listed.items_key) if isinstance(result, dict) else None
    return items if isinstance(items, list) else None


# --- the worker threads ------------------------------------------------------------------------

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _branch_executor() -> ThreadPoolExecutor:
    """This process's threads asking fan-out services. Apart from the batch items' threads: an
    item on a fan-out route waits for branches, which must never queue behind items."""
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=performance_settings.fanout_workers, thread_name_prefix="gateway-fanout"
                )
    return _executor
