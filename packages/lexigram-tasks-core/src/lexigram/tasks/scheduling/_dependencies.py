"""`DependencyResolver`: keeps a `depends_on` graph free of cycles."""

from __future__ import annotations

from lexigram.contracts.tasks import TaskDependencyCycleError


class DependencyResolver:
    """A graph of jobs and the jobs they depend on, which refuses cycles.

    Example:
        resolver = DependencyResolver()
        resolver.register("report", ["extract", "transform"])
        resolver.register("transform", ["extract"])
        resolver.topological_order()  # ['extract', 'transform', 'report']
    """

    def __init__(self) -> None:
        self._edges: dict[str, list[str]] = {}

    def register(self, node_id: str, depends_on: list[str]) -> None:
        """Record that `node_id` depends on `depends_on` (replacing earlier edges).

        Args:
            node_id: The dependent job.
            depends_on: Jobs it depends on.

        Raises:
            TaskDependencyCycleError: The edges would close a cycle; nothing is changed.
        """
        previous = self._edges.get(node_id)
        self._edges[node_id] = list(dict.fromkeys(depends_on))
        cycle = self._find_cycle(node_id)
        if cycle is not None:
            # Roll back so a rejected registration leaves the graph as it was.
            if previous is None:
                del self._edges[node_id]
            else:
                self._edges[node_id] = previous
            raise TaskDependencyCycleError(cycle)

    def remove(self, node_id: str) -> None:
        """Forget `node_id`'s own dependencies (edges pointing at it stay).

        Args:
            node_id: The job to remove.
        """
        self._edges.pop(node_id, None)

    def get_all(self) -> dict[str, list[str]]:
        """Return a copy of the graph: node id -> the ids it depends on."""
        return {node: list(deps) for node, deps in self._edges.items()}

    def get_dependencies(self, node_id: str) -> list[str]:
        """Return the direct dependencies of `node_id` (empty when unknown).

        Args:
            node_id: The job.

        Returns:
            The ids it depends on.
        """
        return list(self._edges.get(node_id, []))

    def topological_order(self) -> list[str]:
        """Return every known id, dependencies before their dependents.

        Returns:
            The ids in an order that satisfies every edge (ties in registration order).
        """
        order: list[str] = []
        seen: set[str] = set()

        def visit(node: str) -> None:
            if node in seen:
                return
            seen.add(node)
            for dep in self._edges.get(node, []):
                visit(dep)
            order.append(node)

        for node in list(self._edges):
            visit(node)
        return order

    def _find_cycle(self, start: str) -> list[str] | None:
        # Depth-first search from `start`; the graph was acyclic before the new edges, so
        # any cycle passes through `start`.
        path: list[str] = [start]
        on_path = {start}
        visited: set[str] = set()

        def walk(node: str) -> list[str] | None:
            for dep in self._edges.get(node, []):
                if dep == start:
                    return [*path, start]
                if dep in on_path or dep in visited:
                    continue
                path.append(dep)
                on_path.add(dep)
                found = walk(dep)
                if found is not None:
                    return found
                path.pop()
                on_path.discard(dep)
                visited.add(dep)
            return None

        return walk(start)
