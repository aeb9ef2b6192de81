"""The demo's serving half (latentindigo.serving), without a browser or a server."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from PIL import Image

from latentindigo import UserError
from latentindigo.serving import Jobs, PreviewPacer, RunCosts, duration
from latentindigo.settings import Settings, output_size


def finished(method: str, steps: int, seconds: float, size: tuple[int, int] = (500, 400), taken: int | None = None,
             reused: bool = False):
    """A stand-in for the sampler's Done: what RunCosts reads of it."""
    return SimpleNamespace(image=Image.new("RGB", size), settings=Settings(method=method, steps=steps),
                           seconds=seconds, steps_taken=taken or steps, first_stages_reused=reused)


def test_stop_reaches_only_the_callers_own_job_of_that_kind():
    jobs = Jobs()
    with jobs.run("restore", "alice") as job:
        assert jobs.stop("bob") is None and jobs.stop(None) is None
        assert jobs.stop("alice", kind="compare") is None
        assert not job.stop.is_set()
        job.step, job.total = 3, 10
        assert jobs.stop("alice", kind="restore") == "Stopped at step 3 of 10."
        assert job.stop.is_set()
    assert jobs.stop("alice") is None  # the job ended: nothing left to stop
    assert not jobs.lock.locked()


def test_a_second_job_waits_for_the_device_and_then_gives_up_with_a_clear_message():
    jobs = Jobs(wait=0.2)
    entered = threading.Event()
    raised = []  # (what the thread raises: an exception, or an assert, in a thread is lost, not a failure)

    def second():
        try:
            with jobs.run("restore", "bob"):
                entered.set()
        except BaseException as e:
            raised.append(e)

    with jobs.run("restore", "alice"):
        t = threading.Thread(target=second)
        t.start()
        t.join(5)
        assert not t.is_alive()  # it gave up while Alice's job still held the device
    assert not entered.is_set()
    assert len(raised) == 1 and type(raised[0]) is UserError, raised
    assert str(raised[0]) == "the device is busy with another job, try again in a minute"
    with jobs.run("restore", "bob"):  # free again
        pass


def test_time_left_follows_the_pace_so_far():
    jobs = Jobs()
    with jobs.run("restore", "alice") as job:
        assert job.time_left() is None
        job.started -= 2.0  # two seconds for the first 4 of 20 steps
        job.step, job.total = 4, 20
        assert job.time_left() == pytest.approx(8.0, rel=0.05)
        job.started -= 4.0  # a slow step: the pace says 12 s are left, but the count never goes back up
        job.step = 5
        assert job.time_left() <= 8.0


def test_run_costs_fit_a_fixed_part_and_a_part_per_step():
    costs = RunCosts()
    assert costs.estimate("mini", "latent", 25, 256 * 256) is None
    megapixels = 500 * 400 / 1e6
    for steps in (2, 6, 2):
        costs.record("mini", finished("latent", steps, megapixels * (0.5 + 0.25 * steps)))
    # 1 megapixel, 20 steps: 0.5 + 0.25 * 20 seconds
    assert costs.estimate("mini", "latent", 20, 1_000_000) == pytest.approx(5.5)
    assert costs.estimate("mini", "pixel", 20, 1_000_000) is None  # another method: not measured yet
    assert costs.estimate("other", "latent", 20, 1_000_000) is None  # another prior
    costs.record("mini", finished("faithful", 25, megapixels * 0.3))
    assert costs.estimate("mini", "faithful", 50, 2_000_000) == pytest.approx(0.6)  # no steps: per pixel only


