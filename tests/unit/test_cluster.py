"""Scale-out pieces that need no Ray: addresses, the transport of folders, ``ClusterRuntime``
arguments, and that Ray is never imported into the server process (a child Python)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clara_rt.bench import checkout_env
from clara_rt.cluster.address import check_address
from clara_rt.cluster.transport import (
    OBJECT_STORE,
    RESULTS_DIR,
    SHARED_PATH,
    pack,
    place_results,
    transport_for,
    unpack,
)


@pytest.mark.parametrize("address", ["ray://head:10001", "10.0.0.1:6379", "auto", "local",
                                     "ray://[::1]:10001"])
def test_cluster_addresses_ray_accepts(address: str) -> None:
    assert check_address(address) == address


@pytest.mark.parametrize("address", ["head", "http://head:8265", "ray://head", ""])
def test_other_cluster_addresses_are_refused_with_the_forms(address: str) -> None:
    with pytest.raises(ValueError, match=r"is not one of: ray://HOST:PORT"):
        check_address(address)


def test_cluster_runtime_with_a_bad_address_fails_before_starting_anything() -> None:
    from clara_rt.cluster import ClusterRuntime

    with pytest.raises(ValueError, match=r"cluster address 'nowhere'"):
        ClusterRuntime("nowhere")


def test_the_core_runtime_is_in_process_only() -> None:
    from clara_rt import Runtime

    with pytest.raises(TypeError, match=r"unexpected keyword argument 'cluster'"):
        Runtime(1, cluster="ray://head:10001")  # type: ignore[call-arg]


def test_pack_and_unpack_round_trip_a_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)))
    (src / "empty").write_bytes(b"")
    index, data = pack({"input": src, "missing": tmp_path / "nope"})
    assert [rel for rel, _, _ in index] == ["input/a.txt", "input/empty", "input/sub/b.bin"]
    assert data.dtype.name == "uint8" and data.size == 5 + 256
    written = unpack((index, data), {"input": tmp_path / "dst"})
    assert len(written) == 3
    assert (tmp_path / "dst" / "sub" / "b.bin").read_bytes() == bytes(range(256))
    assert (tmp_path / "dst" / "empty").read_bytes() == b""


def test_unpack_refuses_paths_outside_the_target_and_appends_logs(tmp_path: Path) -> None:
    import numpy as np

    data = np.frombuffer(b"xy", dtype=np.uint8)
    with pytest.raises(ValueError, match=r"would land outside its folder"):
        unpack(((("input/../evil", 0, 1),), data), {"input": tmp_path})
    (tmp_path / "op.log").write_text("a")
    unpack(((("logs/op.log", 1, 1),), data), {"logs": tmp_path}, append=("logs",))
    assert (tmp_path / "op.log").read_text() == "ay"


def test_transport_is_shared_path_only_when_every_folder_is_under_it(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    assert transport_for(None, shared / "a") == OBJECT_STORE
    assert transport_for(shared, shared / "a", shared / "b") == SHARED_PATH
    assert transport_for(shared, shared / "a", tmp_path / "b") == OBJECT_STORE


def test_place_results_moves_them_into_an_existing_output(tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    (work / RESULTS_DIR / "op").mkdir(parents=True)
    (work / RESULTS_DIR / "op" / "r.json").write_text("{}")
    (out / "op").mkdir(parents=True)
    (out / "op" / "stale.json").write_text("old")
    place_results(work, out)
    assert sorted(p.name for p in (out / "op").iterdir()) == ["r.json"]
    assert not (work / RESULTS_DIR).exists()


_NO_RAY = """
import sys, tempfile
from pathlib import Path
import clara_rt
from clara_rt.server.app import Server, create_app
from clara_rt.server.config import ServerConfig
data = Path(tempfile.mkdtemp())
create_app(ServerConfig(data=data / "local"))
Server(ServerConfig(data=data / "local", monitor_interval=60)).close()
server = Server(ServerConfig(data=data / "cluster", cluster="ray://127.0.0.1:9",
                             monitor_interval=60))
print(server.runner.cluster_state().available)
server.close()
print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
"""


def test_the_server_never_imports_ray_with_or_without_a_cluster() -> None:
    pytest.importorskip("fastapi")
    done = subprocess.run([sys.executable, "-c", _NO_RAY], env=checkout_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[-3:-1] == ["False", "[]"], done.stdout
