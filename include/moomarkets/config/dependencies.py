"""Dependencies between job groups: the checks that need every group, and the order they imply.

A group's run loads trading day D only after each group it depends on completely loaded D. One
group's ``depends_on`` is checked on its own in ``config.validate`` (names, no duplicates, not
itself); whether the upstreams exist and whether the groups form a cycle needs the whole graph
(``check_dependencies``), which the config store builds from the stored groups and the change, and
YAML import from the stored groups and the file. Plain data in, ConfigError out: no database here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from moomarkets.errors import ConfigError


def _subject(name: str) -> str:
    return f"job group {name!r}"


def check_dependencies(groups: Mapping[str, Iterable[str]], subject: str | None = None) -> None:
    """Every upstream exists and the groups form no cycle; else one ConfigError naming the problem.

    ``groups`` maps every group name to its upstreams, as they would be after the change.
    ``subject``, the group being written, is checked first, so its own mistake is the one reported.
    """
    order = sorted(groups, key=lambda n: (n != subject, n))
    for name in order:
        for upstream in groups[name]:
            if upstream not in groups:
                raise ConfigError(f"unknown job group {upstream!r}", field="depends_on", subject=_subject(name))
    done: set[str] = set()
    for name in order:
        cycle = _find_cycle(groups, name, done)
        if cycle:
            raise ConfigError(f"cycle {' -> '.join(cycle)}", field="depends_on", subject=_subject(cycle[0]))


def _find_cycle(groups: Mapping[str, Iterable[str]], start: str, done: set[str]) -> list[str] | None:
    """The first cycle reachable from ``start`` (as ``a -> b -> a``), depth first; None when there is none.

    Iterative, so that a long chain of groups cannot hit Python's recursion limit.
    """
    if start in done:
        return None
    path: list[str] = [start]
    on_path = {start}
    stack = [iter(list(groups[start]))]
    while stack:
        upstream = next(stack[-1], None)
        if upstream is None:
            stack.pop()
            finished = path.pop()
            on_path.discard(finished)
            done.add(finished)
            continue
        if upstream in on_path:
            return [*path[path.index(upstream):], upstream]
        if upstream in done:
            continue
        path.append(upstream)
        on_path.add(upstream)
        stack.append(iter(list(groups[upstream])))
    return None


def downstream_of(groups: Mapping[str, Iterable[str]], name: str) -> list[str]:
    """The groups that depend on ``name`` directly, by name."""
    return sorted(g for g, upstreams in groups.items() if name in upstreams)


def dependency_order(groups: Mapping[str, Iterable[str]]) -> list[str]:
    """The names with every group after its upstreams among them, otherwise in the mapping's order.

    Upstreams outside the mapping are ignored (they exist already). Assumes no cycle
    (``check_dependencies`` first).
    """
    out: list[str] = []
    seen: set[str] = set()
    for name in groups:
        if name in seen:
            continue
        seen.add(name)
        stack = [(name, iter(list(groups[name])))]
        while stack:
            node, ups = stack[-1]
            upstream = next(ups, None)
            if upstream is None:
                stack.pop()
                out.append(node)
            elif upstream in groups and upstream not in seen:
                seen.add(upstream)
                stack.append((upstream, iter(list(groups[upstream]))))
    return out
