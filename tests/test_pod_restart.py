"""Restart policy (app annotation stage1/restart-policy) with back-off
(pod annotations stage1/restart-backoff, stage1/restart-backoff-max): the
restart count in the status, and a restarting app counting for the exit
policy only once it ends for good."""
import pytest

from podhelpers import PY, Pod, Run, app, run, sh, wait_for

FAST = {"stage1/restart-backoff": "0.05", "stage1/restart-backoff-max": "0.05"}


def counting(tmp_path, succeed_on, name="a"):
    """An app that fails until its succeed_on-th run."""
    count = tmp_path / ("%s.count" % name)
    return sh("n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; "
              "[ $n -ge {k} ]".format(c=count, k=succeed_on))


def restart(policy):
    return {"stage1/restart-policy": policy}


def test_on_failure_restarts_until_success(tmp_path):
    pod = Pod(tmp_path, [app("a", counting(tmp_path, 3), annotations=restart("on-failure"))],
              annotations=FAST)
    assert run(pod)[0] == 0
    st = pod.status("a")
    assert (st["state"], st["reason"], st["exitCode"], st["restartCount"]) == \
        ("exited", "Completed", 0, 2)
    assert pod.read("a.count") == "3\n"


def test_on_failure_restarts_after_a_signal(tmp_path):
    script = "[ -e {d}/once ] && exit 0; touch {d}/once; kill -KILL $$".format(d=tmp_path)
    pod = Pod(tmp_path, [app("a", sh(script), annotations=restart("on-failure"))],
              annotations=FAST)
    assert run(pod)[0] == 0
    assert pod.status("a")["restartCount"] == 1


def test_on_failure_does_not_restart_a_success(tmp_path):
    pod = Pod(tmp_path, [app("a", counting(tmp_path, 1), annotations=restart("on-failure"))],
              annotations=FAST)
    assert run(pod)[0] == 0
    assert pod.status("a")["restartCount"] == 0
    assert pod.read("a.count") == "1\n"


@pytest.mark.parametrize("annotations", [restart("never"), None])
def test_never_is_the_default(tmp_path, annotations):
    pod = Pod(tmp_path, [app("a", counting(tmp_path, 5), annotations=annotations)],
              annotations=FAST)
    assert run(pod)[0] == 1
    assert pod.status("a")["restartCount"] == 0
    assert pod.read("a.count") == "1\n"


def test_always_restarts_successes_too_until_the_pod_stops(tmp_path):
    pod = Pod(tmp_path, [app("a", counting(tmp_path, 1), annotations=restart("always"))],
              annotations=FAST)
    with Run(pod) as r:
        wait_for(lambda: (pod.status("a") or {}).get("restartCount", 0) >= 3,
                 what="three restarts")
        assert r.alive()
        r.signal(15)
        assert r.wait() == 0
    st = pod.status("a")
    assert st["state"] == "exited" and st["restartCount"] >= 3
    assert pod.pod_status()["state"] == "exited"


def test_a_restarting_app_triggers_the_exit_policy_only_when_it_ends_for_good(tmp_path):
    # onAnyFailure: the first two failures of `flaky` must not stop the pod;
    # `waiter` ends once flaky has succeeded
    waiter = sh("while [ \"$(cat {d}/flaky.count 2>/dev/null)\" != 3 ]; do sleep 0.01; done"
                .format(d=tmp_path))
    pod = Pod(tmp_path, [app("flaky", counting(tmp_path, 3, "flaky"),
                             annotations=restart("on-failure")),
                         app("waiter", waiter)], annotations=FAST)
    code, _, err = run(pod)
    assert code == 0, err
    assert pod.status("flaky")["restartCount"] == 2
    assert pod.status("waiter")["reason"] == "Completed"


def test_the_backoff_state_and_a_stop_during_it(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("exit 1"), annotations=restart("on-failure"))],
              annotations={"stage1/restart-backoff": "30"})
    with Run(pod) as r:
        st = pod.wait_state("a", "backoff")
        assert (st["restartCount"], st["exitCode"], st["reason"]) == (1, 1, "Error")
        assert pod.code("a") == 1
        assert pod.pod_status()["state"] == "running"
        r.signal(15)
        # promptly, not after the 30 s back-off; the app's last run failed
        assert r.wait(5) == 1
    st = pod.status("a")
    assert (st["state"], st["restartCount"], st["reason"]) == ("exited", 1, "Error")


def test_backoff_doubles_up_to_its_cap(tmp_path):
    stamp = ("import sys, time; f = open(%r, 'a'); f.write('%%f\\n' %% time.monotonic()); "
             "f.close(); sys.exit(1)" % str(tmp_path / "starts"))
    pod = Pod(tmp_path, [app("a", [PY, "-c", stamp], annotations=restart("on-failure"))],
              annotations={"stage1/restart-backoff": "0.05",
                           "stage1/restart-backoff-max": "0.2"})
    with Run(pod) as r:
        starts = wait_for(lambda: len(pod.read("starts").split()) >= 7 and
                          [float(t) for t in pod.read("starts").split()],
                          what="seven starts")
        r.signal(15)
        assert r.wait() in (0, 1)     # 1 when the stop came during a back-off
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    for gap, delay in zip(gaps, [0.05, 0.1, 0.2, 0.2, 0.2, 0.2]):
        assert gap >= delay
    # the cap holds: uncapped, the last gaps would be 0.8 s and 1.6 s
    assert max(gaps) < 0.75