def test_run_costs_expect_a_run_to_stop_where_recent_runs_stopped():
    costs = RunCosts()
    megapixels = 500 * 400 / 1e6
    for steps in (3, 6):  # asked for 3 and 6 steps, both stopped after 1: 2 s per megapixel
        costs.record("mini", finished("latent", steps, megapixels * 2.0, taken=1))
    assert costs.estimate("mini", "latent", 10, 1_000_000) == pytest.approx(2.0)
    # a run that reused its first stages is no measure of a new photo's cost
    costs.record("mini", finished("latent", 10, megapixels * 0.1, taken=1, reused=True))
    assert costs.estimate("mini", "latent", 10, 1_000_000) == pytest.approx(2.0)


def test_run_costs_keep_the_most_recent_runs():
    costs = RunCosts(keep=3)
    for seconds in (100, 1, 1, 1):  # a slow first run (loading) ages out
        costs.record("mini", finished("latent", 10, seconds * 0.2))
    assert costs.estimate("mini", "latent", 10, 1_000_000) == pytest.approx(1.0)


def test_durations_read_naturally():
    assert duration(0.2) == "about 1 s" and duration(42.4) == "about 42 s" and duration(150) == "about 3 min"


def test_output_size_from_one_side_keeps_the_aspect_ratio():
    photo = Image.new("RGB", (64, 48))
    assert output_size(photo, 0, 0) is None
    assert output_size(photo, 256, 0) == (256, 192) and output_size(photo, 0, 96) == (128, 96)
    assert output_size(photo, 100, 100) == (100, 100)


def test_preview_pacer_always_shows_a_few_evenly_spaced_steps():
    pacer = PreviewPacer(total=20, interval=1e9)
    pacer.last_time = float("inf")  # as if a preview had just been shown: only milestones are due
    assert [s for s in range(1, 21) if pacer.due(s)] == [5, 10, 15]


def test_stop_also_ends_the_sessions_runs_sent_before_it_and_only_those():
    jobs = Jobs()
    assert jobs.stop("bob", "restore", at=1000.0) is None  # nothing of Bob's runs yet: noted for his queue
    with jobs.run("restore", "bob", submitted=999.0) as job:  # sent before his Stop, waited in the queue
        assert job.stop.is_set()
    with jobs.run("restore", "bob", submitted=1001.0) as job:  # clicked after the Stop
        assert not job.stop.is_set()
    with jobs.run("compare", "bob", submitted=999.0) as job:  # another tab's run
        assert not job.stop.is_set()
    with jobs.run("restore", "alice", submitted=999.0) as job:  # another user's
        assert not job.stop.is_set()
    with jobs.run("restore", "bob") as job:  # API clients send no time: only Stop while running reaches them
        assert not job.stop.is_set()
    jobs.stop("bob", at=2000.0)  # /stop: every tab
    with jobs.run("compare", "bob", submitted=1500.0) as job:
        assert job.stop.is_set()


def test_loading_a_prior_reports_its_calibration_and_raises_its_errors(monkeypatch):
    import latentindigo.priors as priors
    from latentindigo.serving import Models

    def slow_load(spec, device=None, calibrate=None, progress=None):
        import time

        for step in range(1, 4):
            progress(step, 3)
            time.sleep(0.4)
        if spec == "broken":
            raise UserError("no such prior")
        return SimpleNamespace(name=spec)

    monkeypatch.setattr(priors, "load_prior", slow_load)
    models = Models(["mini", "broken"], device="cpu")
    lines = list(models.loading("mini"))
    assert any("Calibrating the LatentINN" in line and "of 3" in line for line in lines), lines
    assert models.loaded("mini").name == "mini"
    with pytest.raises(UserError, match="no such prior"):
        list(models.loading("broken"))


def test_the_estimate_says_when_the_machine_is_busy(monkeypatch):
    from latentindigo import serving

    monkeypatch.setattr(serving.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(serving.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert serving.busy_note(running=False) == ""
    monkeypatch.setattr(serving.os, "getloadavg", lambda: (3.5, 1.0, 1.0))
    assert "busy, load 3.5 on 2 cores" in serving.busy_note(running=False)
    assert serving.busy_note(running=True) == ""  # this server's own run is the load
