"""loop.logs: under --json every stderr line is one JSON object, Ray's own warnings included."""

from __future__ import annotations

import json
import logging

import pytest

from loop import logs


def test_rays_token_notice_is_a_json_line_under_json(monkeypatch, capfd) -> None:
    import ray

    from loop.driver import _start_ray

    # Ray warns only while RAY_AUTH_MODE is unset (and sets it itself once started).
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    logs.configure(as_json=True)
    try:
        _start_ray(None)
    finally:
        ray.shutdown()
        logs.configure()
    lines = capfd.readouterr().err.splitlines()

    records = [json.loads(line) for line in lines]  # any other line fails here
    notices = [r for r in records if r["logger"] == logs.RAY_AUTH_LOGGER]
    assert len(notices) == 1 and notices[0]["level"] == "WARNING"
    assert notices[0]["message"].startswith("Token authentication is enabled")


@pytest.mark.parametrize("as_json", [True, False])
def test_only_json_mode_takes_rays_notice_over(as_json: bool) -> None:
    logs.configure(as_json=as_json)
    ray_auth = logging.getLogger(logs.RAY_AUTH_LOGGER)

    assert ray_auth.propagate is not as_json
    assert ray_auth.handlers == (logging.getLogger().handlers if as_json else [])
    logs.configure()
