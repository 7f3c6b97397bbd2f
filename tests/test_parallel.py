from vae_anomaly import parallel


def test_usable_cores_are_those_this_process_may_run_on(monkeypatch):
    # a taskset or a container's CPU set of one core on a machine of eight
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert parallel.usable_cores() == 1
