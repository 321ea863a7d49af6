"""Start order from `stage1/after`, validated before anything starts.

The order itself (who may start or stop now) is the Supervisor's, in the
engine; what is checked here is that the graph the manifest describes can
be ordered at all: every name exists and there is no cycle.
"""


def find_cycle(after):
    """A list of names forming a cycle in {name: [names it comes after]}, or None.

    Iterative (a colouring depth-first walk with an explicit stack), so a
    chain of thousands of apps listed backwards does not recurse."""
    state = {}
    for start in after:
        if start in state:
            continue
        path, stack = [start], [iter(after.get(start, ()))]
        state[start] = "visiting"
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                state[path.pop()] = "done"
                stack.pop()
                continue
            if state.get(dep) == "visiting":
                return path[path.index(dep):] + [dep]
            if dep not in state:
                state[dep] = "visiting"
                path.append(dep)
                stack.append(iter(after.get(dep, ())))
    return None
