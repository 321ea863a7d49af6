"""The pod's process tree for `stage1 ps`, through psutil (imported only
here: it is not on the init's path; the init's own /proc readers are in
init.py)."""
import time


def _nspid_map(processes):
    """Map the pid an app has inside the pod's PID namespace to the host pid
    (NSpid: the last field is the innermost namespace)."""
    out = {}
    for p in processes:
        try:
            with open("/proc/%d/status" % p.pid) as f:
                for line in f:
                    if line.startswith("NSpid:"):
                        out[int(line.split()[-1])] = p.pid
        except (OSError, ValueError):
            pass
    return out


def _row(p, cpu, ns_pids):
    try:
        with p.oneshot():
            return {"pid": p.pid, "nspid": ns_pids.get(p.pid, p.pid),
                    "status": p.status(), "cpu": cpu.get(p.pid, 0.0),
                    "rss": p.memory_info().rss,
                    "cmd": " ".join(p.cmdline()) or "[%s]" % p.name()}
    except Exception:   # the process ended while we looked
        return None


def pod_tree(init_pid, apps):
    """[(app name, [process rows])]: each app's process and its descendants,
    then whatever else lives under the init as '(pod)'; None if no init."""
    import psutil
    try:
        init = psutil.Process(init_pid)
        everyone = init.children(recursive=True)
    except psutil.Error:
        return None
    cpu = {}
    for p in everyone:
        try:
            cpu[p.pid] = p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(0.2)     # one short interval for every process at once
    for p in everyone:
        try:
            cpu[p.pid] = p.cpu_percent(None)
        except psutil.Error:
            pass
    host = _nspid_map(everyone + [init])
    ns_pids = {h: n for n, h in host.items()}
    claimed, groups = set(), []
    by_pid = {p.pid: p for p in everyone}
    for app in apps:
        pid = host.get(app.get("pid")) if app.get("state") in ("running", "stopping") else None
        if pid not in by_pid:
            continue
        members = [by_pid[pid]]
        try:
            members += by_pid[pid].children(recursive=True)
        except psutil.Error:
            pass
        claimed.update(m.pid for m in members)
        groups.append((app["name"], [r for r in (_row(m, cpu, ns_pids) for m in members) if r]))
    rest = [p for p in everyone if p.pid not in claimed]
    init_row = _row(init, cpu, ns_pids)
    groups.insert(0, ("(init)", [init_row] if init_row else []))
    if rest:
        groups.append(("(pod)", [r for r in (_row(p, cpu, ns_pids) for p in rest) if r]))
    return groups
