"""Start and stop order from `stage1/after` and `stage1/init`.

Pure functions over app names, so the rules can be read (and tested) apart
from the state machine.  The order is systemd's, not a strict sequence:
an app starts once everything it comes after is ready, and stops once
everything that comes after it has ended, so unrelated apps start and stop
together and a chain starts forwards and stops backwards.  Init apps
(Kubernetes' init containers) run one at a time, in manifest order, before
any other app.
"""


def find_cycle(after):
    """A list of names forming a cycle in {name: [names it comes after]}, or None."""
    state = {}

    def visit(name, path):
        state[name] = "visiting"
        for dep in after.get(name, ()):
            if state.get(dep) == "visiting":
                return path[path.index(dep):] + [dep] if dep in path else [name, dep]
            if dep not in state:
                found = visit(dep, path + [dep])
                if found:
                    return found
        state[name] = "done"
        return None

    for name in after:
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return None


def may_start(app, apps):
    """True when every app it comes after is ready (removed ones no longer count)."""
    return all(apps[d].ready for d in app.after if d in apps)


def may_stop(app, apps):
    """True when every app that comes after it has ended."""
    return all(other.ended for other in apps.values()
               if other is not app and app.name in other.after)


def next_init(apps):
    """(the init app to run now or None, whether all init apps succeeded)."""
    for app in apps.values():
        if not app.is_init:
            continue
        if app.exit_code == 0 and app.state == "exited":
            continue
        return app, False
    return None, True


def stop_time(apps, grace_of):
    """The slowest a pod stop can be: the longest chain of ordered stops,
    each app given its own grace.  An app's chain is its grace plus the
    slowest chain of the apps that come after it (they stop first)."""
    later = {name: [] for name in apps}
    for app in apps.values():
        for dep in app.after:
            if dep in later:
                later[dep].append(app.name)
    total, visiting = {}, set()
    for name in apps:
        stack = [name]
        while stack:       # iterative: a chain of 1000 apps must not recurse
            top = stack[-1]
            pending = [n for n in later[top] if n not in total and n not in visiting]
            if top not in total and pending:
                visiting.add(top)
                stack.extend(pending)
                continue
            stack.pop()
            visiting.discard(top)
            if top not in total:
                total[top] = grace_of(apps[top]) + max(
                    [total.get(n, 0.0) for n in later[top]] or [0.0])
    return max(total.values() or [0.0])
