"""Scale-out: folders shipped by value, the cluster resource check, and one tiny round on a
two-node Ray cluster on loopback whose actors run on both nodes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loop.config import Config, load_config
from loop.driver import check_cluster
from loop.errors import ConfigError
from loop.transport import digest, local, pack, unpack

REPO = Path(__file__).resolve().parents[1]


def test_a_folder_packs_and_unpacks_to_the_same_files(tmp_path: Path) -> None:
    src = tmp_path / "adapter"
    (src / "sub").mkdir(parents=True)
    (src / "adapter_config.json").write_text("{}")
    (src / "sub" / "w.bin").write_bytes(b"\x00\x01")
    files = pack(src)
    assert files == {"adapter_config.json": b"{}", "sub/w.bin": b"\x00\x01"}
    out = unpack(files, tmp_path / "copy")
    assert pack(out) == files and digest(pack(out)) == digest(files)
    # A different byte gives a different hash; a plain path passes through untouched.
    assert digest({**files, "sub/w.bin": b"\x00\x02"}) != digest(files)
    assert local(str(src)) == str(src) and local(None) is None


def _cfg(write_config, tmp_path: Path, **actors: float) -> Config:
    return load_config(write_config(tmp_path, actors=actors))


def node(cpus: float, gpus: float = 0.0, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


def test_the_cluster_check_names_the_key_that_cannot_be_placed(tmp_path, write_config) -> None:
    two = [node(1), node(1), node(8, alive=False)]
    # 2 generators x 1 + 1 critic x 0 + trainer 0 = 2 CPUs on two 1-CPU nodes: fits.
    fits = _cfg(write_config, tmp_path, generator_cpus=1.0, critic_cpus=0.0, trainer_cpus=0.0)
    check_cluster(fits, two)
    with pytest.raises(ConfigError, match="'actors.trainer_cpus' = 2.0 .* largest Ray node has 1"):
        check_cluster(_cfg(write_config, tmp_path, trainer_cpus=2.0), two)
    # 2 x 0.5 + 0.5 + 1 = 2.5 CPUs wanted, 2 there (the dead node does not count).
    with pytest.raises(ConfigError, match="2.5 CPUs in all and the Ray cluster has 2"):
        check_cluster(_cfg(write_config, tmp_path, trainer_cpus=1.0), two)
    with pytest.raises(ConfigError, match="'actors.trainer_gpus' = 1.0 .* has 0 GPUs"):
        check_cluster(_cfg(write_config, tmp_path, trainer_gpus=1.0), two)
    check_cluster(_cfg(write_config, tmp_path, trainer_gpus=1.0), [node(4, gpus=1)])


def test_negative_gpus_are_refused(tmp_path, write_config) -> None:
    with pytest.raises(Exception, match="critic_gpus"):
        _cfg(write_config, tmp_path, critic_gpus=-1.0)


# ---- a two-node cluster on loopback ------------------------------------------------------


# A throwaway cluster on loopback: without this, a head finding ~/.ray/auth_token turns token
# authentication on, and a joining node or driver given no token is refused.
# Its workers import this checkout's packages, as a node's workers import the installed ones.
NO_TOKEN = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(temp: Path, *args: str) -> subprocess.Popen:
    """`ray start --block` in its own process group, so that exactly its processes can be
    stopped (plain `ray stop` would stop every Ray on the machine)."""
    ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    cmd = [
        ray, "start", "--block", "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats",
        "--node-ip-address=127.0.0.1", f"--temp-dir={temp}",
        f"--dashboard-agent-listen-port={free_port()}", *args,
    ]  # fmt: skip
    log = (temp.parent / f"{temp.name}.log").open("w")
    return subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=NO_TOKEN
    )


def stop_node(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
            time.sleep(1)  # let the group's other processes go too
        except subprocess.TimeoutExpired:
            continue


def wait_for_nodes(address: str, n: int, timeout: float = 120.0) -> None:
    """Ask the cluster, from a throwaway driver, until n nodes are alive."""
    probe = f"""
import ray, time, sys
ray.init(address="{address}", logging_level="ERROR", include_dashboard=False)
for _ in range(int({timeout})):
    if sum(1 for x in ray.nodes() if x["Alive"]) >= {n}:
        sys.exit(0)
    time.sleep(1)
sys.exit(1)
"""
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=timeout + 60, env=NO_TOKEN)


@pytest.fixture
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Short temp paths: Ray's socket paths must stay under the OS limit of 107 bytes.
    root = Path(tmp_path_factory.mktemp("rc", numbered=True))
    short = Path("/tmp") / f"rc{os.getpid()}"
    short.mkdir(exist_ok=True)
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = start_node(short / "h", "--head", f"--port={port}", '--resources={"head": 1}')
    nodes = [head]
    try:
        time.sleep(5)
        nodes.append(start_node(short / "w", f"--address={address}", '--resources={"worker": 1}'))
        wait_for_nodes(address, 2)
        yield address
    finally:
        for proc in reversed(nodes):
            stop_node(proc)
        for log in short.glob("*.log"):
            shutil.copy(log, root)
        shutil.rmtree(short, ignore_errors=True)


def test_a_round_runs_on_two_nodes_and_ships_its_adapter(
    tmp_path: Path, tiny_model_dir: Path, write_config, two_nodes: str, monkeypatch, capsys
) -> None:
    from loop.cli import main

    monkeypatch.setenv("SELFLOOP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    config = write_config(
        tmp_path,
        model={"policy": str(tiny_model_dir), "dtype": "float32"},
        critics={
            "rules": {"enabled": False},  # a random model's answers break every rule
            "quality": {"threshold": 0.0},
            "persona": {"threshold": 0.0},
        },
        generate={"prompts_per_round": 2, "new_instructions": 0, "responses_per_prompt": 2},
        gate={"margin": -1.0, "max_loops": 1.0, "max_mc_drop": 1.0, "max_perplexity_rise": 99.0},
        # One CPU per generator on 1-CPU nodes: the two generators cannot share a node.
        actors={"generators": 2, "generator_cpus": 1.0, "critic_cpus": 0.0, "trainer_cpus": 0.0},
    )
    run = tmp_path / "run"
    argv = ["run", str(config), "--rounds", "1", "--run-dir", str(run), "--quiet"]
    # Actors the cluster cannot place are refused before the run folder exists.
    assert main([*argv, "--address", two_nodes, "--set", "actors.generators=3"]) == 2
    assert capsys.readouterr().err == (
        "selfloop: error: the actors ask for 3 CPUs in all and the Ray cluster has 2; lower "
        "actors.*_cpus or the actor counts (actors.generators, actors.critics), or add nodes\n"
    )
    assert not run.exists()
    assert main([*argv, "--address", two_nodes]) == 0, capsys.readouterr().err[-3000:]

    placed = json.loads((run / "actors.json").read_text())
    assert len(placed["nodes"]) == 2
    assert set(placed["generators"]) == set(placed["nodes"])
    # The generator off the driver's node answered the held-out prompts with round 1's
    # adapter from its cache, written from the shipped files (same bytes, same hash).
    adapter = run / "round_001" / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    shipped = tmp_path / "cache" / "shipped" / digest(pack(adapter))
    assert pack(shipped) == pack(adapter)
    assert json.loads((run / "round_001" / "metrics.json").read_text())["eval"]["adapter"]
